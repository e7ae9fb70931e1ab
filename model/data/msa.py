"""MSA parsing (a3m) and the complex MSA features of AF3 supplement §2.3 and Table 5.

a3m rows are aligned to the query: upper-case letters and '-' are match columns, lower-case letters
are insertions relative to the query (counted into the deletion matrix of the next column), '.' is
padding. Letters map to the 32 `restype` classes with one alphabet per molecule type.

The complex MSA (`assemble_msa`) is: the query row, then paired rows (row i of every chain's paired
a3m belongs to one organism, so they share a row), then each chain's unpaired rows block-diagonally
(other chains' columns gap); duplicates removed, capped at `constants.MAX_MSA_ROWS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.data.constants import (
    GAP,
    MAX_MSA_ROWS,
    MAX_PAIRED_ROWS,
    NUM_RESTYPES,
    ONE_TO_CCD_DNA,
    ONE_TO_CCD_RNA,
    ONE_TO_THREE_PROTEIN,
    RESTYPE_INDEX,
    UNKNOWN_DNA,
    UNKNOWN_PROTEIN,
    UNKNOWN_RNA,
)

POLYMER_TYPES = ("protein", "rna", "dna")


def _lookup(one_to_ccd: dict[str, str], unknown: int) -> np.ndarray:
    """Byte -> restype table for one molecule type; any other letter is that type's unknown."""
    table = np.full(256, unknown, dtype=np.int32)
    for letter, code in one_to_ccd.items():
        table[ord(letter)] = RESTYPE_INDEX[code]
    table[ord("-")] = GAP
    return table


ALPHABETS: dict[str, np.ndarray] = {
    "protein": _lookup(ONE_TO_THREE_PROTEIN, UNKNOWN_PROTEIN),
    "rna": _lookup(ONE_TO_CCD_RNA, UNKNOWN_RNA),
    "dna": _lookup(ONE_TO_CCD_DNA, UNKNOWN_DNA),
}


class MsaError(ValueError):
    """An MSA that cannot be used for its chain."""


def parse_a3m(text: str) -> list[tuple[str, str]]:
    """(description, aligned sequence) per a3m record, in file order.

    Sequences may span several lines; '#' comment lines (ColabFold's header) and blank lines are
    skipped. Insertions stay lower-case; '.' padding is dropped.
    """
    records: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(">"):
            records.append((line[1:].strip(), []))
        elif records:
            records[-1][1].append(line.replace(".", ""))
        else:
            raise MsaError(f"a3m: sequence line before the first '>' header: {line[:40]!r}")
    return [(description, "".join(parts)) for description, parts in records]


def a3m_to_arrays(sequences: list[str], molecule: str) -> tuple[np.ndarray, np.ndarray]:
    """Aligned a3m sequences -> (msa [M, L] int32 restype indices, deletions [M, L] float32).

    L is the number of match columns (upper-case letters and '-'), which must agree across rows;
    `deletions[m, j]` counts the lower-case letters just before column j of row m.
    """
    if molecule not in ALPHABETS:
        raise MsaError(f"a3m: molecule type {molecule!r} has no MSA alphabet; expected {POLYMER_TYPES}")
    table = ALPHABETS[molecule]
    n_rows = len(sequences)
    if n_rows == 0:
        return np.zeros((0, 0), dtype=np.int32), np.zeros((0, 0), dtype=np.float32)
    raw = np.frombuffer("".join(sequences).encode("ascii", "replace"), dtype=np.uint8)
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=n_rows)
    row_of = np.repeat(np.arange(n_rows), lengths)
    is_insert = (raw >= ord("a")) & (raw <= ord("z"))
    match = ~is_insert
    width = np.bincount(row_of[match], minlength=n_rows)
    if np.any(width != width[0]):
        bad = int(np.flatnonzero(width != width[0])[0])
        raise MsaError(f"a3m: row {bad} has {width[bad]} match columns, the query has {width[0]}")
    n_col = int(width[0])
    msa = table[raw[match]].reshape(n_rows, n_col)
    # column of each character = number of match characters before it in its row
    col = np.cumsum(match) - 1 - np.repeat(np.r_[0, np.cumsum(width)[:-1]], lengths)
    ins_col = col[is_insert] + 1  # an insertion counts towards the next match column
    ins_row = row_of[is_insert]
    flat = np.bincount(ins_row * (n_col + 1) + ins_col, minlength=n_rows * (n_col + 1))
    deletions = flat.reshape(n_rows, n_col + 1).astype(np.float32)
    return msa, deletions[:, :n_col]  # insertions after the last column have no column to go to


