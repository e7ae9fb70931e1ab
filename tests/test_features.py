"""Features of real shared entries: the contract, values checked against gemmi, MSA, templates,
truth, determinism, the store round trip and scripts/build_features.py."""

from __future__ import annotations

import gzip
import json
import lzma
import subprocess
import sys
from pathlib import Path

import gemmi
import numpy as np
import pytest
from conftest import MMCIF_DIR, REPO, SHARED_DATA, shared_entries
from test_workflow_helpers import load_script

from model.data import constants as C
from model.data import store
from model.data.ccd import load_ccd
from model.data.feature_spec import META, check_features
from model.data.features import FeaturizeError, atom_name_chars, featurize
from model.data.msa import MsaInput
from model.data.structure import parse_mmcif

FAST_ENTRIES = ("1ubq", "1tqh", "102m", "2q2k", "1ehz", "5i55", "7gsa", "1c4q")


@pytest.fixture(scope="module")
def ccd():
    return load_ccd()


@pytest.fixture(scope="module")
def featurized(ccd) -> dict:
    """entry -> (structure, Featurized), built once per module."""
    out = {}
    for entry in FAST_ENTRIES:
        structure = parse_mmcif(MMCIF_DIR / f"{entry}.cif.gz", ccd)
        out[entry] = (structure, featurize(structure, ccd, seed=0, with_truth=True))
    return out


def gemmi_block(entry: str):
    return gemmi.cif.read(str(MMCIF_DIR / f"{entry}.cif.gz")).sole_block()


def entity_sequence(entry: str, entity: str = "1") -> str:
    for row in gemmi_block(entry).find("_entity_poly.", ["entity_id", "pdbx_seq_one_letter_code_can"]):
        if row[0] == entity:
            return gemmi.cif.as_string(row[1]).replace("\n", "")
    raise KeyError(entity)


@pytest.mark.parametrize("entry", FAST_ENTRIES)
def test_contract_and_sizes(featurized: dict, entry: str) -> None:
    structure, result = featurized[entry]
    feats = result.features
    sizes = check_features(feats, require_truth=True)
    assert sizes["A"] == structure.num_atoms
    # without a3m: a paired block (the query) and an unpaired block starting with the query again,
    # which a complex that pairs (more than one distinct protein sequence) leaves out
    protein = [c for c in range(len(structure.chain_name)) if structure.chain_type[c] == "protein"]
    pairs = len({feats["restype"][feats["asym_id"] == c].tobytes() for c in protein}) > 1
    assert sizes["M"] == (1 if pairs else 2) and result.attrs["msa_paired_rows"] == 1
    assert (feats["msa"] == feats["restype"]).all() and not feats["deletion_matrix"].any()
    # no templates: always 4 slots, slot 0 all gap, slots 1-3 padding with restype 0, all masked
    assert sizes["K"] == C.MAX_TEMPLATES
    assert (feats["template_restype"][0] == C.GAP).all() and not feats["template_restype"][1:].any()
    assert not feats["template_pseudo_beta_mask"].any() and not feats["template_backbone_mask"].any()
    # every token's atoms are contiguous and its centre/representative atoms are its own
    a2t = feats["atom_to_token"]
    assert np.all(np.diff(a2t) >= 0) and a2t[0] == 0 and a2t[-1] == sizes["T"] - 1
    assert np.array_equal(a2t[feats["token_center_atom"]], np.arange(sizes["T"]))
    assert np.array_equal(a2t[feats["token_rep_atom"]], np.arange(sizes["T"]))
    # reference space: one uid per residue instance, shared by all of its atoms
    assert np.array_equal(feats["ref_space_uid"], structure.atom_residue)
    assert feats["ref_mask"].mean() > 0.95
    np.testing.assert_array_equal(feats["profile"], np.eye(C.NUM_RESTYPES)[feats["restype"]])
    assert set(result.meta) == set(META)
    assert len(result.meta["token_res_name"]) == sizes["T"]
    assert list(result.meta["chain_name"]) == list(structure.chain_name)


