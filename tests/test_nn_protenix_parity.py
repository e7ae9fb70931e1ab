"""Numerical parity with the released Protenix 2.0.0 model code (base v1.0.0 sizes).

Needs the Protenix sources, which are not a project dependency, so it is skipped unless
FOLDLINE_PROTENIX_SRC names an unpacked wheel (`pip download protenix==2.0.0 --no-deps`, unzip) and
its light dependencies (ml_collections, optree, scipy) are importable, e.g. from a `pip install
--target DIR` folder named by FOLDLINE_PROTENIX_DEPS. Protenix's random weights (no zero layers) are
loaded into Foldline with `load_state_dict(strict=True)` — no key mapping — and every stage must agree.
"""

from __future__ import annotations

import os
import sys
import types

import pytest
import torch
from oracle.convert import to_protenix_features

from model.nn.network import Foldline, load_preset
from model.nn.synthetic import randomize_parameters, synthetic_features

SRC = os.environ.get("FOLDLINE_PROTENIX_SRC")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SRC, reason="FOLDLINE_PROTENIX_SRC not set (Protenix sources needed)"),
]


def _protenix_base() -> torch.nn.Module:
    sys.path[:0] = [SRC, *filter(None, [os.environ.get("FOLDLINE_PROTENIX_DEPS")])]
    os.environ["LAYERNORM_TYPE"] = "torch"  # plain LayerNorm instead of its CUDA extension
    stub = types.ModuleType("protenix.model.layer_norm")
    stub.FusedLayerNorm = None
    sys.modules["protenix.model.layer_norm"] = stub
    sys.modules["protenix.model.layer_norm.layer_norm"] = stub
    from configs.configs_base import configs as configs_base
    from configs.configs_data import data_configs
    from configs.configs_inference import inference_configs
    from configs.configs_model_type import model_configs
    from protenix.config.config import parse_configs
    from protenix.model.protenix import Protenix

    cfg = parse_configs(
        {**configs_base, "data": data_configs, **inference_configs}, "", fill_required_with_null=True
    )
    cfg.model.N_cycle = model_configs["protenix_base_default_v1.0.0"]["model"]["N_cycle"]
    cfg.model.template_embedder.n_blocks = 2
    net = Protenix(cfg).eval()
    net.configs.triangle_multiplicative = "torch"
    net.configs.triangle_attention = "torch"
    return net


def _protenix_features(f: dict[str, torch.Tensor], px: torch.nn.Module) -> dict:
    """Foldline's features as Protenix's model input, with Protenix's own relative-position features."""
    from protenix.model.protenix import update_input_feature_dict

    return update_input_feature_dict(px.relative_position_encoding.generate_relp(to_protenix_features(f)))


def test_foldline_matches_protenix_base_v1_with_its_weights():
    px = randomize_parameters(_protenix_base(), seed=1)
    fl = Foldline(load_preset("base")).eval()
    fl.load_state_dict(px.state_dict(), strict=True)

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).norm() / b.norm())

    # One MSA row: Protenix subsamples rows at random even in inference, one row is deterministic.
    f = synthetic_features(12, atoms_per_token=6, n_msa=1, n_templ=2, seed=2)
    f["ref_charge"][::5] = 1.0
    pf = _protenix_features(f, px)
    with torch.no_grad():
        trunk = fl.run_trunk(f, n_cycle=2, dtype=torch.float32)
        p_sinputs, p_s, p_z = px.get_pairformer_output(pf, N_cycle=2)[:3]
        assert rel(trunk.s_inputs, p_sinputs) < 1e-5
        assert rel(trunk.s, p_s) < 1e-5 and rel(trunk.z, p_z) < 1e-5
        sigma = torch.tensor([0.7, 15.0, 160.0])
        x_noisy = torch.randn(3, f["ref_pos"].shape[0], 3, generator=torch.Generator().manual_seed(0)) * 16
        p_x = px.diffusion_module(x_noisy, sigma, pf, trunk.s_inputs, trunk.s, trunk.z, None, None, None)
        x = fl.diffusion.denoise(x_noisy, sigma, fl.diffusion.prepare(f, trunk))
        assert rel(x, p_x) < 1e-5
        p_conf = px.confidence_head(pf, trunk.s_inputs, trunk.s, trunk.z, torch.ones(12, 12), x)
        conf = fl.confidence(f, trunk, x)
        for name, ref in zip(
            ("plddt_logits", "pae_logits", "pde_logits", "resolved_logits"), p_conf, strict=True
        ):
            assert rel(conf[name], ref) < 1e-5, name
        torch.testing.assert_close(fl.distogram(trunk.z), px.distogram_head(trunk.z))
