"""The catalogue of bad and unusual inputs (issue #14): each kind is one row of a targets.csv (with the
files it names) written beside two good targets, and the exact outcome the workflow owes it.

`note` is the start of the one-line note (`results/failed/{target}.txt`), which names the target and
then the entity and field; `note=None` means the input is valid, however unusual, and is accepted.
The catalogue is a table, one kind a line, so its lines are as long as they need to be.
"""

# ruff: noqa: E501

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import gemmi

HEADER = "target_id,json,chains,seeds,bonds"
GOOD_ROWS = ("good_a,,protein:MKTAYIAKQRQISFVKSHFSRQ,,", "good_b,,dna:ACGTACGTAC,,")
PROLINE_SDF = Path(__file__).resolve().parents[1] / "data" / "inputs" / "proline.sdf"
# 500 heavy atoms: a linear alkane, which RDKit parses at once and embeds for many minutes
HUGE_SMILES = "C" * 500


@dataclass(frozen=True)
class Case:
    """One kind of input: its CSV row (after the header), the files it needs, the expected note."""

    kind: str
    row: str | bytes
    note: str | None
    files: dict[str, str | bytes] = field(default_factory=dict)
    target: str = ""  # the id the note is filed under (default: the kind)
    also_fails: tuple[str, ...] = ()  # good targets this row spoils too (a duplicate id spoils both)

    @property
    def target_id(self) -> str:
        return self.target or self.kind


def af3_job(name: str, sequences: list, **extra) -> str:
    return json.dumps({"name": name, "dialect": "alphafold3", "version": 4, "modelSeeds": [1],
                       "sequences": sequences, **extra})  # fmt: skip


def protenix_job(name: str, sequences: list, **extra) -> str:
    return json.dumps([{"name": name, "sequences": sequences, **extra}])


def _json_case(kind: str, content: str | bytes, note: str | None) -> Case:
    return Case(kind, f"{kind},{kind}.json,,,", note, {f"{kind}.json": content})


PROTEIN = {"protein": {"id": "A", "sequence": "MKTAYIAKQR"}}
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def _template_cif() -> str:
    """Chain A (70 residues) of the shared 1A8O entry as mmCIF text: a real template."""
    structure = gemmi.read_structure(str(SHARED_DATA / "mmcif" / "1a8o.cif.gz"))
    structure.remove_ligands_and_waters()
    while len(structure) > 1:
        del structure[1]
    for chain in list(structure[0])[1:]:
        structure[0].remove_chain(chain.name)
    return structure.make_mmcif_document().as_string()


TEMPLATE_CIF = _template_cif()
USER_CCD = """data_LIG1
_chem_comp.id LIG1
_chem_comp.type non-polymer
loop_
_chem_comp_atom.comp_id
_chem_comp_atom.atom_id
_chem_comp_atom.type_symbol
LIG1 C1 C
LIG1 O1 O
"""


def _template(mmcif: str, query: list[int], template: list[int]) -> dict:
    return {"protein": {"id": "A", "sequence": "MKTAYIAKQR", "unpairedMsa": "", "pairedMsa": "",
                        "templates": [{"mmcif": mmcif, "queryIndices": query, "templateIndices": template}]}}  # fmt: skip