def test_1ubq_restype_residue_index_and_atoms_vs_gemmi(featurized: dict) -> None:
    _, result = featurized["1ubq"]
    feats = result.features
    seq = entity_sequence("1ubq")
    expected = [C.RESTYPE_INDEX[C.ONE_TO_THREE_PROTEIN[a]] for a in seq]
    np.testing.assert_array_equal(feats["restype"], expected)
    np.testing.assert_array_equal(feats["residue_index"], np.arange(1, len(seq) + 1))
    assert (feats["mol_type"] == C.MOL_PROTEIN).all() and not feats["token_bonds"].any()
    # atoms and coordinates straight from gemmi: first model, no waters, no hydrogens
    st = gemmi.read_structure(str(MMCIF_DIR / "1ubq.cif.gz"))
    st.setup_entities()
    st.remove_waters()
    st.remove_hydrogens()
    gemmi_atoms = {
        (res.label_seq, atom.name): atom.pos.tolist()
        for chain in st[0]
        for res in chain
        if res.entity_type == gemmi.EntityType.Polymer
        for atom in res
    }
    names = result.meta["atom_name"]
    res_seq = feats["residue_index"][feats["atom_to_token"]]
    ours = {(int(r), str(n)): p for r, n, p in zip(res_seq, names, feats["atom_pos"], strict=True)}
    resolved = {k for k, ok in zip(ours, feats["atom_resolved"], strict=True) if ok}
    assert resolved == set(gemmi_atoms)
    for key, xyz in gemmi_atoms.items():
        np.testing.assert_allclose(ours[key], xyz, atol=1e-3)
    # element and atom-name encodings decode back to the names
    ca = names == "CA"
    assert ca.sum() == 76 and (feats["ref_element"][ca] == 6).all()
    decoded = ["".join(chr(c + 32) for c in row).rstrip() for row in feats["ref_atom_name_chars"]]
    assert decoded == [str(n)[:4] for n in names]


def test_reference_conformer_has_real_bond_lengths(featurized: dict) -> None:
    _, result = featurized["1ubq"]
    feats, names = result.features, result.meta["atom_name"]
    uid = feats["ref_space_uid"]
    dists = []
    for res in np.unique(uid):
        idx = {str(names[i]): i for i in np.flatnonzero(uid == res)}
        dists.append(np.linalg.norm(feats["ref_pos"][idx["N"]] - feats["ref_pos"][idx["CA"]]))
    np.testing.assert_allclose(dists, 1.46, atol=0.06)  # N-CA single bond in any amino acid
    # the reference conformer is not the crystal pose (no leak of ground truth)
    assert not np.allclose(feats["ref_pos"], feats["atom_pos"], atol=0.5)


def test_reference_spaces_centred_shifted_and_rotated(featurized: dict, ccd) -> None:
    """AF3 Table 5 ref_pos: each residue's conformer centred, shifted by at most 1 Å per axis and
    randomly rotated (seeded); the conformer itself is one per CCD code, whatever the seed."""
    from model.data.conformers import heavy_atom_indices, reference_conformer

    structure, result = featurized["1ubq"]
    feats = result.features
    uid = feats["ref_space_uid"]
    # |R (x - mean + t)| mean = |t| <= sqrt(3): centred up to the shift, and shifted (not all at 0)
    centres = np.stack([feats["ref_pos"][uid == u].mean(0) for u in np.unique(uid)])
    norms = np.linalg.norm(centres, axis=1)
    assert norms.max() <= np.sqrt(3) + 1e-4 and norms.mean() > 0.3
    # each space is a rigid motion of the raw conformer, and a different one per space
    rotations = []
    for u in np.unique(uid)[:6]:
        atoms = np.flatnonzero(uid == u)
        component = ccd[str(result.meta["token_res_name"][feats["atom_to_token"][atoms[0]]])]
        names = [component.atom_names[i] for i in heavy_atom_indices(component)]
        raw, _ = reference_conformer(component)
        raw = raw[[names.index(n) for n in result.meta["atom_name"][atoms]]]
        got = feats["ref_pos"][atoms]
        a, b = raw - raw.mean(0), got - got.mean(0)
        u_, _, vt = np.linalg.svd(b.T @ a)
        rot = u_ @ vt
        np.testing.assert_allclose(a @ rot.T, b, atol=1e-3)  # same conformer, rotated
        assert abs(np.linalg.det(rot) - 1) < 1e-4 and not np.allclose(rot, np.eye(3), atol=0.1)
        rotations.append(rot)
    assert not np.allclose(rotations[0], rotations[1], atol=0.1)
    assert result.attrs["ref_pos_seed"] == 0


