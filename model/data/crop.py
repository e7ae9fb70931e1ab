"""Training crops (AF3 supplement §2.7): contiguous, spatial and spatial-interface.

A crop is a set of tokens; every token (T), atom (A), MSA-column and template-column feature of
`feature_spec.FEATURES` is cut to it consistently and the atom/token pointers are re-indexed.
Residues are never split: a ligand, an ion or an atomised modified residue (all tokens that share
one `ref_space_uid`) is kept whole or dropped whole, so a crop may hold a few tokens fewer than
`crop_size`. `token_index` and `residue_index` keep their original values so that relative
positions still see the gaps. All random choices come from one seeded generator.

Imports only numpy and torch: crops run inside the training data loader on GPU nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.data import store
from model.data.feature_spec import FEATURES

CROP_MODES = ("contiguous", "spatial", "spatial_interface")
# AF3 supplement Table 4: probabilities of (contiguous, spatial, spatial_interface) per dataset.
CROP_WEIGHTS: dict[str, tuple[float, float, float]] = {
    "weighted_pdb": (0.2, 0.4, 0.4),
    "disordered_pdb_distillation": (0.2, 0.4, 0.4),
    "protein_monomer_distillation": (0.25, 0.75, 0.0),
    "rna_distillation": (0.25, 0.75, 0.0),
}
INTERFACE_CUTOFF = 15.0  # Å between centre atoms of different chains (AF3 §2.7.3)
TIE_BREAK = 1e-3  # AF3 §2.7.2: distance + token index * 1e-3 makes the ordering unique


@dataclass(frozen=True)
class CropChoice:
    """The tokens kept (sorted original indices [N_crop]) and the mode that chose them."""

    token_idx: np.ndarray
    mode: str  # one of CROP_MODES, or "none" when the example already fits


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _rng(seed: int | np.random.Generator | torch.Generator) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, torch.Generator):
        seed = int(torch.randint(0, 2**62, (1,), generator=seed).item())
    return np.random.default_rng(seed)


def token_units(features: dict) -> tuple[np.ndarray, np.ndarray]:
    """Unit (residue instance) of each token, numbered 0.. in token order, and each unit's size.

    A unit is the set of tokens whose centre atoms share one `ref_space_uid`.
    Returns (unit_of_token [N_token], unit_size [N_unit]).
    """
    uid = _numpy(features["ref_space_uid"])[_numpy(features["token_center_atom"])]
    starts = np.flatnonzero(np.r_[True, uid[1:] != uid[:-1]])
    unit_of_token = np.cumsum(np.r_[True, uid[1:] != uid[:-1]]) - 1
    unit_size = np.diff(np.r_[starts, len(uid)])
    return unit_of_token, unit_size


def _whole_units(window: np.ndarray, unit_of_token: np.ndarray, unit_size: np.ndarray) -> np.ndarray:
    """Tokens of `window` whose unit lies entirely inside it."""
    units, counts = np.unique(unit_of_token[window], return_counts=True)
    complete = units[counts == unit_size[units]]
    return window[np.isin(unit_of_token[window], complete)]


def contiguous_crop(features: dict, crop_size: int, rng: np.random.Generator) -> np.ndarray:
    """AF-Multimer Algorithm 1 as used by AF3 §2.7.1: one contiguous window per chain, chains in
    random order, window sizes drawn so the total can reach `crop_size`. Returns token indices."""
    asym = _numpy(features["asym_id"])
    unit_of_token, unit_size = token_units(features)
    chains = np.unique(asym)
    n_added, n_remaining = 0, len(asym)
    keep = []
    for chain in rng.permutation(chains):
        tokens = np.flatnonzero(asym == chain)
        n_k = len(tokens)
        n_remaining -= n_k
        size_max = min(crop_size - n_added, n_k)
        size_min = min(n_k, max(0, crop_size - (n_added + n_remaining)))
        size = int(rng.integers(size_min, size_max + 1)) if size_max > 0 else 0
        start = int(rng.integers(0, n_k - size + 1))
        kept = _whole_units(tokens[start : start + size], unit_of_token, unit_size)
        n_added += len(kept)
        keep.append(kept)
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def _centre_coords(features: dict) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth centre-atom positions [N_token, 3] and their resolved mask [N_token]."""
    centre = _numpy(features["token_center_atom"])
    return _numpy(features["atom_pos"])[centre].astype(np.float64), _numpy(features["atom_resolved"])[centre]


