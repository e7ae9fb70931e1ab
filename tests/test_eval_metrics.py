"""lDDT, RMSD and weighted rigid alignment on hand-built coordinates with known answers."""

from __future__ import annotations

import math

import torch

from model.eval.lddt import lddt
from model.eval.rmsd import rmsd, weighted_rigid_align


def _rotation(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    return (q * torch.sign(torch.linalg.det(q))).float()  # proper rotation


def test_alignment_undoes_rigid_motion_but_not_reflection():
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0)) * 5
    rot = _rotation(1)
    moved = x @ rot.T + torch.tensor([3.0, -7.0, 11.0])
    aligned = weighted_rigid_align(moved, x, torch.rand(40) + 0.1)
    torch.testing.assert_close(aligned, x, atol=1e-4, rtol=0)
    assert rmsd(moved, x).item() < 1e-4
    mirrored = x * torch.tensor([1.0, 1.0, -1.0])
    assert rmsd(mirrored, x).item() > 0.5  # a proper rotation cannot undo a reflection


def test_rmsd_without_alignment_one_atom_moved():
    x = torch.randn(25, 3, generator=torch.Generator().manual_seed(2))
    y = x.clone()
    y[3] += torch.tensor([0.0, 3.0, 4.0])  # 5 Å displacement
    assert math.isclose(rmsd(y, x, align=False).item(), 5.0 / math.sqrt(25), rel_tol=1e-5)
    mask = torch.ones(25, dtype=torch.bool)
    mask[3] = False
    assert rmsd(y, x, mask=mask, align=False).item() < 1e-6


def test_lddt_line_of_three_atoms():
    true = torch.tensor([[0.0, 0, 0], [5.0, 0, 0], [10.0, 0, 0]])
    pred = true.clone()
    pred[2, 0] = 11.5  # 1.5 Å error to both partners: passes the 2 and 4 Å thresholds only
    mask = torch.ones(3, dtype=torch.bool)
    assert lddt(true, true, mask).item() == 1.0
    # ordered pairs: (0,1),(1,0) score 1; the four pairs with atom 2 score 0.5
    assert math.isclose(lddt(pred, true, mask).item(), (2 + 4 * 0.5) / 6, rel_tol=1e-6)
    per_atom = lddt(pred, true, mask, per_atom=True)
    torch.testing.assert_close(per_atom, torch.tensor([0.75, 0.75, 0.5]))
    # a 20 Å radius excluded pair (0,2) at 10 Å stays in; a 8 Å cutoff drops it
    assert math.isclose(lddt(pred, true, mask, cutoff=8.0).item(), (2 + 2 * 0.5) / 4, rel_tol=1e-6)


def test_lddt_is_invariant_to_rigid_motion_and_batched():
    x = torch.randn(30, 3, generator=torch.Generator().manual_seed(3)) * 4
    noisy = x + 0.7 * torch.randn(30, 3, generator=torch.Generator().manual_seed(4))
    mask = torch.ones(30, dtype=torch.bool)
    moved = noisy @ _rotation(5).T + 2.0
    batch = torch.stack([noisy, moved])
    scores = lddt(batch, x, mask)
    assert scores.shape == (2,)
    assert abs(scores[0] - scores[1]) < 1e-5 and 0.0 < scores[0] < 1.0
