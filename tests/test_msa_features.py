"""a3m parsing and complex MSA assembly with the real shared MSAs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import gemmi
import numpy as np
import pytest
from conftest import MMCIF_DIR, SHARED_DATA

from model.data import constants as C
from model.data import msa as M

MSA_DIR = SHARED_DATA / "msa"


def entity_sequence(entry: str, entity: str = "1") -> str:
    """Canonical one-letter sequence straight from the mmCIF's _entity_poly."""
    block = gemmi.cif.read(str(MMCIF_DIR / f"{entry}.cif.gz")).sole_block()
    for row in block.find("_entity_poly.", ["entity_id", "pdbx_seq_one_letter_code_can"]):
        if row[0] == entity:
            return gemmi.cif.as_string(row[1]).replace("\n", "")
    raise KeyError(entity)


def naive_deletions(aligned: str) -> tuple[str, list[int]]:
    """Character-by-character reading of one a3m row: (match string, deletions per column)."""
    matches, dels, pending = [], [], 0
    for ch in aligned:
        if ch.islower():
            pending += 1
        else:
            matches.append(ch)
            dels.append(pending)
            pending = 0
    return "".join(matches), dels


def test_parse_a3m_102m_rows_query_and_deletions() -> None:
    text = (MSA_DIR / "102m_1" / "non_pairing.a3m").read_text()
    records = M.parse_a3m(text)
    assert len(records) == sum(line.startswith(">") for line in text.splitlines())
    assert records[0][0] == "query"
    assert records[0][1] == entity_sequence("102m")
    msa, dels = M.a3m_to_arrays([s for _, s in records], "protein")
    assert msa.shape == dels.shape == (len(records), 154)
    expected_query = [C.RESTYPE_INDEX[C.ONE_TO_THREE_PROTEIN[a]] for a in entity_sequence("102m")]
    np.testing.assert_array_equal(msa[0], expected_query)
    assert not dels[0].any()
    n_with_insertions = 0
    for row, (_, aligned) in enumerate(records):
        matches, expected = naive_deletions(aligned)
        np.testing.assert_array_equal(dels[row], expected)
        assert (msa[row] == C.GAP).sum() == matches.count("-")
        n_with_insertions += any(expected)
    assert n_with_insertions > 10  # the file really has insertions, so the check above means something
    # row 1 as printed in the file: "...TLVENLDNsekMASVLK..." puts 3 deletions before the M
    _, row1 = records[1]
    col = row1.index("sekM") - sum(c.islower() for c in row1[: row1.index("sekM")])
    assert dels[1, col] == 3 and msa[1, col] == C.RESTYPE_INDEX["MET"]


def test_parse_a3m_multiline_comments_and_dots() -> None:
    text = "#154\t1\n>q desc\nAC\nGT\n\n>h1\nA.c-GT\n>h2\nAcgCGT\n"
    assert M.parse_a3m(text) == [("q desc", "ACGT"), ("h1", "Ac-GT"), ("h2", "AcgCGT")]
    msa, dels = M.a3m_to_arrays([s for _, s in M.parse_a3m(text)], "dna")
    dna = [C.RESTYPE_INDEX[C.ONE_TO_CCD_DNA[a]] for a in "ACGT"]
    np.testing.assert_array_equal(msa[0], dna)
    np.testing.assert_array_equal(msa[1], [dna[0], C.GAP, dna[2], dna[3]])
    np.testing.assert_array_equal(dels[1], [0, 1, 0, 0])
    np.testing.assert_array_equal(dels[2], [0, 2, 0, 0])
    with pytest.raises(M.MsaError, match="before the first"):
        M.parse_a3m("ACGT\n>x\nAC")


