"""The user's literal commands on a real one-node SLURM cluster (../shared/slurm/start-slurm.sh).

`snakemake --profile slurm train_stage3` then `predict` with the tiny preset and tiny step counts in a
scratch copy of the workflow; GPU rules must run in the gpu partition with CUDA_VISIBLE_DEVICES set;
the training features hold searched MSAs and templates; a second run has nothing to do; editing one
target plans only that target's jobs; a stage on training.nodes 2 runs through srun + torchrun (two
tasks on the one node standing in for two nodes) and gives the losses of one process accumulating 2.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import h5py
import pytest
import yaml
from conftest import MMCIF_DIR
from test_training_pipeline import miniature_databases
from test_workflow_helpers import REPO, make_workdir, planned_jobs, snakemake

START_SLURM = REPO.parent / "shared" / "slurm" / "start-slurm.sh"
FAKE_GPUS = 2

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(not START_SLURM.is_file(), reason=f"no SLURM recipe at {START_SLURM}"),
    pytest.mark.skipif(os.geteuid() != 0, reason="start-slurm.sh must run as root"),
]

# Tiny everything; the node has 2 CPUs and ~21 GB, so per-rule sizes are shrunk to fit.
CONFIG = {
    "samples": 1,
    "steps": 2,
    "cycles": 1,
    "shards": 3,
    "training": {"steps": 1, "entries": ["data/training/2lwu.cif.gz"]},
}
SLURM_ARGS = (
    "--profile", "slurm",
    "--slurm-init-seconds-before-status-checks", "2",
    "--set-threads", "train_stage=1", "predict_shard=1", "search_protein=1", "search_rna=1",
    "--set-resources", "train_stage:mem_mb=3000", "predict_shard:mem_mb=3000", "build_features:mem_mb=2000",
    "build_training_shard:mem_mb=2000", "search_protein:mem_mb=1000", "search_rna:mem_mb=1000",
    "prepare_database:mem_mb=500",
    "--",
)  # fmt: skip
GPU_RULES = ("train_stage", "predict_shard")


@pytest.fixture(scope="module")
def cluster() -> None:
    if shutil.which("apt-get") is None and shutil.which("sinfo") is None:
        pytest.skip("no apt-get to install SLURM and no SLURM installed")
    proc = subprocess.run(
        ["bash", str(START_SLURM)], env=dict(os.environ, FAKE_GPUS=str(FAKE_GPUS)),
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def workdir(cluster, tmp_path_factory) -> Path:
    """Training on 102m (hits in the miniature UniRef90) and 1igy (templates from 1ncb)."""
    root = tmp_path_factory.mktemp("slurm")
    training = {**CONFIG["training"], "entries": [str(MMCIF_DIR / f"{e}.cif.gz") for e in ("102m", "1igy")]}
    config = {**CONFIG, "training": training, "databases": miniature_databases(root / "db")}
    return make_workdir(root / "wf", config)


def _slurm_jobs(workdir: Path) -> dict[str, list[tuple[str, str]]]:
    """rule -> [(SLURM job id, wildcards folder)] from the plugin's kept logs."""
    jobs: dict[str, list[tuple[str, str]]] = {}
    for log in sorted((workdir / ".snakemake" / "slurm_logs").glob("rule_*/**/*.log")):
        rule = log.relative_to(workdir / ".snakemake" / "slurm_logs").parts[0].removeprefix("rule_")
        jobs.setdefault(rule, []).append((log.stem, log.parent.name))
    return jobs


def _sacct(job_id: str) -> tuple[str, str]:
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "Partition,State"], capture_output=True, text=True
    ).stdout
    partition, state = out.strip().splitlines()[0].split("|")
    return partition, state


def _assert_gpu_jobs(workdir: Path, rule: str, expected: int, job_log: str) -> None:
    jobs = _slurm_jobs(workdir).get(rule, [])
    assert len(jobs) == expected, (rule, jobs)
    for job_id, wildcards in jobs:
        assert _sacct(job_id) == ("gpu", "COMPLETED"), (rule, job_id)
        text = (workdir / job_log.format(w=wildcards)).read_text()
        visible = re.search(r"CUDA_VISIBLE_DEVICES=(\S*)", text)
        assert visible and visible.group(1) in {str(i) for i in range(FAKE_GPUS)}, text[:500]


def test_train_stage3_runs_the_four_stages_on_gpu_nodes(workdir):
    snakemake(workdir, *SLURM_ARGS, "train_stage3", timeout=900)
    _assert_gpu_jobs(workdir, "train_stage", 4, "logs/train/stage{w}.log")
    # each stage started from the previous stage's final checkpoint
    for k in (1, 2, 3):
        provenance = (workdir / f"results/train/stage{k}/provenance.json").read_text()
        assert f"results/train/stage{k - 1}/checkpoint.pt" in provenance
    # CPU rules went to the default partition
    for job_id, _ in _slurm_jobs(workdir)["build_training_shard"]:
        assert _sacct(job_id) == ("cpu", "COMPLETED")
    # the stages trained on features with searched MSA rows and templates
    features = [Path(p) for p in (workdir / "results/features/train/training_set.txt").read_text().split()]
    assert sorted(p.stem for p in features) == ["102m", "1igy"]
    with h5py.File(workdir / features[0].parent / "102m.h5") as f:
        assert f["msa/msa"].shape[0] > 50
    with h5py.File(workdir / features[0].parent / "1igy.h5") as f:
        assert f["template/template_pseudo_beta_mask"][:].any(axis=1).sum() > 0