def test_1tqh_covalent_4pa_link_in_token_bonds(featurized: dict) -> None:
    structure, result = featurized["1tqh"]
    feats = result.features
    conn = [
        list(r)
        for r in gemmi_block("1tqh").find(
            "_struct_conn.",
            [
                "conn_type_id",
                "ptnr1_label_asym_id",
                "ptnr1_label_seq_id",
                "ptnr1_label_atom_id",
                "ptnr2_label_asym_id",
                "ptnr2_label_comp_id",
                "ptnr2_label_atom_id",
            ],
        )  # fmt: skip
        if r[0] == "covale"
    ]
    assert conn, "1tqh has a covalent link in its struct_conn"
    _, chain1, seq1, atom1, chain2, comp2, atom2 = conn[0]
    chains = list(result.meta["chain_name"])
    names = result.meta["atom_name"]
    res_names = result.meta["token_res_name"][feats["atom_to_token"]]
    asym = feats["asym_id"][feats["atom_to_token"]]
    res_idx = feats["residue_index"][feats["atom_to_token"]]
    a = np.flatnonzero((asym == chains.index(chain1)) & (res_idx == int(seq1)) & (names == atom1))
    b = np.flatnonzero((asym == chains.index(chain2)) & (res_names == comp2) & (names == atom2))
    assert len(a) == 1 and len(b) == 1
    ta, tb = feats["atom_to_token"][a[0]], feats["atom_to_token"][b[0]]
    assert feats["token_bonds"][ta, tb] and feats["token_bonds"][tb, ta]
    # the link is a meta link bond; polymer neighbours are never token-bonded
    bonds = {tuple(sorted(p)) for p in result.meta["atom_bonds"][result.meta["atom_bond_is_link"]].tolist()}
    assert tuple(sorted((int(a[0]), int(b[0])))) in bonds
    protein = np.flatnonzero(feats["mol_type"] == C.MOL_PROTEIN)
    assert not feats["token_bonds"][protein[:-1], protein[1:]].any()
    # 4PA is atomised: one token per heavy atom, one ref_space_uid for all of them
    lig_tokens = np.flatnonzero(result.meta["token_res_name"] == comp2)
    heavy = [e for e in load_ccd()[comp2].elements if e not in ("H", "D")]
    assert len(lig_tokens) == len(heavy)
    assert len(np.unique(feats["ref_space_uid"][feats["token_center_atom"][lig_tokens]])) == 1


def test_102m_msa_from_real_a3m(ccd) -> None:
    structure = parse_mmcif(MMCIF_DIR / "102m.cif.gz", ccd)
    folder = SHARED_DATA / "msa" / "102m_1"
    msa_in = MsaInput.from_files(folder / "non_pairing.a3m", folder / "pairing.a3m")
    protein_chain = str(structure.chain_name[list(structure.chain_type).index("protein")])
    result = featurize(structure, ccd, {protein_chain: msa_in}, seed=0)
    feats = result.features
    protein = feats["mol_type"] == C.MOL_PROTEIN
    ligand = ~protein
    # distinct hit rows of both files (query excluded), counted independently from the text
    hits = {seq.translate(str.maketrans("", "", "abcdefghijklmnopqrstuvwxyz"))
            for records in (msa_in.unpaired[1:], msa_in.paired[1:]) for _, seq in records}  # fmt: skip
    hits.discard(msa_in.unpaired[0][1])
    # one chain: nothing to pair; the query leads the paired block and again the unpaired block
    assert feats["msa"].shape[0] == 2 + len(hits)
    assert result.attrs["msa_paired_rows"] == 1
    np.testing.assert_array_equal(feats["msa"][0], feats["restype"])
    np.testing.assert_array_equal(feats["msa"][1], feats["restype"])
    # the ligand (HEM) has no alignment: its query in every row, its profile the one-hot restype
    assert (feats["msa"][:, ligand] == feats["restype"][ligand]).all()
    np.testing.assert_array_equal(feats["profile"][ligand], np.eye(C.NUM_RESTYPES)[feats["restype"][ligand]])
    assert feats["deletion_matrix"][:, protein].sum() > 0
    # the protein's profile and deletion mean are over its own rows, the query counted once
    own = feats["msa"][1:, protein]
    np.testing.assert_allclose(feats["profile"][protein][:, C.GAP], (own == C.GAP).mean(0), rtol=1e-5)
    np.testing.assert_allclose(
        feats["deletion_mean"][protein], feats["deletion_matrix"][1:, protein].mean(0), rtol=1e-5
    )
    # wrong sequence for the chain: a one-line error naming the chain
    with pytest.raises(ValueError, match=f"chain .*{protein_chain}"):
        featurize(structure, ccd, {protein_chain: MsaInput.from_text(">q\nMKV\n")}, seed=0)
    with pytest.raises(FeaturizeError, match="unknown chains \\['Q9'\\]"):
        featurize(structure, ccd, {"Q9": msa_in}, seed=0)


