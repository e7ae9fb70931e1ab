"""AF3 training losses (supplement §4): diffusion MSE after weighted rigid alignment, bond, smooth
lDDT, distogram and the confidence losses (pLDDT, PAE, PDE, resolved). Imports only torch.

Shapes: S = diffusion samples, A = atoms, T = tokens. Ground truth is `x_gt` [A, 3] (or [S, A, 3]
when augmented per sample) with `atom_mask` [A] = resolved atoms; masked atoms never contribute.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from model.data.constants import DISTOGRAM_BINS, DISTOGRAM_MAX, DISTOGRAM_MIN, MOL_DNA, MOL_LIGAND, MOL_RNA
from model.eval.lddt import LDDT_THRESHOLDS, lddt
from model.eval.rmsd import weighted_rigid_align

PLDDT_BINS = 50
PAE_BINS = 64  # PAE and PDE: 64 bins of 0.5 Å over [0, 32) Å, the last one open
PAE_MAX = 32.0


def atom_mse_weights(atom_mol_type: torch.Tensor, alpha_dna: float, alpha_rna: float, alpha_ligand: float):
    """Per-atom weights of the diffusion MSE (AF3 eq. 4): 1 + alpha_dna|rna|ligand by molecule type.

    atom_mol_type: [A] int (the atom's token mol_type). Returns [A] float32.
    """
    w = torch.ones(atom_mol_type.shape, dtype=torch.float32, device=atom_mol_type.device)
    w = w + alpha_dna * (atom_mol_type == MOL_DNA) + alpha_rna * (atom_mol_type == MOL_RNA)
    return w + alpha_ligand * (atom_mol_type == MOL_LIGAND)


def edm_loss_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """EDM weighting (sigma^2 + sigma_data^2) / (sigma * sigma_data)^2 of AF3 eq. 6. sigma: [S]."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def sample_noise_levels(n: int, sigma_data: float, generator: torch.Generator) -> torch.Tensor:
    """Training noise levels sigma = sigma_data * exp(-1.2 + 1.5 N(0, 1)) (AF3 §3.7.1). Returns [n]."""
    z = torch.randn(n, generator=generator, device=generator.device)
    return sigma_data * torch.exp(-1.2 + 1.5 * z)


def mse_loss(
    x_pred: torch.Tensor, x_gt: torch.Tensor, weights: torch.Tensor, atom_mask: torch.Tensor
) -> torch.Tensor:
    """Weighted MSE after aligning the ground truth onto the prediction (AF3 eq. 3, Algorithm 28).

    x_pred, x_gt: [S, A, 3]; weights: [A]; atom_mask: [A] bool.
    L = 1/3 mean_l w_l |x_l - align(x_gt)_l|^2 over resolved atoms. Returns [S].
    """
    x_aligned = weighted_rigid_align(x_gt, x_pred, weights, atom_mask)
    sq = ((x_pred.float() - x_aligned) ** 2).sum(-1)  # [S, A]
    m = atom_mask.float()
    return (weights * m * sq).sum(-1) / (3.0 * m.sum().clamp_min(1.0))


def bond_loss(
    x_pred: torch.Tensor, x_gt: torch.Tensor, bond_pairs: torch.Tensor, atom_mask: torch.Tensor
) -> torch.Tensor:
    """Bond-length loss on bonded ligands (AF3 eq. 5): mean over pairs of (|x_l-x_m| - |gt_l-gt_m|)^2.

    x_pred: [S, A, 3]; x_gt: [A, 3] or [S, A, 3]; bond_pairs: [P, 2] atom indices; returns [S]
    (zero when no pair has both atoms resolved).
    """
    if bond_pairs.numel() == 0:
        return x_pred.new_zeros(x_pred.shape[0], dtype=torch.float32)
    l, m = bond_pairs[:, 0], bond_pairs[:, 1]
    keep = (atom_mask[l] & atom_mask[m]).float()
    d_pred = (x_pred[..., l, :].float() - x_pred[..., m, :].float()).norm(dim=-1)
    d_gt = (x_gt[..., l, :].float() - x_gt[..., m, :].float()).norm(dim=-1)
    return ((d_pred - d_gt) ** 2 * keep).sum(-1) / keep.sum().clamp_min(1.0)


def _smooth_lddt_sum(x_pred: torch.Tensor, l: torch.Tensor, m: torch.Tensor, d_gt: torch.Tensor):
    """Sum over the given pairs of AF3 Algorithm 27's eps_lm. x_pred: [S, A, 3]; l, m, d_gt: [P]."""
    d_pred = (x_pred[:, l] - x_pred[:, m]).norm(dim=-1)  # [S, P]
    delta = (d_pred - d_gt).abs()
    return (sum(torch.sigmoid(t - delta) for t in LDDT_THRESHOLDS) / len(LDDT_THRESHOLDS)).sum(-1)


def smooth_lddt_loss(
    x_pred: torch.Tensor,
    x_gt: torch.Tensor,
    is_nucleotide: torch.Tensor,
    atom_mask: torch.Tensor,
    chunk_pairs: int = 1 << 16,
) -> torch.Tensor:
    """Smooth lDDT loss (AF3 Algorithm 27): 1 - sum_lm c_lm eps_lm / sum_lm c_lm.

    x_pred: [S, A, 3]; x_gt: [A, 3] (distances only, so the un-augmented truth); is_nucleotide: [A]
    bool (30 Å inclusion radius for nucleotide atoms l, 15 Å otherwise); atom_mask: [A] bool.
    Only pairs inside the radius are gathered, in chunks of `chunk_pairs` under activation
    checkpointing, so memory stays O(S * chunk) instead of O(S * pairs) or O(S * A^2) (48 samples
    x 3,000 atoms hold ~1.5 M pairs). Returns [S].
    """
    gt = x_gt.float()
    d_gt = torch.cdist(gt, gt)
    radius = torch.where(is_nucleotide, 30.0, 15.0).to(d_gt)[:, None]
    pair = (d_gt < radius) & atom_mask[:, None] & atom_mask[None, :]
    pair.fill_diagonal_(False)
    l, m = pair.nonzero(as_tuple=True)
    if l.numel() == 0:
        return x_pred.new_zeros(x_pred.shape[0], dtype=torch.float32)
    d_gt = d_gt[l, m]
    x = x_pred.float()
    total = x.new_zeros(x.shape[0])
    for lo in range(0, l.numel(), chunk_pairs):
        sl = slice(lo, lo + chunk_pairs)
        if x.requires_grad:
            total = total + checkpoint(_smooth_lddt_sum, x, l[sl], m[sl], d_gt[sl], use_reentrant=False)
        else:
            total = total + _smooth_lddt_sum(x, l[sl], m[sl], d_gt[sl])
    return 1.0 - total / l.numel()


def distogram_loss(
    logits: torch.Tensor, x_gt: torch.Tensor, rep_atom: torch.Tensor, atom_mask: torch.Tensor
) -> torch.Tensor:
    """Distogram cross-entropy (AF3 §4.4): 64 bins over [2, 22] Å between representative atoms.

    logits: [T, T, 64]; x_gt: [A, 3]; rep_atom: [T] atom indices; atom_mask: [A]. Returns a scalar.
    """
    boundaries = torch.linspace(DISTOGRAM_MIN, DISTOGRAM_MAX, DISTOGRAM_BINS - 1, device=logits.device)
    rep = x_gt[rep_atom].float()
    target = torch.bucketize(torch.cdist(rep, rep), boundaries)
    ok = atom_mask[rep_atom]
    pair = (ok[:, None] & ok[None, :]).float()
    ce = F.cross_entropy(logits.float().permute(2, 0, 1)[None], target[None], reduction="none")[0]
    return (ce * pair).sum() / pair.sum().clamp_min(1.0)


def _binned_ce(logits: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, n_bins: int, vmax: float):
    """Cross-entropy of `logits` [..., n_bins] against `values` binned uniformly over [0, vmax)."""
    target = (values / (vmax / n_bins)).floor().clamp(0, n_bins - 1).long()
    ce = F.cross_entropy(logits.float().movedim(-1, 1), target, reduction="none")
    m = mask.float().expand_as(ce)
    return (ce * m).sum() / m.sum().clamp_min(1.0)


def plddt_loss(
    logits: torch.Tensor,
    x_pred: torch.Tensor,
    x_gt: torch.Tensor,
    atom_mask: torch.Tensor,
    ref_mask: torch.Tensor,
    ref_is_nucleotide: torch.Tensor,
) -> torch.Tensor:
    """pLDDT loss (AF3 §4.3.1): per-atom lDDT of the rollout binned into 50 bins over [0, 1].

    logits: [S, A, 50]; x_pred: [S, A, 3]; x_gt: [A, 3]; ref_mask: [A] bool, the reference atoms
    (polymer token centre atoms); ref_is_nucleotide: [A] bool (30 Å radius for those, else 15 Å).
    Returns a scalar.
    """
    cutoff = torch.where(ref_is_nucleotide, 30.0, 15.0).to(x_gt.device)
    per_atom = lddt(x_pred, x_gt, atom_mask, cutoff=cutoff, ref_mask=ref_mask, per_atom=True)  # [S, A]
    target = (per_atom * PLDDT_BINS).floor().clamp(0, PLDDT_BINS - 1).long()
    ce = F.cross_entropy(logits.float().movedim(-1, 1), target, reduction="none")
    m = atom_mask.float().expand_as(ce)
    return (ce * m).sum() / m.sum().clamp_min(1.0)


def express_in_frames(x: torch.Tensor, frame_atoms: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Coordinates of atoms `points` in each token's frame (AF3 Algorithms 29-30).

    x: [..., A, 3]; frame_atoms: [T, 3] atom indices (a, b, c) with b the origin; points: [T] atom
    indices. Returns [..., T_frame, T_point, 3].
    """
    a, b, c = (x[..., frame_atoms[:, k], :].float() for k in range(3))
    w1 = F.normalize(a - b, dim=-1, eps=1e-6)
    w2 = F.normalize(c - b, dim=-1, eps=1e-6)
    e1 = F.normalize(w1 + w2, dim=-1, eps=1e-6)
    e2 = F.normalize(w2 - w1, dim=-1, eps=1e-6)
    e3 = torch.cross(e1, e2, dim=-1)
    d = x[..., None, points, :].float() - b[..., :, None, :]  # [..., T, T, 3]
    basis = torch.stack([e1, e2, e3], dim=-2)  # [..., T, 3, 3]
    return torch.einsum("...iak,...ijk->...ija", basis, d)


def pae_loss(
    logits: torch.Tensor,
    x_pred: torch.Tensor,
    x_gt: torch.Tensor,
    frame_atoms: torch.Tensor,
    frame_mask: torch.Tensor,
    center_atom: torch.Tensor,
    atom_mask: torch.Tensor,
) -> torch.Tensor:
    """PAE loss (AF3 §4.3.2): e_ij = |T_i^-1 x_j - T_i,gt^-1 x_j,gt| binned into 64 x 0.5 Å.

    logits: [S, T, T, 64]; x_pred: [S, A, 3]; x_gt: [A, 3]; frame_atoms: [T, 3]; frame_mask: [T]
    bool (valid frames with resolved atoms); center_atom: [T]. Returns a scalar.
    """
    local_pred = express_in_frames(x_pred, frame_atoms, center_atom)
    err = (local_pred - express_in_frames(x_gt, frame_atoms, center_atom)).norm(dim=-1)  # [S, T, T]
    mask = frame_mask[:, None] & atom_mask[center_atom][None, :]
    return _binned_ce(logits, err, mask, PAE_BINS, PAE_MAX)


def pde_loss(
    logits: torch.Tensor, x_pred: torch.Tensor, x_gt: torch.Tensor, center_atom: torch.Tensor, atom_mask
) -> torch.Tensor:
    """PDE loss (AF3 §4.3.3): | |x_i - x_j| - |gt_i - gt_j| | over token centres, 64 x 0.5 Å bins.

    logits: [S, T, T, 64]; x_pred: [S, A, 3]; x_gt: [A, 3]; center_atom: [T]. Returns a scalar.
    """
    p = x_pred[..., center_atom, :].float()
    g = x_gt[center_atom].float()
    err = (torch.cdist(p, p) - torch.cdist(g, g)).abs()
    ok = atom_mask[center_atom]
    return _binned_ce(logits, err, ok[:, None] & ok[None, :], PAE_BINS, PAE_MAX)


def resolved_loss(logits: torch.Tensor, atom_resolved: torch.Tensor, atom_present: torch.Tensor):
    """Experimentally-resolved loss (AF3 §4.3.4): 2-class cross-entropy per atom.

    logits: [S, A, 2]; atom_resolved: [A] bool target; atom_present: [A] bool (real atoms).
    Returns a scalar.
    """
    target = atom_resolved.long().expand(logits.shape[:-1])
    ce = F.cross_entropy(logits.float().movedim(-1, 1), target, reduction="none")
    m = atom_present.float().expand_as(ce)
    return (ce * m).sum() / m.sum().clamp_min(1.0)
