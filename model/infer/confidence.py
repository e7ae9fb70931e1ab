"""Confidence metrics from the confidence head's logits and the sampled coordinates (AF3 §5.9).

torch/numpy only (runs on GPU nodes). All functions take a leading sample dimension S.

- pLDDT per atom: expected value over 50 bins on [0, 1], times 100.
- PAE, PDE: expected value over 64 bins on [0, 32] Å.
- pTM / ipTM (AF3 §5.9.1, eq. 17-19): TM-score style expectation f(e) = 1 / (1 + (e / d0)^2) with
  d0 = 1.24 * (max(N, 19) - 15)^(1/3) - 1.8, N the number of tokens considered; max over aligned
  tokens i of the mean over j. ipTM keeps only pairs (i, j) from different chains.
- chain_ptm[c]: pTM over chain c's tokens; chain_pair_iptm[a, b]: ipTM over the tokens of chains
  a and b (diagonal = chain_ptm[a], as AF3's output documents); chain_iptm[a]: mean of
  chain_pair_iptm[a, b] over b != a; chain_pair_pae_min[a, b]: smallest PAE with rows in a and
  columns in b.
- has_clash (AF3 §5.9.3): between two polymer chains, an atom is clashing when it lies within
  1.1 Å of an atom of the other chain; the structure clashes when a chain pair has more than 100
  clashing atoms, or more than half of either chain's atoms clash. Ligands and ions are ignored.
- fraction_disordered (AF3 §5.9.3 uses RASA): relative solvent accessibility of every protein
  residue from a Shrake-Rupley surface of the whole predicted complex (probe 1.4 Å, 100 points per
  atom, Bondi-like radii), divided by the residue's theoretical maximum (Tien et al. 2013); a
  residue with RASA > 0.581 counts as disordered (the AF2 disorder threshold). The fraction is over
  protein residues; 0 when there are none.
- ranking_score (`ranking="af3"`, AF3 §5.9.3) = 0.8 ipTM + 0.2 pTM + 0.5 fraction_disordered
  - 100 has_clash; for a single chain ipTM is undefined and pTM takes its weight (0.8 pTM + 0.2 pTM =
  pTM). `ranking="protenix"` (the ranking Protenix's released weights come with) drops the disorder
  term and counts a single chain's ipTM as 0: 0.8 ipTM + 0.2 pTM - 100 has_clash.
- contact_probs: probability that the representative atoms are within 8 Å, from the distogram.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from model.data.constants import DISTOGRAM_BINS, DISTOGRAM_MAX, DISTOGRAM_MIN, FRAME_ATOMS, MOL_PROTEIN

# (number of bins, upper end of the binned range); bins are equal-width from 0.
PLDDT_BINS, PLDDT_MAX = 50, 1.0
PAE_BINS, PAE_MAX = 64, 32.0
PDE_BINS, PDE_MAX = 64, 32.0
CONTACT_DISTANCE = 8.0
CLASH_DISTANCE = 1.1
CLASH_MAX_ATOMS = 100
CLASH_MAX_FRACTION = 0.5
RASA_DISORDERED = 0.581
PROBE_RADIUS = 1.4
SPHERE_POINTS = 100
VDW_RADIUS = {"H": 1.1, "C": 1.7, "N": 1.55, "O": 1.52, "S": 1.8, "P": 1.8, "SE": 1.9}
VDW_RADIUS_DEFAULT = 1.8
# Theoretical maximum solvent accessibility per residue (Tien et al. 2013, PLoS ONE 8:e80635), Å^2.
MAX_ASA = {
    "ALA": 129.0, "ARG": 274.0, "ASN": 195.0, "ASP": 193.0, "CYS": 167.0, "GLN": 225.0,
    "GLU": 223.0, "GLY": 104.0, "HIS": 224.0, "ILE": 197.0, "LEU": 201.0, "LYS": 236.0,
    "MET": 224.0, "PHE": 240.0, "PRO": 159.0, "SER": 155.0, "THR": 172.0, "TRP": 285.0,
    "TYR": 263.0, "VAL": 174.0,
}  # fmt: skip
MAX_ASA_DEFAULT = 200.0


def bin_centres(n_bins: int, max_value: float) -> torch.Tensor:
    """Centres of n_bins equal bins on [0, max_value]. Returns: [n_bins] float32."""
    width = max_value / n_bins
    return (torch.arange(n_bins, dtype=torch.float32) + 0.5) * width


def expected_value(logits: torch.Tensor, max_value: float) -> torch.Tensor:
    """Expectation of the binned distribution given by logits [..., n_bins]. Returns: [...]."""
    probs = logits.float().softmax(-1)
    return probs @ bin_centres(logits.shape[-1], max_value).to(probs.device)


def tm_d0(n: int) -> float:
    """TM-score distance scale for n tokens (floored at 19 as in AF3 and TM-score)."""
    return 1.24 * (max(n, 19) - 15) ** (1.0 / 3.0) - 1.8


def pair_tm(pae_probs: torch.Tensor, n: int) -> torch.Tensor:
    """Expected TM term E[f(e_ij)] per token pair. pae_probs: [S, N, N, 64] -> [S, N, N]."""
    centres = bin_centres(pae_probs.shape[-1], PAE_MAX).to(pae_probs.device)
    weight = 1.0 / (1.0 + (centres / tm_d0(n)) ** 2)
    return pae_probs @ weight


def tm_score(
    pae_probs: torch.Tensor,
    token_mask: torch.Tensor,
    asym_id: torch.Tensor | None = None,
    has_frame: torch.Tensor | None = None,
) -> torch.Tensor:
    """pTM over the tokens in token_mask, or ipTM when asym_id is given (cross-chain pairs only).

    pae_probs: [S, T, T, 64] (softmax of the PAE logits); token_mask, has_frame: [T] bool;
    asym_id: [T]. Returns: [S]; 0 where no aligned token (or no cross-chain pair) exists.
    """
    idx = torch.nonzero(token_mask, as_tuple=True)[0]
    probs = pae_probs if len(idx) == pae_probs.shape[1] else pae_probs[:, idx][:, :, idx]
    per_pair = pair_tm(probs, len(idx))  # [S, N, N]
    pairs = torch.ones(len(idx), len(idx), dtype=torch.bool, device=probs.device)
    if asym_id is not None:
        sub = asym_id[idx]
        pairs = sub[:, None] != sub[None, :]
    count = pairs.sum(-1)  # [N]
    per_row = (per_pair * pairs).sum(-1) / count.clamp(min=1)  # [S, N]
    rows = count > 0
    if has_frame is not None:
        rows = rows & has_frame[idx]
    if not bool(rows.any()):
        return torch.zeros(pae_probs.shape[0], device=pae_probs.device)
    return per_row[:, rows].max(-1).values


def contact_probs(distogram_logits: torch.Tensor, threshold: float = CONTACT_DISTANCE) -> torch.Tensor:
    """P(distance < threshold) from distogram logits [T, T, 64] over AF3's bins (63 edges evenly
    spaced on [2, 22] Å, first bin below 2, last above 22); sums the bins whose upper edge is at
    most the threshold. Returns: [T, T]."""
    edges = torch.linspace(DISTOGRAM_MIN, DISTOGRAM_MAX, DISTOGRAM_BINS - 1)
    n_below = int((edges <= threshold).sum())
    return distogram_logits.float().softmax(-1)[..., :n_below].sum(-1)


def has_clash(x: torch.Tensor, atom_chain: torch.Tensor, chain_is_polymer: torch.Tensor) -> torch.Tensor:
    """AF3 clash flag per sample. x: [S, A, 3]; atom_chain: [A] chain index; chain_is_polymer: [C].

    Returns: [S] bool.
    """
    n_chain = int(chain_is_polymer.shape[0])
    out = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    polymer = [c for c in range(n_chain) if bool(chain_is_polymer[c])]
    for ia, a in enumerate(polymer):
        in_a = atom_chain == a
        for b in polymer[ia + 1 :]:
            in_b = atom_chain == b
            dist = torch.cdist(
                x[:, in_a].float(), x[:, in_b].float(), compute_mode="donot_use_mm_for_euclid_dist"
            )
            close = dist < CLASH_DISTANCE  # [S, Na, Nb]
            clash_a = close.any(-1).sum(-1)  # [S]
            clash_b = close.any(-2).sum(-1)
            out |= (clash_a + clash_b > CLASH_MAX_ATOMS) | (clash_a > CLASH_MAX_FRACTION * int(in_a.sum()))
            out |= clash_b > CLASH_MAX_FRACTION * int(in_b.sum())
    return out


def sphere_points(n: int = SPHERE_POINTS) -> torch.Tensor:
    """n nearly uniform unit vectors on a golden-section spiral. Returns: [n, 3]."""
    k = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1.0 - 2.0 * k / n
    r = torch.sqrt(1.0 - z * z)
    phi = k * math.pi * (3.0 - math.sqrt(5.0))
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], -1).float()


def atom_sasa(x: torch.Tensor, radii: torch.Tensor, chunk: int = 1024, budget: int = 1 << 26) -> torch.Tensor:
    """Shrake-Rupley solvent accessible surface area per atom.

    x: [A, 3]; radii: [A] van der Waals radii (the probe radius is added here).
    Atoms go in chunks of `chunk` rows for the neighbour search, then in batches small enough that
    the [batch, points, neighbours] test stays under `budget` elements (collapsed or very dense
    coordinates have many neighbours). Returns: [A] in Å^2.
    """
    r = radii.float() + PROBE_RADIUS
    pts = sphere_points().to(x.device)  # [P, 3]
    reach = 2 * float(r.max())
    x = x.float()
    sasa = torch.empty(x.shape[0], device=x.device)
    for start in range(0, x.shape[0], chunk):
        stop = min(start + chunk, x.shape[0])
        d = torch.cdist(x[start:stop], x)  # [B, A]
        d[torch.arange(stop - start), torch.arange(start, stop)] = float("inf")
        near = d < reach
        k = int(near.sum(-1).max())
        if k == 0:
            sasa[start:stop] = 4 * math.pi * r[start:stop] ** 2
            continue
        dist_k, nb = torch.topk(torch.where(near, d, torch.full_like(d, float("inf"))), k, largest=False)
        valid = torch.isfinite(dist_k)  # [B, K]
        step = max(1, budget // (pts.shape[0] * k))
        for lo in range(0, stop - start, step):
            hi = min(lo + step, stop - start)
            atoms = slice(start + lo, start + hi)
            surface = x[atoms, None, :] + r[atoms, None, None] * pts[None]  # [b, P, 3]
            gap = torch.cdist(surface, x[nb[lo:hi]], compute_mode="donot_use_mm_for_euclid_dist")  # [b, P, K]
            buried = ((gap < r[nb[lo:hi]][:, None, :]) & valid[lo:hi, None, :]).any(-1)  # [b, P]
            sasa[atoms] = 4 * math.pi * r[atoms] ** 2 * (1.0 - buried.float().mean(-1))
    return sasa


def fraction_disordered(
    x: torch.Tensor,
    atom_to_token: torch.Tensor,
    mol_type: torch.Tensor,
    atom_element: list[str] | np.ndarray,
    token_res_name: list[str] | np.ndarray,
) -> torch.Tensor:
    """Fraction of protein residues with RASA > 0.581 per sample (see module docstring).

    x: [S, A, 3]; atom_to_token: [A]; mol_type: [T]. Returns: [S] float32.
    """
    protein_tok = mol_type == MOL_PROTEIN
    if not bool(protein_tok.any()):
        return torch.zeros(x.shape[0], device=x.device)
    radii = torch.tensor([VDW_RADIUS.get(str(e).upper(), VDW_RADIUS_DEFAULT) for e in atom_element])
    max_asa = torch.tensor([MAX_ASA.get(str(n), MAX_ASA_DEFAULT) for n in token_res_name])
    radii, max_asa = radii.to(x.device), max_asa.to(x.device)
    n_token = mol_type.shape[0]
    out = []
    for s in range(x.shape[0]):
        sasa = atom_sasa(x[s], radii)
        per_token = torch.zeros(n_token, device=x.device).index_add_(0, atom_to_token.long(), sasa)
        rasa = per_token / max_asa
        out.append((rasa[protein_tok] > RASA_DISORDERED).float().mean())
    return torch.stack(out)


def ranking_score(
    ptm: torch.Tensor, iptm: torch.Tensor | None, disorder: torch.Tensor, clash: torch.Tensor, formula: str
) -> torch.Tensor:
    """The ranking score of `formula` ("af3" or "protenix", see the module docstring). ptm, disorder,
    clash: [S]; iptm: [S], None for a single chain. Returns: [S]."""
    if formula == "af3":
        return 0.8 * (ptm if iptm is None else iptm) + 0.2 * ptm + 0.5 * disorder - 100.0 * clash.float()
    if formula == "protenix":
        return 0.8 * (torch.zeros_like(ptm) if iptm is None else iptm) + 0.2 * ptm - 100.0 * clash.float()
    raise ValueError(f"ranking {formula!r}: expected af3 or protenix")


def summarize(
    plddt_logits: torch.Tensor,
    pae_logits: torch.Tensor,
    pde_logits: torch.Tensor,
    distogram_logits: torch.Tensor,
    x: torch.Tensor,
    feats: dict[str, torch.Tensor],
    meta: dict,
    has_frame: torch.Tensor | None = None,
    ranking: str = "af3",
) -> dict[str, np.ndarray]:
    """All confidences for S samples of one target, as numpy arrays with a leading S.

    plddt_logits: [S, A, 50]; pae_logits, pde_logits: [S, T, T, 64]; distogram_logits: [T, T, 64];
    x: [S, A, 3]; feats: asym_id [T], mol_type [T], atom_to_token [A]; meta: atom_element [A],
    token_res_name [T], chain_type [C]; has_frame: [T] bool (None = every token aligned).
    Samples are scored one at a time, so the [T, T, 64] probabilities exist for one sample only.

    Returns keys atom_plddts [S, A], pae [S, T, T], pde [S, T, T], contact_probs [T, T], ptm [S],
    iptm [S] (NaN for one chain), chain_ptm [S, C], chain_iptm [S, C], chain_pair_iptm [S, C, C],
    chain_pair_pae_min [S, C, C], has_clash [S], fraction_disordered [S], ranking_score [S].
    """
    for name, logits, bins in (("plddt", plddt_logits, PLDDT_BINS), ("pae", pae_logits, PAE_BINS),
                               ("pde", pde_logits, PDE_BINS)):  # fmt: skip
        if logits.shape[-1] != bins:
            raise ValueError(
                f"confidence {name}_logits: expected {bins} bins, got shape {tuple(logits.shape)}"
            )
    per_sample = [
        _summarize_one(
            plddt_logits[k : k + 1],
            pae_logits[k : k + 1],
            pde_logits[k : k + 1],
            x[k : k + 1],
            feats,
            meta,
            has_frame,
            ranking,
        )  # fmt: skip
        for k in range(x.shape[0])
    ]
    out = {key: np.concatenate([p[key] for p in per_sample]) for key in per_sample[0]}
    out["contact_probs"] = contact_probs(distogram_logits).detach().float().cpu().numpy()
    return out


def _summarize_one(
    plddt_logits: torch.Tensor,
    pae_logits: torch.Tensor,
    pde_logits: torch.Tensor,
    x: torch.Tensor,
    feats: dict[str, torch.Tensor],
    meta: dict,
    has_frame: torch.Tensor | None,
    ranking: str,
) -> dict[str, np.ndarray]:
    """`summarize` for one sample (leading dimension 1), without contact_probs."""
    asym = feats["asym_id"].long().to(pae_logits.device)
    n_token = pae_logits.shape[1]
    n_chain = len(meta["chain_type"])
    present = [c for c in range(n_chain) if bool((asym == c).any())]
    everything = torch.ones(n_token, dtype=torch.bool, device=asym.device)

    pae_probs = pae_logits.float().softmax(-1)
    pae = pae_probs @ bin_centres(pae_probs.shape[-1], PAE_MAX).to(pae_probs.device)
    ptm = tm_score(pae_probs, everything, has_frame=has_frame)
    multi_chain = len(present) > 1
    iptm = tm_score(pae_probs, everything, asym, has_frame) if multi_chain else None

    chain_ptm = torch.zeros(1, n_chain)
    chain_pair_iptm = torch.zeros(1, n_chain, n_chain)
    chain_pair_pae_min = torch.zeros(1, n_chain, n_chain)
    for a in present:
        in_a = asym == a
        chain_ptm[:, a] = tm_score(pae_probs, in_a, has_frame=has_frame).cpu()
        chain_pair_iptm[:, a, a] = chain_ptm[:, a]
        for b in present:
            in_b = asym == b
            chain_pair_pae_min[:, a, b] = pae[:, in_a][:, :, in_b].flatten(1).min(-1).values.cpu()
            if b > a:
                value = tm_score(pae_probs, in_a | in_b, asym, has_frame).cpu()
                chain_pair_iptm[:, a, b] = chain_pair_iptm[:, b, a] = value
    del pae_probs
    chain_iptm = torch.zeros(1, n_chain)
    if multi_chain:
        for a in present:
            others = [b for b in present if b != a]
            chain_iptm[:, a] = chain_pair_iptm[:, a, others].mean(-1)

    atom_to_token = feats["atom_to_token"].long().to(x.device)
    chain_is_polymer = torch.tensor([t in ("protein", "rna", "dna") for t in meta["chain_type"]])
    clash = has_clash(x, asym.to(x.device)[atom_to_token], chain_is_polymer).cpu()
    disorder = fraction_disordered(
        x, atom_to_token, feats["mol_type"].to(x.device), meta["atom_element"], meta["token_res_name"]
    ).cpu()
    ptm = ptm.cpu()
    score = ranking_score(ptm, iptm.cpu() if iptm is not None else None, disorder, clash, ranking)

    def np32(t: torch.Tensor) -> np.ndarray:
        return t.detach().float().cpu().numpy()

    return {
        "atom_plddts": np32(100.0 * expected_value(plddt_logits, PLDDT_MAX)),
        "pae": np32(pae),
        "pde": np32(expected_value(pde_logits, PDE_MAX)),
        "ptm": np32(ptm),
        "iptm": np32(iptm) if iptm is not None else np.full(1, np.nan, np.float32),
        "chain_ptm": np32(chain_ptm),
        "chain_iptm": np32(chain_iptm),
        "chain_pair_iptm": np32(chain_pair_iptm),
        "chain_pair_pae_min": np32(chain_pair_pae_min),
        "has_clash": clash.numpy(),
        "fraction_disordered": np32(disorder),
        "ranking_score": np32(score),
    }


# A ligand frame closer to a line than this (AF3 §4.3.2: 25°) is invalid.
COLLINEAR_DEGREES = 25.0


def token_has_frame(
    atom_to_token: np.ndarray,
    mol_type: np.ndarray,
    atom_name: list[str] | np.ndarray,
    token_center_atom: np.ndarray,
    ref_pos: np.ndarray,
    ref_space_uid: np.ndarray,
    ref_mask: np.ndarray,
) -> np.ndarray:
    """Which tokens have a valid frame (AF3 §4.3.2; the rows that count in pTM/ipTM). Returns: [T] bool.

    A polymer residue token has one when it has its frame atoms (N, CA, C / C1', C3', C4'). Every
    other token (ligand atom, ion, atomised residue) takes its atom b and, from the reference
    conformer (`ref_pos`), the nearest (a) and second nearest (c) other atoms of the same
    `ref_space_uid`; the frame is invalid with fewer than 3 such atoms, a masked reference position,
    a zero-length a-b or b-c, or when the angle between a->b and b->c is within 25° of 0° or 180°
    (nearly collinear), as in Protenix's featurizer.
    """
    ref_pos = np.asarray(ref_pos, dtype=np.float64)
    n_token = len(mol_type)
    names: list[set[str]] = [set() for _ in range(n_token)]
    for tok, name in zip(atom_to_token.tolist(), atom_name, strict=True):
        names[tok].add(str(name))
    out = np.zeros(n_token, dtype=bool)
    for t in range(n_token):
        wanted = FRAME_ATOMS.get(int(mol_type[t]))
        if wanted is not None and len(names[t]) > 1:
            out[t] = all(a in names[t] for a in wanted)
            continue
        b = int(token_center_atom[t])
        group = np.flatnonzero(ref_space_uid == ref_space_uid[b])
        if len(group) < 3:
            continue
        dist = np.linalg.norm(ref_pos[group] - ref_pos[b], axis=-1)
        dist[group == b] = -1.0  # b itself first, then its neighbours by distance
        a, c = group[np.argsort(dist, kind="stable")[1:3]]
        if not (ref_mask[a] and ref_mask[b] and ref_mask[c]):
            continue
        ab, bc = ref_pos[b] - ref_pos[a], ref_pos[c] - ref_pos[b]
        norm_ab, norm_bc = np.linalg.norm(ab), np.linalg.norm(bc)
        if np.isclose(norm_ab, 0.0) or np.isclose(norm_bc, 0.0):
            continue
        angle = math.degrees(math.acos(float(np.clip(ab @ bc / (norm_ab * norm_bc), -1.0, 1.0))))
        out[t] = COLLINEAR_DEGREES < angle < 180.0 - COLLINEAR_DEGREES
    return out
