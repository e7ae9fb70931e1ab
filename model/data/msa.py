"""MSA parsing (a3m) and the complex MSA features of AF3 supplement §2.3 and Table 5.

a3m rows are aligned to the query: upper-case letters and '-' are match columns, lower-case letters
are insertions relative to the query (counted into the deletion matrix of the next column), '.' is
padding. Letters map to the 32 `restype` classes with one alphabet per molecule type.

The complex MSA (`assemble_msa`, AF3 §2.3) is a paired block followed by an unpaired block, each
starting with the query row, as Protenix 2.0.0's inference featurizer builds it (docs/network.md,
"Featurizer conventions"):
- paired block: the query, then the chains' paired a3m rows paired by the species in their headers
  (`pair_by_species`) when the complex pairs (more than one distinct protein chain sequence); only
  species found in at least two chains pair (a paired file of a chain with no partner adds none); at
  most half of `max_rows`.
- unpaired block: row i of every chain's own alignment (its query, then its paired hits, then its
  unpaired hits, duplicates removed) shares row i, shorter chains padded with gaps. When the complex
  pairs, rows already in the chain's paired columns (its query among them) are left out.
- columns of non-protein chains (RNA, DNA, ligands, ions) that are gaps in a whole row repeat the
  query there, so a chain without an alignment reads as its query in every row.
- `profile` and `deletion_mean` of each chain come from its own unpaired rows (query included), so
  a chain without an alignment has the one-hot of its `restype` as profile.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from model.data.constants import (
    GAP,
    MAX_MSA_ROWS,
    NUM_RESTYPES,
    ONE_TO_CCD_DNA,
    ONE_TO_CCD_RNA,
    ONE_TO_THREE_PROTEIN,
    RESTYPE_INDEX,
    UNKNOWN_DNA,
    UNKNOWN_PROTEIN,
    UNKNOWN_RNA,
)
from model.fileio import read_input_text

POLYMER_TYPES = ("protein", "rna", "dna")
# Protenix 2.0.0's cap on the paired rows one species brings (`max_paired_per_species`)
MAX_PAIRED_PER_SPECIES = 600
# UniProt FASTA header: the species mnemonic of the entry name (`tr|A0A3A3JCS5|A0A3A3JCS5_SALMO ...`)
_UNIPROT_MNEMONIC = re.compile(r"^(?:sp|tr)\|[A-Za-z0-9]+\|[A-Za-z0-9]+_([A-Za-z0-9]{1,5})\b")
# ColabFold / Protenix UniRef100 header: `UniRef100_<accession>_<NCBI taxon id>/ ...`
_UNIREF100_TAXON = re.compile(r"^UniRef100_[^_]+_([^_/]+)")


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


def stockholm_to_a3m(text: str) -> list[tuple[str, str]]:
    """(description, a3m row) per sequence of a Stockholm alignment, in file order, the query (first
    sequence) first.

    As AF3's `convert_stockholm_to_a3m` (jackhmmer/nhmmer output, AF3 supplement §2.2): the match
    columns are those where the query has a residue; elsewhere a residue is an insertion (lower
    case) and a gap is dropped. In match columns `-` and `.` are gaps. Interleaved blocks are joined
    by name; a `#=GS <name> DE <text>` line gives the row's description after its name (the species
    a paired row names is read from it, `species_id`).
    """
    aligned: dict[str, list[str]] = {}
    described: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("#=GS "):
            parts = stripped.split(maxsplit=3)
            if len(parts) == 4 and parts[2] == "DE":
                described[parts[1]] = parts[3]
        elif stripped and not stripped.startswith(("#", "//")):
            parts = stripped.split()
            if len(parts) != 2:
                raise MsaError(f"Stockholm: line {number} is not `name aligned-sequence`: {stripped[:40]!r}")
            aligned.setdefault(parts[0], []).append(parts[1])
    if not aligned:
        return []
    columns = {name: "".join(parts) for name, parts in aligned.items()}
    query = next(iter(columns.values()))
    match = [char not in "-." for char in query]
    rows = []
    for name, sequence in columns.items():
        if len(sequence) != len(query):
            raise MsaError(f"Stockholm: {name} has {len(sequence)} columns, the query has {len(query)}")
        row = "".join(
            ("-" if char in "-." else char.upper()) if is_match else char.lower()
            for char, is_match in zip(sequence, match, strict=True)
            if is_match or char not in "-."
        )
        rows.append((f"{name} {described[name]}" if name in described else name, row))
    return rows


def parse_msa(text: str) -> list[tuple[str, str]]:
    """(description, a3m row) per record of an MSA in either format AF3 reads for `unpairedMsa` and
    `pairedMsa`: Stockholm (the text starts with `# STOCKHOLM`) or a3m."""
    if text.lstrip().startswith("# STOCKHOLM"):
        return stockholm_to_a3m(text)
    return parse_a3m(text)


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


def species_id(description: str) -> str:
    """The species an MSA hit's a3m header names, "" if none; the two header formats Protenix 2.0.0
    pairs by, in its order: a UniProt entry name's mnemonic (`sp|P69905|HBA_HUMAN` -> HUMAN), then
    the taxon of a UniRef100 header (`UniRef100_UPI00186459A6_118141/` -> 118141)."""
    description = description.strip()
    match = _UNIPROT_MNEMONIC.match(description) or _UNIREF100_TAXON.match(description)
    return match.group(1) if match else ""


def pair_by_species(
    species: Sequence[Sequence[str]], max_rows: int, max_per_species: int = MAX_PAIRED_PER_SPECIES
) -> np.ndarray:
    """Cross-chain pairing of paired MSA rows by species (AF3 supplement §2.3, after AF-Multimer),
    in the order of Protenix 2.0.0's featurizer.

    `species[j]` holds the species of chain j's paired a3m rows in file order, query first. Returns
    [R <= max_rows, n_chains] row numbers into each chain's file, -1 where the chain has no row (a
    gap row). Row 0 is the query of every chain. A species ("" is none) pairs when at least two
    chains have it and brings as many rows as the chain with the fewest rows of it has, at most
    `max_per_species`: the k-th row of it in each chain side by side, its rows in each chain taken
    in the order numpy's default (unstable) argsort of the chain's species ids gives them. Species found in
    more chains come first; among species found in as many chains, rows go by the product of their
    row numbers (a gap counts as 1), so that the chains' best hits lead; ties keep the species in
    order of the first chain that has them, each chain's species sorted by name.
    """
    rows_of_species: list[dict[str, list[int]]] = []
    for ids in species:
        ids = np.asarray(ids, dtype=object)
        groups: dict[str, list[int]] = {}
        # numpy's default sort is not stable: a species' rows come in the order it leaves them, which is
        # Protenix's pairing order (the k-th row of a species in file order is not the one it pairs)
        for row in np.argsort(ids).tolist():
            if ids[row]:
                groups.setdefault(ids[row], []).append(row)
        rows_of_species.append(groups)
    chains_with: dict[str, list[int]] = {}
    for chain, groups in enumerate(rows_of_species):
        for name in sorted(groups):
            chains_with.setdefault(name, []).append(chain)
    blocks = [np.zeros((1, len(species)), dtype=np.int64)]
    for n_chains in sorted({len(c) for c in chains_with.values() if len(c) > 1}, reverse=True):
        tier = []
        for name, present in chains_with.items():
            if len(present) == n_chains:
                depth = min(max_per_species, *(len(rows_of_species[c][name]) for c in present))
                block = np.full((depth, len(species)), -1, dtype=np.int64)
                for c in present:
                    block[:, c] = rows_of_species[c][name][:depth]
                tier.append(block)
        rows = np.concatenate(tier)
        # sum of log row numbers in float32, as Protenix ranks, so that equal products tie alike
        log_product = np.log(np.where(rows < 0, 1, rows).astype(np.float32) + np.float32(1e-10)).sum(axis=1)
        blocks.append(rows[np.argsort(log_product, kind="stable")])
    return np.concatenate(blocks)[:max_rows]


@dataclass
class MsaInput:
    """The MSAs of one chain: a3m records (query first) for unpaired and paired search results.

    The paired records are the chain's own hits as searched (headers naming their species); the
    featurizer pairs them across chains (`pair_by_species`). Either list may be empty.
    """

    unpaired: list[tuple[str, str]] = field(default_factory=list)
    paired: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def from_files(cls, unpaired: str | Path | None = None, paired: str | Path | None = None) -> MsaInput:
        """a3m or Stockholm files, plain, gzip or xz."""
        return cls(
            unpaired=parse_msa(read_input_text(unpaired)) if unpaired else [],
            paired=parse_msa(read_input_text(paired)) if paired else [],
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
    [M, L] without the query row; `paired_species` the species of the paired file's rows, query
    first (`species_id`).
    """

    tokens: np.ndarray
    positions: np.ndarray
    unpaired: tuple[np.ndarray, np.ndarray]
    paired: tuple[np.ndarray, np.ndarray]
    paired_species: tuple[str, ...] = ()


