"""Inference for one target: the trunk once per target or once per seed, all diffusion samples
batched, confidences.

torch/numpy only (GPU nodes; the benchmark imports this). Writing files is `model.infer.writer`'s
job (gemmi), called by `scripts/predict.py`.

The trunk (AF3 Alg 1) runs N_cycle recycles in the trunk precision, each on a fresh random subset of
the MSA rows drawn from a generator seeded with the prediction seed (AF3 §3.3, as Protenix does at
inference; `cfg.msa.sample_at_inference` off: every row, and the trunk is the same for every seed).
`settings.trunk_per_seed` on (AF3's and Protenix's behaviour) runs it per seed when it varies with the
seed; off, or when it does not vary, it runs once with the first seed and every seed reuses it.
Per seed s: the global torch RNG and a sampler generator are seeded with s; `net.diffusion.prepare`
computes every conditioning that does not depend on the noise level once; `sample_diffusion` (AF3
Alg 18) integrates N_step steps for N_sample samples in one batch (or in chunks of `sample_chunk`);
the confidence head scores all samples together; `confidence.summarize` turns logits into AF3's
metrics.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from model.infer import confidence
from model.infer.precision import PrecisionPlan, choose_precision
from model.nn.config import InferenceConfig, ModelConfig
from model.nn.network import TrunkOutput
from model.nn.sampler import noise_schedule, sample_diffusion


@dataclass
class PredictSettings:
    """Inference settings (config / command line). Defaults: AF3's 10/200/5.

    sampling: the sampler and ranking settings that come with the weights (`ModelConfig.inference`,
    AF3 Alg 18 and §5.9.3); the number of steps is `n_step`, which `for_network` takes from it
    unless asked otherwise.
    """

    n_cycle: int = 10
    n_step: int = 200
    n_sample: int = 5
    seeds: tuple[int, ...] = (1,)
    precision: str = "auto"  # auto (the token-count rule) | fp32 | bf16, for sampler and confidence head
    trunk_precision: str = "auto"  # auto = BF16 on CUDA, FP32 on CPU
    pair_chunk: int | None | str = "auto"
    sample_chunk: int | str = "auto"
    trunk_per_seed: bool = True  # off: one trunk per target, shared by every seed (faster, less diverse)
    sampling: InferenceConfig = field(default_factory=InferenceConfig)

    @classmethod
    def for_network(cls, cfg: ModelConfig, n_cycle: int = 0, n_step: int = 0, **kwargs) -> PredictSettings:
        """Settings for the network `cfg`: its N_cycle, N_step and sampler settings, where `n_cycle`
        and `n_step` are 0 (else those numbers); other fields from `kwargs`."""
        return cls(
            n_cycle=n_cycle or cfg.n_cycle,
            n_step=n_step or cfg.inference.n_step,
            sampling=replace(cfg.inference),
            **kwargs,
        )

    def as_dict(self) -> dict:
        return {**asdict(self), "seeds": list(self.seeds)}


@dataclass
class SeedPrediction:
    """One seed's samples: coords [S, A, 3] and the arrays of `confidence.summarize`."""

    seed: int
    coords: np.ndarray
    confidences: dict[str, np.ndarray]
    seconds: dict[str, float] = field(default_factory=dict)


def make_plan(n_token: int, settings: PredictSettings, device: torch.device) -> PrecisionPlan:
    """The precision rule and chunk sizes for this target under these settings."""
    return choose_precision(
        n_token,
        n_sample=settings.n_sample,
        device=device,
        sampler=settings.precision,
        confidence=settings.precision,
        trunk=settings.trunk_precision,
        pair_chunk=settings.pair_chunk,
        sample_chunk=settings.sample_chunk,
    )