# Rows that fail at parse time (read_target_table, as common.smk calls it): (kind, row, note).
# fmt: off
PARSE_CASES: list[Case] = [
    # --- the table's rows
    Case("latin1_byte", "latin1_byte,,protein:MKT\xe9,,".encode("latin-1"), "target latin1_byte: row 3: byte 0xe9"),
    Case("extra_fields", "extra_fields,,protein:MKT,1,,surplus", "target extra_fields: row 3: 6 fields but the header has 5"),
    Case("unsafe_id_slash", "../evil,,protein:MKT,,", "target invalid@row-3: target_id: target_id '../evil' is not a safe", target="invalid@row-3"),
    Case("unsafe_id_space", "has space,,protein:MKT,,", "target invalid@row-3: target_id:", target="invalid@row-3"),
    Case("empty_id", ",,protein:MKT,,", "target invalid@row-3: target_id: target_id is empty", target="invalid@row-3"),
    Case("dot_id", ".hidden,,protein:MKT,,", "target invalid@row-3: target_id: target_id '.hidden' must not start", target="invalid@row-3"),
    Case("long_id", "x" * 101 + ",,protein:MKT,,", "target invalid@row-3: target_id: target_id 'xxxx", target="invalid@row-3"),
    Case("both_json_and_chains", "both_json_and_chains,j.json,protein:MKT,,", "target both_json_and_chains: json: give exactly one"),
    Case("neither_json_nor_chains", "neither_json_nor_chains,,,,", "target neither_json_nor_chains: json: give exactly one"),
    Case("bad_protein_letter", "bad_protein_letter,,protein:MKJT,,", "target bad_protein_letter: entity 1 (protein, chain A): sequence: unknown residue letter 'J'"),
    Case("bad_dna_letter", "bad_dna_letter,,dna:ACGU,,", "target bad_dna_letter: entity 1 (dna, chain A): sequence: unknown residue letter 'U'"),
    Case("bad_rna_letter", "bad_rna_letter,,rna:ACGT,,", "target bad_rna_letter: entity 1 (rna, chain A): sequence: unknown residue letter 'T'"),
    Case("unknown_kind", "unknown_kind,,peptide:MKT,,", "target unknown_kind: entity 1: chains: item 1 'peptide:MKT' must be KIND:VALUE"),
    Case("empty_value", "empty_value,,protein:,,", "target empty_value: entity 1 (protein, chain A): chains: item 1 has an empty value"),
    Case("no_chains", "no_chains,,;;,,", "target no_chains: chains: no chains given"),
    Case("zero_copies", "zero_copies,,protein:MKTx0,,", "target zero_copies: entity 1 (protein): chains: must be >= 1"),
    Case("empty_smiles", "empty_smiles,,protein:MKT;ligand:smiles=,,", "target empty_smiles: entity 2 (ligand, chain B): smiles: empty SMILES"),
    Case("bad_smiles", "bad_smiles,,protein:MKT;ligand:smiles=C1CC(,,", "target bad_smiles: entity 2 (ligand, chain B): smiles: RDKit cannot parse SMILES"),
    Case("huge_smiles", f"huge_smiles,,protein:MKT;ligand:smiles={HUGE_SMILES},,", "target huge_smiles: entity 2 (ligand, chain B): smiles: 500 heavy atoms, more than limits.ligand_heavy_atoms (250)"),
    Case("huge_ccd_ligand", "huge_ccd_ligand,,protein:MKT;ligand:ATP_ATP_ATP_ATP_ATP_ATP_ATP_ATP_ATP,,", "target huge_ccd_ligand: entity 2 (ligand, chain B): ccd_codes: 279 heavy atoms, more than limits.ligand_heavy_atoms (250)"),
    Case("bad_ccd_code", "bad_ccd_code,,protein:MKT;ligand:A$P,,", "target bad_ccd_code: entity 2 (ligand, chain B): chains: 'A$P' is not a CCD code"),
    Case("ligand_file_missing", "ligand_file_missing,,protein:MKT;ligand:file=absent.sdf,,", "target ligand_file_missing: entity 2 (ligand, chain B): ligand_file: file not found: absent.sdf"),
    Case("ligand_file_suffix", "ligand_file_suffix,,protein:MKT;ligand:file=lig.txt,,", "target ligand_file_suffix: entity 2 (ligand, chain B): ligand_file: ligand file must end in", {"lig.txt": "C"}),
    Case("ligand_file_garbage", "ligand_file_garbage,,protein:MKT;ligand:file=garbage.sdf,,", "target ligand_file_garbage: entity 2 (ligand, chain B): ligand_file: RDKit cannot read a molecule from garbage.sdf", {"garbage.sdf": "not a molecule\n"}),
    Case("ligand_file_outside", "ligand_file_outside,,protein:MKT;ligand:file=/etc/hostname.sdf,,", "target ligand_file_outside: entity 2 (ligand, chain B): ligand_file: path '/etc/hostname.sdf' is outside the allowed roots"),
    Case("bad_seeds", "bad_seeds,,protein:MKT,one,", "target bad_seeds: seeds: expected an integer, got 'one'"),
    Case("negative_seed", "negative_seed,,protein:MKT,-1,", "target negative_seed: seeds: must be >= 0, got -1"),
    Case("bad_bond_syntax", "bad_bond_syntax,,protein:MKT;ligand:ATP,,A1-B1", "target bad_bond_syntax: bonds: bond 1 'A1-B1' must look like A:1:SG-B:1:C1"),
    Case("bond_unknown_chain", "bond_unknown_chain,,protein:MKT;ligand:ATP,,A:1:N-Z:1:PG", "target bond_unknown_chain: bonds: bond to unknown chain 'Z'"),
    Case("bond_residue_range", "bond_residue_range,,protein:MKT;ligand:ATP,,A:9:N-B:1:PG", "target bond_residue_range: bonds: residue 9 of chain A is out of range 1..3"),
    Case("duplicate_id", "GOOD_A,,protein:MKT,,", "target GOOD_A: target_id: duplicate target_id 'GOOD_A'", target="GOOD_A", also_fails=("good_a",)),
    Case("too_many_tokens", f"too_many_tokens,,protein:{'A' * 120_000},,", "target too_many_tokens: tokens: 120000 tokens, more than the limit of 5792 (limits.device_memory_gib = 80)"),
    Case("too_many_tokens_copies", "too_many_tokens_copies,,protein:MKTAYIAKQRx1000,,", "target too_many_tokens_copies: tokens: 10000 tokens, more than the limit of 5792"),
    # --- JSON job files
    Case("json_missing", "json_missing,absent.json,,,", "target json_missing: json: file not found: absent.json"),
    Case("json_outside", "json_outside,/etc/x.json,,,", "target json_outside: json: path '/etc/x.json' is outside the allowed roots"),
    _json_case("json_syntax", "{not json", "target json_syntax: json: invalid JSON:"),
    _json_case("json_not_utf8", b'{"name": "\xff"}', "target json_not_utf8: json: invalid JSON:"),
    _json_case("json_deep", "[" * 100_000 + "]" * 100_000, "target json_deep: json: nested deeper than limits.json_depth (32)"),
    _json_case("json_deep_40", "[" * 40 + "]" * 40, "target json_deep_40: json: nested deeper than limits.json_depth (32)"),
    _json_case("json_too_big", af3_job("json_too_big", [PROTEIN]) + " " * (2 * 2**20), "target json_too_big: json: json_too_big.json: file is 2.0 MB, more than limits.input_file_mb (1 MB)"),
    _json_case("json_number", "42", "target json_number: dialect: expected a job object"),
    _json_case("json_empty_list", "[]", "target json_empty_list: dialect: expected a job object"),
    _json_case("json_unknown_dialect", json.dumps({"dialect": "rosetta", "sequences": []}), "target json_unknown_dialect: dialect: unknown dialect 'rosetta'"),
    _json_case("af3_no_dialect", json.dumps({"name": "x", "version": 2, "sequences": [PROTEIN]}), "target af3_no_dialect: dialect: AlphaFold 3 job without"),
    _json_case("af3_bad_version", af3_job("x", [PROTEIN], version=9), "target af3_bad_version: version: unsupported AlphaFold 3 input version 9"),
    _json_case("af3_unknown_field", af3_job("x", [PROTEIN], colour="blue"), "target af3_unknown_field: job: unknown field 'colour'"),
    _json_case("af3_no_sequences", af3_job("x", []), "target af3_no_sequences: sequences: expected a non-empty list"),
    _json_case("af3_unknown_entity", af3_job("x", [{"peptide": {"id": "A"}}]), "target af3_unknown_entity: entity 1: unknown entity type 'peptide'"),
    _json_case("af3_ligand_both", af3_job("x", [{"ligand": {"id": "B", "ccdCodes": ["ATP"], "smiles": "C"}}]), "target af3_ligand_both: entity 1 (ligand, chain B): ccdCodes: give ccdCodes or smiles, not both"),
    _json_case("af3_empty_smiles", af3_job("x", [{"ligand": {"id": "B", "smiles": " "}}]), "target af3_empty_smiles: entity 1 (ligand, chain B): smiles: empty SMILES"),
    _json_case("af3_mod_range", af3_job("x", [{"protein": {"id": "A", "sequence": "MKT", "modifications": [{"ptmType": "SEP", "ptmPosition": 9}]}}]), "target af3_mod_range: entity 1 (protein, chain A): modifications.ptmPosition: position 9 is out of range 1..3"),
    _json_case("af3_duplicate_chain", af3_job("x", [PROTEIN, PROTEIN]), "target af3_duplicate_chain: entity 2 (protein, chain A): id: duplicate chain id 'A'"),
    _json_case("af3_bad_bond", af3_job("x", [PROTEIN], bondedAtomPairs=[["A", 1]]), "target af3_bad_bond: bondedAtomPairs[0]: expected [chain id, residue number, atom name], got 'A'"),
    _json_case("af3_msa_half", af3_job("x", [{"protein": {"id": "A", "sequence": "MKT", "unpairedMsa": ">q\nMKT\n"}}]), "target af3_msa_half: entity 1 (protein, chain A): pairedMsa: unpairedMsa and pairedMsa must be both set"),
    _json_case("af3_no_seeds", af3_job("x", [PROTEIN], modelSeeds=[]), "target af3_no_seeds: modelSeeds: expected a non-empty list of integer seeds"),
    _json_case("af3_template_garbage", af3_job("x", [_template("this is not mmCIF", [0], [0])]), "target af3_template_garbage: entity 1 (protein, chain A): templates[0].mmcif: not a readable mmCIF"),
    _json_case("af3_template_no_atoms", af3_job("x", [_template("data_t\n_entry.id t\n", [0], [0])]), "target af3_template_no_atoms: entity 1 (protein, chain A): templates[0].mmcif: the mmCIF holds no atoms"),
    _json_case("af3_template_query_range", af3_job("x", [_template(TEMPLATE_CIF, [0, 10], [0, 1])]), "target af3_template_query_range: entity 1 (protein, chain A): templates[0].queryIndices: index 10 is past the query's 10 residues"),
    _json_case("af3_template_template_range", af3_job("x", [_template(TEMPLATE_CIF, [0, 1], [0, 80])]), "target af3_template_template_range: entity 1 (protein, chain A): templates[0].templateIndices: index 80 is past the template's 70 residues"),
    _json_case("af3_template_lengths", af3_job("x", [_template(TEMPLATE_CIF, [0, 1], [0])]), "target af3_template_lengths: entity 1 (protein, chain A): templates[0]: queryIndices and templateIndices differ in length"),
    _json_case("af3_user_ccd_garbage", af3_job("x", [{"ligand": {"id": "B", "ccdCodes": ["LIG1"]}}], userCCD="loop_ garbage"), "target af3_user_ccd_garbage: userCCD: not readable mmCIF"),
    _json_case("af3_user_ccd_no_atoms", af3_job("x", [{"ligand": {"id": "B", "ccdCodes": ["LIG1"]}}], userCCD="data_LIG1\n_chem_comp.id LIG1\n"), "target af3_user_ccd_no_atoms: userCCD: component 'LIG1' has no _chem_comp_atom atoms"),
    _json_case("protenix_unknown_entity", protenix_job("x", [{"proteinChain": {"sequence": "MKT", "count": 1}}, {"peptide": {"sequence": "MKT"}}]), "target protenix_unknown_entity: entity 2: unknown entity type 'peptide'"),
    _json_case("protenix_zero_count", protenix_job("x", [{"proteinChain": {"sequence": "MKT", "count": 0}}]), "target protenix_zero_count: entity 1 (protein): count: must be >= 1"),
    _json_case("protenix_file_missing", protenix_job("x", [{"ligand": {"ligand": "FILE_absent.sdf", "count": 1}}]), "target protenix_file_missing: entity 1 (ligand, chain A): ligand: file not found: absent.sdf"),
    _json_case("protenix_empty_ligand", protenix_job("x", [{"ligand": {"ligand": "", "count": 1}}]), "target protenix_empty_ligand: entity 1 (ligand, chain A): ligand: expected CCD_<code>, FILE_<path> or a SMILES"),
    _json_case("protenix_glycans", protenix_job("x", [{"proteinChain": {"sequence": "MKT", "count": 1, "glycans": [{"x": 1}]}}]), "target protenix_glycans: entity 1 (protein, chain A): glycans: not supported"),
    _json_case("protenix_bond_entity", protenix_job("x", [{"proteinChain": {"sequence": "MKT", "count": 1}}], covalent_bonds=[{"entity1": 1, "position1": 1, "atom1": "N", "entity2": 5, "position2": 1, "atom2": "C1"}]), "target protenix_bond_entity: covalent_bonds[0].entity2: entity 5 is out of range 1..1"),
    _json_case("protenix_huge_smiles", protenix_job("x", [{"ligand": {"ligand": HUGE_SMILES, "count": 1}}]), "target protenix_huge_smiles: entity 1 (ligand, chain A): smiles: 500 heavy atoms"),
    Case("json_two_jobs_none_named", "json_two_jobs_none_named,two.json,,,", "target json_two_jobs_none_named: json: two.json holds 2 jobs and none is named", {"two.json": "[" + af3_job("p", [PROTEIN]) + "," + af3_job("q", [PROTEIN]) + "]"}),
]

