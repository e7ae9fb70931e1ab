"""a3m parsing and complex MSA assembly with the real shared MSAs."""

from __future__ import annotations

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
    """Chains A (5zyh) and B (7zzx) plus a 3-token ligand after them: the search step's paired
    files are taken as row-aligned, as the contract says."""
    (in_a, seq_a), (in_b, seq_b) = load_chain("5zyh_1", "5zyh"), load_chain("7zzx_1", "7zzx")
    n_a, n_b = len(seq_a), len(seq_b)
    tok_a, tok_b = np.arange(n_a), n_a + np.arange(n_b)
    chains = [
        M.chain_alignment(in_a, "protein", seq_a, 1, tok_a, np.arange(n_a), "A"),
        M.chain_alignment(in_b, "protein", seq_b, 2, tok_b, np.arange(n_b), "B"),
    ]
    query = np.r_[
        [C.RESTYPE_INDEX[C.ONE_TO_THREE_PROTEIN[a]] for a in seq_a + seq_b], [C.UNKNOWN_PROTEIN] * 3
    ].astype(np.int32)
    msa, dels, n_paired = M.assemble_msa(query, chains, max_rows=max_rows)
    return (in_a, in_b), (tok_a, tok_b), query, msa, dels, n_paired


def test_heteromer_assembly_paired_then_block_diagonal() -> None:
    (in_a, in_b), (tok_a, tok_b), query, msa, dels, n_paired = heteromer()
    n_token = len(query)
    ligand = np.arange(tok_b[-1] + 1, n_token)
    assert msa.shape == dels.shape and msa.shape[1] == n_token
    np.testing.assert_array_equal(msa[0], query)
    # paired block: row i of both pairing files (minus their queries), deduplicated
    n_pair_a, n_pair_b = len(in_a.paired) - 1, len(in_b.paired) - 1
    assert 1 < n_paired <= 1 + max(n_pair_a, n_pair_b)
    paired_rows = msa[1:n_paired]
    raw_a, _ = M.a3m_to_arrays([s for _, s in in_a.paired], "protein")
    raw_b, _ = M.a3m_to_arrays([s for _, s in in_b.paired], "protein")
    np.testing.assert_array_equal(paired_rows[0, tok_a], raw_a[1])  # first pair is never a duplicate
    np.testing.assert_array_equal(paired_rows[0, tok_b], raw_b[1])
    # unpaired rows: exactly one chain has residues, the other chain's columns are all gap
    unpaired = msa[n_paired:]
    has_a = (unpaired[:, tok_a] != C.GAP).any(1)
    has_b = (unpaired[:, tok_b] != C.GAP).any(1)
    assert not (has_a & has_b).any()
    # block A comes first, then block B
    assert np.all(np.diff(has_b.astype(int)) >= 0)
    # ligand columns are gaps below the query row, with no deletions
    assert (msa[1:, ligand] == C.GAP).all() and not dels[:, ligand].any()
    # no duplicate rows anywhere, and every unpaired file row is represented
    assert len({row.tobytes() for row in msa}) == len(msa)
    unpaired_a = {r.tobytes() for r in M.a3m_to_arrays([s for _, s in in_a.unpaired], "protein")[0][1:]}
    found_a = {r.tobytes() for r in msa[:, tok_a]}
    assert unpaired_a <= found_a


def test_deletions_follow_their_rows() -> None:
    (in_a, _), (tok_a, _), _, msa, dels, n_paired = heteromer()
    raw, raw_dels = M.a3m_to_arrays([s for _, s in in_a.unpaired], "protein")
    first_a = n_paired  # the first unpaired row of chain A is its file's row 1 unless it duplicated
    row = next(i for i in range(1, len(raw)) if raw[i].tobytes() == msa[first_a, tok_a].tobytes())
    np.testing.assert_array_equal(dels[first_a, tok_a], raw_dels[row])


def test_cap_and_profile() -> None:
    *_, msa, dels, n_paired = heteromer(max_rows=300)
    assert msa.shape[0] == 300 and n_paired <= 151  # paired rows (plus the query) take at most half
    profile, deletion_mean = M.msa_profile(msa, dels)
    np.testing.assert_allclose(profile.sum(1), 1.0, rtol=1e-5)
    col = 7
    expected = np.bincount(msa[:, col], minlength=C.NUM_RESTYPES) / len(msa)
    np.testing.assert_allclose(profile[col], expected, rtol=1e-6)
    np.testing.assert_allclose(deletion_mean, dels.mean(0), rtol=1e-6)


def test_homomer_is_not_paired_and_query_mismatch_is_an_error() -> None:
    in_a, seq = load_chain("102m_1", "102m")
    n = len(seq)
    chains = [
        M.chain_alignment(in_a, "protein", seq, 1, np.arange(n) + k * n, np.arange(n), name)
        for k, name in enumerate("AB")
    ]
    query = np.tile([C.RESTYPE_INDEX[C.ONE_TO_THREE_PROTEIN[a]] for a in seq], 2).astype(np.int32)
    msa, _, n_paired = M.assemble_msa(query, chains)
    assert n_paired == 1
    # every row below the query belongs to exactly one copy
    assert not (((msa[1:, :n] != C.GAP).any(1)) & ((msa[1:, n:] != C.GAP).any(1))).any()
    with pytest.raises(M.MsaError, match="chain Z: unpaired MSA query"):
        M.chain_alignment(in_a, "protein", seq[:-1] + "W", 1, np.arange(n), np.arange(n), "Z")


def test_atomised_residue_repeats_its_column() -> None:
    in_a, seq = load_chain("102m_1", "102m")
    n = len(seq)
    # residue 10 atomised into 3 tokens: positions repeat
    positions = np.r_[np.arange(10), [10, 10, 10], np.arange(11, n)]
    tokens = np.arange(len(positions))
    chain = M.chain_alignment(in_a, "protein", seq, 1, tokens, positions, "A")
    query = np.zeros(len(positions), dtype=np.int32)
    msa, _, _ = M.assemble_msa(query, [chain])
    np.testing.assert_array_equal(msa[1:, 10], msa[1:, 11])
    np.testing.assert_array_equal(msa[1:, 12], msa[1:, 10])


def test_read_from_files(tmp_path: Path) -> None:
    path = tmp_path / "x.a3m"
    path.write_text(">query\nMKV\n>hit\nM-V\n")
    got = M.MsaInput.from_files(unpaired=path)
    assert got.unpaired == [("query", "MKV"), ("hit", "M-V")] and got.paired == []