def test_templates_placed_at_chain_columns(featurized: dict, ccd) -> None:
    structure, _ = featurized["102m"]
    chain = list(structure.chain_type).index("protein")
    name = str(structure.chain_name[chain])
    length = int(structure.chain_res_end[chain] - structure.chain_res_start[chain])
    rng = np.random.default_rng(0)
    arrays = {
        "template_restype": rng.integers(0, 20, (2, length)),
        "template_pseudo_beta": rng.normal(size=(2, length, 3)),
        "template_pseudo_beta_mask": np.ones((2, length), bool),
        "template_backbone": rng.normal(size=(2, length, 3, 3)),
        "template_backbone_mask": np.ones((2, length), bool),
    }
    feats = featurize(structure, ccd, templates={name: arrays}, seed=0).features
    assert check_features(feats)["K"] == C.MAX_TEMPLATES
    tokens = np.flatnonzero(feats["asym_id"] == chain)
    np.testing.assert_array_equal(feats["template_restype"][:2, tokens], arrays["template_restype"])
    np.testing.assert_allclose(feats["template_backbone"][:2, tokens], arrays["template_backbone"], rtol=1e-6)
    # empty slots are padding with restype 0, masked
    assert (
        not feats["template_restype"][2:, tokens].any() and not feats["template_pseudo_beta_mask"][2:].any()
    )
    # a chain without templates (the HEM ligand) has an all-gap slot 0, then padding
    others = np.setdiff1d(np.arange(len(feats["restype"])), tokens)
    assert (feats["template_restype"][0, others] == C.GAP).all()
    assert not feats["template_restype"][1:, others].any()
    assert not feats["template_pseudo_beta_mask"][:, others].any()
    bad = dict(arrays, template_restype=arrays["template_restype"][:, :-1])
    with pytest.raises(FeaturizeError, match="template_restype has shape"):
        featurize(structure, ccd, templates={name: bad}, seed=0)


def test_templates_from_the_real_template_search(featurized: dict, ccd) -> None:
    """model.search's hmmsearch template step -> [K, L, ...] arrays -> placed by featurize."""
    import datetime

    from model.search.templates import search_templates

    structure, _ = featurized["102m"]
    chain = list(structure.chain_type).index("protein")
    rows = MsaInput.from_files(SHARED_DATA / "msa" / "102m_1" / "non_pairing.a3m").unpaired
    seqres = SHARED_DATA / "template_db" / "pdb_seqres_shared_structures.fasta"
    _, arrays = search_templates(rows[0][1], rows, seqres, MMCIF_DIR, datetime.date(2100, 1, 1))
    n_templ = len(arrays["template_restype"])
    assert n_templ >= 1
    feats = featurize(structure, ccd, templates={str(structure.chain_name[chain]): arrays}, seed=0).features
    tokens = np.flatnonzero(feats["asym_id"] == chain)
    assert check_features(feats)["K"] == C.MAX_TEMPLATES
    k = min(n_templ, C.MAX_TEMPLATES)
    placed = feats["template_pseudo_beta_mask"][:, tokens]
    np.testing.assert_array_equal(placed[:k], arrays["template_pseudo_beta_mask"][: C.MAX_TEMPLATES])
    assert not placed[k:].any()
    assert placed.any()


def test_heteromer_msa_paired_by_species_in_the_featurizer(tmp_path: Path, ccd) -> None:
    """The chains' own paired hits (real UniRef100 files) -> the complex MSA's paired block, paired by
    species in the featurizer: the same rows, in the same order, as model.search.pairing writes."""
    from model.data.from_target import structure_from_target
    from model.data.inputs import load_targets
    from model.data.msa import a3m_to_arrays, species_id
    from model.search.pairing import pair_msas

    seq_a, seq_b = entity_sequence("5zyh"), entity_sequence("7zzx")
    (tmp_path / "t.csv").write_text(f"target_id,chains\nhet,protein:{seq_a};protein:{seq_b}\n")
    (target,), errors = load_targets(tmp_path / "t.csv")
    assert not errors
    structure = structure_from_target(target, ccd)
    msas = {c: MsaInput.from_files(SHARED_DATA / "msa" / f"{e}_1" / "non_pairing.a3m",
                                   SHARED_DATA / "msa" / f"{e}_1" / "pairing.a3m")
            for c, e in (("A", "5zyh"), ("B", "7zzx"))}  # fmt: skip
    paired = pair_msas({c: m.paired for c, m in msas.items()})
    rows_ab = zip(paired["A"][1:], paired["B"][1:], strict=True)
    assert all(species_id(a[0]) == species_id(b[0]) != "" for a, b in rows_ab)
    result = featurize(structure, ccd, msas, seed=0)
    feats, n_paired = result.features, result.attrs["msa_paired_rows"]
    assert 10 < n_paired == len(paired["A"])
    for c, chain in (("A", 0), ("B", 1)):
        cols = np.flatnonzero(feats["asym_id"] == chain)
        expected, _ = a3m_to_arrays([row for _, row in paired[c][1:]], "protein")
        np.testing.assert_array_equal(feats["msa"][1:n_paired, cols], expected)


