"""Protein-like synthetic features per model/data/feature_spec.py, for benchmarks and unit tests.

Only torch and numpy: GPU benchmark hosts have no featurizer dependencies. Geometry is a random
walk of Cα atoms 3.8 Å apart with the other atoms of each residue scattered around its Cα, which is
enough to exercise every code path (distances, windows, templates) with realistic magnitudes.
"""

from __future__ import annotations

import numpy as np
import torch

from model.data.constants import ATOM_NAME_CHARS, GAP, NUM_RESTYPES
from model.data.feature_spec import FEATURES


def _chain_walk(rng: np.random.Generator, n: int, step: float = 3.8) -> np.ndarray:
    steps = rng.normal(size=(n, 3))
    steps *= step / np.linalg.norm(steps, axis=-1, keepdims=True)
    return np.cumsum(steps, axis=0)


def synthetic_features(
    n_token: int,
    atoms_per_token: int = 10,
    n_msa: int = 512,
    n_templ: int = 4,
    seed: int = 0,
    n_chain: int = 2,
    with_truth: bool = True,
) -> dict[str, torch.Tensor]:
    """A protein complex of `n_chain` chains (tokens split evenly), every feature of FEATURES.

    Atom 1 of each token is its centre (Cα), atom 4 its representative atom (Cβ).
    """
    if n_token < n_chain or atoms_per_token < 5:
        raise ValueError(
            f"synthetic_features: need n_token >= n_chain and atoms_per_token >= 5, "
            f"got {n_token}, {atoms_per_token}"
        )
    rng = np.random.default_rng(seed)
    t, a = n_token, n_token * atoms_per_token
    asym = np.repeat(np.arange(n_chain), -(-t // n_chain))[:t]
    residue_index = np.concatenate([np.arange(1, (asym == c).sum() + 1) for c in range(n_chain)])
    restype = rng.integers(0, 20, size=t)
    atom_to_token = np.repeat(np.arange(t), atoms_per_token)
    ca = _chain_walk(rng, t)
    truth = ca[atom_to_token] + rng.normal(scale=1.2, size=(a, 3))
    truth[np.arange(t) * atoms_per_token + 1] = ca
    ref_pos = truth - ca[atom_to_token] + rng.normal(scale=0.2, size=(a, 3))  # residue-local conformer
    msa = rng.integers(0, NUM_RESTYPES, size=(max(n_msa, 1), t))
    msa[0] = restype
    msa[rng.random(msa.shape) < 0.1] = GAP
    deletions = np.where(rng.random(msa.shape) < 0.05, rng.integers(1, 10, size=msa.shape), 0)
    profile = np.stack([np.bincount(col, minlength=NUM_RESTYPES) for col in msa.T]) / msa.shape[0]
    templ_ca = ca[None] + rng.normal(scale=1.0, size=(n_templ, t, 3))
    offsets = np.array([[-1.2, 0.8, 0.0], [0.0, 0.0, 0.0], [1.3, 0.6, 0.2]])
    backbone = templ_ca[:, :, None, :] + offsets
    bonds = np.zeros((t, t), dtype=bool)  # a few disulfide-like cross-links (AF3 token_bonds)
    pairs = rng.integers(0, t, size=(max(1, t // 50), 2))
    bonds[pairs[:, 0], pairs[:, 1]] = bonds[pairs[:, 1], pairs[:, 0]] = True
    feats = {
        "residue_index": residue_index,
        "token_index": np.arange(t),
        "asym_id": asym,
        "entity_id": asym,
        "sym_id": np.zeros(t),
        "restype": restype,
        "mol_type": np.zeros(t),
        "token_center_atom": np.arange(t) * atoms_per_token + 1,
        "token_rep_atom": np.arange(t) * atoms_per_token + 4,
        "token_bonds": bonds,
        "atom_to_token": atom_to_token,
        "atom_to_tokatom_idx": np.tile(np.arange(atoms_per_token), t),
        "ref_pos": ref_pos,
        "ref_mask": np.ones(a, dtype=bool),
        "ref_element": rng.choice([6, 7, 8, 16], size=a, p=[0.6, 0.2, 0.18, 0.02]),
        "ref_charge": np.where(rng.random(a) < 0.02, rng.choice([-1.0, 1.0], size=a), 0.0),
        "ref_atom_name_chars": rng.integers(0, 64, size=(a, ATOM_NAME_CHARS)),
        "ref_space_uid": atom_to_token,
        "msa": msa[:n_msa],
        "deletion_matrix": deletions[:n_msa],
        "profile": profile,
        "deletion_mean": deletions.mean(axis=0),
        "template_restype": np.broadcast_to(restype, (n_templ, t)),
        "template_pseudo_beta": templ_ca,
        "template_pseudo_beta_mask": np.ones((n_templ, t), dtype=bool),
        "template_backbone": backbone,
        "template_backbone_mask": np.ones((n_templ, t), dtype=bool),
    }
    if with_truth:
        feats["atom_pos"] = truth
        feats["atom_resolved"] = np.ones(a, dtype=bool)
    return {
        name: torch.from_numpy(np.ascontiguousarray(np.asarray(value).astype(FEATURES[name][2])))
        for name, value in feats.items()
    }


def randomize_parameters(module: torch.nn.Module, seed: int = 0, scale: float = 1.0) -> torch.nn.Module:
    """Overwrite every trainable parameter with random values (in place), for tests of numerics.

    A fresh network zero-initialises its final projections (every residual block starts as the
    identity), which would make chunked/unchunked or bf16/fp32 comparisons trivially equal. Matrices
    get N(0, scale²/fan_in), vectors (norm weights, biases) 1 or 0 plus N(0, 0.1²).
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            noise = torch.randn(p.shape, generator=g)
            if p.dim() >= 2:
                p.copy_(
                    noise * scale / p.shape[-1] ** 0.5 if p.dim() == 2 else noise * scale / p.shape[-2] ** 0.5
                )
            else:
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(base + 0.1 * noise)
    return module
