"""Weighted rigid alignment (AF3 supplement Algorithm 28) and RMSD. Imports only torch."""

from __future__ import annotations

import torch


def weighted_rigid_align(
    x: torch.Tensor, x_ref: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Superimpose `x` onto `x_ref` with the weighted Kabsch algorithm (AF3 Algorithm 28).

    x, x_ref: [..., A, 3]; weights: [..., A] (or [A]); mask: [..., A] bool, atoms left out of the fit.
    Returns `x` moved rigidly (proper rotation, no reflection) onto `x_ref`, detached from the graph
    as Algorithm 28 ends with stop_gradient. Computed in float32 whatever the input dtype.
    """
    dtype = x.dtype
    x = x.detach().float()
    x_ref = x_ref.detach().float()
    w = weights.detach().float().expand(x.shape[:-1])
    if mask is not None:
        w = w * mask.float().expand(x.shape[:-1])
    w = w.unsqueeze(-1)  # [..., A, 1]
    w_sum = w.sum(dim=-2, keepdim=True).clamp_min(1e-8)
    mu = (w * x).sum(dim=-2, keepdim=True) / w_sum
    mu_ref = (w * x_ref).sum(dim=-2, keepdim=True) / w_sum
    xc, xc_ref = x - mu, x_ref - mu_ref
    # Covariance H = sum_l w_l x_l x_ref_l^T; R = V diag(1,1,d) U^T minimises sum w |R x - x_ref|^2.
    h = torch.einsum("...la,...lb->...ab", w * xc, xc_ref)
    u, _, vh = torch.linalg.svd(h)
    v = vh.transpose(-1, -2)
    d = torch.sign(torch.linalg.det(v @ u.transpose(-1, -2)))
    d = torch.where(d == 0, torch.ones_like(d), d)
    flip = torch.ones(*d.shape, 3, dtype=x.dtype, device=x.device)
    flip[..., 2] = d
    rot = v @ torch.diag_embed(flip) @ u.transpose(-1, -2)
    return (torch.einsum("...ab,...lb->...la", rot, xc) + mu_ref).to(dtype)


def rmsd(
    x: torch.Tensor, x_ref: torch.Tensor, mask: torch.Tensor | None = None, align: bool = True
) -> torch.Tensor:
    """Root-mean-square deviation over masked atoms, after optimal superposition when `align`.

    x, x_ref: [..., A, 3]; mask: [..., A] bool. Returns [...] in the units of the input (Å).
    """
    m = torch.ones(x.shape[:-1], device=x.device) if mask is None else mask.float().expand(x.shape[:-1])
    if align:
        x = weighted_rigid_align(x, x_ref, m)
    sq = ((x.float() - x_ref.float()) ** 2).sum(-1)
    return torch.sqrt((sq * m).sum(-1) / m.sum(-1).clamp_min(1.0))
