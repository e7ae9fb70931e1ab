"""Interface confidences per chain pair, from one sample's PAE, pLDDT and coordinates (numpy only).

All four are [C, C] matrices, symmetric, with NaN on the diagonal and for chains without tokens.

- chain_pair_ipsae: ipSAE (Dunbrack 2025, "Rēs ipSAE loquunt", bioRxiv 10.1101/2025.02.10.637595).
  Aligned on a token i of chain a, only the tokens j of chain b with PAE_ij < 10 Å count:
  n_i = |{j}|, d0_i = max(1, 1.24 (max(n_i, 27) - 15)^(1/3) - 1.8) (at least 2 when either chain is
  a nucleic acid), ipSAE_i = mean_j 1 / (1 + (PAE_ij / d0_i)^2); ipSAE(a -> b) = max_i ipSAE_i and
  ipSAE(a, b) = max(ipSAE(a -> b), ipSAE(b -> a)). 0 when no pair is below the cutoff.
- chain_pair_pdockq: pDockQ (Bryant, Pozzati & Elofsson 2022, Nat Commun 13:1265). Contacts are
  token pairs across the chains whose representative atoms (Cβ, Cα for glycine; C4 / C2 for
  nucleotides; the atom of a ligand token) are within 8 Å; x = mean pLDDT of the interface tokens
  (those in a contact) * log10(number of contacts); pDockQ = 0.724 / (1 + exp(-0.052 (x - 152.611)))
  + 0.018. 0 without contacts. Calibrated on protein dimers.
- chain_pair_iplddt: mean pLDDT (0-100) of the interface tokens, NaN without contacts.
- chain_pair_ipae: mean PAE (Å) over the contacting pairs in both directions (PAE_ij and PAE_ji),
  NaN without contacts.
A token's pLDDT is its representative atom's.
"""

from __future__ import annotations

import numpy as np

IPSAE_PAE_CUTOFF = 10.0
CONTACT_DISTANCE = 8.0
PDOCKQ_L, PDOCKQ_X0, PDOCKQ_K, PDOCKQ_B = 0.724, 152.611, 0.052, 0.018
NUCLEIC_TYPES = ("dna", "rna")


def ipsae_d0(n: np.ndarray, nucleic: bool) -> np.ndarray:
    """ipSAE's distance scale for n scored tokens (n floored at 27; d0 at 1, or 2 for nucleic acids)."""
    d0 = 1.24 * np.cbrt(np.maximum(n, 27).astype(np.float64) - 15.0) - 1.8
    return np.maximum(d0, 2.0 if nucleic else 1.0)


def ipsae_directed(pae_ab: np.ndarray, nucleic: bool) -> float:
    """ipSAE(a -> b) from the PAE block [T_a, T_b] (rows aligned on chain a)."""
    keep = pae_ab < IPSAE_PAE_CUTOFF
    n = keep.sum(-1)  # [T_a]
    d0 = ipsae_d0(n, nucleic)[:, None]
    term = np.where(keep, 1.0 / (1.0 + (pae_ab / d0) ** 2), 0.0).sum(-1) / np.maximum(n, 1)
    return float(term.max()) if len(term) else 0.0


def pdockq(mean_interface_plddt: float, n_contacts: int) -> float:
    """pDockQ from the mean interface pLDDT (0-100) and the number of contacts."""
    if n_contacts == 0:
        return 0.0
    x = mean_interface_plddt * np.log10(n_contacts)
    return float(PDOCKQ_L / (1.0 + np.exp(-PDOCKQ_K * (x - PDOCKQ_X0))) + PDOCKQ_B)


def interface_confidences(
    pae: np.ndarray,
    token_plddt: np.ndarray,
    token_xyz: np.ndarray,
    asym_id: np.ndarray,
    chain_type: list[str] | np.ndarray,
) -> dict[str, np.ndarray]:
    """The four [C, C] matrices of the module docstring for one sample.

    pae: [T, T] (rows aligned); token_plddt: [T] (0-100); token_xyz: [T, 3] representative atoms;
    asym_id: [T] chain index; chain_type: [C].
    """
    n_chain = len(chain_type)
    out = {k: np.full((n_chain, n_chain), np.nan) for k in ("ipsae", "pdockq", "iplddt", "ipae")}
    members = [np.nonzero(asym_id == c)[0] for c in range(n_chain)]
    xyz = np.asarray(token_xyz, dtype=np.float64)
    sq = (xyz**2).sum(-1)
    for a in range(n_chain):
        for b in range(a + 1, n_chain):
            ta, tb = members[a], members[b]
            if len(ta) == 0 or len(tb) == 0:
                continue
            nucleic = chain_type[a] in NUCLEIC_TYPES or chain_type[b] in NUCLEIC_TYPES
            ipsae = max(
                ipsae_directed(pae[np.ix_(ta, tb)], nucleic), ipsae_directed(pae[np.ix_(tb, ta)], nucleic)
            )
            # squared distances of one chain pair at a time: memory stays [T_a, T_b]
            d2 = sq[ta][:, None] + sq[tb][None, :] - 2.0 * xyz[ta] @ xyz[tb].T
            contact = d2 < CONTACT_DISTANCE**2  # [T_a, T_b]
            n_contacts = int(contact.sum())
            if n_contacts:
                interface = np.concatenate([ta[contact.any(1)], tb[contact.any(0)]])
                iplddt = float(token_plddt[interface].mean())
                both_ways = [pae[np.ix_(ta, tb)][contact], pae[np.ix_(tb, ta)].T[contact]]
                ipae = float(np.concatenate(both_ways).mean())
            else:
                iplddt = ipae = np.nan
            values = {"ipsae": ipsae, "pdockq": pdockq(iplddt, n_contacts), "iplddt": iplddt, "ipae": ipae}
            for key, value in values.items():
                out[key][a, b] = out[key][b, a] = value
    return {f"chain_pair_{k}": v for k, v in out.items()}
