"""bench/gpu.py on CPU with the tiny preset, so the GPU benchmark cannot rot between GPU sessions.

It runs where the GPU host runs it: a fresh process in which the chemistry, search and workflow
packages cannot be imported.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from conftest import REPO

BLOCKED = ("gemmi", "rdkit", "biotite", "pyhmmer", "matplotlib", "snakemake")


def run_bench(*args: str) -> subprocess.CompletedProcess:
    code = (
        "import runpy, sys\n"
        f"for name in {BLOCKED!r}:\n"
        "    sys.modules[name] = None  # any import of these now raises ImportError\n"
        f"sys.argv = ['bench/gpu.py', *{list(args)!r}]\n"
        "runpy.run_path('bench/gpu.py', run_name='__main__')\n"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)


def test_cpu_run_checks_times_trains_and_profiles(tmp_path):
    out = tmp_path / "gpu.json"
    done = run_bench(
        "--preset", "tiny", "--device", "cpu", "--sizes", "16", "--cycles", "1", "--steps", "2",
        "--samples", "2", "--variants", "sdpa/eager,flex/graph+tf32", "--check-size", "20", "--no-warmup",
        "--train-crop", "16", "--train-diffusion-batch", "2", "--train-cycles", "1",
        "--profile", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    checks = {(c["check"], c.get("dtype")): c for c in results["checks"]}
    assert len(checks) == 5  # 2 modules x {fp32, bf16} output checks, and the skipped CUDA-graph check
    for (name, _), check in checks.items():
        if "CUDA graph" in name:
            assert check["ok"] is None and "needs CUDA" in check["note"]
        else:
            assert check["ok"] is True and check["max_rel"] <= check["tolerance_rel"], check
            assert "flex vs sdpa" in name
    rows = {(r["n_token"], r["variant"]): r for r in results["predict"]}
    assert set(rows) == {(16, "sdpa/eager"), (16, "flex/graph+tf32")}
    for row in rows.values():
        assert set(row["stage_seconds"]) >= {"trunk", "diffusion", "confidence"}
        assert row["seconds"] > 0 and row["n_atom"] == 10 * row["n_token"]
    assert [t["triangle_kernel"] for t in results["train"]] == ["sdpa"]
    assert results["train"][0]["crop"] == 16 and len(results["train"][0]["steps"]) == 1
    assert [s["what"] for s in results["skipped"]] == ["train step [flex]"]  # no eager backward
    assert "module::TriangleAttention" in results["profile"]["table"]
    assert "| 16 | flex/graph+tf32 |" in done.stdout


def test_time_budget_skips_what_does_not_fit(tmp_path):
    out = tmp_path / "gpu.json"
    done = run_bench(
        "--preset", "tiny", "--device", "cpu", "--sizes", "16,20", "--no-checks",
        "--max-seconds", "0", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["predict"] == [] and results["train"] == []
    assert len(results["skipped"]) == 2 + 4  # a train step per kernel, then every size x variant


def test_check_record_fails_beyond_the_tolerance():
    spec = importlib.util.spec_from_file_location("bench_gpu", REPO / "bench" / "gpu.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    reference_kernel = {"max_abs": 0.1, "max_rel": 0.01}
    within = bench.check_record("x", "bf16", {"max_abs": 0.2, "max_rel": 0.035}, reference_kernel)
    beyond = bench.check_record("x", "bf16", {"max_abs": 0.2, "max_rel": 0.045}, reference_kernel)
    assert within["ok"] and not beyond["ok"]  # tolerance: 0.02 + 2 x 0.01
    assert not bench.check_record("x", "fp32", {"max_abs": 1.0, "max_rel": 0.01}, None)["ok"]
    with pytest.raises(SystemExit):
        bench.parse_args(["--variants", "sdpa/compiled"])
