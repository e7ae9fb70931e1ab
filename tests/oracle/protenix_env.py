"""Imports of Protenix 2.0.0 in the oracle environment: its CCD cache location and the stubs it needs.

Used only by the scripts that run under `.venv-oracle/bin/python` (never by Foldline's tests directly).
Protenix's data and model modules import two things that its CPU inference featurizer never calls:
the ESM protein language model (`esm`, for the ESM-feature model variants only) and a CUDA LayerNorm
extension (skipped with LAYERNORM_TYPE=torch). Both are stubbed before any Protenix import.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

ORACLE_ENV = Path(sys.prefix)
PROTENIX_ROOT = ORACLE_ENV / "protenix_root"
CCD_FILE = PROTENIX_ROOT / "common" / "components.cif"
CCD_CACHE = PROTENIX_ROOT / "common" / "components.cif.rdkit_mol.pkl"


def prepare() -> None:
    """Point Protenix at the oracle's CCD cache and stub the modules it imports but does not use."""
    os.environ["PROTENIX_ROOT_DIR"] = str(PROTENIX_ROOT)  # read by Protenix's configs at import
    os.environ["LAYERNORM_TYPE"] = "torch"
    if "esm" not in sys.modules:
        esm = types.ModuleType("esm")
        esm.FastaBatchedDataset = esm.pretrained = None
        sys.modules["esm"] = esm
    layer_norm = types.ModuleType("protenix.model.layer_norm")
    layer_norm.FusedLayerNorm = None
    sys.modules.setdefault("protenix.model.layer_norm", layer_norm)
    sys.modules.setdefault("protenix.model.layer_norm.layer_norm", layer_norm)
