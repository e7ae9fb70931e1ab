"""Protenix 2.0.0's inference settings, sampler and ranking as an oracle (run in `.venv-oracle`).

    .venv-oracle/bin/python tests/oracle/protenix_inference.py REQUEST.json OUT.json

REQUEST.json holds any of:
- "settings": [model names]: each model's N_cycle and `sample_diffusion` / `inference_noise_scheduler`
  settings as Protenix's configs resolve them (configs_base overlaid with configs_model_type);
- "schedules": [{"N_step", "s_max", "s_min", "rho", "sigma_data"}]: `InferenceNoiseScheduler` levels;
- "samples": [{"seed", "N_sample", "N_atom", "N_step", "gamma0", "gamma_min", "noise_scale_lambda",
  "step_scale_eta", "pull"}]: `sample_diffusion` run from `torch.manual_seed(seed)` with the rigid-motion
  equivariant denoiser x -> centre + (x - centre) * pull / (pull + t) (centre: the mean over atoms), on
  the `InferenceNoiseScheduler` schedule of that N_step;
- "rankings": [{"pae_logits" [S, T, T, 64], "asym_id" [T], "has_frame" [T], "clash" [S]}]: pTM, ipTM and
  ranking_score as `_compute_full_data_and_summary` combines them (disorder 0);
- "shapes": [model names]: {state-dict key: shape} of `Protenix(configs)` built for each model, as
  `runner/inference.py` configures it before loading that model's checkpoint.
OUT.json holds the same keys with the results, in order.
"""

from __future__ import annotations

import json
import sys

import protenix_env

protenix_env.prepare()

import torch  # noqa: E402
from configs.configs_base import configs as configs_base  # noqa: E402
from configs.configs_data import data_configs  # noqa: E402
from configs.configs_inference import inference_configs  # noqa: E402
from configs.configs_model_type import model_configs  # noqa: E402
from protenix.config.config import parse_configs  # noqa: E402
from protenix.model.generator import InferenceNoiseScheduler, sample_diffusion  # noqa: E402
from protenix.model.protenix import Protenix  # noqa: E402
from protenix.model.sample_confidence import calculate_iptm, calculate_ptm  # noqa: E402

PAE_BINS = {"min_bin": 0.0, "max_bin": 32.0, "no_bins": 64}


def settings(name: str) -> dict:
    model = model_configs[name]
    sample = {**configs_base["sample_diffusion"], **model.get("sample_diffusion", {})}
    sample = {k: v for k, v in sample.items() if k in ("gamma0", "gamma_min", "noise_scale_lambda",
                                                       "step_scale_eta", "N_step")}  # fmt: skip
    return {"N_cycle": model["model"]["N_cycle"], **sample, **configs_base["inference_noise_scheduler"]}


def schedule(req: dict) -> list[float]:
    scheduler = InferenceNoiseScheduler(req["s_max"], req["s_min"], req["rho"], req["sigma_data"])
    return scheduler(req["N_step"]).tolist()


def sample(req: dict) -> list:
    levels = InferenceNoiseScheduler()(req["N_step"])
    pull = float(req["pull"])

    def denoise(x_noisy, t_hat_noise_level, **_):
        centre = x_noisy.mean(dim=-2, keepdim=True)
        return centre + (x_noisy - centre) * (pull / (pull + t_hat_noise_level))[..., None, None]

    torch.manual_seed(req["seed"])
    x = sample_diffusion(
        denoise, {"atom_to_token_idx": torch.zeros(req["N_atom"], dtype=torch.long)}, torch.zeros(1, 1),
        None, None, None, None, None, levels, N_sample=req["N_sample"], gamma0=req["gamma0"],
        gamma_min=req["gamma_min"], noise_scale_lambda=req["noise_scale_lambda"],
        step_scale_eta=req["step_scale_eta"],
    )  # fmt: skip
    return x.tolist()


def ranking(req: dict) -> dict:
    probs = torch.tensor(req["pae_logits"]).softmax(-1)
    has_frame = torch.tensor(req["has_frame"])
    asym_id = torch.tensor(req["asym_id"])
    ptm = calculate_ptm(probs, has_frame=has_frame, **PAE_BINS)
    iptm = calculate_iptm(probs, has_frame=has_frame, asym_id=asym_id, **PAE_BINS)
    clash = torch.tensor(req["clash"], dtype=torch.float32)
    score = 0.8 * iptm + 0.2 * ptm + 0.5 * torch.zeros_like(ptm) - 100 * clash
    return {"ptm": ptm.tolist(), "iptm": iptm.tolist(), "ranking_score": score.tolist()}


def _overlay(node, update: dict) -> None:
    for key, value in update.items():
        if isinstance(value, dict):
            _overlay(node[key], value)
        else:
            node[key] = value


def shapes(name: str) -> dict[str, list[int]]:
    cfg = parse_configs(
        {**configs_base, "data": data_configs, **inference_configs}, "", fill_required_with_null=True
    )
    _overlay(cfg, {k: v for k, v in model_configs[name].items() if k in ("model", "sample_diffusion")})
    linspace = torch.linspace  # its drop-path rates are read with .item(): keep them off the meta device
    torch.linspace = lambda *args, **kwargs: linspace(*args, **{**kwargs, "device": "cpu"})
    try:
        with torch.device("meta"):
            net = Protenix(cfg)
    finally:
        torch.linspace = linspace
    return {k: list(v.shape) for k, v in net.state_dict().items()}


def main(argv: list[str]) -> int:
    request = json.loads(open(argv[0]).read())
    out = {
        "settings": {name: settings(name) for name in request.get("settings", [])},
        "schedules": [schedule(r) for r in request.get("schedules", [])],
        "samples": [sample(r) for r in request.get("samples", [])],
        "rankings": [ranking(r) for r in request.get("rankings", [])],
        "shapes": {name: shapes(name) for name in request.get("shapes", [])},
    }
    with open(argv[1], "w") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
