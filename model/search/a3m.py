"""A3M rows from pyhmmer alignments, deduplication and capping, and atomic a3m writing.

A3M (as AF3 and HH-suite use it): every row has one character per query column (upper case residue
or `-`), plus lower-case letters for residues inserted between query columns. The query is row 0.
Parsing a3m text is model.data.msa.parse_a3m's job (the featurizer's parser); this module writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from model.fileio import write_text_atomic

Row = tuple[str, str]  # (description, aligned sequence)


def alignment_to_a3m(hmm_from: int, hmm_to: int, query_length: int, hmm_line: str, target_line: str) -> str:
    """Turn one pairwise profile/target alignment into an a3m row over the query's columns.

    `hmm_from`/`hmm_to` are 1-based model positions; the model was built from the query (or an MSA
    whose match columns are the query's residues), so model position k is query column k.
    `hmm_line` has `.` where the target has an inserted residue; `target_line` has `-` for deletions.
    """
    if len(hmm_line) != len(target_line):
        raise ValueError(
            f"alignment: model line ({len(hmm_line)}) and target line ({len(target_line)}) differ"
        )
    parts = ["-" * (hmm_from - 1)]
    for model_char, target_char in zip(hmm_line, target_line, strict=True):
        if model_char == ".":
            if target_char != "-":
                parts.append(target_char.lower())
        else:
            parts.append(target_char.upper() if target_char != "." else "-")
    parts.append("-" * (query_length - hmm_to))
    row = "".join(parts)
    matched = sum(1 for c in row if not c.islower())
    if matched != query_length:
        raise ValueError(f"alignment: row covers {matched} query columns, query has {query_length}")
    return row


def match_columns(row: str) -> str:
    """The row without its insertions: one character per query column."""
    return "".join(c for c in row if not c.islower())


def merge_rows(
    query: Row, *row_lists: Iterable[Row], deduplicate: bool = True, max_rows: int | None = None
) -> list[Row]:
    """Query first, then each list in order; drop rows whose query columns repeat an earlier row.

    AF3 deduplicates on the aligned (insertion-free) sequence, so the query's own hit disappears.
    `max_rows` caps the total, query included.
    """
    merged, seen = [query], {match_columns(query[1])}
    for rows in row_lists:
        for desc, seq in rows:
            if max_rows is not None and len(merged) >= max_rows:
                return merged
            key = match_columns(seq)
            if deduplicate:
                if key in seen:
                    continue
                seen.add(key)
            merged.append((desc, seq))
    return merged


def format_a3m(rows: Iterable[Row]) -> str:
    return "".join(f">{desc}\n{seq}\n" for desc, seq in rows)


def write_a3m(path: str | Path, rows: Iterable[Row]) -> None:
    """Write rows as a3m, atomically."""
    write_text_atomic(path, format_a3m(rows))
