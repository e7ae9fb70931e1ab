"""File helpers (stdlib only). Atomic writes: every output goes to a temp file in its own folder, then
is renamed over the target, so a file that exists is complete, whatever kills the writer."""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temp path beside `path`; on success rename it over `path`, on error remove it.

    The file gets the permissions an ordinary `open()` would give (mkstemp makes it 0600, which would
    hide results from the rest of a group on a shared cluster).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def one_line(text: str) -> str:
    """`text` on one line: every run of whitespace, line breaks included, becomes one space."""
    return " ".join(text.split())


def error_line(err: BaseException) -> str:
    """An exception in one line: its message, led by its type's name unless it is a ValueError,
    KeyError or OSError, whose messages (Foldline's input and file errors) say what went wrong."""
    text = one_line(str(err)) or type(err).__name__
    return text if isinstance(err, ValueError | KeyError | OSError) else f"{type(err).__name__}: {text}"


def write_failure(failed_dir: str | Path, target: str, reason: str) -> str:
    """Write the target's failure note, `{failed_dir}/{target}.txt` (DESIGN.md, Failures), atomically;
    returns its one line, which starts `target {target}: `."""
    line = one_line(reason)
    if not line.startswith(f"target {target}"):
        line = f"target {target}: {line}"
    write_text_atomic(Path(failed_dir) / f"{target}.txt", line + "\n")
    return line


def write_json(path: str | Path, obj: dict, indent: int | None = 1, sort_keys: bool = False) -> Path:
    """Atomic JSON: numpy arrays and scalars become lists and numbers, NaN becomes null (as AF3 writes
    it), and anything else JSON has no type for (a Path) its str."""
    text = json.dumps(_plain(obj), indent=indent, sort_keys=sort_keys, default=str)
    return write_text_atomic(path, text + "\n")


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, without importing numpy here
        return _plain(obj.tolist())
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def read_input_text(path: str | Path) -> str:
    """A text input file, plain or compressed with gzip or xz (as AF3 reads `*Path` inputs)."""
    path = Path(path)
    opener = {".gz": gzip.open, ".xz": lzma.open}.get(path.suffix.lower(), open)
    with opener(path, "rt", encoding="utf-8") as handle:
        return handle.read()