def interface_tokens(features: dict, cutoff: float = INTERFACE_CUTOFF, block: int = 1024) -> np.ndarray:
    """Tokens whose resolved centre atom lies within `cutoff` Å of a resolved centre atom of another
    chain (AF3 §2.7.3). Computed in row blocks to bound memory. Returns token indices."""
    pos, resolved = _centre_coords(features)
    asym = _numpy(features["asym_id"])
    idx = np.flatnonzero(resolved)
    hits = np.zeros(len(asym), dtype=bool)
    for lo in range(0, len(idx), block):
        rows = idx[lo : lo + block]
        dist = np.linalg.norm(pos[rows, None, :] - pos[None, idx, :], axis=-1)
        other_chain = asym[rows, None] != asym[None, idx]
        hits[rows] = ((dist < cutoff) & other_chain).any(axis=1)
    return np.flatnonzero(hits)


def spatial_crop(
    features: dict, crop_size: int, rng: np.random.Generator, candidates: np.ndarray | None = None
) -> np.ndarray:
    """AF3 §2.7.2 (and §2.7.3 when `candidates` are the interface tokens): pick a reference token
    among resolved `candidates`, keep the tokens nearest to it by centre-atom distance, whole units
    only. Returns token indices."""
    pos, resolved = _centre_coords(features)
    if candidates is None:
        candidates = np.flatnonzero(resolved)
    if len(candidates) == 0:
        raise ValueError("spatial crop: no candidate reference token with a resolved centre atom")
    ref = int(rng.choice(candidates))
    dist = np.linalg.norm(pos - pos[ref], axis=-1)
    dist[~resolved] = np.inf
    dist = dist + np.arange(len(dist)) * TIE_BREAK
    unit_of_token, unit_size = token_units(features)
    taken = np.zeros(len(unit_size), dtype=bool)
    used = 0
    for token in np.argsort(dist, kind="stable"):
        unit = unit_of_token[token]
        if not taken[unit] and used + unit_size[unit] <= crop_size:
            taken[unit] = True
            used += unit_size[unit]
            if used == crop_size:
                break
    return np.flatnonzero(taken[unit_of_token])


def choose_crop(
    features: dict,
    crop_size: int,
    seed: int | np.random.Generator | torch.Generator = 0,
    weights: tuple[float, float, float] = CROP_WEIGHTS["weighted_pdb"],
    mode: str | None = None,
) -> CropChoice:
    """Draw a crop mode by `weights` (or use `mode`) and the tokens it keeps.

    Spatial modes need ground truth (`atom_pos`, `atom_resolved`); without a resolved centre atom
    they fall back to contiguous, and spatial-interface without interface tokens to spatial.
    """
    if crop_size <= 0:
        raise ValueError(f"crop: crop_size must be positive, got {crop_size}")
    if mode is not None and mode not in CROP_MODES:
        raise ValueError(f"crop: unknown mode {mode!r}; expected one of {CROP_MODES}")
    rng = _rng(seed)
    n_token = len(features["asym_id"])
    if mode is None:
        probs = np.asarray(weights, dtype=np.float64)
        if probs.shape != (3,) or (probs < 0).any() or probs.sum() <= 0:
            raise ValueError(f"crop: weights must be 3 non-negative numbers, got {weights}")
        mode = CROP_MODES[int(rng.choice(3, p=probs / probs.sum()))]
    if n_token <= crop_size:
        return CropChoice(np.arange(n_token), "none")
    has_truth = "atom_pos" in features and "atom_resolved" in features
    if mode != "contiguous" and (not has_truth or not _centre_coords(features)[1].any()):
        mode = "contiguous"
    if mode == "spatial_interface":
        candidates = interface_tokens(features)
        if len(candidates):
            return CropChoice(spatial_crop(features, crop_size, rng, candidates), mode)
        mode = "spatial"
    if mode == "spatial":
        return CropChoice(spatial_crop(features, crop_size, rng), mode)
    return CropChoice(contiguous_crop(features, crop_size, rng), mode)