def test_deterministic_per_seed(featurized: dict, ccd) -> None:
    structure, first = featurized["102m"]
    again = featurize(structure, ccd, seed=0, with_truth=True)
    for key, value in first.features.items():
        np.testing.assert_array_equal(again.features[key], value, err_msg=key)
    other = featurize(structure, ccd, seed=1, with_truth=True)  # neighbouring seeds place differently
    lys = first.meta["token_res_name"][first.features["atom_to_token"]] == "LYS"  # flexible side chain
    assert lys.any() and not np.allclose(other.features["ref_pos"][lys], first.features["ref_pos"][lys])
    # ... the same conformer: one per CCD code, whatever the seed (distances within a residue agree)
    uid = first.features["ref_space_uid"]
    for u in np.unique(uid[lys])[:3]:
        a, b = first.features["ref_pos"][uid == u], other.features["ref_pos"][uid == u]
        np.testing.assert_allclose(
            np.linalg.norm(a[:, None] - a[None], axis=-1),
            np.linalg.norm(b[:, None] - b[None], axis=-1),
            atol=1e-4,
        )


def test_atom_name_chars_pads_and_truncates() -> None:
    got = atom_name_chars(np.array(["C", "C1'", "OXT", "ABCDE"]))
    assert got.shape == (4, 4)
    assert got[0].tolist() == [ord("C") - 32, 0, 0, 0]
    assert got[1].tolist() == [ord(c) - 32 for c in "C1' "]
    assert got[3].tolist() == [ord(c) - 32 for c in "ABCD"]


def test_store_round_trip_of_real_features(featurized: dict, tmp_path: Path) -> None:
    _, result = featurized["1tqh"]
    attrs = {**result.attrs, "target_id": "1tqh", "content_hash": "x", "ccd_release": "test"}
    path = store.write_features(tmp_path / "1tqh.h5", result.features, result.meta, attrs)
    loaded = store.load_features(path)
    for key, value in result.features.items():
        np.testing.assert_array_equal(loaded[key].numpy(), value, err_msg=key)
    meta = store.load_meta(path)
    for key, value in result.meta.items():
        np.testing.assert_array_equal(meta[key], value, err_msg=key)
    attrs = store.read_attrs(path)
    assert attrs["msa_paired_rows"] == 1 and attrs["ref_pos_seed"] == 0 and attrs["featurizer_version"] == "3"


AF3_JOB = """{"dialect": "alphafold3", "version": 2, "name": "cmp", "modelSeeds": [1], "sequences": [
 {"protein": {"id": ["A", "B"], "sequence": "MKTAYIAKQRQISFVKSHFSRQ",
              "modifications": [{"ptmType": "SEP", "ptmPosition": 5}]}},
 {"dna": {"id": "C", "sequence": "ACGTTA"}},
 {"ligand": {"id": "D", "ccdCodes": ["ATP"]}},
 {"ligand": {"id": "E", "ccdCodes": ["MG"]}},
 {"ligand": {"id": "F", "smiles": "C[C@H](N)C(=O)O"}}]}"""
PROTENIX_JOB = """[{"name": "cmp", "sequences": [
 {"proteinChain": {"sequence": "MKTAYIAKQRQISFVKSHFSRQ", "count": 2,
                   "modifications": [{"ptmType": "CCD_SEP", "ptmPosition": 5}]}},
 {"dnaSequence": {"sequence": "ACGTTA", "count": 1}},
 {"ligand": {"ligand": "CCD_ATP", "count": 1}},
 {"ion": {"ion": "MG", "count": 1}},
 {"ligand": {"ligand": "C[C@H](N)C(=O)O", "count": 1}}]}]"""


def test_af3_and_protenix_jobs_give_identical_features(tmp_path: Path, ccd) -> None:
    from model.data.from_target import structure_from_target
    from model.data.inputs import load_job_json

    results = []
    for name, text in (("af3.json", AF3_JOB), ("px.json", PROTENIX_JOB)):
        (tmp_path / name).write_text(text)
        (target,) = load_job_json(tmp_path / name)
        results.append(featurize(structure_from_target(target, ccd), ccd, seed=0))
    (af3, px) = results
    assert af3.features.keys() == px.features.keys()
    for key in af3.features:
        np.testing.assert_array_equal(af3.features[key], px.features[key], err_msg=key)
    for key in af3.meta:
        np.testing.assert_array_equal(af3.meta[key], px.meta[key], err_msg=key)
    feats = af3.features
    # 2 x 22 residues (SEP atomised: one token per heavy atom) + 6 nt + ATP + MG + alanine atoms
    sep_heavy = sum(e not in ("H", "D") for e in ccd["SEP"].elements) - 1  # OXT leaves inside a chain
    atp_heavy = sum(e not in ("H", "D") for e in ccd["ATP"].elements)
    assert len(feats["restype"]) == 2 * (21 + sep_heavy) + 6 + atp_heavy + 1 + 6
    # the SMILES ligand got a real conformer: its 6 heavy atoms are all placed
    smiles_atoms = feats["asym_id"][feats["atom_to_token"]] == 5
    assert smiles_atoms.sum() == 6 and feats["ref_mask"][smiles_atoms].all()
    assert sorted(feats["ref_element"][smiles_atoms].tolist()) == [6, 6, 6, 7, 8, 8]