# Valid but unusual: accepted at parse time (with the good targets), whole tables where the kind is the
# table's own shape. (kind, table bytes or row, files)
ACCEPTED_CASES: list[Case] = [
    Case("sdf_ligand", "sdf_ligand,,protein:MKT;ligand:file=proline.sdf,,", None, {"proline.sdf": PROLINE_SDF.read_text()}),
    Case("protenix_file_ligand", "protenix_file_ligand,protenix_file_ligand.json,,,", None, {"protenix_file_ligand.json": protenix_job("protenix_file_ligand", [{"ligand": {"ligand": "FILE_proline.sdf", "count": 1}}]), "proline.sdf": PROLINE_SDF.read_text()}),
    Case("ion_only", "ion_only,,ion:MG,,", None),
    Case("ion_copies", "ion_copies,,ion:ZNx2,,", None),
    Case("smiles_ligand", "smiles_ligand,,protein:MKT;ligand:smiles=C[C@@H](C(=O)O)N,,", None),
    Case("lowercase_sequence", "lowercase_sequence,,protein:mktayiak,,", None),
    Case("spaces_around", " spaces_around , , protein:MKT ,  ,", None),
    Case("quoted_chains", '"quoted_chains",,"protein:MKT;ligand:ATP",,', None),
    Case("modified_residue", "modified_residue,,protein:MK(SEP)T,,", None),
    Case("af3_valid_template", "af3_valid_template,af3_valid_template.json,,,", None, {"af3_valid_template.json": af3_job("af3_valid_template", [_template(TEMPLATE_CIF, [0, 1], [0, 1])])}),
    Case("af3_user_ccd", "af3_user_ccd,af3_user_ccd.json,,,", None, {"af3_user_ccd.json": af3_job("af3_user_ccd", [{"ligand": {"id": "B", "ccdCodes": ["LIG1"]}}], userCCD=USER_CCD)}),
    Case("id_named_like_a_replacement", "invalid-row-3,,protein:MKT,,", None, target="invalid-row-3"),
]