def chain_alignment(
    msa_input: MsaInput,
    molecule: str,
    sequence: str,
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
    species = tuple(species_id(description) for description, _ in msa_input.paired)
    return ChainAlignment(np.asarray(tokens), np.asarray(positions), blocks[0], blocks[1], species)


class ComplexMsa(NamedTuple):
    """The MSA features of one complex (AF3 Table 5): `msa` [M, N_token] int32, `deletion_matrix`
    [M, N_token] float32 (raw counts), `profile` [N_token, 32], `deletion_mean` [N_token], and
    `n_paired` the rows of the paired block (query included)."""

    msa: np.ndarray
    deletion_matrix: np.ndarray
    profile: np.ndarray
    deletion_mean: np.ndarray
    n_paired: int


def _unique_rows(rows: np.ndarray, seen: set[bytes]) -> np.ndarray:
    """Indices of rows not in `seen` (first occurrence wins); updates `seen`."""
    keep = []
    for i, row in enumerate(rows):
        key = row.tobytes()
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def _profile(msa: np.ndarray) -> np.ndarray:
    """Restype distribution per column over the rows, gaps included. [M, n] -> [n, 32] float32"""
    n_rows, n_col = msa.shape
    flat = (msa + NUM_RESTYPES * np.arange(n_col)[None, :]).ravel()
    counts = np.bincount(flat, minlength=n_col * NUM_RESTYPES).reshape(n_col, NUM_RESTYPES)
    return (counts / max(n_rows, 1)).astype(np.float32)


def assemble_msa(
    query: np.ndarray,
    asym_id: np.ndarray,
    protein_token: np.ndarray,
    chains: list[ChainAlignment],
    pair: bool,
    max_rows: int = MAX_MSA_ROWS,
) -> ComplexMsa:
    """The complex MSA of the module docstring.

    `query` [N_token] is the tokens' restypes, `asym_id` [N_token] their chain, `protein_token`
    [N_token] whether their chain is a protein chain; `chains` the alignments of the chains that have
    one; `pair` whether the complex pairs (more than one distinct protein chain sequence).
    """
    query = np.asarray(query, dtype=np.int32)
    n_token = len(query)
    aligned = {int(asym_id[c.tokens[0]]): c for c in chains if len(c.tokens)}
    profile = np.zeros((n_token, NUM_RESTYPES), dtype=np.float32)
    deletion_mean = np.zeros(n_token, dtype=np.float32)

    # each chain's own rows in its token columns: query, paired hits, unpaired hits, no duplicates
    own: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for chain in np.unique(asym_id):
        cols = np.flatnonzero(asym_id == chain)
        rows, dels = query[cols][None], np.zeros((1, len(cols)), dtype=np.float32)
        if (alignment := aligned.get(int(chain))) is not None:
            if not np.array_equal(alignment.tokens, cols):
                raise MsaError(f"chain {int(chain)}: alignment tokens are not the chain's token columns")
            hits = np.concatenate([alignment.paired[0], alignment.unpaired[0]])[:, alignment.positions]
            hit_dels = np.concatenate([alignment.paired[1], alignment.unpaired[1]])[:, alignment.positions]
            rows, dels = np.concatenate([rows, hits]), np.concatenate([dels, hit_dels])
            keep = _unique_rows(rows, set())
            rows, dels = rows[keep], dels[keep]
        profile[cols] = _profile(rows)
        deletion_mean[cols] = dels.mean(axis=0, dtype=np.float64)
        own.append((cols, rows, dels))

    # paired block: the query, then the chains' paired rows paired by species
    paired_msa, paired_del = query[None], np.zeros((1, n_token), dtype=np.float32)
    with_paired = [c for c in chains if len(c.paired[0])] if pair else []
    if with_paired:
        index = pair_by_species([c.paired_species for c in with_paired], max(1, max_rows // 2))
        msa = np.full((len(index), n_token), GAP, dtype=np.int32)
        dels = np.zeros((len(index), n_token), dtype=np.float32)
        for c, rows in zip(with_paired, index.T, strict=True):
            # row numbers count the file's query (0), which the complex query stands for
            chain_msa = np.concatenate([query[c.tokens][None], c.paired[0][:, c.positions]])
            chain_del = np.concatenate(
                [np.zeros((1, len(c.tokens)), np.float32), c.paired[1][:, c.positions]]
            )
            found = rows >= 0
            msa[np.ix_(found, c.tokens)] = chain_msa[rows[found]]
            dels[np.ix_(found, c.tokens)] = chain_del[rows[found]]
        msa[0], dels[0] = query, 0.0
        paired_tokens = np.concatenate([c.tokens for c in with_paired])
        # a row that is all gaps pairs nothing (a hit whose own row holds no residue)
        keep = (msa[:, paired_tokens] != GAP).any(axis=1)
        paired_msa, paired_del = msa[keep], dels[keep]

    # unpaired block: row i of every chain shares row i; gaps below a chain's last row
    budget = max(0, max_rows - len(paired_msa))
    blocks = []
    for cols, rows, dels in own:
        if pair:
            keep = _unique_rows(rows, {row.tobytes() for row in paired_msa[:, cols]})
            rows, dels = rows[keep], dels[keep]
        blocks.append((cols, rows[:budget], dels[:budget]))
    depth = max((len(rows) for _, rows, _ in blocks), default=0)
    unpaired_msa = np.full((depth, n_token), GAP, dtype=np.int32)
    unpaired_del = np.zeros((depth, n_token), dtype=np.float32)
    for cols, rows, dels in blocks:
        unpaired_msa[: len(rows), cols] = rows
        unpaired_del[: len(rows), cols] = dels

    msa = np.concatenate([paired_msa, unpaired_msa])
    deletion_matrix = np.concatenate([paired_del, unpaired_del])
    # non-protein chains repeat their query in rows where they are all gaps
    for cols, _, _ in own:
        if not protein_token[cols[0]]:
            empty = (msa[:, cols] == GAP).all(axis=1)
            msa[np.ix_(empty, cols)] = query[cols]
    return ComplexMsa(msa, deletion_matrix, profile, deletion_mean, len(paired_msa))
