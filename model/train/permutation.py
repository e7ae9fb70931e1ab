"""Chain and atom permutation of the ground truth to match a prediction (AF3 supplement §4.2).

Symmetric ground truth (homomer copies, chemically equivalent atoms) admits several equally right
answers; the losses use the one closest to the model's own mini-rollout prediction.

- Chain permutation: chains of one entity whose cropped token layouts are identical (same residue
  indices and atoms per token) may swap. An anchor chain (of the entity with the fewest copies,
  most resolved tokens) is aligned onto each candidate truth copy in turn (AF3's anchor alignment);
  after that superposition the other chains are assigned greedily by centre-atom centroid distance,
  and the candidate with the smallest centre-atom RMSD wins.
- Atom permutation: after a global alignment, each symmetric group (e.g. PHE CD1/CD2 + CE1/CE2)
  is swapped if that brings the truth closer to the prediction.
Imports only torch and numpy.
"""

from __future__ import annotations

import numpy as np
import torch

from model.eval.rmsd import weighted_rigid_align


def _swappable_groups(feats: dict[str, torch.Tensor]) -> list[list[int]]:
    """Lists of asym ids (2 or more) that share an entity and the same cropped atom layout."""
    asym = feats["asym_id"].cpu().numpy()
    entity = feats["entity_id"].cpu().numpy()
    residue = feats["residue_index"].cpu().numpy()
    restype = feats["restype"].cpu().numpy()
    atoms_per_token = np.bincount(feats["atom_to_token"].cpu().numpy(), minlength=len(asym))
    groups: dict[tuple, list[int]] = {}
    for a in np.unique(asym):
        t = asym == a
        key = (int(entity[t][0]), residue[t].tobytes(), restype[t].tobytes(), atoms_per_token[t].tobytes())
        groups.setdefault(key, []).append(int(a))
    return [g for g in groups.values() if len(g) > 1]


def _chain_atoms(feats: dict[str, torch.Tensor], asym_id: int) -> torch.Tensor:
    return torch.nonzero(feats["asym_id"][feats["atom_to_token"]] == asym_id).flatten()


def chain_permutation(
    feats: dict[str, torch.Tensor], x_pred: torch.Tensor, x_gt: torch.Tensor, resolved: torch.Tensor
) -> dict[int, int]:
    """Map predicted chain -> truth chain (asym ids) over swappable groups; identity elsewhere.

    x_pred, x_gt: [A, 3]; resolved: [A] bool.
    """
    groups = _swappable_groups(feats)
    if not groups:
        return {}
    centre = feats["token_center_atom"]
    token_asym = feats["asym_id"]
    centre_ok = resolved[centre]
    n_resolved = {a: int((centre_ok & (token_asym == a)).sum()) for g in groups for a in g}
    anchor_group = min(groups, key=lambda g: (len(g), -max(n_resolved[a] for a in g), g[0]))
    anchor = max(anchor_group, key=lambda a: (n_resolved[a], -a))
    if n_resolved[anchor] < 3:
        return {}
    pred_c, gt_c = x_pred[centre].float(), x_gt[centre].float()
    anchor_tok = torch.nonzero(token_asym == anchor).flatten()
    best, best_err = {}, float("inf")
    for candidate in anchor_group:
        cand_tok = torch.nonzero(token_asym == candidate).flatten()
        mask = centre_ok[anchor_tok] & centre_ok[cand_tok]
        if int(mask.sum()) < 3:
            continue
        # superpose the truth so that copy `candidate` lies on the predicted anchor
        moved = _superpose(gt_c, gt_c[cand_tok][mask], pred_c[anchor_tok][mask])
        mapping = {anchor: candidate}
        for group in groups:
            free = [a for a in group if a not in mapping.values()]
            for p in group:
                if p in mapping:
                    continue
                p_tok = token_asym == p
                p_mean = pred_c[p_tok & centre_ok].mean(0) if bool((p_tok & centre_ok).any()) else None
                if p_mean is None:
                    choice = free[0]
                else:
                    dists = [_centroid_distance(moved, token_asym, centre_ok, g, p_mean) for g in free]
                    choice = free[int(np.argmin(dists))]
                mapping[p] = choice
                free.remove(choice)
        err = _permuted_error(moved, pred_c, token_asym, centre_ok, mapping)
        if err < best_err:
            best, best_err = mapping, err
    return best


