"""Numerical parity with Protenix 2.0.0's network at the full size of its released base v1.0.0 (slow).

The comparisons of tests/test_protenix_network_parity.py (module by module, whole trunk, one denoising
step, confidence head, distogram) at `base` sizes (368.48 M parameters, 2 template blocks), on one
synthetic input (12 tokens in 2 chains, 72 atoms, 5 MSA rows, 2 templates with gaps, 2 recycling cycles).
Protenix runs in its oracle environment (`make oracle`) with random weights that Foldline loads with
`load_state_dict(strict=True)`: no key mapping.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from oracle.convert import to_protenix_features
from oracle.protenix_network import run_oracle
from test_protenix_network_parity import (
    IDENTICAL_TOL,
    assert_within,
    head_errors,
    module_errors,
    synthetic_with_template_gaps,
    trunk_errors,
)

from model.nn.network import Foldline, TrunkOutput, load_preset

pytestmark = pytest.mark.slow


def test_foldline_matches_protenix_base_v1_with_its_weights(tmp_path: Path) -> None:
    feats = synthetic_with_template_gaps()
    features = tmp_path / "features.npz"
    np.savez(features, **{key: value.numpy() for key, value in to_protenix_features(feats).items()})
    state_dict, outputs = run_oracle("base", {"synthetic": (features, 2)}, tmp_path / "oracle")
    out = {key: torch.from_numpy(value) for key, value in outputs["synthetic"].items()}
    net = Foldline(load_preset("base")).eval()
    net.load_state_dict(torch.load(state_dict, weights_only=True), strict=True)
    with torch.no_grad():
        errors = module_errors(net, feats, out)
        trunk = net.run_trunk(feats, n_cycle=2, dtype=torch.float32)
        errors |= trunk_errors(trunk, out)
        errors |= head_errors(net, feats, TrunkOutput(out["s_inputs"], out["s"], out["z"]), out)
    assert "template_embedder" in errors
    assert_within(errors, IDENTICAL_TOL)