def test_modified_residues_and_nucleotide_atoms_through_a_target(tmp_path: Path, ccd) -> None:
    """SEP and PSU atom tokens carry their parents' restype (SER, U) into restype, MSA row 0 and the
    profile; nucleotide atoms index the full standard atom list (OP3 first), so P is 1 everywhere."""
    from model.data.from_target import structure_from_target
    from model.data.inputs import load_targets

    (tmp_path / "t.csv").write_text("target_id,chains\nmod,protein:MK(SEP)TAYW;rna:GG(PSU)CA\n")
    (target,), errors = load_targets(tmp_path / "t.csv")
    assert not errors
    result = featurize(structure_from_target(target, ccd), ccd, seed=0)
    feats, res_name = result.features, result.meta["token_res_name"]
    for code, parent in (("SEP", "SER"), ("PSU", "U")):
        sel = res_name == code
        assert sel.sum() > 1 and (feats["restype"][sel] == C.RESTYPE_INDEX[parent]).all()
    np.testing.assert_array_equal(feats["msa"][0], feats["restype"])
    np.testing.assert_array_equal(feats["profile"], np.eye(C.NUM_RESTYPES)[feats["restype"]])
    names = result.meta["atom_name"]
    standard = np.isin(res_name[feats["atom_to_token"]], ["G", "C", "A"])
    p_atoms = standard & (names == "P")
    assert p_atoms.sum() == 4 and (feats["atom_to_tokatom_idx"][p_atoms] == 1).all()
    c1 = standard & (names == "C1'")  # OP3 P OP1 OP2 O5' C5' C4' O4' C3' O3' C2' O2' C1'
    assert (feats["atom_to_tokatom_idx"][c1] == 12).all()
    assert (feats["atom_to_tokatom_idx"][~np.isin(res_name, C.RESTYPES)[feats["atom_to_token"]]] == 0).all()


def test_msa_query_of_a_modified_residue_is_its_sequence_letter(tmp_path: Path, ccd) -> None:
    """MSA row 0 and the profile take the job sequence's letter at a modified residue (BP5 written as
    A: ALA; 5IU in DNA written as T: DT), as Protenix's row 0 is the sequence; restype stays the
    residue's class (UNK, DN)."""
    from model.data.from_target import structure_from_target
    from model.data.inputs import load_targets

    job = [
        {
            "name": "mod",
            "sequences": [
                {
                    "proteinChain": {
                        "sequence": "MKTAYIAKQR",
                        "count": 1,
                        "modifications": [{"ptmType": "CCD_BP5", "ptmPosition": 4}],
                    }
                },
                {
                    "dnaSequence": {
                        "sequence": "GACTGA",
                        "count": 1,
                        "modifications": [{"modificationType": "CCD_5IU", "basePosition": 4}],
                    }
                },
            ],
        }
    ]
    (tmp_path / "job.json").write_text(json.dumps(job))
    (target,), errors = load_targets(tmp_path / "job.json")
    assert not errors
    result = featurize(structure_from_target(target, ccd), ccd, seed=0)
    feats, res_name = result.features, result.meta["token_res_name"]
    expected = feats["restype"].copy()
    for code, restype, letter_class in (("BP5", "UNK", "ALA"), ("5IU", "DN", "DT")):
        sel = res_name == code
        assert sel.sum() > 1 and (feats["restype"][sel] == C.RESTYPE_INDEX[restype]).all()
        expected[sel] = C.RESTYPE_INDEX[letter_class]
    np.testing.assert_array_equal(feats["msa"][0], expected)
    np.testing.assert_array_equal(feats["profile"], np.eye(C.NUM_RESTYPES)[expected])


def test_a_modified_copy_is_the_same_sequence_for_pairing(tmp_path: Path, ccd) -> None:
    """The complex pairs (and keeps its query in the paired block only) when it has more than one
    distinct protein sequence, read residue by residue with modified residues as their parents: a
    copy with SEP for S is the same sequence, so the query leads both blocks; another protein pairs."""
    from model.data.from_target import structure_from_target
    from model.data.inputs import load_targets

    (tmp_path / "t.csv").write_text(
        "target_id,chains\nsame,protein:MKSTAYW;protein:MK(SEP)TAYW\nother,protein:MKSTAYW;protein:MKATAYW\n"
    )
    targets, errors = load_targets(tmp_path / "t.csv")
    assert not errors
    rows = {
        t.target_id: len(featurize(structure_from_target(t, ccd), ccd, seed=0).features["msa"])
        for t in targets
    }
    assert rows == {"same": 2, "other": 1}


