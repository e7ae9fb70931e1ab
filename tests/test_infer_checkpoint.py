"""Checkpoint loading: weights_only, training-checkpoint layout, clear errors, explicit random init."""

from __future__ import annotations

import argparse

import pytest
import torch

from model.infer.checkpoint import CheckpointError, is_random_init, load_weights
from model.train.checkpoint import rng_state, save_checkpoint, sha256_file


def small_net(width: int = 4) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(3, width), torch.nn.ReLU(), torch.nn.Linear(width, 2))


def test_loads_training_checkpoint_with_rng_state(tmp_path):
    src = small_net()
    opt = torch.optim.AdamW(src.parameters())
    src(torch.randn(2, 3)).sum().backward()
    opt.step()
    path = save_checkpoint(
        tmp_path / "checkpoint.pt",
        {
            "model": src.state_dict(),
            "optimizer": opt.state_dict(),
            "step": 1,
            "rng": rng_state(),
            "config": {"a": 1},
        },
    )
    dst = small_net()
    info = load_weights(dst, path)
    assert info["sha256"] == sha256_file(path)
    for key, value in src.state_dict().items():
        assert torch.equal(dst.state_dict()[key], value)


def test_bare_and_ddp_state_dicts(tmp_path):
    src = small_net()
    torch.save({f"module.{k}": v for k, v in src.state_dict().items()}, tmp_path / "ddp.pt")
    dst = small_net()
    load_weights(dst, tmp_path / "ddp.pt")
    assert torch.equal(dst[0].weight, src[0].weight)


def test_mismatch_names_missing_unexpected_and_shapes(tmp_path):
    torch.save({"model": small_net(4).state_dict() | {"extra.weight": torch.zeros(1)}}, tmp_path / "c.pt")
    net = torch.nn.Sequential(
        torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(4, 2), torch.nn.Linear(2, 2)
    )
    with pytest.raises(CheckpointError) as err:
        load_weights(net, tmp_path / "c.pt")
    msg = str(err.value)
    assert "3.weight" in msg and "missing" in msg
    assert "extra.weight" in msg and "unexpected" in msg
    assert "0.weight (4, 3) vs (5, 3)" in msg


def test_missing_and_unsafe_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_weights(small_net(), tmp_path / "absent.pt")

    # an arbitrary pickled object (here argparse.Namespace) is refused by weights_only
    torch.save({"model": small_net().state_dict(), "obj": argparse.Namespace(a=1)}, tmp_path / "unsafe.pt")
    with pytest.raises(CheckpointError, match="weights_only"):
        load_weights(small_net(), tmp_path / "unsafe.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="not a Foldline checkpoint"):
        load_weights(small_net(), tmp_path / "list.pt")


def test_random_init_is_explicit():
    assert is_random_init(None) and is_random_init("none") and is_random_init("None")
    assert not is_random_init("results/train/stage3/checkpoint.pt")
    net = small_net()
    before = net[0].weight.clone()
    assert load_weights(net, "none") == {"checkpoint": None, "sha256": None}
    assert torch.equal(net[0].weight, before)


def test_predict_script_loads_a_real_checkpoint_and_refuses_a_mismatch(tmp_path, capsys):
    import importlib.util

    from conftest import REPO

    from model.nn.network import Foldline, load_preset

    spec = importlib.util.spec_from_file_location("predict_script", REPO / "scripts" / "predict.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    net = Foldline(load_preset("tiny"))
    good = save_checkpoint(tmp_path / "good.pt", {"model": net.state_dict(), "step": 5, "rng": rng_state()})
    assert load_weights(Foldline(load_preset("tiny")), good)["sha256"] == sha256_file(good)
    state = net.state_dict()
    dropped = sorted(state)[0]
    del state[dropped]
    bad = save_checkpoint(tmp_path / "bad.pt", {"model": state})
    args = ["--features", str(tmp_path / "none.h5"), "--preset", "tiny", "--device", "cpu"]
    assert script.main([*args, "--checkpoint", str(bad), "--failed-dir", str(tmp_path / "f")]) == 1
    err = capsys.readouterr().err
    assert "missing" in err and dropped in err
