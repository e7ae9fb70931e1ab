"""lDDT (Mariani et al. 2013) on atoms: the superposition-free score used for validation, pLDDT
targets (AF3 supplement §4.3.1) and the overfit benchmark. Imports only torch."""

from __future__ import annotations

import torch

LDDT_THRESHOLDS = (0.5, 1.0, 2.0, 4.0)


def lddt_pair_mask(
    x_true: torch.Tensor,
    atom_mask: torch.Tensor,
    cutoff: float | torch.Tensor = 15.0,
    ref_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pairs (l, m) scored by lDDT: both resolved, l != m, true distance below `cutoff`.

    x_true: [..., A, 3]; atom_mask: [..., A] bool; cutoff: a float or [A] per reference atom m
    (AF3 uses 30 Å for nucleotide references, 15 Å otherwise); ref_mask: [A] bool, atoms allowed
    as references m (all when None). Returns [..., A, A] bool.
    """
    d = torch.cdist(x_true.float(), x_true.float())
    n = x_true.shape[-2]
    pair = atom_mask[..., :, None] & atom_mask[..., None, :]
    pair = pair & ~torch.eye(n, dtype=torch.bool, device=x_true.device)
    cutoff_t = torch.as_tensor(cutoff, dtype=d.dtype, device=d.device)
    pair = pair & (d < cutoff_t)
    if ref_mask is not None:
        pair = pair & ref_mask[None, :]
    return pair


def lddt(
    x_pred: torch.Tensor,
    x_true: torch.Tensor,
    atom_mask: torch.Tensor,
    cutoff: float | torch.Tensor = 15.0,
    ref_mask: torch.Tensor | None = None,
    per_atom: bool = False,
) -> torch.Tensor:
    """All-atom lDDT of `x_pred` against `x_true`.

    x_pred: [..., A, 3] (leading sample dims allowed); x_true: [A, 3]; atom_mask: [A] bool.
    Returns [...] in [0, 1] (the mean over all scored pairs), or [..., A] per-atom scores when
    `per_atom` (atoms with no scored pair get 0).
    """
    pair = lddt_pair_mask(x_true, atom_mask, cutoff, ref_mask)
    d_true = torch.cdist(x_true.float(), x_true.float())
    d_pred = torch.cdist(x_pred.float(), x_pred.float())
    err = (d_pred - d_true).abs()
    score = sum((err < t).float() for t in LDDT_THRESHOLDS) / len(LDDT_THRESHOLDS)
    pair_f = pair.float()
    if per_atom:
        return (score * pair_f).sum(-1) / pair_f.sum(-1).clamp_min(1.0)
    return (score * pair_f).sum((-1, -2)) / pair_f.sum().clamp_min(1.0)