def _superpose(points: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Apply to `points` [N, 3] the rigid motion that best maps src [K, 3] onto dst [K, 3]."""
    k = src.shape[0]
    moved = weighted_rigid_align(
        torch.cat([src, points]),
        torch.cat([dst, points]),
        torch.cat([torch.ones(k, device=src.device), torch.zeros(points.shape[0], device=src.device)]),
    )
    return moved[k:]


def _centroid_distance(x: torch.Tensor, token_asym, centre_ok, asym_id: int, target: torch.Tensor) -> float:
    sel = (token_asym == asym_id) & centre_ok
    return float((x[sel].mean(0) - target).norm()) if bool(sel.any()) else float("inf")


def _permuted_error(moved, pred_c, token_asym, centre_ok, mapping: dict[int, int]) -> float:
    total, count = 0.0, 0
    for p, g in mapping.items():
        p_tok = torch.nonzero(token_asym == p).flatten()
        g_tok = torch.nonzero(token_asym == g).flatten()
        ok = centre_ok[p_tok] & centre_ok[g_tok]
        total += float(((pred_c[p_tok][ok] - moved[g_tok][ok]) ** 2).sum())
        count += int(ok.sum())
    return total / max(count, 1)


def apply_chain_permutation(
    feats: dict[str, torch.Tensor], x_gt: torch.Tensor, resolved: torch.Tensor, mapping: dict[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Truth coordinates [A, 3] and resolved mask [A] with chain g's atoms moved to chain p."""
    if all(p == g for p, g in mapping.items()):
        return x_gt, resolved
    new_x, new_r = x_gt.clone(), resolved.clone()
    for p, g in mapping.items():
        if p != g:
            pa, ga = _chain_atoms(feats, p), _chain_atoms(feats, g)
            new_x[pa], new_r[pa] = x_gt[ga], resolved[ga]
    return new_x, new_r


def atom_permutation(
    x_pred: torch.Tensor, x_gt: torch.Tensor, resolved: torch.Tensor, swap_pairs: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Swap symmetric atom groups of the truth where that matches `x_pred` better.

    x_pred, x_gt: [A, 3]; resolved: [A]; swap_pairs: [P, 3] (group, atom_i, atom_j).
    Returns the permuted (x_gt, resolved).
    """
    if swap_pairs.numel() == 0:
        return x_gt, resolved
    group, i, j = swap_pairs.unbind(-1)
    fit = resolved.clone()
    fit[i], fit[j] = False, False  # the ambiguous atoms must not bias the superposition
    aligned = weighted_rigid_align(x_gt, x_pred, (fit if bool(fit.any()) else resolved).float())
    ok = (resolved[i] & resolved[j]).float()
    keep = ((x_pred[i] - aligned[i]) ** 2).sum(-1) + ((x_pred[j] - aligned[j]) ** 2).sum(-1)
    swap = ((x_pred[i] - aligned[j]) ** 2).sum(-1) + ((x_pred[j] - aligned[i]) ** 2).sum(-1)
    n_group = int(group.max()) + 1
    gain = torch.zeros(n_group, device=x_gt.device).index_add_(0, group, (keep - swap).float() * ok)
    do = gain[group] > 0
    if not bool(do.any()):
        return x_gt, resolved
    new_x, new_r = x_gt.clone(), resolved.clone()
    si, sj = i[do], j[do]
    new_x[si], new_x[sj] = x_gt[sj], x_gt[si]
    new_r[si], new_r[sj] = resolved[sj], resolved[si]
    return new_x, new_r


@torch.no_grad()
def permute_ground_truth(
    feats: dict[str, torch.Tensor], aux: dict[str, torch.Tensor], x_pred: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chain then atom permutation of (atom_pos, atom_resolved) to match x_pred [A, 3]."""
    x_gt, resolved = feats["atom_pos"].float(), feats["atom_resolved"]
    mapping = chain_permutation(feats, x_pred.float(), x_gt, resolved)
    x_gt, resolved = apply_chain_permutation(feats, x_gt, resolved, mapping)
    return atom_permutation(x_pred.float(), x_gt, resolved, aux["swap_pairs"])
