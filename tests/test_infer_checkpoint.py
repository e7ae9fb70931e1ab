"""Checkpoint loading: weights_only, training-checkpoint layout, clear errors, explicit random init."""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from model.fileio import sha256_file
from model.infer.checkpoint import (
    CheckpointError,
    fit_problems,
    is_random_init,
    load_network_weights,
    read_state_dict,
)
from model.train.checkpoint import rng_state, save_checkpoint


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
    state = read_state_dict(path)
    assert state.keys() == src.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in src.state_dict().items())


def test_bare_and_ddp_state_dicts(tmp_path):
    src = small_net()
    torch.save({f"module.{k}": v for k, v in src.state_dict().items()}, tmp_path / "ddp.pt")
    state = read_state_dict(tmp_path / "ddp.pt")
    assert state.keys() == src.state_dict().keys() and torch.equal(state["0.weight"], src[0].weight)


def test_mismatch_names_missing_unexpected_and_shapes(tmp_path):
    torch.save({"model": small_net(4).state_dict() | {"extra.weight": torch.zeros(1)}}, tmp_path / "c.pt")
    net = torch.nn.Sequential(
        torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(4, 2), torch.nn.Linear(2, 2)
    )
    msg = "; ".join(fit_problems(net.state_dict(), read_state_dict(tmp_path / "c.pt")))
    assert "3.weight" in msg and "missing" in msg
    assert "extra.weight" in msg and "unexpected" in msg
    assert "0.weight (4, 3) vs (5, 3)" in msg