def apply_crop(features: dict, token_idx: np.ndarray) -> dict:
    """Cut every feature to the tokens `token_idx` (sorted) and their atoms; numpy or torch in,
    the same out. Raises ValueError for a feature not in `feature_spec.FEATURES`."""
    token_idx = np.asarray(token_idx, dtype=np.int64)
    atom_to_token = _numpy(features["atom_to_token"])
    atom_idx = np.flatnonzero(np.isin(atom_to_token, token_idx))
    new_token = np.full(len(features["asym_id"]), -1, dtype=np.int64)
    new_token[token_idx] = np.arange(len(token_idx))
    new_atom = np.full(len(atom_to_token), -1, dtype=np.int64)
    new_atom[atom_idx] = np.arange(len(atom_idx))
    remap = {"atom_to_token": new_token, "token_center_atom": new_atom, "token_rep_atom": new_atom}
    index = {"T": token_idx, "A": atom_idx}
    out = {}
    for name, value in features.items():
        if name not in FEATURES:
            raise ValueError(f"crop: feature {name!r} is not in feature_spec.FEATURES, cannot crop it")
        is_torch = isinstance(value, torch.Tensor)
        for axis, dim in enumerate(FEATURES[name][1]):
            if dim in index:
                idx = torch.as_tensor(index[dim], device=value.device) if is_torch else index[dim]
                value = value.index_select(axis, idx) if is_torch else np.take(value, idx, axis=axis)
        if name in remap:
            mapped = remap[name][_numpy(value)].astype(np.int32)
            value = torch.from_numpy(mapped).to(features[name].device) if is_torch else mapped
        out[name] = value
    return out


def crop_features(
    features: dict,
    crop_size: int,
    seed: int | np.random.Generator | torch.Generator = 0,
    weights: tuple[float, float, float] = CROP_WEIGHTS["weighted_pdb"],
    mode: str | None = None,
) -> dict:
    """Crop one example to at most `crop_size` tokens (AF3 §2.7); see `choose_crop`."""
    return apply_crop(features, choose_crop(features, crop_size, seed, weights, mode).token_idx)


def load_crop(
    path: str | Path,
    crop_size: int,
    seed: int | np.random.Generator | torch.Generator = 0,
    weights: tuple[float, float, float] = CROP_WEIGHTS["weighted_pdb"],
    mode: str | None = None,
    device: str | torch.device | None = None,
    max_msa_rows: int | None = None,
) -> tuple[dict[str, torch.Tensor], CropChoice]:
    """Load one stored example already cropped: the same tokens as `crop_features` on
    `store.load_features(path)` with the same seed, but `token_bonds` is only ever built for the
    crop (a capsid's full [T, T] matrix is GBs). Returns (torch features, the crop choice)."""
    loaded = store.load_features(path, max_msa_rows=max_msa_rows, exclude=["token_bonds"])
    feats = {name: tensor.numpy() for name, tensor in loaded.items()}
    choice = choose_crop(feats, crop_size, seed, weights, mode)
    cropped = apply_crop(feats, choice.token_idx)
    cropped["token_bonds"] = store.load_token_bonds(path, choice.token_idx)
    tensors = {name: torch.from_numpy(np.ascontiguousarray(v)) for name, v in cropped.items()}
    if device is not None:
        tensors = {name: t.to(device) for name, t in tensors.items()}
    return tensors, choice