def test_predict_writes_every_target_then_has_nothing_to_do(workdir):
    snakemake(workdir, *SLURM_ARGS, "predict", timeout=900)
    _assert_gpu_jobs(workdir, "predict_shard", 3, "logs/predict/{w}.log")
    with (workdir / "results/summary.tsv").open() as fh:
        rows = {r["target_id"]: r for r in csv.DictReader(fh, delimiter="\t")}
    assert set(rows) == {"trp_cage", "trp_cage_atp", "dickerson_dodecamer"}
    for target, row in rows.items():
        assert row["status"] == "ok", row
        assert (workdir / "results/predictions" / target / f"{target}_model.cif").is_file()
        summary = json.loads(
            (
                workdir / "results/predictions" / target / "seed-1_sample-0/summary_confidences.json"
            ).read_text()
        )
        assert 0.0 <= summary["ptm"] <= 1.0
    assert (workdir / "results/failures.tsv").read_text().strip() == "target_id\tstage\treason"

    again = snakemake(workdir, "--dry-run", *SLURM_ARGS, "predict")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_editing_one_target_plans_only_its_jobs(workdir):
    table = workdir / "config/examples/targets.csv"
    text = table.read_text()
    table.write_text(text.replace("protein:NLYIQWLKDGGPSSGRPPPS", "protein:NLYIQWLKDGGPSSGRPPPA"))
    jobs = planned_jobs(workdir, *SLURM_ARGS, "predict")
    by_rule: dict[str, set[str]] = {}
    for rule, wildcards in jobs:
        by_rule.setdefault(rule, set()).add(wildcards)
    plan = {
        line.split("\t")[1]: line.split("\t")[0]
        for line in (workdir / "results/shards/plan.tsv").read_text().splitlines()[1:]
    }
    # the edited target's own jobs (its shard's features and prediction, the new sequence's search) ...
    assert by_rule["build_features"] == by_rule["predict_shard"] == {f"shard={plan['trp_cage']}"}
    assert len(by_rule["search_protein"]) == 1
    assert by_rule["report_target"] == {"target=trp_cage"}  # its report page
    # ... plus the run-wide tables, and nothing of the other targets
    assert set(by_rule) == {
        "search_protein", "build_features", "predict_shard", "report_target", "summarize", "check_failures",
        "predict",
    }  # fmt: skip
    assert plan["trp_cage_atp"] != plan["trp_cage"] != plan["dickerson_dodecamer"]


def _losses(workdir: Path) -> list[dict]:
    with (workdir / "results/train/stage0/metrics.csv").open() as fh:
        return [
            {k: float(r[k]) for k in ("loss", "diffusion", "distogram", "grad_norm")}
            for r in csv.DictReader(fh)
        ]


@pytest.mark.slow  # two more workflow runs (~2 min on a quiet 2-core machine, 267 s loaded)
def test_two_node_stage_through_srun_and_torchrun_matches_accumulation(cluster, tmp_path):
    """training.nodes 2: scripts/launch_stage.sh under SLURM (srun, two torchrun agents meeting by c10d
    rendezvous; two tasks on the one node stand in for two nodes; gloo on CPU) gives the losses of one
    process with grad_accum_steps 2."""
    training = {**CONFIG["training"], "steps": 2, "entries": ["data/training/2lwu.cif.gz"]}
    two = make_workdir(tmp_path / "nodes", {**CONFIG, "training": {**training, "nodes": 2}})
    resources = [a for a in SLURM_ARGS if a != "--"]
    snakemake(two, *resources, "train_stage:nodes=1", "--", "results/train/stage0/checkpoint.pt", timeout=900)
    ((job_id, _),) = _slurm_jobs(two)["train_stage"]
    assert _sacct(job_id) == ("gpu", "COMPLETED")
    assert json.loads((two / "results/train/stage0/provenance.json").read_text())["world_size"] == 2
    demo = yaml.safe_load((REPO / "config/examples/demo.yaml").read_text())["training"]["set"]
    one = make_workdir(
        tmp_path / "one", {**CONFIG, "training": {**training, "set": [*demo, "grad_accum_steps=2"]}}
    )
    snakemake(one, "-c2", "results/train/stage0/checkpoint.pt", timeout=900)
    for row_two, row_one in zip(_losses(two), _losses(one), strict=True):
        for column, value in row_one.items():
            assert math.isclose(row_two[column], value, rel_tol=1e-4), (column, row_two, row_one)
