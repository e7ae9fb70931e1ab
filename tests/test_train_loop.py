"""The training loop end to end with the tiny preset on CPU: outputs, stage chaining, exact resume
after SIGTERM and kill -9, and DDP (2 gloo processes) against one process with a doubled batch."""

from __future__ import annotations

import csv
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO
from test_train_data import train_files  # noqa: F401 (session fixture shared with the data tests)

from model.fileio import sha256_file
from model.infer.checkpoint import read_state_dict
from model.nn.network import Foldline, load_preset
from model.train import data as D
from model.train.checkpoint import load_checkpoint
from model.train.loop import METRIC_COLUMNS, NONDETERMINISTIC_COLUMNS, TrainingLoss
from model.train.stages import resolve_stage

STAGES = REPO / "config" / "stages.yaml"
SMALL = [
    "train_crop_size=16", "diffusion_batch_size=2", "mini_rollout_steps=2", "n_cycle_max=2",
    "val_entries=0", "num_workers=1", "save_every=2",
]  # fmt: skip


@pytest.fixture(scope="module")
def features(train_files) -> list[Path]:  # noqa: F811
    return train_files[:2]  # 1ubq and the 1k6p homodimer


def _cmd(stage: int, features: list[Path], out: Path, steps: int, *extra: str) -> list[str]:
    cmd = [sys.executable, str(REPO / "scripts" / "train.py"), "--stage", str(stage), "--stages", str(STAGES),
           "--preset", "tiny", "--features", *map(str, features), "--out-dir", str(out),
           "--steps", str(steps), "--device", "cpu", "--seed", "3"]  # fmt: skip
    for item in SMALL:
        cmd += ["--set", item]
    return cmd + list(extra)


