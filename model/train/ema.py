"""Exponential moving average of the weights (AF3 supplement §5.4: decay 0.999)."""

from __future__ import annotations

import torch


class Ema:
    """A float32 shadow copy of a module's parameters and buffers, updated after each optimizer step.

    `shadow` is a state_dict-shaped mapping; `copy_to(module)` loads it for evaluation or export.
    """

    def __init__(self, module: torch.nn.Module, decay: float = 0.999):
        self.decay = float(decay)
        self.shadow: dict[str, torch.Tensor] = {
            k: v.detach().clone().float() if v.is_floating_point() else v.detach().clone()
            for k, v in module.state_dict().items()
        }

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        """shadow <- decay * shadow + (1 - decay) * weights; integer buffers are copied."""
        for k, v in module.state_dict().items():
            s = self.shadow[k]
            if s.is_floating_point():
                s.mul_(self.decay).add_(v.detach().float(), alpha=1.0 - self.decay)
            else:
                s.copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) ^ set(state)
        if missing:
            raise KeyError(f"EMA state: keys differ from the model's: {sorted(missing)[:5]}")
        for k, v in state.items():
            self.shadow[k] = v.detach().clone().to(self.shadow[k].device)

    @torch.no_grad()
    def copy_to(self, module: torch.nn.Module) -> None:
        module.load_state_dict({k: v.to(module.state_dict()[k].dtype) for k, v in self.shadow.items()})
