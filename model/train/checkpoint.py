"""Training checkpoints and provenance, written atomically and read without running code.

Every checkpoint (`checkpoint.pt` at the end of a stage, `last.pt` for resume) holds:
`model` (the EMA weights: what inference and the next stage load), `raw_model` (the live weights),
`optimizer`, `scheduler`, `step`, `rng` (torch, CUDA, numpy, python states, as tensors and plain
numbers), `sampler_position` (index of the next training example slot), `config` (the resolved stage
config) and `network` (the resolved network config, `dataclasses.asdict` of a ModelConfig).

Every checkpoint is read with `torch.load(weights_only=True)`: a file that holds anything but
tensors and plain data (a pickled object whose `__reduce__` would run code) is refused with a
one-line `CheckpointError` naming the file, as is a truncated or corrupt one.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import re
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.fileio import atomic_path, write_text_atomic

# Checkpoints written before RNG states were stored as tensors hold numpy arrays; these numpy types
# rebuild arrays and scalars only, and are the only non-torch globals the loader allows.
NUMPY_SAFE_GLOBALS = [
    np.ndarray,
    np.dtype,
    np.dtypes.UInt32DType,
    np.dtypes.Float64DType,
    np.dtypes.Int64DType,
    np._core.multiarray._reconstruct,
    np._core.multiarray.scalar,
]


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, unsafe, or does not fit the network."""


def _load_failure(err: BaseException) -> str:
    """Why torch.load refused a file, in one line, without torch's advice to disable weights_only."""
    text = str(err)
    blocked = re.search(r"GLOBAL (\S+)", text)
    if blocked:
        return (
            f"refused: it holds a Python object ({blocked.group(1)}), not only tensors and plain data; "
            "Foldline never runs code from a checkpoint"
        )
    if isinstance(err, pickle.UnpicklingError):
        return "refused: it holds Python objects, not only tensors and plain data"
    detail = text.strip().split(". ")[0].splitlines()[0] if text.strip() else ""
    if "weights_only" in detail:
        detail = ""
    detail = f"{type(err).__name__}: {detail}" if detail else type(err).__name__
    return f"cannot be read: truncated, corrupt or not a torch checkpoint ({detail})"


def verify_archive(path: Path) -> None:
    """Check the CRC-32 of every member of a zip-format torch checkpoint: torch.load itself does not,
    so flipped bytes in the weights would load silently as other numbers."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
        raise CheckpointError(f"checkpoint {path}: cannot be read: truncated or corrupt ({err})") from err
    if bad is not None:
        raise CheckpointError(f"checkpoint {path}: corrupt: checksum mismatch in {bad} (changed bytes)")


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """The object in a torch checkpoint file, loaded with `weights_only=True` (plus the numpy
    types of older RNG states) after `verify_archive`. Raises CheckpointError with a one-line reason
    naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: file not found")
    if zipfile.is_zipfile(path):
        verify_archive(path)
    try:
        with torch.serialization.safe_globals(NUMPY_SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # a pickle or zip error can be of many types; name the file and the cause
        raise CheckpointError(f"checkpoint {path}: {_load_failure(err)}") from err


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(path: str | Path, state: dict) -> Path:
    """torch.save `state` to a temp file in the same folder, fsync, then rename over `path`."""
    path = Path(path)

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """A Foldline training checkpoint dict (`read_checkpoint`); CheckpointError when the file is
    missing, unsafe, unreadable or has no `model` weights."""
    state = read_checkpoint(path, map_location)
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"checkpoint {path}: no 'model' weights (not a Foldline checkpoint)")
    return state


def write_json(path: str | Path, obj: dict) -> Path:
    """Atomic pretty-printed JSON."""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def rng_state() -> dict:
    """Every global RNG the loop touches (restored on resume), as tensors and plain numbers so that
    `weights_only=True` loads it: numpy's MT19937 key becomes an int64 tensor."""
    name, key, pos, has_gauss, cached = np.random.get_state()
    numpy_state = (name, torch.from_numpy(key.astype(np.int64)), int(pos), int(has_gauss), float(cached))
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore `rng_state()` (also the numpy-array form of older checkpoints)."""
    torch.set_rng_state(state["torch"])
    name, key, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(key, dtype=np.uint32), *rest))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