def _run(cmd: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def _metrics(out: Path) -> list[dict]:
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for col in NONDETERMINISTIC_COLUMNS:
            r.pop(col)
    return rows


def _rows_written(out: Path) -> int:
    path = out / "metrics.csv"
    return max(0, len(path.read_text().splitlines()) - 1) if path.is_file() else 0


def test_training_loss_is_deterministic_and_confidence_only_trains_the_head(features):
    entries = D.build_index(features)
    D.exact_clusters(entries)
    cfg = resolve_stage(STAGES, 0, SMALL)
    ex = D.TrainDataset(entries, cfg)[0]
    torch.manual_seed(0)
    net = Foldline(load_preset("tiny"))
    loss_a, terms_a = TrainingLoss(net, cfg)(ex["feats"], ex["aux"], 2, 11, None)
    loss_b, terms_b = TrainingLoss(net, cfg)(ex["feats"], ex["aux"], 2, 11, None)
    assert loss_a.item() == loss_b.item() and math.isfinite(loss_a.item())
    assert all(math.isnan(v) or terms_b[k] == v for k, v in terms_a.items())
    loss_a.backward()
    assert net.diffusion_module.linear_no_bias_s.weight.grad.abs().sum() > 0
    # Fine-tuning 3: only the confidence head receives gradients; the trunk runs without a graph
    net.zero_grad(set_to_none=True)
    cfg3 = resolve_stage(STAGES, 3, SMALL)
    loss3, terms3 = TrainingLoss(net, cfg3)(ex["feats"], ex["aux"], 1, 11, None)
    assert math.isnan(terms3["diffusion"]) and math.isnan(terms3["distogram"]) and terms3["confidence"] > 0
    loss3.backward()
    grads = {n for n, p in net.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert grads and all(n.startswith("confidence_head.") for n in grads)


def test_stage_outputs_and_chained_provenance(features, train_files, tmp_path):  # noqa: F811
    s0, s1 = tmp_path / "stage0", tmp_path / "stage1"
    # three entries: the last one (by path) is held out and scored every 2 steps
    val = ["--set", "val_entries=1", "--set", "val_every=2", "--set", "val_steps=2"]
    _run(_cmd(0, train_files, s0, 3, *val))
    rows = _metrics(s0)
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert rows[0]["val_lddt"] == "" and 0.0 <= float(rows[1]["val_lddt"]) <= 1.0
    assert list(csv.DictReader(open(s0 / "metrics.csv")).fieldnames) == list(METRIC_COLUMNS)
    assert all(float(r["loss"]) > 0 and float(r["grad_norm"]) > 0 for r in rows)
    assert any((s0 / "tensorboard").iterdir())
    ckpt = load_checkpoint(s0 / "checkpoint.pt")
    assert ckpt["step"] == 3
    assert set(ckpt) >= {"model", "raw_model", "optimizer", "scheduler", "rng", "config"}

    p0 = json.loads((s0 / "provenance.json").read_text())
    assert p0["parent_checkpoint"] is None
    assert p0["validation_entries"] == ["1ubq"] and p0["entries"] == ["1gya", "1k6p"]
    assert p0["config"]["loss"] == resolve_stage(STAGES, 0)["loss"]  # the seed table's weights
    assert read_state_dict(s0 / "checkpoint.pt").keys() == Foldline(load_preset("tiny")).state_dict().keys()
    _run(_cmd(1, features, s1, 1, "--init-checkpoint", str(s0 / "checkpoint.pt")))
    p1 = json.loads((s1 / "provenance.json").read_text())
    assert p1["parent_checkpoint"]["sha256"] == sha256_file(s0 / "checkpoint.pt")
    assert p1["config"]["loss"]["weight"]["alpha_bond"] == 1.0 and p1["config"]["train_crop_size"] == 16


def _interrupted(features: list[Path], out: Path, steps: int, sig: int, at_rows: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_cmd(0, features, out, steps), cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 600
    while _rows_written(out) < at_rows and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=600)
    if sig == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
        assert load_checkpoint(out / "last.pt")["step"] < steps
    else:
        assert proc.returncode == -signal.SIGKILL
    assert not (out / "checkpoint.pt").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill9"])
def test_resume_after_interruption_gives_identical_metrics(features, tmp_path, sig):
    steps = 6
    ref = tmp_path / "ref"
    _run(_cmd(0, features, ref, steps))
    at = random.Random().randint(1, steps - 2)
    out = tmp_path / "cut"
    _interrupted(features, out, steps, sig, at)
    _run(_cmd(0, features, out, steps))
    assert _metrics(out) == _metrics(ref), f"signal {sig} after {at} steps"
    a, b = read_state_dict(out / "checkpoint.pt"), read_state_dict(ref / "checkpoint.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ddp_two_processes_equal_one_process_with_doubled_batch(features, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _run(_cmd(0, features, one, 2, "--set", "grad_accum_steps=2", "--set", "num_workers=0"))
    ddp = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    _run(ddp + _cmd(0, features, two, 2, "--set", "num_workers=0")[1:])
    m1, m2 = _metrics(one), _metrics(two)
    for r1, r2 in zip(m1, m2, strict=True):
        for col in ("loss", "diffusion", "distogram", "confidence", "grad_norm"):
            assert math.isclose(float(r1[col]), float(r2[col]), rel_tol=1e-4), (col, r1[col], r2[col])
    a, b = read_state_dict(one / "checkpoint.pt"), read_state_dict(two / "checkpoint.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)


def test_fine_tuning_starts_from_a_released_protenix_file(features, tmp_path):
    from test_infer_checkpoint import protenix_release

    from model.nn.config import config_from_dict

    torch.manual_seed(11)
    released = Foldline(load_preset("tiny")).state_dict()
    path = tmp_path / "released.pt"
    torch.save(protenix_release(released), path)
    out = tmp_path / "stage1"
    # the configured preset (base) does not fit: the network is the one the file's shapes fit
    _run(_cmd(1, features, out, 1, "--preset", "base", "--init-checkpoint", str(path)))
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert config_from_dict(ckpt["network"], "network") == load_preset("tiny")
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["parent_checkpoint"]["sha256"] == sha256_file(path)
    assert prov["parent_checkpoint"]["network"] == "preset tiny (matched by the weights' shapes)"
    # the EMA weights after one step (decay 0.999) are the released weights, not a fresh init
    ema, fresh = ckpt["model"], Foldline(load_preset("tiny")).state_dict()

    def farthest(state: dict) -> float:
        return max(float((state[k].float() - v.float()).abs().max()) for k, v in released.items())

    assert farthest(ema) < 1e-2 < farthest(fresh)


@pytest.mark.parametrize("entry", ["init", "resume"])
def test_a_payload_checkpoint_never_runs_in_training(features, tmp_path, entry):
    from test_infer_checkpoint import payload_checkpoint

    path, marker = payload_checkpoint(tmp_path, Foldline(load_preset("tiny")).state_dict())
    out = tmp_path / "stage1"
    extra = ["--init-checkpoint", str(path)]
    if entry == "resume":
        out.mkdir()
        path = out / "last.pt"
        (tmp_path / "payload.pt").rename(path)
        extra = []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(_cmd(1, features, out, 1, *extra), capture_output=True, text=True, env=env, cwd=REPO,
                         timeout=600)  # fmt: skip
    assert run.returncode == 1 and not marker.exists()
    last_line = run.stderr.strip().splitlines()[-1]
    assert (
        last_line.startswith(f"train: checkpoint {path}: refused") and "weights_only=False" not in run.stderr
    )
    assert not (out / "checkpoint.pt").exists()


def test_training_reads_sigma_data_from_the_network(features, monkeypatch):
    """sigma_data has one home, the network config: the EDM loss weight, the training noise levels and
    the mini-rollout's schedule use the network's value, and the stage recipe cannot set another."""
    import model.train.loop as loop
    from model.train.stages import StageConfigError

    cfg = resolve_stage(STAGES, 0, SMALL)
    assert "sigma_data" not in cfg
    with pytest.raises(StageConfigError):
        resolve_stage(STAGES, 0, [*SMALL, "sigma_data=8.0"])
    seen = []

    def recording(name, function):
        def call(*args, **kwargs):
            seen.append((name, kwargs.get("sigma_data", args[1] if len(args) > 1 else None)))
            return function(*args, **kwargs)

        return call

    losses = loop.losses
    monkeypatch.setattr(losses, "sample_noise_levels", recording("noise", losses.sample_noise_levels))
    monkeypatch.setattr(losses, "edm_loss_weight", recording("edm", losses.edm_loss_weight))
    monkeypatch.setattr(loop, "noise_schedule", recording("schedule", loop.noise_schedule))
    entries = D.build_index(features)
    D.exact_clusters(entries)
    example = D.TrainDataset(entries, cfg)[0]
    network = load_preset("tiny")
    network.sigma_data = 7.5
    torch.manual_seed(0)
    loss, _ = TrainingLoss(Foldline(network), cfg)(example["feats"], example["aux"], 1, 11, None)
    assert math.isfinite(loss.item())
    assert sorted(set(seen)) == [("edm", 7.5), ("noise", 7.5), ("schedule", 7.5)]
