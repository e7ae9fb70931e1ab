"""AF3 learning-rate schedule (supplement §5.4): linear warm-up, then step decay."""

from __future__ import annotations

import torch


def af3_lr_factor(step: int, warmup_steps: int, decay_every: int, decay_factor: float) -> float:
    """Multiplier of the peak LR at optimizer step `step` (0-based).

    Rises linearly to 1 over the first `warmup_steps` steps, then is multiplied by `decay_factor`
    every `decay_every` steps (AF3: 1000 steps, x0.95 every 5e4 steps).
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    return decay_factor ** (step // decay_every) if decay_every > 0 else 1.0


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: dict) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR over the stage's `lr_schedule` block; its state_dict goes into checkpoints."""
    sched = cfg["lr_schedule"]
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: af3_lr_factor(
            step, int(sched["warmup_steps"]), int(sched["decay_every"]), float(sched["decay_factor"])
        ),
    )


def make_optimizer(params, cfg: dict) -> torch.optim.Adam:
    """Adam with the stage's LR and AF3's beta (0.9, 0.95), eps 1e-8."""
    opt = cfg["optimizer"]
    return torch.optim.Adam(params, lr=float(cfg["lr"]), betas=tuple(opt["betas"]), eps=float(opt["eps"]))