def test_missing_and_unsafe_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_state_dict(tmp_path / "absent.pt")

    # an arbitrary pickled object (here argparse.Namespace) is refused by weights_only
    torch.save({"model": small_net().state_dict(), "obj": argparse.Namespace(a=1)}, tmp_path / "unsafe.pt")
    with pytest.raises(CheckpointError, match="refused: it holds a Python object .*argparse.Namespace"):
        read_state_dict(tmp_path / "unsafe.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="not a Foldline checkpoint"):
        read_state_dict(tmp_path / "list.pt")


def test_random_init_is_explicit():
    assert is_random_init(None) and is_random_init("none") and is_random_init("None")
    assert not is_random_init("results/train/stage3/checkpoint.pt")
    loaded = load_network_weights("none", "tiny")
    assert loaded.state is None and loaded.provenance == {"checkpoint": None, "sha256": None}
    assert loaded.network_source == "preset tiny"


def test_predict_script_loads_a_real_checkpoint_and_refuses_a_mismatch(tmp_path, capsys):
    import importlib.util

    from conftest import REPO

    from model.nn.network import Foldline, load_preset

    spec = importlib.util.spec_from_file_location("predict_script", REPO / "scripts" / "predict.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    net = Foldline(load_preset("tiny"))
    good = save_checkpoint(tmp_path / "good.pt", {"model": net.state_dict(), "step": 5, "rng": rng_state()})
    assert load_network_weights(good, "tiny").provenance["sha256"] == sha256_file(good)
    state = net.state_dict()
    dropped = sorted(state)[0]
    del state[dropped]
    bad = save_checkpoint(tmp_path / "bad.pt", {"model": state})
    args = ["--features", str(tmp_path / "T1.h5"), "--preset", "tiny", "--device", "cpu",
            "--out-dir", str(tmp_path / "pred"), "--seeds", "1", "--samples", "1", "--steps", "2",
            "--cycles", "1", "--precision", "auto", "--trunk-per-seed"]  # fmt: skip
    assert script.main([*args, "--checkpoint", str(bad), "--failed-dir", str(tmp_path / "f")]) == 0
    err = capsys.readouterr().err
    assert "missing" in err and dropped in err
    reason = (tmp_path / "f" / "T1.txt").read_text()  # the shard's every target fails with the reason
    assert reason.count("\n") == 1 and str(bad) in reason and dropped in reason


# --------------------------------------------------------------------------- networks carried by files
class WritesAFile:
    """A pickled object that, when unpickled without weights_only, creates `marker` (a payload)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def payload_checkpoint(tmp_path: Path, state: dict) -> tuple[Path, Path]:
    """A checkpoint whose extra entry runs code when unpickled, and the file that code writes. The
    payload is proven live: calling what it hands the unpickler writes the file (removed again)."""
    marker = tmp_path / "payload-ran"
    path = tmp_path / "payload.pt"
    payload = WritesAFile(marker)
    torch.save({"model": state, "note": payload}, path)
    call, args = payload.__reduce__()
    call(*args)
    assert marker.is_file()
    marker.unlink()
    return path, marker


def protenix_release(state: dict[str, torch.Tensor]) -> dict:
    """A released Protenix checkpoint's layout: DDP-prefixed weights next to optimizer entries."""
    return {"model": {f"module.{k}": v for k, v in state.items()}, "optimizer": {"state": {}}, "step": 7}


@pytest.fixture(scope="module")
def trp_cage(tmp_path_factory) -> Path:
    """Features of the 20-residue Trp-cage (PDB 1L2Y), as build_features writes them."""
    from conftest import MMCIF_DIR

    from model.data import store
    from model.data.ccd import load_ccd
    from model.data.features import featurize
    from model.data.structure import parse_mmcif

    ccd = load_ccd()
    st = parse_mmcif(next(MMCIF_DIR.glob("1l2y.cif*")), ccd, assembly=None)
    fz = featurize(st, ccd, None, None, seed=0)
    attrs = {"target_id": "trp", "content_hash": "trp", "ccd_release": ccd.release, **fz.attrs}
    out = tmp_path_factory.mktemp("trp") / "trp.h5"
    return store.write_features(out, fz.features, fz.meta, attrs)


def _predict(tmp_path: Path, features: Path, checkpoint: Path | str, preset: str) -> tuple[int, Path]:
    import importlib.util

    from conftest import REPO

    spec = importlib.util.spec_from_file_location("predict_script", REPO / "scripts" / "predict.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    argv = ["--features", str(features), "--checkpoint", str(checkpoint), "--preset", preset,
            "--out-dir", str(tmp_path / "pred"), "--failed-dir", str(tmp_path / "failed"),
            "--seeds", "1", "--samples", "1", "--steps", "2", "--cycles", "1", "--device", "cpu",
            "--precision", "auto", "--trunk-per-seed"]  # fmt: skip
    return script.main(argv), tmp_path


def test_a_tiny_checkpoint_predicts_under_preset_base(tmp_path, trp_cage):
    from model.nn.network import Foldline, load_preset

    tiny = load_preset("tiny")
    path = save_checkpoint(
        tmp_path / "stage3.pt", {"model": Foldline(tiny).state_dict(), "network": dataclasses.asdict(tiny)}
    )
    rc, out = _predict(tmp_path, trp_cage, path, "base")
    assert rc == 0 and not (out / "failed" / "trp.txt").exists()
    prov = json.loads((out / "pred" / "trp" / "provenance.json").read_text())
    assert prov["network_source"] == "checkpoint" and prov["preset"] is None
    assert prov["network_config"] == json.loads(json.dumps(dataclasses.asdict(tiny)))
    assert prov["settings"]["n_step"] == 2 and prov["sha256"] == sha256_file(path)


def test_a_released_protenix_file_predicts_with_the_preset_its_shapes_fit(tmp_path, trp_cage):
    from model.infer.checkpoint import load_network_weights
    from model.nn.network import Foldline, load_preset

    net = Foldline(load_preset("tiny"))
    path = tmp_path / "weights.pt"
    torch.save(protenix_release(net.state_dict()), path)
    loaded = load_network_weights(path, "base")
    assert loaded.preset == "tiny" and loaded.network_source == "preset tiny (matched by the weights' shapes)"
    assert all(torch.equal(loaded.state[k], v) for k, v in net.state_dict().items())
    rc, out = _predict(tmp_path, trp_cage, path, "base")
    assert rc == 0 and not (out / "failed" / "trp.txt").exists()
    prov = json.loads((out / "pred" / "trp" / "provenance.json").read_text())
    assert prov["preset"] == "tiny" and prov["network_source"] == loaded.network_source


def test_a_protenix_file_is_matched_to_protenix_presets_by_name_first(tmp_path):
    from model.infer.checkpoint import _candidate_presets

    obj = protenix_release({"a": torch.zeros(1)})
    order = _candidate_presets(obj, tmp_path / "protenix_mini_default_v0.5.0.pt", "base")
    assert order[0] == ("protenix_mini_default_v0.5.0", " (named by the file)")
    # a release without a recognisable name tries Protenix's presets before the configured one
    names = [n for n, _ in _candidate_presets(obj, tmp_path / "model.pt", "base")]
    assert names.index("protenix_base_default_v1.0.0") < names.index("base") < names.index("tiny")
    # a bare Foldline-style state dict tries the configured preset first
    bare = [n for n, _ in _candidate_presets({"model": {"a": torch.zeros(1)}}, tmp_path / "model.pt", "tiny")]
    assert bare[0] == "tiny"


def test_a_payload_checkpoint_fails_every_target_without_running(tmp_path, trp_cage, capsys):
    from model.nn.network import Foldline, load_preset

    path, marker = payload_checkpoint(tmp_path, Foldline(load_preset("tiny")).state_dict())
    rc, out = _predict(tmp_path, trp_cage, path, "tiny")
    assert rc == 0 and not marker.exists()
    reason = (out / "failed" / "trp.txt").read_text()
    assert reason.count("\n") == 1 and str(path) in reason and "refused" in reason
    assert "weights_only=False" not in reason + capsys.readouterr().err
    assert not (out / "pred" / "trp").exists()


def flip_weight_bytes(data: bytes) -> bytes:
    """`data` (a torch zip checkpoint) with 8 bytes inverted in the middle of its largest tensor's
    storage: torch.load alone reads such a file without complaint, as other numbers."""
    archive = zipfile.ZipFile(io.BytesIO(data))
    member = max(archive.infolist(), key=lambda info: info.file_size)
    local = member.header_offset
    name_len, extra_len = struct.unpack("<HH", data[local + 26 : local + 30])
    at = local + 30 + name_len + extra_len + member.file_size // 2
    return data[:at] + bytes(b ^ 0xFF for b in data[at : at + 8]) + data[at + 8 :]


def test_truncated_flipped_and_garbage_files_are_one_line_errors(tmp_path):
    good = save_checkpoint(tmp_path / "good.pt", {"model": small_net(64).state_dict(), "rng": rng_state()})
    data = good.read_bytes()
    flipped = flip_weight_bytes(data)
    assert torch.load(io.BytesIO(flipped), weights_only=True)["model"]["0.weight"].shape == (64, 3)  # loads
    cases = {"truncated.pt": data[: len(data) // 2], "flipped.pt": flipped, "garbage.pt": b"x" * 300}
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(CheckpointError) as err:
            read_state_dict(path)
        message = str(err.value)
        assert message.startswith(f"checkpoint {path}: ") and "\n" not in message, message
        assert "weights_only" not in message
    assert "checksum mismatch" in str(
        pytest.raises(CheckpointError, read_state_dict, tmp_path / "flipped.pt").value
    )


@pytest.mark.slow
def test_protenix_presets_have_the_released_models_parameter_layout(tmp_path):
    """Each protenix_* preset builds a network with exactly the state-dict keys and shapes of Protenix
    2.0.0's model of that name (oracle), so its released checkpoint loads strictly, with no mapping."""
    from test_infer_sampler import PROTENIX_PRESETS, _protenix_inference

    from model.infer.checkpoint import _network_shapes
    from model.nn.config import load_preset

    # protenix_base_20250630_v1.0.0 has the same model config as protenix_base_default_v1.0.0
    distinct = [n for n in PROTENIX_PRESETS if n != "protenix_base_20250630_v1.0.0"]
    theirs = _protenix_inference({"shapes": distinct}, tmp_path, timeout=1200)["shapes"]
    for name in distinct:
        ours = {k: list(v.shape) for k, v in _network_shapes(load_preset(name)).items()}
        assert ours == theirs[name], name
    assert load_preset("protenix_base_20250630_v1.0.0") == load_preset("protenix_base_default_v1.0.0")
