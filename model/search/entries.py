"""Checksums of the MSA/template store's files (model.search.store), and the reader's check.

Every store file has a `{file}.sha256` beside it (sha256sum format), written after the file: the seal
that it is complete. A search treats a file without its seal, or whose bytes no longer match it, as
absent (model.search.store.search_msas). A reader (`check_entry`, `read_entry`) removes a file whose
bytes no longer match, with the record of the search batch that claimed it, so that the next run
searches it again; it accepts a file that has no seal (one copied in by hand).

Standard library only: featurization jobs verify what they read without the search stack (pyhmmer).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from model.fileio import sha256_file, write_text_atomic

log = logging.getLogger(__name__)

UNSEALED = "incomplete (no checksum)"


class StoreEntryError(ValueError):
    """A store file that is missing, incomplete or corrupt (it has been removed)."""


def checksum_path(path: str | Path) -> Path:
    """The `{file}.sha256` that marks a store file complete."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def seal(path: str | Path) -> None:
    """Write the checksum of a finished store file: the last step of writing it."""
    path = Path(path)
    write_text_atomic(checksum_path(path), f"{sha256_file(path)}  {path.name}\n")


def entry_problem(path: str | Path) -> str | None:
    """Why a store file cannot be used (missing, no checksum, bytes that differ from it), or None."""
    path, mark = Path(path), checksum_path(path)
    if not path.is_file():
        return "missing"
    try:
        recorded = mark.read_text().split()[0]
    except (OSError, IndexError):
        return UNSEALED
    return None if sha256_file(path) == recorded else "corrupt (sha256 differs from its checksum)"


def remove_entry(path: str | Path) -> None:
    """Remove a store file and its checksum."""
    Path(path).unlink(missing_ok=True)
    checksum_path(path).unlink(missing_ok=True)


def check_entry(path: str | Path) -> None:
    """Verify a store file before reading it. A missing or corrupt one is removed together with the
    record of the search batch that claims it (so the next run searches it again) and raises
    StoreEntryError naming it; a file without a checksum (copied in by hand) is accepted."""
    path = Path(path)
    problem = entry_problem(path)
    if problem is None or (problem == UNSEALED and path.is_file()):
        return
    remove_entry(path)
    sha, molecule = path.name.split(".")[0], path.parent.name
    if path.parent.parent.name in ("msa", "templates") and re.fullmatch(r"[0-9a-f]{64}", sha):
        batch_record_path(path.parents[2], molecule, sha).unlink(missing_ok=True)
    log.warning("%s: %s: removed", path, problem)
    raise StoreEntryError(f"store entry {path} is {problem}: removed, the next run searches it again")


def read_entry(path: str | Path) -> str:
    """The text of a store file, verified by `check_entry`."""
    check_entry(path)
    return Path(path).read_text()


def batch_record_path(results_dir: str | Path, molecule: str, sha: str) -> Path:
    """The record of the search batch (the keys' first two hex digits) that fills entry `sha`."""
    return Path(results_dir) / "msa" / molecule / "batches" / f"{sha[:2]}.tsv"
