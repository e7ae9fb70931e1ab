"""AF3 losses on hand-built cases whose answers follow from the definitions."""

from __future__ import annotations

import math

import torch

from model.data.constants import MOL_DNA, MOL_LIGAND, MOL_PROTEIN, MOL_RNA
from model.train import losses


def _rotation(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    return (q * torch.sign(torch.linalg.det(q))).float()


def _coords(n: int, seed: int = 0, scale: float = 6.0) -> torch.Tensor:
    return torch.randn(n, 3, generator=torch.Generator().manual_seed(seed)) * scale


def test_mse_zero_after_rigid_motion_and_invariant():
    gt = _coords(50)
    mask = torch.ones(50, dtype=torch.bool)
    w = losses.atom_mse_weights(torch.tensor([MOL_PROTEIN] * 40 + [MOL_LIGAND] * 10), 5.0, 5.0, 10.0)
    moved = (gt @ _rotation(1).T + 4.0)[None]
    assert losses.mse_loss(moved, gt[None], w, mask).item() < 1e-8
    pred = (gt + torch.randn(50, 3, generator=torch.Generator().manual_seed(2)))[None]
    a = losses.mse_loss(pred, gt[None], w, mask)
    b = losses.mse_loss(pred @ _rotation(3).T - 9.0, gt[None], w, mask)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    # the optimal superposition cannot do worse than the identity
    unaligned = (w * ((pred[0] - gt) ** 2).sum(-1)).mean() / 3
    assert 0 < a.item() <= unaligned.item() + 1e-6


def test_mse_weights_and_masking():
    mol = torch.tensor([MOL_PROTEIN, MOL_DNA, MOL_RNA, MOL_LIGAND])
    weights = losses.atom_mse_weights(mol, 5.0, 5.0, 10.0)
    torch.testing.assert_close(weights, torch.tensor([1.0, 6.0, 6.0, 11.0]))
    gt = _coords(20, 4)
    pred = gt.clone()
    pred[7] += 50.0  # a wild unresolved atom must not count
    mask = torch.ones(20, dtype=torch.bool)
    mask[7] = False
    assert losses.mse_loss(pred[None], gt[None], torch.ones(20), mask).item() < 1e-8


def test_edm_weight_and_noise_levels():
    s = torch.tensor([16.0, 4.0])
    expected = torch.tensor([2 / 256, (16 + 256) / (64.0**2)])
    torch.testing.assert_close(losses.edm_loss_weight(s, 16.0), expected)
    sig = losses.sample_noise_levels(20000, 16.0, torch.Generator().manual_seed(0))
    log = torch.log(sig / 16.0)
    assert abs(log.mean().item() + 1.2) < 0.05 and abs(log.std().item() - 1.5) < 0.05


def test_bond_loss_stretched_bond():
    gt = torch.tensor([[0.0, 0, 0], [1.5, 0, 0], [0.0, 3.0, 0]])
    pred = gt.clone()
    pred[1, 0] = 2.0  # bond 0-1 stretched by 0.5 Å
    pairs = torch.tensor([[0, 1], [0, 2]])
    mask = torch.ones(3, dtype=torch.bool)
    # mean over the two bonds of (0.5^2, 0)
    assert math.isclose(losses.bond_loss(pred[None], gt, pairs, mask).item(), 0.125, rel_tol=1e-6)
    assert losses.bond_loss(pred[None], gt, torch.zeros(0, 2, dtype=torch.long), mask).item() == 0.0


def test_smooth_lddt_identity_value_and_perturbation():
    gt = _coords(30, 5, scale=3.0)
    mask = torch.ones(30, dtype=torch.bool)
    nuc = torch.zeros(30, dtype=torch.bool)
    perfect = losses.smooth_lddt_loss(gt[None] @ _rotation(6).T, gt, nuc, mask)
    expected = 1 - sum(1 / (1 + math.exp(-t)) for t in (0.5, 1, 2, 4)) / 4
    assert math.isclose(perfect.item(), expected, rel_tol=1e-5)
    noisy = gt + 3.0 * torch.randn(30, 3, generator=torch.Generator().manual_seed(7))
    assert losses.smooth_lddt_loss(noisy[None], gt, nuc, mask).item() > perfect.item() + 0.1


def test_distogram_loss_bins():
    # two tokens 10 Å apart: bin index = #boundaries below 10 of linspace(2, 22, 63) = 25
    gt = torch.tensor([[0.0, 0, 0], [10.0, 0, 0]])
    rep = torch.tensor([0, 1])
    mask = torch.ones(2, dtype=torch.bool)
    target = torch.tensor([[0, 25], [25, 0]])
    logits = torch.full((2, 2, 64), -30.0)
    logits[torch.arange(2)[:, None], torch.arange(2)[None, :], target] = 30.0
    assert losses.distogram_loss(logits, gt, rep, mask).item() < 1e-6
    shifted = logits.roll(1, dims=-1)
    assert losses.distogram_loss(shifted, gt, rep, mask).item() > 10


def test_frames_and_pae_pde_invariance():
    gt = _coords(12, 8, scale=4.0)
    frames = torch.tensor([[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]])
    center = frames[:, 1]
    moved = gt @ _rotation(9).T + 5.0
    local_moved = losses.express_in_frames(moved, frames, center)
    torch.testing.assert_close(local_moved, losses.express_in_frames(gt, frames, center), atol=1e-4, rtol=0)
    # the origin atom of frame i sits at 0 in its own frame
    local = losses.express_in_frames(gt, frames, center)
    assert local[torch.arange(4), torch.arange(4)].abs().max() < 1e-5
    mask = torch.ones(12, dtype=torch.bool)
    fmask = torch.ones(4, dtype=torch.bool)
    logits = torch.full((1, 4, 4, 64), -30.0)
    logits[..., 0] = 30.0  # all mass on the zero-error bin
    assert losses.pae_loss(logits, moved[None], gt, frames, fmask, center, mask).item() < 1e-6
    assert losses.pde_loss(logits, moved[None], gt, center, mask).item() < 1e-6
    bent = moved.clone()
    bent[10] += 6.0
    assert losses.pae_loss(logits, bent[None], gt, frames, fmask, center, mask).item() > 1


def test_plddt_and_resolved_targets():
    gt = _coords(10, 10, scale=3.0)
    mask = torch.ones(10, dtype=torch.bool)
    refs = torch.ones(10, dtype=torch.bool)
    nuc = torch.zeros(10, dtype=torch.bool)
    logits = torch.full((1, 10, 50), -30.0)
    logits[..., 49] = 30.0  # perfect prediction -> lDDT 1 -> last bin
    assert losses.plddt_loss(logits, gt[None], gt, mask, refs, nuc).item() < 1e-6
    assert losses.plddt_loss(logits.roll(1, -1), gt[None], gt, mask, refs, nuc).item() > 10
    resolved = torch.tensor([True, False] * 5)
    rl = torch.stack([(~resolved).float(), resolved.float()], -1)[None] * 40 - 20
    assert losses.resolved_loss(rl, resolved, mask).item() < 1e-6


def test_smooth_lddt_chunking_matches_one_chunk_with_gradients():
    g = torch.Generator().manual_seed(11)
    gt = torch.randn(120, 3, generator=g) * 6
    x = (gt + torch.randn(3, 120, 3, generator=g)).requires_grad_()
    nuc = torch.arange(120) < 30
    mask = torch.rand(120, generator=g) > 0.1
    whole = losses.smooth_lddt_loss(x, gt, nuc, mask, chunk_pairs=1 << 30)
    (g_whole,) = torch.autograd.grad(whole.sum(), x)
    chunked = losses.smooth_lddt_loss(x, gt, nuc, mask, chunk_pairs=97)
    (g_chunked,) = torch.autograd.grad(chunked.sum(), x)
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(g_chunked, g_whole, atol=1e-7, rtol=1e-5)
