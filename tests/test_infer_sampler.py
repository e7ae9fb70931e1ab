"""Diffusion sampler (AF3 Alg 18/19, §3.7.1): schedule, augmentation, determinism, convergence."""

from __future__ import annotations

import math

import torch

from model.eval.rmsd import rmsd, weighted_rigid_align
from model.infer.sampler import centre_random_augmentation, noise_schedule, random_rotation, sample_diffusion


def test_noise_schedule_endpoints_and_formula():
    s = noise_schedule(200)
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
    run = [sample_diffusion(_oracle(ref, []), 25, 3, 20, torch.Generator().manual_seed(s)) for s in (7, 7, 8)]
    assert torch.equal(run[0], run[1])
    assert not torch.allclose(run[0], run[2])
    # samples within one batch differ too
    assert not torch.allclose(run[0][0], run[0][1])


def test_sampler_converges_to_the_denoised_structure_and_passes_t_hat():
    ref = torch.randn(30, 3) * 8
    calls: list = []
    n_step = 50
    out = sample_diffusion(
        _oracle(ref, calls), 30, 2, n_step, torch.Generator().manual_seed(3), step_scale=1.0
    )
    assert out.shape == (2, 30, 3) and out.dtype == torch.float32
    assert float(rmsd(out, ref.expand_as(out)).max()) < 0.05
    assert len(calls) == n_step and calls[0].shape == (2,)
    c = noise_schedule(n_step)
    # step 1: c_1 > gamma_min so t_hat = c_0 * (1 + gamma_0); last step: no churn, t_hat = c_{T-1}
    assert math.isclose(float(calls[0][0]), float(c[0]) * 1.8, rel_tol=1e-5)
    assert math.isclose(float(calls[-1][0]), float(c[-2]), rel_tol=1e-5)


def test_default_sampler_settings_reach_a_valid_structure():
    ref = torch.randn(20, 3) * 8
    out = sample_diffusion(_oracle(ref, []), 20, 2, 30, torch.Generator().manual_seed(4))
    assert torch.isfinite(out).all()
    assert float(rmsd(out, ref.expand_as(out)).max()) < 1.0
