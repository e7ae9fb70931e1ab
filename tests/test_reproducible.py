"""Reruns are reproducible across checkouts: the demo workflow (training included) run in two copies of
the working tree, in folders of different path lengths and with environments of different sizes, gives
byte-identical features, checkpoints, metrics (timing columns aside) and predictions (provenance paths
and timings aside).

The environment's size moves the heap layout and so the alignment of buffers; MKL's fast kernels
rounded differently with it (model/__init__.py sets its strict mode), which made the stage-0 loss of two
clones part at step 3.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

SNAKEMAKE = Path(sys.executable).parent / "snakemake"
TIMING_COLUMNS = ("step_time", "gpu_mem_gb")
PROVENANCE_VARYING = ("seconds", "peak_memory_bytes")  # timings; paths are compared relative


def copy_working_tree(dest: Path) -> Path:
    """The tracked and untracked (not ignored) files of the working tree, as they are now."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        src = REPO / name
        if src.is_file() and not name.startswith(("results/", ".snakemake/")):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name, follow_symlinks=False)
    return dest


def run_demo(copy: Path, padding: int) -> None:
    env = dict(os.environ, PATH=f"{SNAKEMAKE.parent}{os.pathsep}{os.environ['PATH']}")
    env["FOLDLINE_TEST_PADDING"] = "x" * padding  # another environment size, another heap layout
    proc = subprocess.run(
        [str(SNAKEMAKE), "predict", "--configfile", "config/examples/demo.yaml", "--cores", "2"],
        cwd=copy, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, f"demo in {copy} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("reproducible")
    first = copy_working_tree(root / "a")
    second = copy_working_tree(root / "checkout_in_a_folder_with_a_much_longer_name")
    run_demo(first, 1)
    run_demo(second, 112)
    return first / "results", second / "results"


def files(results: Path, pattern: str) -> list[str]:
    return sorted(str(p.relative_to(results)) for p in results.glob(pattern) if p.is_file())


def assert_same_bytes(runs, pattern: str) -> list[str]:
    first, second = runs
    names = files(first, pattern)
    assert names and names == files(second, pattern)
    differ = [n for n in names if (first / n).read_bytes() != (second / n).read_bytes()]
    assert not differ, f"files differ between the two copies: {differ}"
    return names


@pytest.mark.slow
def test_features_are_byte_identical(runs):
    names = assert_same_bytes(runs, "features/**/*.h5")
    assert "features/trp_cage_atp.h5" in names and any(n.startswith("features/train/") for n in names)


@pytest.mark.slow
def test_checkpoints_are_byte_identical(runs):
    names = assert_same_bytes(runs, "train/stage*/*.pt")
    assert len(names) == 8  # checkpoint.pt and last.pt of four stages


@pytest.mark.slow
def test_metrics_are_identical_but_for_timings(runs):
    for stage in range(4):
        rows = []
        for results in runs:
            with open(results / f"train/stage{stage}/metrics.csv") as f:
                table = csv.DictReader(f)
                rows.append([{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in table])
        assert rows[0] and rows[0] == rows[1], f"stage {stage} metrics differ"
    for stage in range(4):
        provenance = [json.loads((r / f"train/stage{stage}/provenance.json").read_text()) for r in runs]
        assert provenance[0] == provenance[1]


def _comparable(provenance: dict, results: Path) -> dict:
    """provenance.json with paths made relative to the copy and timings left out."""
    root = str(results.parent.resolve())
    text = json.dumps({k: v for k, v in provenance.items() if k not in PROVENANCE_VARYING})
    return json.loads(text.replace(root, "<copy>"))


@pytest.mark.slow
def test_predictions_are_byte_identical_but_for_provenance(runs):
    first, second = runs
    names = [n for n in files(first, "predictions/**/*") if not n.endswith("provenance.json")]
    assert names == [n for n in files(second, "predictions/**/*") if not n.endswith("provenance.json")]
    assert any(n.endswith(".sdf") for n in names) and any(n.endswith("model.cif") for n in names)
    assert [n for n in names if (first / n).read_bytes() != (second / n).read_bytes()] == []
    for name in files(first, "predictions/*/provenance.json"):
        recorded = [_comparable(json.loads((r / name).read_text()), r) for r in runs]
        assert recorded[0] == recorded[1], name
