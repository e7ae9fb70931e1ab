"""Sequence clustering for the sampling weights: real pyhmmer phmmer, identities made by mutation."""

from __future__ import annotations

import random

from conftest import SHARED_DATA

from model.train.clusters import protein_clusters


def _seqres(pdb_chain: str) -> str:
    lines = (SHARED_DATA / "template_db" / "pdb_seqres_shared_structures.fasta").read_text().splitlines()
    return lines[[i for i, line in enumerate(lines) if line.startswith(f">{pdb_chain} ")][0] + 1]


def _mutate(seq: str, fraction: float, seed: int) -> str:
    rng = random.Random(seed)
    out = list(seq)
    for i in rng.sample(range(len(seq)), int(fraction * len(seq))):
        out[i] = rng.choice([a for a in "ACDEFGHIKLMNPQRSTVWY" if a != seq[i]])
    return "".join(out)


def test_identity_threshold_and_single_linkage():
    myo, ubq = _seqres("102m_A"), _seqres("1ubq_A")
    close = _mutate(myo, 0.3, 1)  # 70 % identical to myoglobin
    far = _mutate(myo, 0.85, 2)  # 15 % identical: below 40 %
    fragment = myo[:60]  # identical but short: identity over the shorter sequence is 100 %
    ids = protein_clusters([myo, ubq, close, far, fragment])
    assert ids[0] == ids[2] == ids[4]
    assert len({ids[0], ids[1], ids[3]}) == 3
