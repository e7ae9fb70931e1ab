"""The random placement of reference conformers in `ref_pos` (AF3 supplement §2.8, Table 5).

Each reference space (`ref_space_uid`, one residue instance) is centred on the mean of its atoms,
shifted by a vector drawn uniformly from [-1, 1]³ Å and turned by a uniformly random rotation, as
Protenix's featurizer does at training and at inference. The featurizer applies it once with a
generator seeded by its `seed` (recorded in the store's `ref_pos_seed` attribute), so stored features
and predictions are reproducible; training draws a fresh placement per example slot from the slot's
seeded generator. Needs only numpy (GPU nodes load features without the chemistry stack).
"""

from __future__ import annotations

import numpy as np

MAX_SHIFT = 1.0  # Å, each axis


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` rotation matrices, uniform over SO(3) (normalised Gaussian quaternions). -> [n, 3, 3]"""
    q = rng.normal(size=(n, 4))
    w, x, y, z = (q / np.linalg.norm(q, axis=1, keepdims=True)).T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], axis=-1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], axis=-1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=-1),
        ],
        axis=-2,
    )


def place_reference_spaces(
    ref_pos: np.ndarray, ref_space_uid: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Centre each reference space, shift it by up to `MAX_SHIFT` per axis, then rotate it.

    ref_pos [N_atom, 3], ref_space_uid [N_atom] -> [N_atom, 3] float32. Spaces draw their rotation and
    shift in increasing uid order; every atom of a space counts towards its centre (as Protenix).
    """
    pos = np.asarray(ref_pos, dtype=np.float64)
    uids, group = np.unique(np.asarray(ref_space_uid), return_inverse=True)
    n_group = len(uids)
    counts = np.bincount(group, minlength=n_group)[:, None]
    centres = np.stack([np.bincount(group, weights=pos[:, k], minlength=n_group) for k in range(3)], -1)
    rotations = random_rotations(n_group, rng)
    shifts = rng.uniform(-MAX_SHIFT, MAX_SHIFT, size=(n_group, 3))
    local = pos - centres[group] / np.maximum(counts[group], 1) + shifts[group]
    return np.einsum("aij,aj->ai", rotations[group], local).astype(np.float32)
