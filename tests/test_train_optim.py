"""LR schedule, EMA and checkpoint/RNG round trips."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from conftest import REPO

from model.fileio import sha256_file
from model.infer.checkpoint import CheckpointError
from model.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from model.train.ema import Ema
from model.train.schedule import af3_lr_factor, make_optimizer, make_scheduler
from model.train.stages import resolve_stage


def test_af3_schedule_warmup_then_step_decay():
    assert af3_lr_factor(0, 1000, 50000, 0.95) == pytest.approx(1 / 1000)
    assert af3_lr_factor(499, 1000, 50000, 0.95) == pytest.approx(0.5)
    assert af3_lr_factor(999, 1000, 50000, 0.95) == pytest.approx(1.0)
    assert af3_lr_factor(49_999, 1000, 50000, 0.95) == 1.0
    assert af3_lr_factor(50_000, 1000, 50000, 0.95) == pytest.approx(0.95)
    assert af3_lr_factor(120_000, 1000, 50000, 0.95) == pytest.approx(0.95**2)
    cfg = resolve_stage(REPO / "config" / "stages.yaml", 0)
    opt = make_optimizer([torch.nn.Parameter(torch.zeros(2))], cfg)
    assert opt.defaults["betas"] == (0.9, 0.95) and opt.defaults["eps"] == 1e-8
    sched = make_scheduler(opt, cfg)
    lrs = []
    for _ in range(1000):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1.8e-3 / 1000) and lrs[-1] == pytest.approx(1.8e-3)
    assert opt.param_groups[0]["lr"] == pytest.approx(1.8e-3)


def test_ema_converges_geometrically():
    net = torch.nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.zero_()
    ema = Ema(net, decay=0.9)
    with torch.no_grad():
        net.weight.fill_(1.0)
    for _ in range(10):
        ema.update(net)
    # shadow = 1 - 0.9^10 after 10 updates towards a constant 1 from 0
    torch.testing.assert_close(ema.shadow["weight"], torch.full((1, 2), 1 - 0.9**10))
    other = torch.nn.Linear(2, 1)
    ema.copy_to(other)
    torch.testing.assert_close(other.weight, ema.shadow["weight"])


def test_checkpoint_atomic_roundtrip_and_rng(tmp_path):
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    state = rng_state()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    path = save_checkpoint(tmp_path / "ckpt.pt", {"model": {"w": torch.ones(2)}, "rng": state, "step": 7})
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temp file left behind
    loaded = load_checkpoint(path)
    assert loaded["step"] == 7 and len(sha256_file(path)) == 64
    set_rng_state(loaded["rng"])
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1])
    assert expected[2] == again[2]
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
