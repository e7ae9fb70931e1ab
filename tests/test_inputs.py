"""Inputs: targets.csv, AlphaFold 3 JSON and Protenix JSON → Target → Structure (inputs, from_target)."""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

import gemmi
import numpy as np
import pytest
from conftest import MMCIF_DIR, REPO, SHARED_DATA, shared_entries

from model.data.ccd import load_ccd
from model.data.constants import DNA_RESIDUES, RNA_RESIDUES, THREE_TO_ONE_PROTEIN
from model.data.from_target import check_target, check_targets, structure_from_target, user_msas
from model.data.inputs import (
    CSV_COLUMNS,
    Entity,
    Target,
    TargetError,
    chain_id_from_index,
    load_job_json,
    load_targets,
)

FIXTURES = Path(__file__).parent / "data" / "inputs"
NOT_IN_CCD = "QQQQQ"


@pytest.fixture(scope="module")
def ccd():
    ccd = load_ccd()
    assert NOT_IN_CCD not in ccd and "Q9Q9Q" not in ccd
    return ccd


def af3_job(**changes) -> dict:
    job = {
        "dialect": "alphafold3",
        "version": 2,
        "name": "bad",
        "modelSeeds": [1],
        "sequences": [
            {"protein": {"id": "A", "sequence": "MKTAYIAK"}},
            {"ligand": {"id": "B", "ccdCodes": ["ATP"]}},
        ],
    }
    job.update(changes)
    return job


def with_protein(**fields) -> dict:
    return af3_job(
        sequences=[{"protein": {"id": "A", "sequence": "MKTAYIAK", **fields}}, af3_job()["sequences"][1]]
    )


def with_ligand(**fields) -> dict:
    return af3_job(sequences=[af3_job()["sequences"][0], {"ligand": {"id": "B", **fields}}])


def px_job(*sequences, **changes) -> list:
    return [
        {
            "name": "bad",
            "sequences": [{"proteinChain": {"sequence": "MKTAYIAK", "count": 1}}, *sequences],
            **changes,
        }
    ]


