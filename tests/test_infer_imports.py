"""Import hygiene: the inference timing path (sampler, confidence, precision, checkpoint, predict,
bench/predict.py) must run where only torch, numpy and h5py exist (GPU nodes, the H100)."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO

BLOCKED = ("gemmi", "rdkit", "biotite", "pyhmmer", "matplotlib")


def test_timing_path_needs_no_chemistry_stack():
    code = (
        "import sys\n"
        f"for name in {BLOCKED!r}:\n"
        "    sys.modules[name] = None  # any import of these now raises ImportError\n"
        "import model.nn.sampler, model.infer.confidence, model.infer.precision\n"
        "import model.infer.checkpoint, model.infer.predict, model.nn.network, model.nn.synthetic\n"
        "sys.argv = ['bench/predict.py', '--help']\n"
        "import runpy\n"
        "try:\n"
        "    runpy.run_path('bench/predict.py', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_predict_script_help_runs_standalone():
    done = subprocess.run(
        [sys.executable, "scripts/predict.py", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "--checkpoint" in done.stdout
