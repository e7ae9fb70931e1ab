"""Sequence databases: identity (for cache keys), statistics sidecars, shards, and checked downloads.

A database is a FASTA file (optionally gzip-compressed). The `databases` rule runs `prepare_database`
with `write_sidecar=True`, which writes a small JSON next to it (`<db>.foldline.json`: sequence and
residue counts, sha256), so that search keys, Z values and shard plans never reread a tens-of-GB file.
Searches stream the FASTA itself in digital mode (one sequence at a time for one query, block by
block for a batch); nothing larger than a block is held. No other prepared format: pyhmmer's search
loop streams only text formats, and a pickled DigitalSequenceBlock of 100,000 sequences loads in
1.1 s against 0.15 s to parse the FASTA (docs/benchmarks.md).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from model.fileio import atomic_path, sha256_file, write_json

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".foldline.json"
_HASH_CHUNK = 1 << 20


class DatabaseError(ValueError):
    """A database is missing, malformed or fails its checksum."""


@dataclass(frozen=True)
class DatabaseStats:
    """What a search needs to know about a database without reading it again."""

    path: str
    size: int  # bytes on disk
    sha256: str
    n_sequences: int
    n_residues: int


def sidecar_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def _open_text(path: Path):
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)


def _count_fasta(path: Path) -> tuple[int, int]:
    n_seq = n_res = 0
    with _open_text(path) as handle:
        for line in handle:
            if line.startswith(">"):
                n_seq += 1
            else:
                n_res += len(line.strip())
    return n_seq, n_res


def quick_identity(path: str | Path) -> dict[str, str | int]:
    """Name, size and sha256 of the first and last MiB: cheap on a 100 GB file, stable across copies
    and checkouts (unlike mtime). Names a database in search keys and validates sidecars. Cached per
    process while the file is unchanged (the workflow computes one key per chain at parse time)."""
    path = Path(path)
    if not path.is_file():
        raise DatabaseError(f"database {path}: file not found")
    stat = path.stat()
    digest = _head_tail_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    return {"name": path.name, "size": stat.st_size, "head_tail_sha256": digest}


@functools.lru_cache(maxsize=256)
def _head_tail_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(_HASH_CHUNK))
        if size > 2 * _HASH_CHUNK:
            handle.seek(size - _HASH_CHUNK)
            digest.update(handle.read())
    return digest.hexdigest()


def prepare_database(path: str | Path, write_sidecar: bool = False) -> DatabaseStats:
    """Count sequences/residues and hash `path`; reuse or (with `write_sidecar`) write the sidecar JSON.

    A sidecar is trusted while the file's `quick_identity` is unchanged. Without a sidecar the numbers
    are computed once per process. Read-only databases are never written to.
    """
    path = Path(path)
    identity = quick_identity(path)
    side = sidecar_path(path)
    if side.is_file():
        cached = json.loads(side.read_text())
        if cached.get("identity") == identity:
            return DatabaseStats(**{k: cached[k] for k in DatabaseStats.__dataclass_fields__})
    stats = _compute_stats(str(path.resolve()), identity["size"], identity["head_tail_sha256"])
    if write_sidecar:
        record = {**asdict(stats), "path": path.name, "identity": identity}
        write_json(side, record)
    return stats


@functools.lru_cache(maxsize=64)
def _compute_stats(path: str, size: int, head_tail_sha256: str) -> DatabaseStats:
    log.info("reading database %s (%d bytes)", path, size)
    n_seq, n_res = _count_fasta(Path(path))
    if n_seq == 0:
        raise DatabaseError(f"database {path}: no FASTA records")
    return DatabaseStats(path, size, sha256_file(path), n_seq, n_res)


def split_fasta(path: str | Path, n_shards: int, out_dir: str | Path) -> list[Path]:
    """Split a FASTA into `n_shards` files of about equal residue count (streaming, in order).

    Shards are written as `<name>-NNNNN-of-MMMMM` like AF3's `<db>@<n>` spec. Searching every shard
    with Z fixed to the whole database and merging the hits gives the whole-database result.
    """
    path, out_dir = Path(path), Path(out_dir)
    if n_shards < 1:
        raise DatabaseError(f"database {path}: n_shards must be >= 1, got {n_shards}")
    stats = prepare_database(path)
    per_shard = stats.n_residues / n_shards
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [out_dir / f"{path.name}-{i:05d}-of-{n_shards:05d}" for i in range(n_shards)]
    tmp_names = [p.with_name(f".{p.name}.tmp") for p in names]
    handles = [open(p, "w") for p in tmp_names]
    try:
        shard, done = 0, 0
        with _open_text(path) as src:
            for line in src:
                if line.startswith(">") and done >= per_shard * (shard + 1) and shard < n_shards - 1:
                    shard += 1
                elif not line.startswith(">"):
                    done += len(line.strip())
                handles[shard].write(line)
    finally:
        for handle in handles:
            handle.close()
    for tmp, final in zip(tmp_names, names, strict=True):
        os.replace(tmp, final)
    return names


def download(url: str, dest: str | Path, sha256: str | None) -> Path:
    """Fetch `url` (http, https, ftp or file) to `dest` atomically, checking its sha256.

    A `.gz` URL whose dest does not end in `.gz` is decompressed on the way. An existing dest with the
    right checksum is kept (no network access at all).
    """
    import urllib.request  # here: every search imports this module, few of them download

    dest = Path(dest)
    if dest.is_file() and sha256 and sha256_file(dest) == sha256:
        return dest
    with atomic_path(dest, suffix=".part") as tmp:
        with open(tmp, "wb") as out, urllib.request.urlopen(url) as response:  # noqa: S310
            if url.endswith(".gz") and dest.suffix != ".gz":
                with gzip.GzipFile(fileobj=response) as unzipped:
                    shutil.copyfileobj(unzipped, out, _HASH_CHUNK)
            else:
                shutil.copyfileobj(response, out, _HASH_CHUNK)
        if sha256:
            found = sha256_file(tmp)
            if found != sha256:
                raise DatabaseError(
                    f"database {dest.name}: sha256 mismatch for {url}: got {found}, want {sha256}"
                )
    log.info("downloaded %s -> %s", url, dest)
    return dest