def _sync(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def trunk_varies_with_seed(net: torch.nn.Module, settings: PredictSettings) -> bool:
    """Whether each seed needs its own trunk: only the per-recycle MSA row sample depends on the seed
    at inference (no dropout in eval mode)."""
    return settings.trunk_per_seed and net.cfg.msa.sample_at_inference


@torch.no_grad()
def run_trunk(
    net: torch.nn.Module,
    feats: dict[str, torch.Tensor],
    seed: int,
    settings: PredictSettings,
    plan: PrecisionPlan,
    device: torch.device,
) -> TrunkOutput:
    """The trunk (AF3 Alg 1, N_cycle recycles) for `seed`: its own generator draws the MSA rows of each
    recycle, so the diffusion noise does not depend on N_msa."""
    torch.manual_seed(seed)
    msa_generator = torch.Generator(device=device).manual_seed(seed)
    return net.run_trunk(
        feats, settings.n_cycle, plan.trunk, chunk_size=plan.pair_chunk, generator=msa_generator
    )


@torch.no_grad()
def predict_seed(
    net: torch.nn.Module,
    feats: dict[str, torch.Tensor],
    seed: int,
    settings: PredictSettings,
    plan: PrecisionPlan,
    device: torch.device,
    trunk: TrunkOutput | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor, dict[str, float]]:
    """Run one seed on `trunk` (None: `run_trunk` for this seed). feats: tensors on `device`, no batch dim.

    Returns coords [S, A, 3] (float32), the confidence head's logits dict, distogram logits
    [T, T, 64] and stage timings in seconds (trunk 0 when `trunk` was given).
    """
    t0 = _sync(device)
    if trunk is None:
        trunk = run_trunk(net, feats, seed, settings, plan, device)
    t1 = _sync(device)
    torch.manual_seed(seed)
    generator = torch.Generator(device=device).manual_seed(seed)
    cond = net.diffusion.prepare(feats, trunk, dtype=plan.sampler, chunk_size=plan.pair_chunk)

    def denoise(x_noisy: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        step = plan.sample_chunk
        parts = [
            net.diffusion.denoise(x_noisy[i : i + step], sigma[i : i + step], cond)
            for i in range(0, x_noisy.shape[0], step)
        ]
        return torch.cat(parts).float()

    n_atom = int(feats["atom_to_token"].shape[0])
    sampling = settings.sampling
    schedule = noise_schedule(
        settings.n_step, sampling.s_max, sampling.s_min, sampling.rho, sigma_data=net.cfg.sigma_data,
        ends_at_zero=sampling.schedule_ends_at_zero,
    )  # fmt: skip
    coords = sample_diffusion(
        denoise, n_atom, settings.n_sample, settings.n_step, generator,
        gamma_0=sampling.gamma0, gamma_min=sampling.gamma_min, noise_scale=sampling.noise_scale_lambda,
        step_scale=sampling.step_scale_eta, schedule=schedule, device=device,
    )  # fmt: skip
    t2 = _sync(device)
    logits = net.confidence(feats, trunk, coords, dtype=plan.confidence, chunk_size=plan.pair_chunk)
    distogram = net.distogram(trunk.z)
    logits = {k: v.float() for k, v in logits.items()}
    t3 = _sync(device)
    return coords, logits, distogram.float(), {"trunk": t1 - t0, "diffusion": t2 - t1, "confidence": t3 - t2}


def predict_features(
    net: torch.nn.Module,
    feats: dict[str, torch.Tensor],
    meta: dict,
    settings: PredictSettings,
    device: torch.device,
) -> tuple[list[SeedPrediction], PrecisionPlan]:
    """Predict every seed of one target and score its samples.

    feats: `store.load_features` output (moved to `device` here); meta: `store.load_meta` output.
    """
    feats = {k: v.to(device) for k, v in feats.items()}
    n_token = int(feats["asym_id"].shape[0])
    plan = make_plan(n_token, settings, device)
    frame_keys = ("atom_to_token", "mol_type", "token_center_atom", "ref_pos", "ref_space_uid", "ref_mask")
    host = {k: feats[k].cpu().numpy() for k in frame_keys}
    has_frame = torch.from_numpy(
        confidence.token_has_frame(
            host["atom_to_token"],
            host["mol_type"],
            meta["atom_name"],
            host["token_center_atom"],
            host["ref_pos"],
            host["ref_space_uid"],
            host["ref_mask"],
        )
    ).to(device)
    out = []
    shared_trunk = None
    if not trunk_varies_with_seed(net, settings):
        t0 = _sync(device)
        shared_trunk = run_trunk(net, feats, settings.seeds[0], settings, plan, device)
        trunk_seconds = _sync(device) - t0
    for seed in settings.seeds:
        coords, logits, distogram, seconds = predict_seed(
            net, feats, seed, settings, plan, device, shared_trunk
        )
        if shared_trunk is not None and seed == settings.seeds[0]:
            seconds["trunk"] = trunk_seconds
        t0 = _sync(device)
        conf = confidence.summarize(
            logits["plddt_logits"],
            logits["pae_logits"],
            logits["pde_logits"],
            distogram,
            coords,
            feats,
            meta,
            has_frame,
            ranking=settings.sampling.ranking,
        )
        seconds["scores"] = _sync(device) - t0
        out.append(SeedPrediction(seed, coords.cpu().numpy(), conf, seconds))
        del coords, logits, distogram
    return out, plan