def test_rna_alphabet_on_real_rna_msa() -> None:
    records = M.parse_a3m((MSA_DIR / "other" / "9gmw_2_rna.a3m").read_text())
    msa, _ = M.a3m_to_arrays([s for _, s in records], "rna")
    rna = {C.RESTYPE_INDEX[x] for x in C.RNA_RESIDUES}
    assert set(np.unique(msa[0])) <= rna
    assert set(np.unique(msa)) <= rna | {C.UNKNOWN_RNA, C.GAP}
    # the same letters read as protein land in the protein range: alphabets really differ
    assert set(np.unique(M.a3m_to_arrays([records[0][1]], "protein")[0])) <= set(range(21))


def test_ragged_a3m_and_unknown_molecule_are_errors() -> None:
    with pytest.raises(M.MsaError, match="row 1 has 2 match columns, the query has 4"):
        M.a3m_to_arrays(["ACGT", "AcG"], "protein")
    with pytest.raises(M.MsaError, match="ligand"):
        M.a3m_to_arrays(["AC"], "ligand")


def load_chain(name: str, entry: str, molecule: str = "protein") -> tuple[M.MsaInput, str]:
    folder = MSA_DIR / name
    return M.MsaInput.from_files(folder / "non_pairing.a3m", folder / "pairing.a3m"), entity_sequence(entry)


def heteromer(max_rows: int = C.MAX_MSA_ROWS):
    """Chains A (5zyh) and B (7zzx) plus a 3-token ligand (chain 2) after them, with their real
    paired (UniRef100, species in the headers) and unpaired files."""
    (in_a, seq_a), (in_b, seq_b) = load_chain("5zyh_1", "5zyh"), load_chain("7zzx_1", "7zzx")
    n_a, n_b = len(seq_a), len(seq_b)
    tok_a, tok_b = np.arange(n_a), n_a + np.arange(n_b)
    chains = [
        M.chain_alignment(in_a, "protein", seq_a, tok_a, np.arange(n_a), "A"),
        M.chain_alignment(in_b, "protein", seq_b, tok_b, np.arange(n_b), "B"),
    ]
    query = np.r_[
        [C.RESTYPE_INDEX[C.ONE_TO_THREE_PROTEIN[a]] for a in seq_a + seq_b], [C.UNKNOWN_PROTEIN] * 3
    ].astype(np.int32)
    asym = np.r_[np.zeros(n_a), np.ones(n_b), [2, 2, 2]].astype(np.int64)
    out = M.assemble_msa(query, asym, asym < 2, chains, pair=True, max_rows=max_rows)
    return (in_a, in_b), (tok_a, tok_b), query, out


def rows_of(records: list[tuple[str, str]]) -> np.ndarray:
    return M.a3m_to_arrays([seq for _, seq in records], "protein")[0]