# ---------------------------------------------------------------- scripts/build_features.py
SCRIPT = REPO / "scripts" / "build_features.py"


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def script():
    """The script as a module, to call `main(argv)` in-process (no interpreter start-up per test)."""
    return load_script("build_features")


def test_script_help() -> None:
    out = run_script("--help")
    assert out.returncode == 0 and "--target-id" in out.stdout and "--mmcif" in out.stdout


def test_script_batch_mixes_good_and_bad_targets(tmp_path: Path, script, capsys) -> None:
    csv = tmp_path / "targets.csv"
    csv.write_text(
        "target_id,chains\n"
        "good_peptide,protein:NLYIQWLKDGGPSSGRPPPS\n"
        "bad_letter,protein:NLYIQWLKDGGJPSS\n"
        "good_dna_ion,dna:CGCGAATT;ion:MG\n"
        "bad_ligand,protein:MKV;ligand:ZZZZZ\n"
        "bad id!,protein:MKV\n"
    )
    out_dir, failed = tmp_path / "features", tmp_path / "failed"
    result = run_script("--inputs", str(csv), "--out-dir", str(out_dir), "--failed-dir", str(failed))
    assert result.returncode == 1, result.stderr
    assert sorted(p.name for p in out_dir.glob("*.h5")) == ["good_dna_ion.h5", "good_peptide.h5"]
    notes = {p.name: p.read_text() for p in failed.glob("*.txt")}
    assert {"bad_letter.txt", "bad_ligand.txt"} < set(notes) and len(notes) == 3
    # the row whose id is unusable is reported too, under the inputs parser's stand-in name
    (bad_id_note,) = [text for name, text in notes.items() if not name.startswith("bad_")]
    assert "bad id!" in bad_id_note
    for name in ("bad_letter", "bad_ligand"):
        text = (failed / f"{name}.txt").read_text()
        assert text.count("\n") == 1 and text.startswith(f"target {name}")
        assert name in result.stderr
    assert "ZZZZZ" in (failed / "bad_ligand.txt").read_text()
    feats = store.load_features(out_dir / "good_peptide.h5")
    expected = [C.RESTYPE_INDEX[C.ONE_TO_THREE_PROTEIN[a]] for a in "NLYIQWLKDGGPSSGRPPPS"]
    assert feats["restype"].tolist() == expected
    assert "atom_pos" not in feats
    attrs = store.read_attrs(out_dir / "good_dna_ion.h5")
    assert attrs["target_id"] == "good_dna_ion" and len(attrs["content_hash"]) == 64
    assert store.is_valid(out_dir / "good_dna_ion.h5", attrs["content_hash"])
    # a second run keeps the valid files (same content hash) and rebuilds a corrupt one
    (out_dir / "good_peptide.h5").write_bytes(b"not hdf5")
    capsys.readouterr()
    assert script.main(["--inputs", str(csv), "--out-dir", str(out_dir), "--failed-dir", str(failed)]) == 1
    lines = dict(line.split("\t")[:2] for line in capsys.readouterr().out.splitlines() if "\t" in line)
    assert {k: v for k, v in lines.items() if k.startswith(("good_", "bad_"))} == {
        "good_peptide": "ok", "bad_letter": "failed", "good_dna_ion": "cached", "bad_ligand": "failed"
    }  # fmt: skip
    assert store.is_valid(out_dir / "good_peptide.h5")


def test_script_single_target_with_manifest_msa(tmp_path: Path, script) -> None:
    seq = entity_sequence("102m")
    csv = tmp_path / "targets.csv"
    csv.write_text(f"target_id,chains\nmyo,protein:{seq};ligand:HEM\nbroken,protein:MKJ\n")
    manifest = tmp_path / "myo.json"
    a3m = SHARED_DATA / "msa" / "102m_1" / "non_pairing.a3m"
    manifest.write_text(f'{{"target_id": "myo", "chains": {{"A": "{a3m}"}}}}')
    out, failed = tmp_path / "myo.h5", tmp_path / "failed"
    args = ["--inputs", str(csv), "--msa-manifest", str(manifest), "--failed-dir", str(failed), "--ccd", ""]
    assert script.main([*args, "--target-id", "myo", "--out", str(out)]) == 0
    feats = store.load_features(out)
    n_rows = sum(line.startswith(">") for line in a3m.read_text().splitlines())
    assert 2 < feats["msa"].shape[0] <= n_rows + 1  # the query leads both blocks
    # a bad single target: exit 0 (the workflow summary reports it), failure file written, no h5
    assert script.main([*args, "--target-id", "broken", "--out", str(tmp_path / "broken.h5")]) == 0
    assert (failed / "broken.txt").read_text().startswith("target broken")
    assert not (tmp_path / "broken.h5").exists()