def write_csv(folder: Path, rows: list[dict], name: str = "targets.csv") -> Path:
    path = folder / name
    columns = list(dict.fromkeys(k for row in rows for k in row)) or ["target_id", "chains"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


# (case id, input kind, payload, expected one-line message; {root} = the test's folder)
BAD_INPUTS = [
    ("unknown_residue_letter", "json", with_protein(sequence="MKJAYIAK"),
     "target bad: entity 1 (protein, chain A): sequence: unknown residue letter 'J' at 3"),
    ("empty_sequence", "json", with_protein(sequence=""),
     "target bad: entity 1 (protein, chain A): sequence: empty sequence"),
    ("unknown_ccd_code", "json", with_ligand(ccdCodes=[NOT_IN_CCD]),
     f"target bad: entity 2 (ligand, chain B): ccd_codes: unknown CCD code '{NOT_IN_CCD}'"),
    ("smiles_rejected_by_rdkit", "json", with_ligand(smiles="C1CC("),
     "target bad: entity 2 (ligand, chain B): smiles: RDKit cannot parse SMILES 'C1CC('"),
    ("smiles_without_heavy_atom", "json", with_ligand(smiles="[H][H]"),
     "target bad: entity 2 (ligand, chain B): smiles: SMILES '[H][H]' has no heavy atom"),
    ("smiles_wildcard_atom", "json", with_ligand(smiles="CC*"),
     "target bad: entity 2 (ligand, chain B): smiles: SMILES 'CC*' has a wildcard atom '*'"),
    ("ccd_codes_and_smiles", "json", with_ligand(ccdCodes=["ATP"], smiles="CCO"),
     "target bad: entity 2 (ligand, chain B): ccdCodes: give ccdCodes or smiles, not both"),
    ("neither_ccd_codes_nor_smiles", "json", with_ligand(),
     "target bad: entity 2 (ligand, chain B): ccdCodes: give ccdCodes or smiles"),
    ("duplicate_chain_id", "json", with_ligand(ccdCodes=["ATP"], id="A"),
     "target bad: entity 2 (ligand, chain A): id: duplicate chain id 'A'"),
    ("modification_out_of_range", "json", with_protein(modifications=[{"ptmType": "SEP", "ptmPosition": 9}]),
     "target bad: entity 1 (protein, chain A): modifications.ptmPosition: position 9 is out of range 1..8"),
    ("modification_unknown_ccd", "json",
     with_protein(modifications=[{"ptmType": NOT_IN_CCD, "ptmPosition": 2}]),
     "target bad: entity 1 (protein, chain A): modifications: "
     f"unknown CCD code '{NOT_IN_CCD}' at position 2"),
    ("modification_other_polymer", "json", with_protein(modifications=[{"ptmType": "DA", "ptmPosition": 2}]),
     "target bad: entity 1 (protein, chain A): modifications: "
     "DA at position 2 is a DNA LINKING component, not a protein residue"),
    ("modification_cannot_link", "json", with_protein(modifications=[{"ptmType": "HEM", "ptmPosition": 2}]),
     "target bad: entity 1 (protein, chain A): modifications: "
     "HEM at position 2 is a NON-POLYMER component with no C or N atom to link into a protein chain"),
    ("bond_to_missing_atom", "json", af3_job(bondedAtomPairs=[[["A", 1, "XX"], ["B", 1, "PG"]]]),
     "target bad: entity 1 (protein, chain A): bonds: "
     "bond to atom 'XX' that does not exist in residue 1 (MET) of chain A"),
    ("bond_residue_out_of_range", "json", af3_job(bondedAtomPairs=[[["A", 9, "CA"], ["B", 1, "PG"]]]),
     "target bad: bondedAtomPairs[0]: residue 9 of chain A is out of range 1..8"),
    ("bond_to_unknown_chain", "json", af3_job(bondedAtomPairs=[[["Z", 1, "CA"], ["B", 1, "PG"]]]),
     "target bad: bondedAtomPairs[0]: bond to unknown chain 'Z'"),
    ("invalid_json", "raw", '{"dialect": "alphafold3",,}',
     "bad.json: json: invalid JSON: "
     "Expecting property name enclosed in double quotes: line 1 column 26 (char 25)"),
    ("unknown_dialect", "json", af3_job(dialect="boltz"),
     "bad.json: dialect: "
     "unknown dialect 'boltz' (supported: alphafold3, alphafoldserver, or Protenix without one)"),
    ("unsupported_version", "json", af3_job(version=7),
     "target bad: version: unsupported AlphaFold 3 input version 7 (supported: 1-4)"),
    ("non_integer_seed", "json", af3_job(modelSeeds=[1, "x"]),
     "target bad: modelSeeds: expected an integer, got 'x'"),
    ("fractional_seed", "json", af3_job(modelSeeds=[1.5]),
     "target bad: modelSeeds: expected an integer, got 1.5"),
    ("no_seeds", "json", af3_job(modelSeeds=[]),
     "target bad: modelSeeds: expected a non-empty list of integer seeds, got []"),
    ("unknown_field", "json", with_protein(sequnce="MK"),
     "target bad: entity 1 (protein, chain A): protein: unknown field 'sequnce'"),
    ("field_needs_newer_version", "json", {**with_protein(unpairedMsaPath="x.a3m"), "version": 1},
     "target bad: entity 1 (protein, chain A): unpairedMsaPath: "
     "needs AlphaFold 3 input version >= 2, file has 1"),
    ("msa_path_outside_roots", "json", with_protein(unpairedMsaPath="/etc/hostname"),
     "target bad: entity 1 (protein, chain A): unpairedMsaPath: path '/etc/hostname' is outside the allowed "
     "roots ({root})"),
    ("unpaired_msa_without_paired", "json", with_protein(unpairedMsa=">query\nMKTAYIAK\n"),
     "target bad: entity 1 (protein, chain A): pairedMsa: "
     "unpairedMsa and pairedMsa must be both set or both unset ('' = no MSA)"),
    ("lower_case_ccd_code", "json", with_ligand(ccdCodes=["atp"]),
     "target bad: entity 2 (ligand, chain B): ccd_codes: unknown CCD code 'atp'"),
    ("msa_file_missing", "json", with_protein(unpairedMsaPath="missing.a3m"),
     "target bad: entity 1 (protein, chain A): unpairedMsaPath: file not found: missing.a3m"),
    ("zero_count", "json", [{"name": "bad", "sequences": [{"proteinChain": {"sequence": "MK", "count": 0}}]}],
     "target bad: entity 1 (protein): count: must be >= 1, got 0"),
    ("negative_count", "json", px_job({"ion": {"ion": "MG", "count": -2}}),
     "target bad: entity 2 (ion): count: must be >= 1, got -2"),
    ("ion_not_single_atom", "json", px_job({"ion": {"ion": "ATP", "count": 1}}),
     "target bad: entity 2 (ion, chain B): ion: ATP is not a single-atom ion component"),
    ("ion_unknown", "json", px_job({"ion": {"ion": "Q9Q9Q", "count": 1}}),
     "target bad: entity 2 (ion, chain B): ion: unknown CCD code 'Q9Q9Q'"),
    ("protenix_bond_entity_out_of_range", "json",
     px_job(covalent_bonds=[
         {"entity1": 1, "position1": 1, "atom1": "N", "entity2": 5, "position2": 1, "atom2": "C1"}
     ]),
     "target bad: covalent_bonds[0].entity2: entity 5 is out of range 1..1"),
    ("protenix_bond_copies_unpaired", "json",
     px_job({"ligand": {"ligand": "CCD_ATP", "count": 2}}, covalent_bonds=[
         {"entity1": 1, "position1": 1, "atom1": "N", "entity2": 2, "position2": 1, "atom2": "PG"}
     ]),
     "target bad: covalent_bonds[0]: 1 and 2 copies to pair; give copy1 and copy2"),
    ("unreadable_ligand_file", "json", px_job({"ligand": {"ligand": "FILE_broken.sdf", "count": 1}}),
     "target bad: entity 2 (ligand, chain B): ligand_file: "
     "RDKit cannot read a molecule from broken.sdf"),
    ("protenix_unknown_entity_type", "json", px_job({"glycan": {"count": 1}}),
     "target bad: entity 2: "
     "unknown entity type 'glycan' (proteinChain, rnaSequence, dnaSequence, ligand, ion)"),
    ("duplicate_job_names", "json", [af3_job(name="Same"), af3_job(name="same")],
     "target Same: name: 2 jobs share the name 'Same'"),
    ("protenix_glycans_field", "json",
     [{"name": "bad", "sequences": [
         {"proteinChain": {"sequence": "MKN", "count": 1, "glycans": [{"residues": "NAG", "position": 3}]}}
     ]}],
     "target bad: entity 1 (protein, chain A): glycans: not supported; give each glycan as a ligand with "
     "covalent_bonds"),
    ("csv_duplicate_target_id", "csv",
     [{"target_id": "T1", "chains": "protein:MK"}, {"target_id": "t1", "chains": "protein:MK"}],
     "target T1: target_id: duplicate target_id 'T1' (ids are compared case-insensitively)"),
    ("csv_unsafe_target_id", "csv", [{"target_id": "../x", "chains": "protein:MK"}],
     "target invalid@row-2: target_id: "
     "target_id '../x' is not a safe file name (use only A-Z a-z 0-9 . _ -)"),
    ("csv_target_id_leading_dot", "csv", [{"target_id": ".hidden", "chains": "protein:MK"}],
     "target invalid@row-2: target_id: target_id '.hidden' must not start with a dot"),
    ("csv_json_outside_roots", "csv", [{"target_id": "T", "json": "../outside.json", "chains": ""}],
     "target T: json: path '../outside.json' is outside the allowed roots ({root})"),
    ("csv_json_missing", "csv", [{"target_id": "T", "json": "nope.json", "chains": ""}],
     "target T: json: file not found: nope.json"),
    ("csv_json_and_chains", "csv", [{"target_id": "T", "json": "a.json", "chains": "protein:MK"}],
     "target T: json: give exactly one of the json and chains columns"),
    ("csv_neither_json_nor_chains", "csv", [{"target_id": "T", "json": "", "chains": ""}],
     "target T: json: give exactly one of the json and chains columns"),
    ("csv_unknown_chain_kind", "csv", [{"target_id": "T", "chains": "peptide:MK"}],
     "target T: entity 1: chains: item 1 'peptide:MK' must be KIND:VALUE with KIND one of protein, rna, dna, "
     "ligand, ion"),
    ("csv_zero_copies", "csv", [{"target_id": "T", "chains": "protein:MKx0"}],
     "target T: entity 1 (protein): chains: must be >= 1, got 0"),
    ("csv_non_integer_seed", "csv", [{"target_id": "T", "chains": "protein:MK", "seeds": "1 two"}],
     "target T: seeds: expected an integer, got 'two'"),
    ("csv_bad_dna_letter", "csv", [{"target_id": "T", "chains": "protein:MK;dna:ACGU"}],
     "target T: entity 2 (dna, chain B): sequence: unknown residue letter 'U' at 4"),
]  # fmt: skip


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_gives_one_line_message(case, tmp_path: Path, ccd) -> None:
    name, kind, payload, expected = case
    expected = expected.replace("{root}", str(tmp_path.resolve()))
    (tmp_path / "broken.sdf").write_text("this is not a molecule\n")
    if kind == "csv":
        targets, errors = check_targets(*load_targets(write_csv(tmp_path, payload)), ccd=ccd)
        assert targets == []
        messages = [str(e) for e in errors]
        assert len(messages) == len(payload)
    else:
        path = tmp_path / "bad.json"
        path.write_text(payload if kind == "raw" else json.dumps(payload))
        with pytest.raises(TargetError) as raised:
            [check_target(t, ccd) for t in load_job_json(path)]
        messages = [str(raised.value)]
    assert messages[0] == expected
    assert all("\n" not in m for m in messages)


def test_at_least_twenty_kinds_of_bad_input() -> None:
    assert len({c[0] for c in BAD_INPUTS}) >= 20


@pytest.mark.parametrize(
    "content, expected",
    [
        ("target_id,chains\n", "targets.csv: empty: no target rows"),
        ("", "targets.csv: empty: no header and no target rows"),
        ("name,chains\nT,protein:MK\n", "targets.csv: no target_id column (columns: name, chains)"),
        ("target_id,seeds\nT,1\n", "targets.csv: needs a json or a chains column"),
        (
            "target_id,sequence\nT,MK\n",
            "targets.csv: unknown column 'sequence' "
            "(columns: target_id, json, chains, seeds, bonds, reference)",
        ),
    ],
)
def test_unusable_targets_csv_raises(content: str, expected: str, tmp_path: Path, ccd) -> None:
    (tmp_path / "targets.csv").write_text(content)
    with pytest.raises(TargetError) as raised:
        check_targets(*load_targets(tmp_path / "targets.csv"), ccd=ccd)
    assert str(raised.value) == expected


def test_mixed_csv_gives_every_good_target_and_every_bad_one(ccd) -> None:
    targets, errors = check_targets(*load_targets(FIXTURES / "targets_mixed.csv"), ccd=ccd)
    with open(FIXTURES / "targets_mixed.csv") as handle:
        rows = [r for r in csv.DictReader(line for line in handle if not line.startswith("#"))]
    expected_good = {r["target_id"] for r in rows if r["target_id"].startswith("good")}
    expected_bad = {r["target_id"] for r in rows if not r["target_id"].startswith("good")}
    assert {t.target_id for t in targets} == expected_good
    # a row whose id is not a safe file name is reported under its row number (line 2 is the first row)
    bad_rows = [(n, r["target_id"]) for n, r in enumerate(rows, start=2) if r["target_id"] in expected_bad]
    # (parse errors in row order, then the chemistry errors of check_targets)
    assert sorted(e.target_id for e in errors) == sorted(
        t if " " not in t else f"invalid@row-{n}" for n, t in bad_rows
    )
    for error in errors:
        assert "\n" not in str(error) and str(error).startswith(f"target {error.target_id}: ")
    by_id = {t.target_id: t for t in targets}
    assert by_id["good_inline"].seeds == (3, 4)
    assert by_id["good_af3"].seeds == (1, 2)  # modelSeeds from the job file
    assert by_id["good_af3"].dialect == "alphafold3" and by_id["good_protenix"].dialect == "protenix"


def _same_structure(a, b) -> None:
    for name, value in vars(a).items():
        other = getattr(b, name)
        if isinstance(value, np.ndarray):
            assert value.dtype == other.dtype, name
            np.testing.assert_array_equal(value, other, err_msg=name)
        elif name == "components":
            assert value.keys() == other.keys()
            for code in value:
                assert value[code].atom_names == other[code].atom_names
                assert value[code].smiles == other[code].smiles
        else:
            assert value == other, name


def test_af3_and_protenix_json_give_the_same_target_structure_and_features(ccd) -> None:
    af3 = [check_target(t, ccd) for t in load_job_json(FIXTURES / "af3_complex.json")]
    protenix = [check_target(t, ccd) for t in load_job_json(FIXTURES / "protenix_complex.json")]
    assert len(af3) == len(protenix) == 1
    af3, protenix = af3[0], protenix[0]
    assert (af3.dialect, protenix.dialect) == ("alphafold3", "protenix")
    assert af3 == protenix
    s_af3, s_px = structure_from_target(af3, ccd), structure_from_target(protenix, ccd)
    _same_structure(s_af3, s_px)
    assert list(s_af3.chain_name) == list("ABCDEFGHI")
    assert list(s_af3.chain_type) == [
        "protein",
        "protein",
        "rna",
        "dna",
        "ligand",
        "ligand",
        "ion",
        "ion",
        "branched",
    ]


def test_af3_and_protenix_json_give_the_same_features_through_the_shard_job(tmp_path: Path) -> None:
    """Both jobs featurized by the featurize-shard job (scripts/build_features.py as the rule runs
    it), their MSAs read from the job (AF3 `*MsaPath`, Protenix `precomputed_msa_dir`)."""
    import importlib.util

    from model.data import store

    spec = importlib.util.spec_from_file_location("build_features", REPO / "scripts" / "build_features.py")
    script = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = script
    spec.loader.exec_module(script)
    csv_path = tmp_path / "targets.csv"
    csv_path.write_text(
        f"target_id,json\naf3,{FIXTURES / 'af3_complex.json'}\npx,{FIXTURES / 'protenix_complex.json'}\n"
    )
    shard = json.dumps({name: {"chains": {}, "pair": False} for name in ("af3", "px")})
    out, failed, status = tmp_path / "features", tmp_path / "failed", tmp_path / "status.tsv"
    argv = ["--inputs", str(csv_path), "--allowed-root", str(FIXTURES), "--shard", shard, "--ccd", ""]
    argv += ["--out-dir", str(out), "--failed-dir", str(failed), "--status", str(status)]
    assert script.main(argv) == 0
    f_af3, f_px = store.load_features(out / "af3.h5"), store.load_features(out / "px.h5")
    assert f_af3.keys() == f_px.keys()
    for name in f_af3:
        np.testing.assert_array_equal(f_af3[name].numpy(), f_px[name].numpy(), err_msg=name)
    unpaired = (FIXTURES / "msa/protein_a/non_pairing.a3m").read_text().count(">")
    assert f_af3["msa"].shape[0] > unpaired  # the query, then the user MSA's rows (not the query alone)


def test_af3_entities_bonds_and_msa_paths(ccd) -> None:
    target = check_target(load_job_json(FIXTURES / "af3_complex.json")[0], ccd)
    assert target.target_id == "complex_1" and target.seeds == (1, 2)
    protein = target.entities[0]
    assert protein.chain_ids == ("A", "B") and protein.modifications == ((1, "MSE"),)
    assert protein.unpaired_msa_path == (FIXTURES / "msa/protein_a/non_pairing.a3m").resolve()
    assert target.entities[4].smiles == "C[C@@H](C(=O)O)N"
    assert [e.kind for e in target.entities] == ["protein", "rna", "dna", "ligand", "ligand", "ion", "ligand"]
    assert target.bonds == ((("A", 2, "NZ"), ("F", 1, "C3")), (("I", 1, "O4"), ("I", 2, "C1")))


def test_af3_versions_and_job_lists(tmp_path: Path, ccd) -> None:
    for version in (1, 2, 3, 4):
        (tmp_path / "job.json").write_text(json.dumps(af3_job(version=version, name=f"v{version}")))
        assert check_target(load_job_json(tmp_path / "job.json")[0], ccd).target_id == f"v{version}"
    jobs = [af3_job(name="first"), af3_job(name="second job", modelSeeds=[5])]
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    assert [t.target_id for t in load_job_json(tmp_path / "jobs.json")] == [
        "first",
        "second_job",
    ]
    picked = [check_target(t, ccd) for t in load_job_json(tmp_path / "jobs.json", target_id="second_job")]
    assert [t.seeds for t in picked] == [(5,)]


def test_chain_ids_follow_af3_and_protenix_order(tmp_path: Path, ccd) -> None:
    assert [chain_id_from_index(i) for i in (0, 1, 25, 26, 27, 52)] == ["A", "B", "Z", "AA", "BA", "AB"]
    job = [{"name": "ids", "sequences": [
        {"proteinChain": {"sequence": "MK", "count": 2}},
        {"ion": {"ion": "ZN", "count": 1, "id": ["A"]}},
        {"dnaSequence": {"sequence": "ACGT", "count": 1}},
    ]}]  # fmt: skip
    (tmp_path / "ids.json").write_text(json.dumps(job))
    target = check_target(load_job_json(tmp_path / "ids.json")[0], ccd)
    assert [e.chain_ids for e in target.entities] == [("B", "C"), ("A",), ("D",)]


def test_inline_chains_syntax(tmp_path: Path, ccd) -> None:
    spec = "protein:MK(SEP)TAYx2; ligand:NAG_NAG; ligand:smiles=CCO; dna:ACGT; rna:ACGU; ion:MGx2"
    path = write_csv(
        tmp_path, [{"target_id": "inline", "chains": spec, "bonds": "C:1:O4-C:2:C1", "seeds": "7,8"}]
    )
    (target,), errors = check_targets(*load_targets(path), ccd=ccd)
    assert errors == []
    kinds = [(e.kind, e.chain_ids) for e in target.entities]
    assert kinds == [("protein", ("A", "B")), ("ligand", ("C",)), ("ligand", ("D",)), ("dna", ("E",)),
                     ("rna", ("F",)), ("ion", ("G", "H"))]  # fmt: skip
    assert target.entities[0].sequence == "MKXTAY" and target.entities[0].modifications == ((3, "SEP"),)
    assert target.entities[0].residue_codes() == ["MET", "LYS", "SEP", "THR", "ALA", "TYR"]
    assert target.entities[1].ccd_codes == ("NAG", "NAG") and target.entities[2].smiles == "CCO"
    assert target.bonds == ((("C", 1, "O4"), ("C", 2, "C1")),) and target.seeds == (7, 8)


def test_protenix_bonds_pair_copies_and_resolve_smiles_atom_maps(tmp_path: Path, ccd) -> None:
    job = [
        {
            "name": "pairs",
            "sequences": [
                {"proteinChain": {"sequence": "MKC", "count": 2}},
                {"ligand": {"ligand": "[CH3:1]C(=O)[OH:2]", "count": 2}},
            ],
            "covalent_bonds": [
                {"entity1": 1, "position1": 3, "atom1": "SG", "entity2": 2, "position2": 1, "atom2": 1}
            ],
        }
    ]
    (tmp_path / "pairs.json").write_text(json.dumps(job))
    target = check_target(load_job_json(tmp_path / "pairs.json")[0], ccd)
    assert target.bonds == ((("A", 3, "SG"), ("C", 1, "#1")), (("B", 3, "SG"), ("D", 1, "#1")))
    structure = structure_from_target(target, ccd)
    covalent = structure.bonds[structure.bond_type == "covale"]
    # atom map 1 is the methyl carbon, the first atom: C1 of the ligand
    pairs = {tuple(sorted((str(structure.atom_name[i]), str(structure.atom_name[j])))) for i, j in covalent}
    assert pairs == {("C1", "SG")} and len(covalent) == 2
    chain_of_atom = structure.res_chain[structure.atom_residue]
    chains = {(int(chain_of_atom[i]), int(chain_of_atom[j])) for i, j in covalent}
    assert chains == {(0, 2), (1, 3)}


def test_protenix_ligand_file(tmp_path: Path, ccd) -> None:
    job = [{"name": "file", "sequences": [
        {"proteinChain": {"sequence": "MK", "count": 1}},
        {"ligand": {"ligand": f"FILE_{FIXTURES / 'proline.sdf'}", "count": 1}},
    ]}]  # fmt: skip
    (tmp_path / "file.json").write_text(json.dumps(job))
    target = check_target(load_job_json(tmp_path / "file.json", allowed_roots=[tmp_path, FIXTURES])[0], ccd)
    structure = structure_from_target(target, ccd)
    mol_block = (FIXTURES / "proline.sdf").read_text().splitlines()
    n_atoms = int(mol_block[3][:3])
    elements = [line[31:34].strip().upper() for line in mol_block[4 : 4 + n_atoms]]
    ligand = structure.res_atom_start[-1], structure.res_atom_end[-1]
    assert list(structure.atom_element[ligand[0] : ligand[1]]) == elements
    assert structure.res_name[-1] == "l01" and "l01" in structure.components
    assert np.isfinite(structure.components["l01"].ideal_coords).all()


def _file_residues(entry: str) -> tuple[str, list[list[str]]]:
    st = gemmi.read_structure(str(MMCIF_DIR / f"{entry}.cif.gz"))
    st.setup_entities()
    st.remove_hydrogens()
    entity = st.entities[0]
    residues = st[0].get_subchain(entity.subchains[0])
    return gemmi.one_letter_code(entity.full_sequence), [[a.name for a in r] for r in residues]


@pytest.mark.parametrize(
    "entry, kind", [("1ubq", "protein"), ("1aki", "protein"), ("1bna", "dna"), ("1rna", "rna")]
)
def test_polymer_atoms_match_the_pdb_entry(entry: str, kind: str, ccd) -> None:
    sequence, file_residues = _file_residues(entry)
    structure = structure_from_target(Target(entry, (Entity(kind, ("A",), sequence=sequence),)), ccd)
    assert structure.num_residues == len(file_residues) == len(sequence)
    for i, file_atoms in enumerate(file_residues):
        ours = set(structure.atom_name[structure.res_atom_start[i] : structure.res_atom_end[i]].tolist())
        if kind == "protein" or i > 0:
            assert ours == set(file_atoms), (entry, i + 1)
        else:  # AF3 keeps the 5' nucleotide's whole phosphate, which these crystal structures lack
            assert ours - set(file_atoms) == {"P", "OP1", "OP2", "OP3"}
    links = structure.bonds[structure.bond_type == "polymer"]
    assert len(links) == len(sequence) - 1
    assert structure.res_is_standard.all() and not structure.atom_resolved.any()
    assert np.isnan(structure.atom_coords).all()


def test_modification_smiles_ion_and_glycan_structure(ccd) -> None:
    target = check_target(load_job_json(FIXTURES / "af3_complex.json")[0], ccd)
    s = structure_from_target(target, ccd)
    chain_a = slice(s.chain_res_start[0], s.chain_res_end[0])
    # the MSE modification is read as MET (AF3 supplement §2.1): a standard residue, SD for SE
    assert s.res_name[chain_a][0] == "MET" and s.res_is_standard[chain_a].all()
    met = s.atom_name[s.res_atom_start[0] : s.res_atom_end[0]].tolist()
    assert "SD" in met and "SE" not in met and "OXT" not in met
    rna = slice(s.chain_res_start[2], s.chain_res_end[2])
    assert s.res_name[rna].tolist() == ["G", "G", "C", "PSU", "A", "G", "C", "C"]
    ligand_f = s.res_atom_start[s.chain_res_start[5]], s.res_atom_end[s.chain_res_start[5]]
    assert s.atom_name[ligand_f[0] : ligand_f[1]].tolist() == ["C1", "C2", "C3", "O1", "O2", "N1"]
    assert s.components["l01"].smiles == "C[C@@H](C(=O)O)N"
    ions = [c for c in range(s.num_chains) if s.chain_type[c] == "ion"]
    assert [s.res_name[s.chain_res_start[c]] for c in ions] == ["MG", "MG"]
    covalent = s.bonds[s.bond_type == "covale"]
    names = sorted(tuple(sorted((str(s.atom_name[i]), str(s.atom_name[j])))) for i, j in covalent)
    assert names == [("C1", "O4"), ("C3", "NZ")]
    # ATP: every heavy atom of the CCD component, straight from the PDBe CCD file
    block = gemmi.cif.read(str(SHARED_DATA / "ccd/pdbe_ccd_samples/ATP.cif")).sole_block()
    table = block.find("_chem_comp_atom.", ["atom_id", "type_symbol"])
    heavy = [gemmi.cif.as_string(r[0]) for r in table if r[1] != "H"]
    atp = s.chain_res_start[4]
    assert s.atom_name[s.res_atom_start[atp] : s.res_atom_end[atp]].tolist() == heavy
    # NAG(1) O4 - NAG(2) C1: the second sugar loses its anomeric O1 (the leaving atom at C1)
    block = gemmi.cif.read(str(SHARED_DATA / "ccd/pdbe_ccd_samples/NAG.cif")).sole_block()
    table = block.find("_chem_comp_atom.", ["atom_id", "type_symbol"])
    nag = [gemmi.cif.as_string(r[0]) for r in table if r[1] != "H"]
    first, second = s.chain_res_start[8], s.chain_res_start[8] + 1
    assert s.atom_name[s.res_atom_start[first] : s.res_atom_end[first]].tolist() == nag
    assert s.atom_name[s.res_atom_start[second] : s.res_atom_end[second]].tolist() == [
        a for a in nag if a != "O1"
    ]


def test_user_ccd_defines_a_new_component(tmp_path: Path, ccd) -> None:
    text = (SHARED_DATA / "ccd/pdbe_ccd_samples/ATP.cif").read_text()
    renamed = re.sub(r"\bATP\b", "LIG-9", text)  # a custom name as AF3's docs suggest
    job = af3_job(version=3, sequences=[{"ligand": {"id": "A", "ccdCodes": ["LIG-9"]}}], userCCD=renamed)
    (tmp_path / "user.json").write_text(json.dumps(job))
    target = check_target(load_job_json(tmp_path / "user.json")[0], ccd)
    s = structure_from_target(target, ccd)
    assert s.res_name.tolist() == ["LIG-9"] and "LIG-9" in s.components
    assert s.num_atoms == ccd["ATP"].num_heavy_atoms
    features = pytest.importorskip("model.data.features")
    assert features.featurize(s, ccd, seed=0).features["ref_mask"].all()  # the user component's conformer
    (tmp_path / "zz9.cif").write_text(renamed)
    job = af3_job(
        version=3, sequences=[{"ligand": {"id": "A", "ccdCodes": ["LIG-9"]}}], userCCDPath="zz9.cif"
    )
    (tmp_path / "user_path.json").write_text(json.dumps(job))
    by_path = check_target(load_job_json(tmp_path / "user_path.json")[0], ccd)
    assert structure_from_target(by_path, ccd).num_atoms == s.num_atoms


def test_docs_examples_load(tmp_path: Path, repo_root: Path, ccd) -> None:
    """The worked examples of docs/inputs.md (CSV, AF3 JSON, Protenix JSON) load and agree."""
    doc = (repo_root / "docs" / "inputs.md").read_text()
    blocks = re.findall(r"```(\w+)\n(.*?)```", doc, re.S)
    csv_text = next(text for kind, text in blocks if kind == "csv")
    af3_text, protenix_text = (text for kind, text in blocks if kind == "json")
    (tmp_path / "jobs" / "msa").mkdir(parents=True)
    (tmp_path / "jobs" / "msa" / "kinase").symlink_to(FIXTURES / "msa" / "protein_a")
    (tmp_path / "jobs" / "my_components.cif").write_text(
        (SHARED_DATA / "ccd/pdbe_ccd_samples/SEH.cif").read_text()
    )
    (tmp_path / "jobs" / "kinase_af3.json").write_text(af3_text)
    (tmp_path / "jobs" / "kinase_protenix.json").write_text(protenix_text)
    (tmp_path / "targets.csv").write_text(csv_text)
    targets, errors = check_targets(
        *load_targets(tmp_path / "targets.csv", allowed_roots=[tmp_path, FIXTURES]), ccd=ccd
    )
    assert errors == []
    rows = [line.split(",")[0] for line in csv_text.strip().splitlines()[1:]]
    assert [t.target_id for t in targets] == rows
    by_id = {t.target_id: t for t in targets}
    assert by_id["kinase_af3"].entities == by_id["kinase_protenix"].entities
    assert by_id["kinase_af3"].bonds == by_id["kinase_protenix"].bonds
    assert [len(e.chain_ids) for e in by_id["hiv_protease_dimer"].entities] == [2, 1]


def test_unchecked_targets_build_the_same_structure(ccd) -> None:
    """Without `check`, an AF3 single-atom ligand is still an ion chain when the structure is built."""
    af3 = load_job_json(FIXTURES / "af3_complex.json")[0]
    protenix = load_job_json(FIXTURES / "protenix_complex.json")[0]
    assert af3.entities[5].kind == "ligand" and protenix.entities[5].kind == "ion"
    _same_structure(structure_from_target(af3, ccd), structure_from_target(protenix, ccd))


@pytest.fixture(scope="module")
def parsed_entries(ccd) -> dict:
    from model.data.structure import parse_mmcif

    return {e: parse_mmcif(next(MMCIF_DIR.glob(f"{e}.cif*")), ccd, assembly=None) for e in shared_entries()}


_LETTER_OF = {"protein": THREE_TO_ONE_PROTEIN, "rna": {n: n for n in RNA_RESIDUES},
              "dna": {n: n[1] for n in DNA_RESIDUES}}  # fmt: skip


def test_polymers_built_from_sequence_match_parsed_entries(parsed_entries, ccd) -> None:
    """Every polymer chain of every shared entry, rebuilt from its sequence (modified residues as
    modifications), has the atoms parse_mmcif gives it, except the terminal leaving atoms (OXT, OP3)
    that the deposited files usually lack. Training and prediction thus see the same atoms."""
    mismatches = []
    for entry, parsed in parsed_entries.items():
        for c in range(parsed.num_chains):
            kind = str(parsed.chain_type[c])
            if kind not in _LETTER_OF:
                continue
            names = parsed.res_name[parsed.chain_res_start[c] : parsed.chain_res_end[c]].tolist()
            unknown = "X" if kind == "protein" else "N"
            sequence = "".join(_LETTER_OF[kind].get(n, unknown) for n in names)
            mods = tuple((i + 1, n) for i, n in enumerate(names) if n not in _LETTER_OF[kind])
            mods = tuple(m for m in mods if m[1] not in ("UNK", "N", "DN"))
            built = structure_from_target(
                Target(entry, (Entity(kind, ("A",), sequence=sequence, modifications=mods),)), ccd
            )
            assert built.res_name.tolist() == names
            for i in range(built.num_residues):
                r = parsed.chain_res_start[c] + i
                ours = set(built.atom_name[built.res_atom_start[i] : built.res_atom_end[i]].tolist())
                theirs = set(parsed.atom_name[parsed.res_atom_start[r] : parsed.res_atom_end[r]].tolist())
                terminal = (
                    {"OXT"} if kind == "protein" and i == len(names) - 1 else {"OP3"} if i == 0 else set()
                )
                if not (theirs <= ours and ours - theirs <= terminal):
                    mismatches.append((entry, str(parsed.chain_name[c]), i + 1, names[i], ours ^ theirs))
    assert mismatches == []


def test_target_errors_and_targets_pickle(ccd) -> None:
    import pickle

    error = TargetError("t", "bad letter", field="sequence", entity=2, kind="protein", chains=("B", "C"))
    again = pickle.loads(pickle.dumps(error))
    assert str(again) == str(error) == "target t: entity 2 (protein, chains B, C): sequence: bad letter"
    assert (again.field, again.entity, again.chains) == ("sequence", 2, ("B", "C"))
    target = check_target(load_job_json(FIXTURES / "af3_complex.json")[0], ccd)
    assert pickle.loads(pickle.dumps(target)) == target


def test_csv_with_excel_bom_crlf_and_comments(tmp_path: Path, ccd) -> None:
    text = "# exported from a spreadsheet\r\ntarget_id,chains,seeds\r\nA1,protein:MKTAY,5\r\n"
    (tmp_path / "targets.csv").write_bytes("\ufeff".encode() + text.encode())
    targets, errors = check_targets(*load_targets(tmp_path / "targets.csv"), ccd=ccd)
    assert errors == [] and [(t.target_id, t.seeds) for t in targets] == [("A1", (5,))]


def test_user_msas_text_paths_and_compressed_files(tmp_path: Path, ccd) -> None:
    import gzip

    a3m = (FIXTURES / "msa/protein_a/non_pairing.a3m").read_text()
    with gzip.open(tmp_path / "unpaired.a3m.gz", "wt") as handle:
        handle.write(a3m)
    job = af3_job(sequences=[
        {"protein": {"id": ["A", "B"], "sequence": "MKTAYIAKQRQISFVKSHFSRQ",
                     "unpairedMsaPath": "unpaired.a3m.gz", "pairedMsa": ""}},
        {"protein": {"id": "C", "sequence": "MKTAYIAKQRQISFVKSHFSRQ", "unpairedMsa": "", "pairedMsa": ""}},
        {"protein": {"id": "D", "sequence": "MKTAY"}},
    ])  # fmt: skip
    (tmp_path / "msa.json").write_text(json.dumps(job))
    msas = user_msas(check_target(load_job_json(tmp_path / "msa.json")[0], ccd))
    assert sorted(msas) == ["A", "B", "C"]  # D has none: it gets searched
    expected = [(line[1:], seq) for line, seq in zip(a3m.split()[::2], a3m.split()[1::2], strict=True)]
    assert msas["A"].unpaired == expected and msas["A"].paired == []
    assert msas["C"].unpaired == [] and msas["C"].paired == []  # "" = no MSA: query only


def test_alphafold_server_jobs_read_like_protenix(tmp_path: Path, ccd) -> None:
    """AlphaFold Server JSON (dialect alphafoldserver): the Protenix shape, seeds may be []."""
    job = {"name": "server job", "modelSeeds": [], "dialect": "alphafoldserver", "version": 1, "sequences": [
        {"proteinChain": {"sequence": "MKTAY", "count": 2, "glycans": [],
                          "modifications": [{"ptmType": "CCD_SEP", "ptmPosition": 2}]}},
        {"ligand": {"ligand": "CCD_ATP", "count": 1}},
        {"ion": {"ion": "MG", "count": 2}},
    ]}  # fmt: skip
    (tmp_path / "server.json").write_text(json.dumps([job]))
    server = check_target(load_job_json(tmp_path / "server.json")[0], ccd)
    protenix_job = {k: v for k, v in job.items() if k not in ("dialect", "version")}
    (tmp_path / "protenix.json").write_text(json.dumps([protenix_job]))
    protenix = check_target(load_job_json(tmp_path / "protenix.json")[0], ccd)
    assert (server.dialect, protenix.dialect) == ("alphafoldserver", "protenix")
    assert server == protenix and server.target_id == "server_job" and server.seeds == ()
    assert [e.chain_ids for e in server.entities] == [("A", "B"), ("C",), ("D", "E")]


def test_csv_columns_are_the_schemas() -> None:
    import yaml

    schema = yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "workflow/schemas/targets.schema.yaml").read_text()
    )
    assert tuple(schema["properties"]) == CSV_COLUMNS and schema["required"] == ["target_id"]
