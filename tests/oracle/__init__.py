"""Protenix 2.0.0 as a black-box oracle for Foldline's tests.

Protenix runs in its own environment, `.venv-oracle` (`make oracle` builds it; `make test` depends on
it), never in Foldline's. `protenix_features` runs its inference featurizer there in a subprocess
(`protenix_features.py`, whose docstring documents the command line) and loads the result;
`foldline_conformers` runs Foldline's own conformer code there, under Protenix's RDKit;
`convert.to_protenix_features` maps Foldline's features onto Protenix's names and encodings.
"""

from __future__ import annotations

import json
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
ORACLE_ENV = REPO / ".venv-oracle"
ORACLE_PYTHON = ORACLE_ENV / "bin" / "python"
RUNNER = Path(__file__).with_name("protenix_features.py")
CONFORMER_RUNNER = Path(__file__).with_name("foldline_conformers.py")


def require_oracle() -> None:
    """Skip the calling test when the oracle environment has not been built (`make oracle`)."""
    if not (ORACLE_ENV / ".installed").is_file():
        pytest.skip(f"Protenix oracle environment not built ({ORACLE_ENV}); run `make oracle`")


def protenix_features(
    input_json: Path,
    out_dir: Path,
    seed: int = 101,
    all_msa_rows: bool = False,
    use_rna_msa: bool = False,
    timeout: float = 600,
) -> dict[str, dict[str, np.ndarray]]:
    """Protenix's inference features of every job in `input_json`: {job name: {feature: array}}.

    Feature names are Protenix's; `atom_array.*` entries carry its atom annotations (see
    `protenix_features.py`). Skips the test when the oracle environment is absent.
    """
    require_oracle()
    command = [str(ORACLE_PYTHON), str(RUNNER), str(input_json), str(out_dir), "--seed", str(seed)]
    if all_msa_rows:
        command.append("--all-msa-rows")
    if use_rna_msa:
        command.append("--use-rna-msa")
    run = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=out_dir.parent)
    if run.returncode != 0:
        raise RuntimeError(f"Protenix oracle failed (exit {run.returncode}):\n{run.stderr[-4000:]}")
    out = {}
    for job in json.loads(Path(input_json).read_text()):
        with np.load(out_dir / f"{job['name']}.npz") as data:
            out[job["name"]] = {name: data[name] for name in data.files}
    return out


def foldline_conformers(components: dict, work_dir: Path, timeout: float = 600) -> dict[str, np.ndarray]:
    """{code: heavy-atom conformer} from Foldline's `reference_conformer` run in the oracle environment
    (RDKit 2025.9.3, Protenix's pin) on `components` ({code: Component} from Foldline's CCD), plus
    "rdkit_version". Skips the test when the oracle environment is absent."""
    require_oracle()
    work_dir.mkdir(parents=True, exist_ok=True)
    pickled, out = work_dir / "components.pkl", work_dir / "conformers.npz"
    pickled.write_bytes(pickle.dumps(components))
    command = [str(ORACLE_PYTHON), str(CONFORMER_RUNNER), str(pickled), str(out)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if run.returncode != 0:
        raise RuntimeError(
            f"Foldline's conformers in the oracle failed (exit {run.returncode}):\n{run.stderr[-4000:]}"
        )
    with np.load(out) as data:
        return {name: data[name] for name in data.files}
