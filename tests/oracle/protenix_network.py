"""Protenix 2.0.0's network as the oracle for Foldline's: same random weights, same inputs, its outputs.

Runs in the oracle environment (`make oracle`), never in Foldline's:

    .venv-oracle/bin/python tests/oracle/protenix_network.py REQUEST.json

    {"preset": "base" or a Foldline preset YAML path,  # the sizes (`protenix_args`)
     "seed": 1,                                  # random weights (no zero-initialised layer)
     "state_dict": "OUT.pt",                     # written: plain tensors, for weights_only=True loading
     "cases": [{"features": "IN.npz",            # Protenix's input feature dict, no batch axis
                "out": "OUT.npz", "n_cycle": 2}]}

The input npz is either Foldline's features converted by tests/oracle/convert.py or the output of
Protenix's own featurizer (tests/oracle/protenix_features.py; its `atom_array.*` entries are skipped).
The network is Protenix's own, built from its config; the MSA module takes every row in the given order
at inference, the triangle kernels run on the torch path and LayerNorm is torch's. Each output npz holds
the trunk (`s_inputs`, `s`, `z`), the distogram logits of z, one denoising step from that trunk
(`x_noisy` at three levels `sigma` -> `x_denoised`), the confidence head's logits on `x_confidence` (the
first denoised sample), and, for module-by-module parity, the inputs and outputs of the input embedder,
template embedder, MSA module and first pairformer block on the last recycling cycle
(`{module}.in.{name}`, `{module}.out[.{name}]`).

Importing this module needs neither Protenix nor torch: Foldline's tests call `run_oracle` (which starts
the oracle environment's interpreter) and read `SMALL_PRESET`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

# Foldline preset (config/presets/*.yaml shape) at CPU-test sizes that Protenix's config can express: its
# triangle (128 / 4 x 32), MSA pair-averaging (8 x 8), outer-product (32), confidence-head attention (16
# heads) and input-embedder atom encoder (3 blocks x 4 heads) sizes are fixed in its code, so these stay
# at the base values.
SMALL_PRESET: dict[str, Any] = {
    "c_s": 32,
    "c_z": 16,
    "c_s_inputs": 97,
    "c_atom": 16,
    "c_atompair": 8,
    "n_cycle": 2,
    "input_atom_encoder": {"n_blocks": 3, "n_heads": 4},
    "pairformer": {"n_blocks": 2},
    "msa": {"c_m": 8, "n_blocks": 2, "sample_at_inference": False},
    "template": {"c": 8, "n_blocks": 1},
    "diffusion": {
        "c_token": 32,
        "atom_encoder": {"n_blocks": 1, "n_heads": 4},
        "transformer": {"n_blocks": 2, "n_heads": 2},
        "atom_decoder": {"n_blocks": 1, "n_heads": 4},
    },
    "confidence": {"n_blocks": 1},
}


def protenix_args(cfg) -> str:
    """Protenix command-line config overrides that build the network of the Foldline ModelConfig `cfg`.

    Raises ValueError for a config Protenix cannot express (a size its code fixes differs).
    """
    fixed = {  # Protenix 2.0.0 fixes these in code: (Foldline's value, Protenix's)
        "pairformer.n_heads (the confidence head's)": (cfg.pairformer.n_heads, 16),
        "triangle.mul_hidden": (cfg.triangle.mul_hidden, 128),
        "triangle.att_heads": (cfg.triangle.att_heads, 4),
        "triangle.att_hidden": (cfg.triangle.att_hidden, 32),
        "msa.pwa_heads": (cfg.msa.pwa_heads, 8),
        "msa.pwa_hidden": (cfg.msa.pwa_hidden, 8),
        "msa.opm_hidden": (cfg.msa.opm_hidden, 32),
        "input_atom_encoder.n_blocks": (cfg.input_atom_encoder.n_blocks, 3),
        "input_atom_encoder.n_heads": (cfg.input_atom_encoder.n_heads, 4),
        "diffusion.c_fourier": (cfg.diffusion.c_fourier, 256),
        "template.transition_n": (cfg.template.transition_n, 2),
        "n_queries": (cfg.n_queries, 32),
        "n_keys": (cfg.n_keys, 128),
    }
    for name, (ours, theirs) in fixed.items():
        if ours != theirs:
            raise ValueError(f"preset {name} = {ours}: Protenix 2.0.0 fixes {theirs}")
    d = cfg.diffusion
    args = {
        "c_s": cfg.c_s,
        "c_z": cfg.c_z,
        "c_s_inputs": cfg.c_s_inputs,
        "c_token": cfg.c_token_input,
        "c_atom": cfg.c_atom,
        "c_atompair": cfg.c_atompair,
        "sigma_data": cfg.sigma_data,
        "no_bins": cfg.distogram_bins,
        "n_blocks": cfg.pairformer.n_blocks,
        "max_atoms_per_token": cfg.confidence.max_atoms_per_token,
        "model.relative_position_encoding.r_max": cfg.r_max,
        "model.relative_position_encoding.s_max": cfg.s_max,
        "model.msa_module.c_m": cfg.msa.c_m,
        "model.msa_module.n_blocks": cfg.msa.n_blocks,
        "model.template_embedder.c": cfg.template.c,
        "model.template_embedder.n_blocks": cfg.template.n_blocks,
        "model.diffusion_module.c_token": d.c_token,
        "model.confidence_head.n_blocks": cfg.confidence.n_blocks,
        "model.confidence_head.distance_bin_start": cfg.confidence.distance_bin_start,
        "model.confidence_head.distance_bin_end": cfg.confidence.distance_bin_end,
        "model.confidence_head.distance_bin_step": cfg.confidence.distance_bin_step,
        # Every MSA row at inference: the sample size is drawn from [min(min_size, N_msa), N_msa]
        # (`build_protenix` makes the order the given one).
        "data.msa.min_size.test": 1 << 30,
    }
    for part in ("atom_encoder", "transformer", "atom_decoder"):
        for field in ("n_blocks", "n_heads"):
            args[f"model.diffusion_module.{part}.{field}"] = getattr(getattr(d, part), field)
    return " ".join(f"--{key} {value}" for key, value in args.items())


def build_protenix(preset: str | Path, seed: int):
    """Protenix 2.0.0 at the sizes of a Foldline preset (name or YAML path), eval mode, every parameter
    random (seeded, as `model.nn.synthetic.randomize_parameters` fills Foldline's)."""
    import protenix_env

    protenix_env.prepare()
    sys.path.insert(0, str(REPO))  # Foldline's config and randomize_parameters: yaml and torch only
    from configs.configs_base import configs as configs_base
    from configs.configs_data import data_configs
    from configs.configs_inference import inference_configs
    from protenix.config.config import parse_configs
    from protenix.model.protenix import Protenix

    from model.nn.config import load_preset
    from model.nn.synthetic import randomize_parameters

    cfg = parse_configs(
        {**configs_base, "data": data_configs, **inference_configs},
        protenix_args(load_preset(preset)),
        fill_required_with_null=True,
    )
    net = Protenix(cfg).eval()
    net.configs.triangle_multiplicative = "torch"
    net.configs.triangle_attention = "torch"
    net.msa_module.msa_configs["strategy"] = "topk"  # the first k rows (k = all), not a permutation
    return randomize_parameters(net, seed=seed)


# Modules whose last call (the last recycling cycle) is recorded: (name, attribute path, input names).
_CAPTURED = (
    ("input_embedder", "input_embedder", ()),
    ("template_embedder", "template_embedder", ("z",)),
    ("msa_module", "msa_module", ("z", "s_inputs")),
    ("pairformer_block0", "pairformer_stack.blocks.0", ("s", "z")),
)


def _capture(net, record: dict) -> list:
    """Forward hooks that store each captured module's tensor inputs and outputs in `record`."""
    handles = []
    for name, path, in_names in _CAPTURED:
        module = net.get_submodule(path)

        def hook(module, args, output, name=name, in_names=in_names) -> None:
            tensors = [a for a in args if hasattr(a, "shape")]
            for in_name, value in zip(in_names, tensors[-len(in_names) :] if in_names else (), strict=True):
                record[f"{name}.in.{in_name}"] = value.detach().clone()
            if isinstance(output, tuple):
                for out_name, value in zip(in_names, output, strict=True):
                    record[f"{name}.out.{out_name}"] = value.detach().clone()
            elif hasattr(output, "shape"):  # the template embedder returns 0 without templates
                record[f"{name}.out"] = output.detach().clone()

        handles.append(module.register_forward_hook(hook))
    return handles


def run_case(net, features: dict, n_cycle: int, seed: int) -> dict:
    """Every output of one input feature dict (see the module docstring)."""
    import torch
    from protenix.model.protenix import update_input_feature_dict

    feats = {key: torch.from_numpy(value) for key, value in features.items() if "." not in key}
    if feats.get("template_aatype") is not None and feats["template_aatype"].shape[0] == 0:
        # No templates: Protenix's embedder adds 0 when the features are absent (it fails on an empty set).
        feats = {key: value for key, value in feats.items() if not key.startswith("template_")}
    if "relp" not in feats:
        feats = net.relative_position_encoding.generate_relp(feats)
    feats = update_input_feature_dict(feats)
    record: dict = {}
    handles = _capture(net, record)
    with torch.no_grad():
        s_inputs, s, z = net.get_pairformer_output(feats, N_cycle=n_cycle)[:3]
        for handle in handles:
            handle.remove()
        n_atom, n_token = feats["ref_pos"].shape[0], s.shape[0]
        sigma = torch.tensor([0.7, 15.0, 160.0])
        gen = torch.Generator().manual_seed(seed)
        x_noisy = torch.randn(len(sigma), n_atom, 3, generator=gen) * sigma[:, None, None]
        x_denoised = net.diffusion_module(x_noisy, sigma, feats, s_inputs, s, z, None, None, None)
        x_confidence = x_denoised[:1]  # one sample: the head runs its pairformer once per sample
        conf = net.confidence_head(feats, s_inputs, s, z, torch.ones(n_token, n_token), x_confidence)
        heads = ("plddt_logits", "pae_logits", "pde_logits", "resolved_logits")
        record |= dict(zip(heads, conf, strict=True))
        record |= {"s_inputs": s_inputs, "s": s, "z": z, "distogram": net.distogram_head(z)}
        record |= {"x_noisy": x_noisy, "sigma": sigma, "x_denoised": x_denoised, "x_confidence": x_confidence}
    return {key: value.float().numpy() for key, value in record.items()}


def run_oracle(
    preset: str | Path, cases: dict[str, tuple[Path, int]], workdir: Path, seed: int = 1
) -> tuple[Path, dict[str, dict]]:
    """From the test environment: Protenix on each case {name: (features npz, n_cycle)}. Skips the
    calling test when the oracle environment is absent.

    Returns the state dict's path and each case's outputs {name: {key: numpy array}}.
    """
    import subprocess

    import numpy as np

    from oracle import ORACLE_PYTHON, require_oracle

    require_oracle()
    workdir.mkdir(parents=True, exist_ok=True)
    request = {
        "preset": str(preset),
        "seed": seed,
        "state_dict": str(workdir / "protenix_state_dict.pt"),
        "cases": [
            {"features": str(path), "out": str(workdir / f"{name}.out.npz"), "n_cycle": n_cycle}
            for name, (path, n_cycle) in cases.items()
        ],
    }
    request_path = workdir / "request.json"
    request_path.write_text(json.dumps(request, indent=1))
    done = subprocess.run(
        [str(ORACLE_PYTHON), str(Path(__file__)), str(request_path)], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"Protenix network oracle failed:\n{done.stderr[-4000:]}")
    outputs = {}
    for name in cases:
        with np.load(workdir / f"{name}.out.npz") as data:
            outputs[name] = {key: data[key] for key in data.files}
    return Path(request["state_dict"]), outputs


def _save_npz(path: Path, arrays: dict) -> None:
    import numpy as np

    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def main(request_path: str) -> None:
    import numpy as np
    import torch

    request = json.loads(Path(request_path).read_text())
    seed = int(request["seed"])
    net = build_protenix(request["preset"], seed)
    state_path = Path(request["state_dict"])
    tmp = state_path.with_name(f".{state_path.name}.tmp")
    torch.save({key: value.detach().clone() for key, value in net.state_dict().items()}, tmp)
    tmp.replace(state_path)
    for case in request.get("cases", []):
        with np.load(case["features"]) as data:
            features = {key: data[key] for key in data.files}
        _save_npz(Path(case["out"]), run_case(net, features, int(case["n_cycle"]), seed))


if __name__ == "__main__":
    main(*sys.argv[1:])
