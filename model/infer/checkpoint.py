"""Network weights and the network they belong to, loaded safely (`torch.load(weights_only=True)`).

Accepts a Foldline training checkpoint (`model.train.checkpoint`: the EMA weights under `model`, the
resolved network config under `network`), a released Protenix checkpoint as it ships
(`{"model": {"module.<key>": tensor, ...}, ...}`, possibly with optimizer and other entries), or a
bare state dict. Keys saved from a DDP-wrapped module (`module.` prefix) are accepted.

The network is the one the checkpoint carries (`network`); a file without one (a Protenix release, a
bare state dict) gets a preset: the preset named like the file (`protenix_mini_default_v0.5.0.pt`),
else the configured preset when the weights fit it, else the first preset in `config/presets/` whose
network has exactly the weights' keys and shapes (Protenix's names first, then the others, sorted).
A missing, unsafe or unreadable file, or weights that fit no network, is one clear error naming the
missing, unexpected and mis-shaped keys. Random initialisation is never implicit: the caller passes
`None` (the command line's `--checkpoint none`).
"""

from __future__ import annotations

import functools
import pickle
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.fileio import sha256_file
from model.nn.config import ModelConfig, config_from_dict, load_preset, preset_names

__all__ = [
    "CheckpointError",
    "LoadedWeights",
    "fit_problems",
    "is_random_init",
    "load_network_weights",
    "read_checkpoint",
    "read_state_dict",
    "state_dict_of",
]

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


NO_CHECKPOINT = ("none", "random")  # command-line spellings of an explicit random-init run
SHOW_KEYS = 8
PROTENIX_PREFIX = "protenix"


def is_random_init(checkpoint: str | Path | None) -> bool:
    """True for the explicit random-initialisation spellings (None, "none", "random")."""
    return checkpoint is None or str(checkpoint).lower() in NO_CHECKPOINT


def state_dict_of(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """The weights in a loaded checkpoint object: its `model` entry, or the object itself when it
    is a bare state dict; a `module.` prefix on every key is dropped."""
    state = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {source}: no state dict of tensors (not a Foldline checkpoint)")
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The weights in `path` (CPU tensors): see `state_dict_of`."""
    return state_dict_of(read_checkpoint(path), str(path))


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOW_KEYS])
    return shown + (f" (+{len(keys) - SHOW_KEYS} more)" if len(keys) > SHOW_KEYS else "")


def fit_problems(expected: dict[str, torch.Tensor | torch.Size], state: dict[str, torch.Tensor]) -> list[str]:
    """Missing, unexpected and mis-shaped keys of `state` against `expected` (empty when it fits)."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    want = {k: v if isinstance(v, torch.Size) else v.shape for k, v in expected.items()}
    shapes = sorted(
        f"{k} {tuple(state[k].shape)} vs {tuple(want[k])}"
        for k in set(want) & set(state)
        if state[k].shape != want[k]
    )
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_names(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_names(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} mis-shaped (checkpoint vs network): {_names(shapes)}")
    return problems


@dataclass
class LoadedWeights:
    """A network config and the weights for it.

    state: None for random weights. network_source: where `config` came from ("checkpoint",
    "preset NAME", or "preset NAME (matched by the weights' shapes)"); preset: that preset's name,
    None when the checkpoint carried its network. provenance: checkpoint path and sha256 (None, None
    for random weights).
    """

    config: ModelConfig
    state: dict[str, torch.Tensor] | None
    network_source: str
    preset: str | None
    provenance: dict = field(default_factory=lambda: {"checkpoint": None, "sha256": None})


def _network_shapes(cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """The state dict of the network `cfg` describes, on the meta device (no memory, ~1 s for base)."""
    from model.nn.network import Foldline

    with torch.device("meta"):
        return Foldline(cfg).state_dict()


@functools.cache
def _preset_shapes(name: str) -> dict[str, torch.Size]:
    """{key: shape} of a named preset's network (presets are files that do not change during a run)."""
    return {k: v.shape for k, v in _network_shapes(load_preset(name)).items()}


def _candidate_presets(obj: Any, path: Path, preset: str) -> list[tuple[str, str]]:
    """(preset, why) in the order they are tried for weights without a network config."""
    names = preset_names()
    protenix = [n for n in names if n.startswith(PROTENIX_PREFIX)]
    others = [n for n in names if not n.startswith(PROTENIX_PREFIX)]
    shapes = " (matched by the weights' shapes)"
    order = []
    named = obj.get("preset") if isinstance(obj, dict) else None
    if isinstance(named, str) and named in names:  # Foldline checkpoints written before `network`
        order.append((named, " (named by the checkpoint)"))
    if path.stem in names:
        order.append((path.stem, " (named by the file)"))
    # A released Protenix file (every key under `module.`) gets Protenix's own settings first.
    released = isinstance(obj, dict) and all(k.startswith("module.") for k in obj.get("model", {}))
    rest = [(n, shapes) for n in protenix] + [(preset, ""), *((n, shapes) for n in others)]
    if not released:
        rest = [(preset, ""), *((n, shapes) for n in protenix + others)]
    order += rest
    seen, unique = set(), []
    for name, why in order:
        if name not in seen:
            seen.add(name)
            unique.append((name, "" if name == preset and why == shapes else why))
    return unique


def load_network_weights(checkpoint: str | Path | None, preset: str) -> LoadedWeights:
    """The network config and weights of `checkpoint` (see the module docstring for how the network
    is chosen); `preset` alone for random weights (`is_random_init`)."""
    if is_random_init(checkpoint):
        return LoadedWeights(load_preset(preset), None, f"preset {preset}", preset)
    path = Path(checkpoint)
    obj = read_checkpoint(path)
    state = state_dict_of(obj, str(path))
    provenance = {"checkpoint": str(path.resolve()), "sha256": sha256_file(path)}
    stored = obj.get("network") if isinstance(obj, dict) else None
    if isinstance(stored, dict):
        try:
            cfg = config_from_dict(stored, f"checkpoint {path}: network")
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"checkpoint {path}: its network config is invalid ({err})") from err
        check_fit_config(cfg, state, str(path))
        return LoadedWeights(cfg, state, "checkpoint", None, provenance)
    tried = {}
    for name, why in _candidate_presets(obj, path, preset):
        problems = fit_problems(_preset_shapes(name), state)
        if not problems:
            return LoadedWeights(load_preset(name), state, f"preset {name}{why}", name, provenance)
        tried[name] = problems
    raise CheckpointError(
        f"checkpoint {path}: carries no network config and fits no preset in config/presets/; "
        f"against preset {preset}: " + "; ".join(tried[preset])
    )


def check_fit_config(cfg: ModelConfig, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise CheckpointError naming the missing, unexpected and mis-shaped keys of `state` against
    the network `cfg` describes (built on the meta device), if any."""
    problems = fit_problems(_network_shapes(cfg), state)
    if problems:
        raise CheckpointError(f"checkpoint {source}: does not fit the network; " + "; ".join(problems))
