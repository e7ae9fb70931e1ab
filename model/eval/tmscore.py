"""TM-score (Zhang & Skolnick 2004, Proteins 57:702) of protein chains and of the whole complex,
computed by TM-align through the `tmtools` package (Zhang & Skolnick 2005, Nucleic Acids Res
33:2302) with the residue correspondence fixed by the chain mapping (`model.eval.structures`), so
TM-align only finds the superposition that maximises the score. Normalised by the length of the
reference. Protein chains only: TM-align's d0 is calibrated on Cα atoms.
"""

from __future__ import annotations

import numpy as np

from model.eval.structures import ChainPair


def _ca_trace(pairs: list[ChainPair]) -> tuple[np.ndarray, np.ndarray, str, str, str, str]:
    """Cα coordinates and gapped sequences of the model and the reference chains of `pairs`, the
    chains concatenated in the order given; residues without Cα are left out."""
    model_xyz, ref_xyz = [], []
    model_gapped, ref_gapped = [], []
    for pair in pairs:
        model_ca = [i for i, atoms in enumerate(pair.model.res_atoms) if "CA" in atoms]
        ref_ca = [j for j, atoms in enumerate(pair.ref.res_atoms) if "CA" in atoms]
        model_set, ref_set = set(model_ca), set(ref_ca)
        # The alignment's matched pairs are in order on both chains: emit each block of unmatched
        # residues (gapped on the other side) before the next matched pair.
        anchors = [(i, j) for i, j in pair.residues if i in model_set and j in ref_set]
        mi = rj = 0
        for i, j in [*anchors, (None, None)]:
            while mi < len(model_ca) and (i is None or model_ca[mi] < i):
                model_gapped.append(pair.model.sequence[model_ca[mi]])
                ref_gapped.append("-")
                mi += 1
            while rj < len(ref_ca) and (j is None or ref_ca[rj] < j):
                model_gapped.append("-")
                ref_gapped.append(pair.ref.sequence[ref_ca[rj]])
                rj += 1
            if i is not None:
                model_gapped.append(pair.model.sequence[i])
                ref_gapped.append(pair.ref.sequence[j])
                mi, rj = mi + 1, rj + 1
        model_xyz += [pair.model.res_atoms[i]["CA"] for i in model_ca]
        ref_xyz += [pair.ref.res_atoms[j]["CA"] for j in ref_ca]
    model_seq = "".join(c for c in model_gapped if c != "-")
    ref_seq = "".join(c for c in ref_gapped if c != "-")
    return (
        np.asarray(model_xyz, dtype=np.float64).reshape(-1, 3),
        np.asarray(ref_xyz, dtype=np.float64).reshape(-1, 3),
        model_seq,
        ref_seq,
        "".join(model_gapped),
        "".join(ref_gapped),
    )


def tm_score(pairs: list[ChainPair]) -> float | None:
    """TM-score of the model chains of `pairs` against their reference chains, normalised by the
    reference's Cα count; None without protein chains."""
    import tmtools

    proteins = [p for p in pairs if p.model.kind == "protein"]
    if not proteins:
        return None
    model_xyz, ref_xyz, model_seq, ref_seq, model_gapped, ref_gapped = _ca_trace(proteins)
    if len(model_xyz) < 3 or len(ref_xyz) < 3:
        return None
    result = tmtools.tm_align(model_xyz, ref_xyz, model_seq, ref_seq, [model_gapped, ref_gapped])
    return float(result.tm_norm_chain2)


def tm_scores(pairs: list[ChainPair]) -> dict:
    """{"chains": {model chain: TM-score}, "complex": TM-score of all protein chains together}."""
    chains = {p.model.name: tm_score([p]) for p in pairs if p.model.kind == "protein"}
    return {"chains": {k: v for k, v in chains.items() if v is not None}, "complex": tm_score(pairs)}