@dataclass
class MsaInput:
    """The MSAs of one chain: a3m records (query first) for unpaired and paired search results.

    Row i (i >= 1) of the paired a3m of every chain in a complex is the same organism, as written by
    the search step; either list may be empty.
    """

    unpaired: list[tuple[str, str]] = field(default_factory=list)
    paired: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def from_files(cls, unpaired: str | Path | None = None, paired: str | Path | None = None) -> MsaInput:
        return cls(
            unpaired=parse_a3m(Path(unpaired).read_text()) if unpaired else [],
            paired=parse_a3m(Path(paired).read_text()) if paired else [],
        )

    @classmethod
    def from_text(cls, unpaired: str = "", paired: str = "") -> MsaInput:
        return cls(unpaired=parse_a3m(unpaired), paired=parse_a3m(paired))


@dataclass
class ChainAlignment:
    """One polymer chain's MSA placed into the complex.

    `tokens` [n] are the chain's token columns in the complex and `positions` [n] the alignment
    column (0-based residue position in the chain sequence) each token takes; an atomised modified
    residue has several tokens with one position. `unpaired` / `paired` are (msa, deletions) arrays
    [M, L] without the query row. `entity` decides pairing: copies of one entity never pair.
    """

    entity: int
    tokens: np.ndarray
    positions: np.ndarray
    unpaired: tuple[np.ndarray, np.ndarray]
    paired: tuple[np.ndarray, np.ndarray]


def chain_alignment(
    msa_input: MsaInput,
    molecule: str,
    sequence: str,
    entity: int,
    tokens: np.ndarray,
    positions: np.ndarray,
    name: str,
) -> ChainAlignment:
    """Convert one chain's a3m records, checking that their query matches `sequence` (one-letter).

    The query row is dropped (the complex query row comes from the tokens' restypes). `name` is used
    in error messages.
    """
    blocks = []
    for kind, records in (("unpaired", msa_input.unpaired), ("paired", msa_input.paired)):
        if not records:
            blocks.append((np.zeros((0, len(sequence)), np.int32), np.zeros((0, len(sequence)), np.float32)))
            continue
        try:
            msa, deletions = a3m_to_arrays([seq for _, seq in records], molecule)
        except MsaError as err:
            raise MsaError(f"chain {name}: {kind} MSA: {err}") from err
        query = records[0][1].upper()
        if len(query) != len(sequence) or any(
            q != s and s != "X" and q != "X" for q, s in zip(query, sequence.upper(), strict=True)
        ):
            raise MsaError(
                f"chain {name}: {kind} MSA query ({len(query)} columns) does not match the chain "
                f"sequence ({len(sequence)} residues)"
            )
        blocks.append((msa[1:], deletions[1:]))
    return ChainAlignment(entity, np.asarray(tokens), np.asarray(positions), blocks[0], blocks[1])


def _dedupe(rows: np.ndarray, seen: set[bytes]) -> np.ndarray:
    """Indices of rows not already in `seen` (first occurrence wins); updates `seen`."""
    keep = []
    for i, row in enumerate(rows):
        key = row.tobytes()
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def _share(sizes: list[int], budget: int) -> list[int]:
    """Split `budget` rows among blocks: small blocks keep all, the rest share equally."""
    out = [0] * len(sizes)
    remaining = sorted(range(len(sizes)), key=lambda i: sizes[i])
    while remaining:
        fair = budget // len(remaining)
        i = remaining.pop(0)
        out[i] = min(sizes[i], fair)
        budget -= out[i]
    return out


