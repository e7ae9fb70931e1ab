"""Training checkpoints and provenance, written atomically.

Every checkpoint (`checkpoint.pt` at the end of a stage, `last.pt` for resume) holds:
`model` (the EMA weights: what inference and the next stage load), `raw_model` (the live weights),
`optimizer`, `scheduler`, `step`, `rng` (torch, CUDA, numpy, python states), `sampler_position`
(index of the next training example slot) and `config` (the resolved stage config).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import numpy as np
import torch

from model.fileio import atomic_path, write_text_atomic


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
    """The checkpoint dict; a clear error when the file is missing or not a Foldline checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path}: not found")
    state = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"checkpoint {path}: no 'model' weights (not a Foldline checkpoint)")
    return state


def write_json(path: str | Path, obj: dict) -> Path:
    """Atomic pretty-printed JSON."""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def rng_state() -> dict:
    """Every global RNG the loop touches (restored on resume)."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
