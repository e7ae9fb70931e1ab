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
    pair_select: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pairs (l, m) scored by lDDT: both resolved, l != m, true distance below `cutoff`.

    x_true: [..., A, 3]; atom_mask: [..., A] bool; cutoff: a float or [A] per reference atom m
    (AF3 uses 30 Å for nucleotide references, 15 Å otherwise); ref_mask: [A] bool, atoms allowed
    as references m (all when None); pair_select: [A, A] bool, the pairs a partial score keeps
    (one chain, one interface). Returns [..., A, A] bool.
    """
    d = torch.cdist(x_true.float(), x_true.float())
    n = x_true.shape[-2]
    pair = atom_mask[..., :, None] & atom_mask[..., None, :]
    pair = pair & ~torch.eye(n, dtype=torch.bool, device=x_true.device)
    cutoff_t = torch.as_tensor(cutoff, dtype=d.dtype, device=d.device)
    pair = pair & (d < cutoff_t)
    if ref_mask is not None:
        pair = pair & ref_mask[None, :]
    if pair_select is not None:
        pair = pair & pair_select
    return pair


def lddt(
    x_pred: torch.Tensor,
    x_true: torch.Tensor,
    atom_mask: torch.Tensor,
    cutoff: float | torch.Tensor = 15.0,
    ref_mask: torch.Tensor | None = None,
    per_atom: bool = False,
    pair_select: torch.Tensor | None = None,
) -> torch.Tensor:
    """All-atom lDDT of `x_pred` against `x_true`.

    x_pred: [..., A, 3] (leading sample dims allowed); x_true: [A, 3]; atom_mask: [A] bool.
    Returns [...] in [0, 1] (the mean over all scored pairs), or [..., A] per-atom scores when
    `per_atom` (atoms with no scored pair get 0). pair_select: [A, A] bool restricts the scored
    pairs (see `lddt_pair_mask`).
    """
    pair = lddt_pair_mask(x_true, atom_mask, cutoff, ref_mask, pair_select)
    d_true = torch.cdist(x_true.float(), x_true.float())
    d_pred = torch.cdist(x_pred.float(), x_pred.float())
    err = (d_pred - d_true).abs()
    score = sum((err < t).float() for t in LDDT_THRESHOLDS) / len(LDDT_THRESHOLDS)
    pair_f = pair.float()
    if per_atom:
        return (score * pair_f).sum(-1) / pair_f.sum(-1).clamp_min(1.0)
    return (score * pair_f).sum((-1, -2)) / pair_f.sum().clamp_min(1.0)


NUCLEIC_INCLUSION_RADIUS = 30.0
INCLUSION_RADIUS = 15.0


def lddt_breakdown(
    x_pred: torch.Tensor,
    x_true: torch.Tensor,
    atom_chain: torch.Tensor,
    is_nucleotide: torch.Tensor,
    chain_names: list[str],
    ligand_chains: list[int],
    chunk: int = 512,
) -> dict:
    """All-atom lDDT of one model, whole and in parts (AF3's evaluation: thresholds 0.5/1/2/4 Å,
    inclusion radius 15 Å, 30 Å where the reference atom m is a nucleotide atom).

    x_pred, x_true: [A, 3] matched atoms; atom_chain: [A] chain index; is_nucleotide: [A] bool;
    chain_names: [C]; ligand_chains: chain indices scored as ligands; chunk: rows of atoms l
    scored at once.
    Returns {"global", "chains": {name: v}, "interfaces": {"A-B": v}, "ligands": {name: v}}:
    a chain scores pairs inside it; an interface the pairs with one atom in each chain (only
    chains with a pair within the radius); a ligand every pair with its first atom l in the ligand.
    """
    cutoff = torch.where(is_nucleotide, NUCLEIC_INCLUSION_RADIUS, INCLUSION_RADIUS).float()
    chains = sorted(int(c) for c in torch.unique(atom_chain))
    onehot = (atom_chain[:, None] == torch.as_tensor(chains, device=atom_chain.device)[None, :]).float()
    # Sums of pair scores and pair counts per (chain of l, chain of m), in row chunks of l so that
    # memory stays [chunk, A] however large the complex.
    score_sum = torch.zeros(len(chains), len(chains), dtype=torch.float64)
    count = torch.zeros(len(chains), len(chains), dtype=torch.float64)
    x_pred, x_true = x_pred.float(), x_true.float()
    for lo in range(0, x_true.shape[0], chunk):
        rows = slice(lo, lo + chunk)
        d_true = torch.cdist(x_true[rows], x_true)
        err = (torch.cdist(x_pred[rows], x_pred) - d_true).abs()
        pair = d_true < cutoff[None, :]
        idx = torch.arange(lo, lo + pair.shape[0], device=pair.device)
        pair[torch.arange(pair.shape[0], device=pair.device), idx] = False
        score = sum((err < t).float() for t in LDDT_THRESHOLDS) / len(LDDT_THRESHOLDS) * pair
        score_sum += (onehot[rows].T @ score @ onehot).double().cpu()
        count += (onehot[rows].T @ pair.float() @ onehot).double().cpu()

    def ratio(s: torch.Tensor, n: torch.Tensor) -> float | None:
        return float(s.sum() / n.sum()) if float(n.sum()) > 0 else None

    out: dict = {"global": ratio(score_sum, count), "chains": {}, "interfaces": {}, "ligands": {}}
    for i, a in enumerate(chains):
        if (value := ratio(score_sum[i, i], count[i, i])) is not None:
            out["chains"][chain_names[a]] = value
        if a in ligand_chains:
            out["ligands"][chain_names[a]] = ratio(score_sum[i], count[i])
        for j in range(i + 1, len(chains)):
            value = ratio(score_sum[[i, j], [j, i]], count[[i, j], [j, i]])
            if value is not None:
                out["interfaces"][f"{chain_names[a]}-{chain_names[chains[j]]}"] = value
    return out