def assemble_msa(
    query: np.ndarray,
    chains: list[ChainAlignment],
    max_rows: int = MAX_MSA_ROWS,
    max_paired: int = MAX_PAIRED_ROWS,
) -> tuple[np.ndarray, np.ndarray, int]:
    """The complex MSA: query row, paired rows, then block-diagonal unpaired rows.

    `query` [N_token] is the token restypes (the first row). Columns of tokens that belong to no
    chain alignment (ligands, ions) are gaps below the query row. Paired rows pair only when chains
    of at least two entities have paired MSAs (AF-Multimer: homomers are not paired); otherwise the
    paired rows join their chain's unpaired block.
    Returns (msa [M, N_token] int32, deletion_matrix [M, N_token] float32, n_paired_rows) where
    rows [0, n_paired_rows) — the query and the paired rows — are aligned across chains.
    """
    n_token = len(query)
    with_paired = [c for c in chains if len(c.paired[0])]
    pairing = len({c.entity for c in with_paired}) >= 2

    def scatter(chain: ChainAlignment, block: tuple[np.ndarray, np.ndarray], rows: int):
        msa = np.full((rows, n_token), GAP, dtype=np.int32)
        dels = np.zeros((rows, n_token), dtype=np.float32)
        n = len(block[0])
        msa[:n, chain.tokens] = block[0][:, chain.positions]
        dels[:n, chain.tokens] = block[1][:, chain.positions]
        return msa, dels

    seen = {np.asarray(query, dtype=np.int32).tobytes()}
    paired_msa = np.zeros((0, n_token), dtype=np.int32)
    paired_del = np.zeros((0, n_token), dtype=np.float32)
    if pairing:
        # paired rows take at most half the budget, as AF3's 8191 of 16384
        n_rows = min(max(len(c.paired[0]) for c in with_paired), max_paired, max_rows // 2)
        paired_msa = np.full((n_rows, n_token), GAP, dtype=np.int32)
        paired_del = np.zeros((n_rows, n_token), dtype=np.float32)
        for chain in with_paired:
            block = (chain.paired[0][:n_rows], chain.paired[1][:n_rows])
            msa, dels = scatter(chain, block, n_rows)
            mine = np.zeros(n_token, dtype=bool)
            mine[chain.tokens] = True
            paired_msa[:, mine] = msa[:, mine]
            paired_del[:, mine] = dels[:, mine]
        keep = _dedupe(paired_msa, seen)
        paired_msa, paired_del = paired_msa[keep], paired_del[keep]

    # unpaired blocks: each chain's rows (plus its paired rows when nothing pairs with them)
    blocks = []
    for chain in chains:
        msa, dels = chain.unpaired
        if not pairing and len(chain.paired[0]):
            msa, dels = np.concatenate([msa, chain.paired[0]]), np.concatenate([dels, chain.paired[1]])
        block_msa, block_del = scatter(chain, (msa, dels), len(msa))
        keep = _dedupe(block_msa, seen)
        blocks.append((block_msa[keep], block_del[keep]))
    quota = _share([len(b[0]) for b in blocks], max(0, max_rows - 1 - len(paired_msa)))
    query_row = np.asarray(query, dtype=np.int32)[None]
    msa = np.concatenate([query_row, paired_msa, *(b[0][:q] for b, q in zip(blocks, quota, strict=True))])
    zeros = np.zeros((1, n_token), dtype=np.float32)
    dels = np.concatenate([zeros, paired_del, *(b[1][:q] for b, q in zip(blocks, quota, strict=True))])
    return msa, dels, 1 + len(paired_msa)


def msa_profile(msa: np.ndarray, deletion_matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AF3 Table 5 `profile` [N_token, 32] (restype distribution over all rows, gaps included)
    and `deletion_mean` [N_token] (mean deletion count over all rows)."""
    n_rows, n_token = msa.shape
    flat = (msa + NUM_RESTYPES * np.arange(n_token)[None, :]).ravel()
    counts = np.bincount(flat, minlength=n_token * NUM_RESTYPES).reshape(n_token, NUM_RESTYPES)
    profile = (counts / max(n_rows, 1)).astype(np.float32)
    return profile, deletion_matrix.mean(axis=0, dtype=np.float64).astype(np.float32)
