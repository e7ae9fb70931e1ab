"""A local `snakemake predict` end to end, twice: byte-identical outputs on CPU, then nothing to do."""

from __future__ import annotations

import csv
import hashlib
import re
from pathlib import Path

from test_workflow_helpers import make_workdir, snakemake

CONFIG = {"samples": 2, "steps": 2, "cycles": 1, "checkpoint": "none", "shards": 2}
# files whose bytes must not depend on the run (provenance.json files name absolute paths)
COMPARED = (
    "*_model.cif",
    "*/model.cif",
    "*/confidences.json",
    "*/summary_confidences.json",
    "ranking_scores.csv",
)


def _digests(results: Path) -> dict[str, str]:
    out = {}
    for pattern in COMPARED:
        for path in sorted((results / "predictions").glob(f"*/{pattern}")):
            out[str(path.relative_to(results))] = hashlib.sha256(path.read_bytes()).hexdigest()
    for name in ("summary.tsv", "failures.tsv", "shards/plan.tsv"):
        out[name] = hashlib.sha256((results / name).read_bytes()).hexdigest()
    return out


def test_local_predict_is_reproducible_and_complete(tmp_path, monkeypatch):
    # two (pretend) cards: the slot allocator pins each GPU job to one of them; torch finds no CUDA
    # driver here, so the jobs still run on the CPU
    monkeypatch.setenv("FOLDLINE_GPUS", "2")
    monkeypatch.setenv("FOLDLINE_GPU_LOCK_DIR", str(tmp_path / "gpu-locks"))
    runs = []
    for name in ("a", "b"):
        workdir = make_workdir(tmp_path / name, CONFIG)
        snakemake(workdir, "predict", "--cores", "2", "--resources", "gpu=2", timeout=1500)
        runs.append(workdir)
    first = runs[0] / "results"
    with (first / "summary.tsv").open() as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert {r["target_id"]: r["status"] for r in rows} == {
        "trp_cage": "ok", "trp_cage_atp": "ok", "dickerson_dodecamer": "ok"
    }  # fmt: skip
    digests = _digests(first)
    assert len(digests) >= 3 * 2 * 3 + 3
    assert digests == _digests(runs[1] / "results")
    # local GPU jobs went through the slot allocator
    logs = sorted((runs[0] / "logs" / "predict").glob("shard-*.log"))
    assert len(logs) == 2
    for log in logs:
        assert re.search(r"gpu_slot: CUDA_VISIBLE_DEVICES=[01]\n", log.read_text())
    again = snakemake(runs[0], "predict", "--cores", "2", "--dry-run")
    assert "Nothing to be done" in again.stdout + again.stderr

    # editing one target reruns its shard's featurization, which keeps the unchanged member's h5
    # (same content hash) and featurizes only the edited target
    plan = [line.split("\t") for line in (first / "shards/plan.tsv").read_text().splitlines()[1:]]
    shard = next(s for s, t, *_ in plan if t == "trp_cage")
    members = {t for s, t, *_ in plan if s == shard}
    assert len(members) >= 2, plan
    table = runs[0] / "config/examples/targets.csv"
    table.write_text(table.read_text().replace("GRPPPS", "GRPPPA"))
    snakemake(runs[0], f"results/features/shards/{shard}.tsv", "--cores", "2", timeout=600)
    log = (runs[0] / "logs/features" / f"{shard}.log").read_text()
    built = dict(line.split("\t")[:2] for line in log.splitlines() if line.split("\t")[0] in members)
    assert built == {t: "ok" if t == "trp_cage" else "cached" for t in members}