def test_heteromer_assembly_paired_block_then_unpaired_block() -> None:
    (in_a, in_b), (tok_a, tok_b), query, out = heteromer()
    msa, dels, n_paired = out.msa, out.deletion_matrix, out.n_paired
    n_token = len(query)
    ligand = np.arange(tok_b[-1] + 1, n_token)
    assert msa.shape == dels.shape and msa.shape[1] == n_token
    # the paired block comes first: the query, then one row of each chain's pairing file per row,
    # both of one species; a species brings as many rows as the chain with fewer rows of it has
    np.testing.assert_array_equal(msa[0], query)
    species_a, species_b = ({} for _ in range(2))
    for records, species_of in ((in_a.paired, species_a), (in_b.paired, species_b)):
        for row, (desc, _) in zip(rows_of(records)[1:], records[1:], strict=True):
            species_of.setdefault(row.tobytes(), set()).add(M.species_id(desc))
    for row in msa[1:n_paired]:
        assert species_a[row[tok_a].tobytes()] & species_b[row[tok_b].tobytes()] - {""}
    count_a = Counter(M.species_id(d) for d, _ in in_a.paired[1:])
    count_b = Counter(M.species_id(d) for d, _ in in_b.paired[1:])
    shared = (set(count_a) & set(count_b)) - {""}
    assert n_paired == 1 + sum(min(count_a[s], count_b[s], M.MAX_PAIRED_PER_SPECIES) for s in shared) > 10
    # the unpaired block: row i of each chain's own rows shares a row (AF3's dense layout), so both
    # chains have residues in its first row; the query already in the paired block is not repeated
    unpaired = msa[n_paired:]
    assert (unpaired[0, tok_a] != C.GAP).any() and (unpaired[0, tok_b] != C.GAP).any()
    assert not (unpaired[:, : tok_b[-1] + 1] == query[: tok_b[-1] + 1]).all(axis=1).any()
    # A's own rows (its paired hits, then its unpaired hits, in file order) that are not in its
    # paired columns fill A's columns
    paired_a = {r.tobytes() for r in msa[:n_paired, tok_a]}
    expected_a = []
    for r in np.concatenate([rows_of(in_a.paired)[1:], rows_of(in_a.unpaired)[1:]]):
        if r.tobytes() not in paired_a and r.tobytes() not in {e.tobytes() for e in expected_a}:
            expected_a.append(r)
    np.testing.assert_array_equal(unpaired[: len(expected_a), tok_a], np.array(expected_a))
    assert (unpaired[len(expected_a) :, tok_a] == C.GAP).all()  # padding below A's last row
    # a ligand reads as its query in every row, with no deletions
    assert (msa[:, ligand] == query[ligand]).all() and not dels[:, ligand].any()


