"""Diffusion sampler (AF3 Alg 18/19, §3.7.1): schedule, augmentation, determinism, convergence."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import REPO

from model.eval.rmsd import rmsd, weighted_rigid_align
from model.nn.sampler import centre_random_augmentation, noise_schedule, random_rotation, sample_diffusion


def test_noise_schedule_endpoints_and_formula():
    s = noise_schedule(200, sigma_data=16.0)
    assert s.shape == (201,)
    assert math.isclose(float(s[0]), 16 * 160, rel_tol=1e-5)
    assert math.isclose(float(s[-1]), 16 * 4e-4, rel_tol=1e-4)
    assert bool((s[1:] < s[:-1]).all())
    # tau = 1/2, straight from the §3.7.1 formula
    half = 16 * (160 ** (1 / 7) + 0.5 * (4e-4 ** (1 / 7) - 160 ** (1 / 7))) ** 7
    assert math.isclose(float(s[100]), half, rel_tol=1e-5)


def test_random_rotations_are_proper_and_unbiased():
    g = torch.Generator().manual_seed(0)
    rot = random_rotation(4000, g)
    eye = torch.eye(3).expand(4000, 3, 3)
    assert torch.allclose(rot @ rot.transpose(1, 2), eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(4000), atol=1e-5)
    # A uniform rotation sends a fixed vector uniformly over the sphere: mean ~ 0.
    v = rot @ torch.tensor([1.0, 0.0, 0.0])
    assert v.mean(0).abs().max() < 0.05


def test_augmentation_is_rigid_and_centres_masked_atoms():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 40, 3) * 10 + 50
    mask = torch.zeros(40, dtype=torch.bool)
    mask[:30] = True
    y = centre_random_augmentation(x, mask, g, s_trans=0.0)

    def dist(a):
        return (a[:, :, None] - a[:, None]).norm(dim=-1)

    assert torch.allclose(dist(x), dist(y), atol=1e-3)
    assert y[:, :30].mean(1).abs().max() < 1e-3  # masked atoms centred, padding ignored
    assert y[:, 30:].mean(1).abs().max() > 1e-2


def _oracle(ref: torch.Tensor, calls: list):
    """An ideal, rotation-equivariant denoiser: the reference superposed onto the noisy input."""

    def denoise(x_noisy, sigma):
        calls.append(sigma.clone())
        return weighted_rigid_align(ref.expand_as(x_noisy), x_noisy, torch.ones(x_noisy.shape[:-1]))

    return denoise


def test_sampler_is_deterministic_for_a_seed_and_seeds_differ():
    ref = torch.randn(25, 3) * 8
    schedule = noise_schedule(20, sigma_data=16.0)
    run = [
        sample_diffusion(_oracle(ref, []), 25, 3, 20, torch.Generator().manual_seed(s), schedule=schedule)
        for s in (7, 7, 8)
    ]
    assert torch.equal(run[0], run[1])
    assert not torch.allclose(run[0], run[2])
    # samples within one batch differ too
    assert not torch.allclose(run[0][0], run[0][1])


def test_sampler_converges_to_the_denoised_structure_and_passes_t_hat():
    ref = torch.randn(30, 3) * 8
    calls: list = []
    n_step = 50
    out = sample_diffusion(
        _oracle(ref, calls), 30, 2, n_step, torch.Generator().manual_seed(3), step_scale=1.0,
        schedule=noise_schedule(n_step, sigma_data=16.0),
    )  # fmt: skip
    assert out.shape == (2, 30, 3) and out.dtype == torch.float32
    assert float(rmsd(out, ref.expand_as(out)).max()) < 0.05
    assert len(calls) == n_step and calls[0].shape == (2,)
    c = noise_schedule(n_step, sigma_data=16.0)
    # step 1: c_1 > gamma_min so t_hat = c_0 * (1 + gamma_0); last step: no churn, t_hat = c_{T-1}
    assert math.isclose(float(calls[0][0]), float(c[0]) * 1.8, rel_tol=1e-5)
    assert math.isclose(float(calls[-1][0]), float(c[-2]), rel_tol=1e-5)


def test_default_sampler_settings_reach_a_valid_structure():
    ref = torch.randn(20, 3) * 8
    schedule = noise_schedule(30, sigma_data=16.0)
    out = sample_diffusion(_oracle(ref, []), 20, 2, 30, torch.Generator().manual_seed(4), schedule=schedule)
    assert torch.isfinite(out).all()
    assert float(rmsd(out, ref.expand_as(out)).max()) < 1.0


# --------------------------------------------------------------------------- Protenix's released settings
PROTENIX_PRESETS = [
    "protenix_base_default_v1.0.0",
    "protenix_base_20250630_v1.0.0",
    "protenix_base_default_v0.5.0",
    "protenix_mini_default_v0.5.0",
    "protenix_tiny_default_v0.5.0",
]


def _protenix_inference(request: dict, tmp_path, timeout: float = 300) -> dict:
    """tests/oracle/protenix_inference.py run on `request` in the oracle environment."""
    import json
    import subprocess

    from oracle import ORACLE_PYTHON, require_oracle

    require_oracle()
    (tmp_path / "request.json").write_text(json.dumps(request))
    script = REPO / "tests" / "oracle" / "protenix_inference.py"
    run = subprocess.run(
        [str(ORACLE_PYTHON), str(script), str(tmp_path / "request.json"), str(tmp_path / "out.json")],
        capture_output=True, text=True, timeout=timeout, cwd=script.parent,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads((tmp_path / "out.json").read_text())


def _equivariant_denoiser(pull: float):
    """x -> centre + (x - centre) * pull / (pull + sigma): commutes with rigid motions, so samplers that
    differ only in their random augmentations end at the same shape."""

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        centre = x.mean(dim=-2, keepdim=True)
        return centre + (x - centre) * (pull / (pull + sigma))[:, None, None]

    return denoise


def _distances(x: torch.Tensor) -> torch.Tensor:
    return torch.cdist(x.double(), x.double())


def test_protenix_presets_sample_as_protenix_does(tmp_path):
    """Each Protenix preset's N_cycle, N_step and sampler settings are the ones Protenix's configs give
    that model; Foldline's schedule equals InferenceNoiseScheduler's; and SampleDiffusion (AF3 Alg 18)
    from the same initial noise ends at Protenix's shapes: with the mini/tiny settings (no churn, so the
    only other random draws are the rigid augmentations) and with the base settings' churn
    (gamma0 0.8, step scale 1.5) where the injected noise is scaled to 0."""
    from model.infer.predict import PredictSettings
    from model.nn.config import load_preset

    mini, base = load_preset("protenix_mini_default_v0.5.0"), load_preset("protenix_base_default_v1.0.0")
    runs = []
    for cfg, noise_scale, seed in ((mini, mini.inference.noise_scale_lambda, 3), (base, 0.0, 4)):
        inf = cfg.inference
        n_step = 5 if cfg is mini else 40
        runs.append({"seed": seed, "N_sample": 2, "N_atom": 7, "N_step": n_step, "gamma0": inf.gamma0,
                     "gamma_min": inf.gamma_min, "noise_scale_lambda": noise_scale,
                     "step_scale_eta": inf.step_scale_eta, "pull": 4.0})  # fmt: skip
    request = {
        "settings": PROTENIX_PRESETS,
        "schedules": [
            {"N_step": n, "s_max": 160.0, "s_min": 4e-4, "rho": 7.0, "sigma_data": 16.0} for n in (5, 200)
        ],
        "samples": runs,
    }
    oracle = _protenix_inference(request, tmp_path)
    for name in PROTENIX_PRESETS:
        cfg, want = load_preset(name), oracle["settings"][name]
        settings = PredictSettings.for_network(cfg)
        inf = settings.sampling
        got = {"N_cycle": settings.n_cycle, "N_step": settings.n_step, "gamma0": inf.gamma0,
               "gamma_min": inf.gamma_min, "noise_scale_lambda": inf.noise_scale_lambda,
               "step_scale_eta": inf.step_scale_eta, "s_max": inf.s_max, "s_min": inf.s_min, "rho": inf.rho,
               "sigma_data": cfg.sigma_data}  # fmt: skip
        assert got == pytest.approx(want), name
        assert inf.schedule_ends_at_zero and inf.ranking == "protenix"
    for n_step, levels in zip((5, 200), oracle["schedules"], strict=True):
        ours = noise_schedule(n_step, sigma_data=16.0, ends_at_zero=True)
        torch.testing.assert_close(ours, torch.tensor(levels), rtol=1e-5, atol=0.0)  # theirs: float32 sums
    for cfg, req, theirs in zip((mini, base), runs, oracle["samples"], strict=True):
        inf = cfg.inference
        schedule = noise_schedule(
            req["N_step"], inf.s_max, inf.s_min, inf.rho, sigma_data=cfg.sigma_data, ends_at_zero=True
        )
        x = sample_diffusion(
            _equivariant_denoiser(req["pull"]), req["N_atom"], req["N_sample"], req["N_step"],
            torch.Generator().manual_seed(req["seed"]), gamma_0=inf.gamma0, gamma_min=inf.gamma_min,
            noise_scale=req["noise_scale_lambda"], step_scale=inf.step_scale_eta, schedule=schedule,
        )  # fmt: skip
        want = _distances(torch.tensor(theirs))
        torch.testing.assert_close(_distances(x), want, rtol=1e-4, atol=1e-4)
    # overriding the step count keeps the other settings
    assert PredictSettings.for_network(mini, n_cycle=2, n_step=9).n_step == 9


def test_predict_samples_with_the_settings_of_the_weights(monkeypatch):
    """predict_seed hands the network preset's sampler settings (here Protenix mini's: 5 steps, no
    churn, step scale 1, schedule ending at 0) to SampleDiffusion."""
    from model.infer import predict
    from model.nn.config import load_preset
    from model.nn.network import Foldline
    from model.nn.synthetic import synthetic_features

    seen = {}

    def recording(*args, **kwargs):
        seen.update(kwargs, n_step=args[3])
        return sample_diffusion(*args, **kwargs)

    monkeypatch.setattr(predict, "sample_diffusion", recording)
    settings = predict.PredictSettings.for_network(
        load_preset("protenix_mini_default_v0.5.0"), n_cycle=1, n_sample=1
    )
    torch.manual_seed(0)
    net = Foldline(load_preset("tiny")).eval()
    feats = synthetic_features(6, atoms_per_token=5, n_msa=1, n_templ=0, seed=1)
    cpu = torch.device("cpu")
    predict.predict_seed(net, feats, 1, settings, predict.make_plan(6, settings, cpu), cpu)
    assert seen["n_step"] == 5 and seen["gamma_0"] == 0.0 and seen["step_scale"] == 1.0
    assert seen["noise_scale"] == 1.003 and float(seen["schedule"][-1]) == 0.0 and len(seen["schedule"]) == 6


def test_every_step_gives_the_denoiser_one_static_batch():
    """What a CUDA graph of the denoiser relies on: every step passes all samples at once with the same
    shapes and dtype ([S, A, 3] and [S] float32), and the sampler is done with one step's output before
    the next call (a graph replay writes every output into the same buffer)."""
    ref = torch.randn(12, 3) * 8
    shapes = []

    def denoise(x_noisy, sigma):
        shapes.append((tuple(x_noisy.shape), x_noisy.dtype, tuple(sigma.shape), sigma.dtype))
        return weighted_rigid_align(ref.expand_as(x_noisy), x_noisy, torch.ones(x_noisy.shape[:-1]))

    schedule = noise_schedule(6, sigma_data=16.0)
    reference = sample_diffusion(denoise, 12, 3, 6, torch.Generator().manual_seed(5), schedule=schedule)
    assert shapes == [((3, 12, 3), torch.float32, (3,), torch.float32)] * 6
    static = torch.empty(3, 12, 3)

    def replayed(x_noisy, sigma):
        return static.copy_(denoise(x_noisy, sigma))  # the same buffer every step

    replay = sample_diffusion(replayed, 12, 3, 6, torch.Generator().manual_seed(5), schedule=schedule)
    assert torch.equal(replay, reference)