# Tables whose shape is the kind: (kind, table bytes, note or None). A note here is the one line the run
# stops with (config inputs: ...): the table itself is unusable.
TABLE_CASES: list[tuple[str, bytes, str | None]] = [
    ("bom", ("\ufeff" + HEADER + "\n" + "\n".join(GOOD_ROWS) + "\n").encode(), None),
    ("crlf", (HEADER + "\r\n" + "\r\n".join(GOOD_ROWS) + "\r\n").encode(), None),
    ("bom_crlf", ("\ufeff" + HEADER + "\r\n" + "\r\n".join(GOOD_ROWS) + "\r\n").encode(), None),
    ("latin1_comment", ("# caf\xe9 screen\n" + HEADER + "\n" + "\n".join(GOOD_ROWS) + "\n").encode("latin-1"), None),
    ("comments_and_blank_lines", ("# a screen\n" + HEADER + "\n\n# good ones\n" + "\n".join(GOOD_ROWS) + "\n\n").encode(), None),
    ("few_columns", b"target_id,chains\ngood_a,protein:MKTAYIAKQR\ngood_b,dna:ACGT\n", None),
    ("no_header", ("\n".join(GOOD_ROWS) + "\n").encode(), "targets.csv: no header: the first line must name the columns, e.g. target_id,chains"),
    ("unknown_column", b"target_id,chain\ngood_a,protein:MKT\n", "targets.csv: unknown column 'chain' (columns: target_id, json, chains, seeds, bonds, reference)"),
    ("no_target_id_column", b"name,chains\ngood_a,protein:MKT\n", "targets.csv: no target_id column (columns: name, chains)"),
    ("no_json_or_chains_column", b"target_id,seeds\ngood_a,1\n", "targets.csv: needs a json or a chains column"),
    ("duplicate_column", b"target_id,chains,chains\ngood_a,protein:MKT,protein:MKT\n", "targets.csv: a column is named twice"),
    ("empty_file", b"", "targets.csv: empty: no header and no target rows"),
    ("header_only", (HEADER + "\n").encode(), "targets.csv: empty: no target rows"),
    ("latin1_header", "target_id,chains,s\xe9eds\n".encode("latin-1"), "targets.csv: header line: byte 0xe9 at column 19 is not UTF-8"),
    ("table_too_big", (HEADER + "\n" + "\n".join(GOOD_ROWS) + "\n" + "#" * (2 * 2**20) + "\n").encode(), "targets.csv: file is 2.0 MB, more than limits.input_file_mb (1 MB)"),
]
# fmt: on
