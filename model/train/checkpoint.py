"""Training checkpoints and provenance, written atomically and read without running code.

Every checkpoint (`checkpoint.pt` at the end of a stage, `last.pt` for resume) holds:
`model` (the EMA weights: what inference and the next stage load), `raw_model` (the live weights),
`optimizer`, `scheduler`, `step`, `rng` (torch, CUDA, numpy, python states, as tensors and plain
numbers), `sampler_position` (index of the next training example slot), `config` (the resolved stage
config) and `network` (the resolved network config, `dataclasses.asdict` of a ModelConfig).

Every checkpoint is read by `model.infer.checkpoint.read_checkpoint` (`torch.load(weights_only=True)`
after its zip checksums): anything but tensors and plain data is refused with a one-line
`CheckpointError` naming the file, as is a truncated or corrupt file.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from model.fileio import atomic_path
from model.infer.checkpoint import CheckpointError, read_checkpoint


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
