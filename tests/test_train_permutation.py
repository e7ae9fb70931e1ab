"""Chain and atom permutation of symmetric ground truth (AF3 §4.2) on hand-built homodimers."""

from __future__ import annotations

import torch

from model.train.permutation import atom_permutation, chain_permutation, permute_ground_truth


def _dimer(n_res: int = 6, atoms_per_res: int = 3, seed: int = 0) -> tuple[dict, torch.Tensor]:
    """Two copies of one entity (asym 0 and 1), far apart, plus a ligand (asym 2)."""
    g = torch.Generator().manual_seed(seed)
    n_tok = 2 * n_res + 1
    asym = torch.tensor([0] * n_res + [1] * n_res + [2])
    entity = torch.tensor([0] * (2 * n_res) + [1])
    residue = torch.tensor(list(range(1, n_res + 1)) * 2 + [1])
    restype = torch.tensor([3] * (2 * n_res) + [20])
    counts = [atoms_per_res] * (2 * n_res) + [1]
    atom_to_token = torch.repeat_interleave(torch.arange(n_tok), torch.tensor(counts))
    starts = torch.cumsum(torch.tensor([0] + counts[:-1]), 0)
    chain = torch.cumsum(torch.randn(n_res * atoms_per_res, 3, generator=g) * 1.5, 0)
    pos = torch.cat([chain, chain @ torch.diag(torch.tensor([-1.0, -1.0, 1.0])) + 30.0, torch.zeros(1, 3)])
    feats = {
        "asym_id": asym, "entity_id": entity, "residue_index": residue, "restype": restype,
        "atom_to_token": atom_to_token, "token_center_atom": starts + (torch.tensor(counts) > 1).long(),
        "atom_pos": pos, "atom_resolved": torch.ones(len(pos), dtype=torch.bool),
    }  # fmt: skip
    return feats, pos


def _rigid(x: torch.Tensor) -> torch.Tensor:
    c, s = 0.6, 0.8
    rot = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return x @ rot.T + torch.tensor([5.0, -3.0, 2.0])


def test_swapped_homodimer_is_mapped_back():
    feats, gt = _dimer()
    n = (feats["asym_id"][feats["atom_to_token"]] == 0).sum()
    # the prediction placed copy B where copy A is in the truth and vice versa (then moved rigidly)
    pred = torch.cat([gt[n : 2 * n], gt[:n], gt[2 * n :]])
    pred = _rigid(pred)
    mapping = chain_permutation(feats, pred, gt, feats["atom_resolved"])
    assert mapping[0] == 1 and mapping[1] == 0
    new_gt, _ = permute_ground_truth(feats, {"swap_pairs": torch.zeros(0, 3, dtype=torch.long)}, pred)
    # after the permutation the truth's chain A holds copy B's coordinates and vice versa
    assert torch.equal(new_gt[:n], gt[n : 2 * n]) and torch.equal(new_gt[n : 2 * n], gt[:n])


def test_unswapped_prediction_keeps_identity():
    feats, gt = _dimer(seed=1)
    mapping = chain_permutation(feats, _rigid(gt), gt, feats["atom_resolved"])
    assert all(p == g for p, g in mapping.items())


def test_different_layouts_never_swap():
    feats, gt = _dimer(seed=2)
    feats["residue_index"] = feats["residue_index"].clone()
    feats["residue_index"][6:12] += 1  # copy B covers other residues in the crop
    assert chain_permutation(feats, gt, gt, feats["atom_resolved"]) == {}


def test_symmetric_atoms_swap_when_closer():
    g = torch.Generator().manual_seed(3)
    gt = torch.randn(10, 3, generator=g) * 3
    pred = gt.clone()
    pred[[4, 5]] = gt[[5, 4]]  # e.g. OD1/OD2 named the other way round
    resolved = torch.ones(10, dtype=torch.bool)
    swaps = torch.tensor([[0, 4, 5], [1, 7, 8]])
    new_gt, _ = atom_permutation(_rigid(pred), gt, resolved, swaps)
    assert torch.equal(new_gt[4], gt[5]) and torch.equal(new_gt[5], gt[4])
    assert torch.equal(new_gt[7], gt[7]) and torch.equal(new_gt[8], gt[8])  # group 1 stays