def test_script_unreadable_inputs(tmp_path: Path, script, capsys) -> None:
    failed = tmp_path / "failed"
    missing = str(tmp_path / "absent.csv")
    args = ["--inputs", missing, "--failed-dir", str(failed)]
    assert script.main([*args, "--out-dir", str(tmp_path / "f")]) == 1
    assert "absent.csv" in capsys.readouterr().err
    assert script.main([*args, "--target-id", "t1", "--out", str(tmp_path / "t1.h5")]) == 0
    assert (failed / "t1.txt").read_text().startswith("target t1")


def test_script_mmcif_entry_has_truth_and_msa_dir(tmp_path: Path, script, capsys) -> None:
    out = tmp_path / "102m.h5"
    args = ["--mmcif", str(MMCIF_DIR / "102m.cif.gz"), "--out", str(out), "--failed-dir", str(tmp_path)]
    assert script.main(args) == 0
    plain = store.load_features(out)
    assert plain["msa"].shape[0] == 2 and plain["atom_resolved"].float().mean() > 0.9
    first_hash = store.read_attrs(out)["content_hash"]
    # with the Protenix-layout MSA folder: 102m_1/{non_pairing,pairing}.a3m serve entity 1
    assert script.main([*args, "--msa-dir", str(SHARED_DATA / "msa")]) == 0
    assert "\tok\t" in capsys.readouterr().out  # a new content hash: rebuilt, not "cached"
    with_msa = store.load_features(out)
    assert with_msa["msa"].shape[0] > 100 and store.read_attrs(out)["content_hash"] != first_hash
    np.testing.assert_array_equal(with_msa["atom_pos"].numpy(), plain["atom_pos"].numpy())
    # the same folder compressed (gzip and xz) gives the same MSA
    packed = tmp_path / "msa" / "102m_1"
    packed.mkdir(parents=True)
    source = SHARED_DATA / "msa" / "102m_1"
    (packed / "non_pairing.a3m.gz").write_bytes(gzip.compress((source / "non_pairing.a3m").read_bytes()))
    (packed / "pairing.a3m.xz").write_bytes(lzma.compress((source / "pairing.a3m").read_bytes()))
    assert script.main([*args, "--msa-dir", str(tmp_path / "msa")]) == 0
    for name in ("msa", "deletion_matrix", "profile"):
        np.testing.assert_array_equal(store.load_features(out)[name].numpy(), with_msa[name].numpy())


def test_script_as_snakemake_rule_script(tmp_path: Path) -> None:
    """`script:` mode with the real Snakemake: the `snakemake` object drives the same main()."""
    (tmp_path / "Snakefile").write_text(
        "rule feat:\n"
        f"    input: mmcif='{MMCIF_DIR / '1ubq.cif.gz'}'\n"
        "    output: 'out/1ubq.h5'\n"
        "    params: failed_dir='failed', seed=0, ccd=''\n"
        f"    script: '{SCRIPT}'\n"
    )
    snakemake = Path(sys.executable).parent / "snakemake"
    run = subprocess.run(
        [str(snakemake), "-s", "Snakefile", "--cores", "1", "out/1ubq.h5"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert store.load_features(tmp_path / "out" / "1ubq.h5")["restype"].shape == (76,)


HEAVY_ENTRIES = ("1f2n", "4gxy")  # a 60-copy capsid (43k tokens); B1Z's conformer may hit RDKit's timeout


@pytest.mark.parametrize(
    "entry", [pytest.param(e, marks=pytest.mark.slow) if e in HEAVY_ENTRIES else e for e in shared_entries()]
)
def test_every_shared_entry_featurizes(ccd, entry: str) -> None:
    structure = parse_mmcif(next(MMCIF_DIR.glob(f"{entry}.cif*")), ccd)
    result = featurize(structure, ccd, seed=0, with_truth=True)
    sizes = check_features(result.features, require_truth=True)
    assert sizes["A"] == structure.num_atoms
    n_standard = int(structure.res_is_standard.sum())
    res_atoms = structure.res_atom_end - structure.res_atom_start
    atomised_atoms = int(res_atoms[~structure.res_is_standard].sum())
    assert sizes["T"] == n_standard + atomised_atoms