def test_deletions_follow_their_rows() -> None:
    (in_a, in_b), (tok_a, _), _, out = heteromer()
    species = [[M.species_id(d) for d, _ in records] for records in (in_a.paired, in_b.paired)]
    row_in_a = M.pair_by_species(species, C.MAX_MSA_ROWS // 2)[1:, 0]
    raw, raw_dels = M.a3m_to_arrays([s for _, s in in_a.paired], "protein")
    np.testing.assert_array_equal(out.deletion_matrix[1 : out.n_paired, tok_a], raw_dels[row_in_a])
    np.testing.assert_array_equal(out.msa[1 : out.n_paired, tok_a], raw[row_in_a])
    assert raw_dels[row_in_a].any()


def test_cap_and_per_chain_profile() -> None:
    (in_a, in_b), (tok_a, tok_b), query, out = heteromer(max_rows=300)
    assert out.msa.shape[0] == 300 and out.n_paired <= 150  # the paired block takes at most half
    np.testing.assert_allclose(out.profile.sum(1), 1.0, rtol=1e-5)
    # a chain's profile counts its own rows (query, paired hits, unpaired hits, no duplicates, no
    # cap), not the complex's padding
    own, own_dels = M.a3m_to_arrays(
        [s for _, s in in_b.paired] + [s for _, s in in_b.unpaired[1:]], "protein"
    )
    _, first = np.unique(own, axis=0, return_index=True)
    own, own_dels = own[np.sort(first)], own_dels[np.sort(first)]
    col = 7
    expected = np.bincount(own[:, col], minlength=C.NUM_RESTYPES) / len(own)
    np.testing.assert_allclose(out.profile[tok_b[col]], expected, rtol=1e-6)
    np.testing.assert_allclose(out.deletion_mean[tok_b], own_dels.mean(0), rtol=1e-5)
    # the ligand has no alignment: its profile is the one-hot of its restype
    np.testing.assert_array_equal(out.profile[-3:], np.eye(C.NUM_RESTYPES)[query[-3:]])


def test_single_sequence_holds_the_query_twice_and_paired_hits_first() -> None:
    """A monomer (or homomer) does not pair: its paired hits join its own rows, ahead of the
    unpaired hits; the paired block is the query alone and the unpaired block starts with it again."""
    in_a, seq = load_chain("102m_1", "102m")
    n = len(seq)
    chains = [
        M.chain_alignment(in_a, "protein", seq, np.arange(n) + k * n, np.arange(n), name)
        for k, name in enumerate("AB")
    ]
    query = np.tile([C.RESTYPE_INDEX[C.ONE_TO_THREE_PROTEIN[a]] for a in seq], 2).astype(np.int32)
    asym = np.repeat([0, 1], n)
    out = M.assemble_msa(query, asym, np.ones(2 * n, bool), chains, pair=False)
    assert out.n_paired == 1
    np.testing.assert_array_equal(out.msa[0], query)
    np.testing.assert_array_equal(out.msa[1], query)
    first_paired_hit = rows_of(in_a.paired)[1]
    np.testing.assert_array_equal(out.msa[2, :n], first_paired_hit)
    np.testing.assert_array_equal(out.msa[2, n:], first_paired_hit)  # both copies share row i
    with pytest.raises(M.MsaError, match="chain Z: unpaired MSA query"):
        M.chain_alignment(in_a, "protein", seq[:-1] + "W", np.arange(n), np.arange(n), "Z")


def test_a_paired_file_without_partner_pairs_nothing() -> None:
    """Only chain A has a paired file: its rows pair with nothing, so the paired block is the query
    alone; the paired hits still join A's own rows, and B (no alignment) is gaps below its query."""
    in_a, seq_a = load_chain("5zyh_1", "5zyh")
    n_a = len(seq_a)
    chain = M.chain_alignment(in_a, "protein", seq_a, np.arange(n_a), np.arange(n_a), "A")
    query = np.r_[[C.RESTYPE_INDEX[C.ONE_TO_THREE_PROTEIN[a]] for a in seq_a], [0, 5, 9, 1, 2]].astype(
        np.int32
    )
    asym = np.r_[np.zeros(n_a), np.ones(5)].astype(np.int64)
    out = M.assemble_msa(query, asym, np.ones(len(query), bool), [chain], pair=True)
    assert out.n_paired == 1
    np.testing.assert_array_equal(out.msa[1, :n_a], rows_of(in_a.paired)[1])
    assert (out.msa[1:, n_a:] == C.GAP).all()


def test_no_alignment_at_all() -> None:
    query = np.array([0, 5, 9, C.UNKNOWN_PROTEIN], dtype=np.int32)
    asym = np.array([0, 0, 0, 1])
    single = M.assemble_msa(query, asym, asym == 0, [], pair=False)
    np.testing.assert_array_equal(single.msa, [query, query])
    assert single.n_paired == 1 and not single.deletion_matrix.any()
    np.testing.assert_array_equal(single.profile, np.eye(C.NUM_RESTYPES)[query])
    # a complex that pairs keeps its query in the paired block only
    paired = M.assemble_msa(query, asym, asym == 0, [], pair=True)
    np.testing.assert_array_equal(paired.msa, [query])


def test_atomised_residue_repeats_its_column() -> None:
    in_a, seq = load_chain("102m_1", "102m")
    n = len(seq)
    # residue 10 atomised into 3 tokens: positions repeat
    positions = np.r_[np.arange(10), [10, 10, 10], np.arange(11, n)]
    tokens = np.arange(len(positions))
    chain = M.chain_alignment(in_a, "protein", seq, tokens, positions, "A")
    query = np.zeros(len(positions), dtype=np.int32)
    msa = M.assemble_msa(query, np.zeros(len(tokens)), np.ones(len(tokens), bool), [chain], pair=False).msa
    np.testing.assert_array_equal(msa[1:, 10], msa[1:, 11])
    np.testing.assert_array_equal(msa[1:, 12], msa[1:, 10])


def test_read_from_files(tmp_path: Path) -> None:
    path = tmp_path / "x.a3m"
    path.write_text(">query\nMKV\n>hit\nM-V\n")
    got = M.MsaInput.from_files(unpaired=path)
    assert got.unpaired == [("query", "MKV"), ("hit", "M-V")] and got.paired == []
