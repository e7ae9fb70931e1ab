"""Loading network weights for inference, safely (`torch.load(weights_only=True)`).

Accepts a Foldline training checkpoint (`model.train.checkpoint`: the EMA weights under `model`)
or a bare state dict. Keys saved from a DDP-wrapped module (`module.` prefix) are accepted. A
missing file, a file that is not a checkpoint, or weights that do not fit the network is one
clear error naming the missing, unexpected and mis-shaped keys. Random initialisation is never
implicit: the caller passes `None` (the command line's `--checkpoint none`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from model.train.checkpoint import sha256_file

NO_CHECKPOINT = ("none", "random")  # command-line spellings of an explicit random-init run
SHOW_KEYS = 8

# Training checkpoints also carry numpy RNG states; these are the only non-torch types allowed.
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
    """A checkpoint that is missing or does not fit the network."""


def is_random_init(checkpoint: str | Path | None) -> bool:
    """True for the explicit random-initialisation spellings (None, "none", "random")."""
    return checkpoint is None or str(checkpoint).lower() in NO_CHECKPOINT


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The weights in `path` (CPU tensors): the `model` entry of a training checkpoint, or the file
    itself when it is a bare state dict."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: file not found")
    try:
        with torch.serialization.safe_globals(NUMPY_SAFE_GLOBALS):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a pickle error can be of many types; name the file and the cause
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {path}: cannot be read with weights_only=True ({first})") from err
    state = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {path}: no state dict of tensors (not a Foldline checkpoint)")
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOW_KEYS])
    return shown + (f" (+{len(keys) - SHOW_KEYS} more)" if len(keys) > SHOW_KEYS else "")


def check_fit(net: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise CheckpointError naming missing, unexpected and mis-shaped keys, if any."""
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in set(expected) & set(state)
        if state[k].shape != expected[k].shape
    )
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_names(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_names(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} mis-shaped (checkpoint vs network): {_names(shapes)}")
    if problems:
        raise CheckpointError(f"checkpoint {source}: does not fit the network; " + "; ".join(problems))


def load_weights(net: torch.nn.Module, checkpoint: str | Path | None) -> dict:
    """Load `checkpoint` into `net` (strict), or keep its random init when `is_random_init`.

    Returns provenance: {"checkpoint": path or None, "sha256": hex or None}.
    """
    if is_random_init(checkpoint):
        return {"checkpoint": None, "sha256": None}
    state = read_state_dict(checkpoint)
    check_fit(net, state, str(checkpoint))
    net.load_state_dict(state, strict=True)
    return {"checkpoint": str(Path(checkpoint).resolve()), "sha256": sha256_file(checkpoint)}
