"""The diffusion sampler: noise schedule (AF3 §3.7.1), CentreRandomAugmentation (AF3 Alg 19) and
SampleDiffusion (AF3 Alg 18).

torch-only (GPU nodes and the training loop import it). Every random draw comes from the caller's
`torch.Generator`, so a seed fixes the result; positions stay FP32 whatever precision the denoiser
runs in (the caller wraps `denoise_fn` in autocast when the precision rule asks for BF16).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

DenoiseFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def noise_schedule(
    n_step: int,
    s_max: float = 160.0,
    s_min: float = 4e-4,
    rho: float = 7.0,
    *,
    sigma_data: float,
    device: torch.device | str | None = None,
    ends_at_zero: bool = False,
) -> torch.Tensor:
    """Noise levels c_0 > c_1 > ... > c_T (AF3 §3.7.1, the EDM schedule scaled by sigma_data).

    c_tau = sigma_data * (s_max^(1/rho) + tau/T * (s_min^(1/rho) - s_max^(1/rho)))^rho;
    `sigma_data` is the network's (`ModelConfig.sigma_data`, its one home); `ends_at_zero` sets c_T = 0
    (the schedule Protenix's released weights sample with).

    Returns: [n_step + 1] float32, in Å.
    """
    if n_step < 1:
        raise ValueError(f"noise_schedule: n_step must be >= 1, got {n_step}")
    tau = torch.arange(n_step + 1, dtype=torch.float64, device=device) / n_step
    lo, hi = s_min ** (1.0 / rho), s_max ** (1.0 / rho)
    levels = (sigma_data * (hi + tau * (lo - hi)) ** rho).to(torch.float32)
    if ends_at_zero:
        levels[-1] = 0.0
    return levels


def random_rotation(n: int, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniformly distributed rotation matrices, from normalised Gaussian quaternions.

    Returns: [n, 3, 3].
    """
    q = torch.randn(n, 4, generator=generator, device=generator.device, dtype=torch.float64)
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    rot = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    )  # fmt: skip
    return rot.reshape(n, 3, 3).to(dtype)


def centre_random_augmentation(
    x: torch.Tensor,
    mask: torch.Tensor | None,
    generator: torch.Generator,
    s_trans: float = 1.0,
) -> torch.Tensor:
    """CentreRandomAugmentation (AF3 Alg 19): centre on the masked atoms' mean, then apply one
    uniform random rotation and a Gaussian translation (std s_trans Å) per leading index.

    x: [..., A, 3]; mask: [A] bool (atoms that count for the centre; None = all).
    Returns: [..., A, 3], a new tensor.
    """
    batch_shape = x.shape[:-2]
    n = math.prod(batch_shape)
    xf = x.reshape(n, x.shape[-2], 3)
    if mask is None:
        centre = xf.mean(dim=-2, keepdim=True)
    else:
        w = mask.to(xf.dtype)[None, :, None]
        centre = (xf * w).sum(dim=-2, keepdim=True) / w.sum(dim=-2, keepdim=True).clamp(min=1.0)
    rot = random_rotation(n, generator, xf.dtype).to(xf.device)
    trans = s_trans * torch.randn(n, 1, 3, generator=generator, device=generator.device, dtype=xf.dtype)
    out = torch.einsum("nij,naj->nai", rot, xf - centre) + trans.to(xf.device)
    return out.reshape(x.shape)


@torch.no_grad()
def sample_diffusion(
    denoise_fn: DenoiseFn,
    n_atom: int,
    n_sample: int,
    n_step: int,
    generator: torch.Generator,
    atom_mask: torch.Tensor | None = None,
    gamma_0: float = 0.8,
    gamma_min: float = 1.0,
    noise_scale: float = 1.003,
    step_scale: float = 1.5,
    *,
    schedule: torch.Tensor,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """SampleDiffusion (AF3 Alg 18): start from c_0 * N(0, I) and integrate the EDM sampler with
    stochastic churn down the noise schedule, augmenting (Alg 19) before every step.

    denoise_fn(x_noisy [S, A, 3], sigma [S]) -> x_denoised [S, A, 3]; all samples go in one batch.
    atom_mask: [A] bool, real atoms (padding excluded from the centre); None = all atoms.
    schedule: [n_step + 1] noise levels, `noise_schedule` with the denoiser's network's sigma_data.
    Random draws come from `generator` (on the generator's device) and are moved to `device`
    (default: the generator's device).

    Line 9 of Alg 18 as printed uses the pre-noise x; we use x_noisy (the EDM update the
    algorithm derives from, and what the trained denoiser predicts from).

    Returns: [n_sample, n_atom, 3] float32.
    """
    device = torch.device(device) if device is not None else generator.device
    if schedule.shape != (n_step + 1,):
        raise ValueError(
            f"sample_diffusion: schedule has shape {tuple(schedule.shape)}, want ({n_step + 1},)"
        )
    levels = [float(c) for c in schedule]
    if atom_mask is not None:
        atom_mask = atom_mask.to(device)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, device=generator.device).to(device)

    x = levels[0] * randn(n_sample, n_atom, 3)
    for c_prev, c_cur in zip(levels[:-1], levels[1:], strict=True):
        x = centre_random_augmentation(x, atom_mask, generator)
        gamma = gamma_0 if c_cur > gamma_min else 0.0
        t_hat = c_prev * (gamma + 1.0)
        xi = noise_scale * (max(t_hat**2 - c_prev**2, 0.0) ** 0.5) * randn(n_sample, n_atom, 3)
        x_noisy = x + xi
        sigma = torch.full((n_sample,), t_hat, device=device, dtype=torch.float32)
        x_denoised = denoise_fn(x_noisy, sigma).to(torch.float32)
        delta = (x_noisy - x_denoised) / t_hat
        x = x_noisy + step_scale * (c_cur - t_hat) * delta
    return x
