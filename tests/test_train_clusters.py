"""Sequence clustering for the sampling weights: real pyhmmer phmmer, identities made by mutation."""

from __future__ import annotations

import random
import subprocess
import sys

from conftest import REPO, SHARED_DATA
from test_train_data import train_files  # noqa: F401 (session fixture)

from model.train.clusters import protein_clusters
from model.train.data import build_index, read_cluster_table


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


def test_cluster_table_round_trip(train_files, tmp_path):  # noqa: F811
    table = tmp_path / "clusters.tsv"
    cmd = [sys.executable, "-m", "model.train.clusters", "--features", *map(str, train_files)]
    cmd += ["--out", str(table)]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr[-2000:]
    entries = build_index(train_files)
    read_cluster_table(table, entries)
    by_id = {e.target_id: e for e in entries}
    protease = [c for c in by_id["1k6p"].chains if c.mol_class == "protein"]
    assert protease[0].cluster == protease[1].cluster
    assert protease[0].cluster != by_id["1ubq"].chains[0].cluster
    assert all(c.cluster for e in entries for c in e.chains)
