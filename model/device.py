"""The torch device a job runs on (torch only: prediction, training and the benchmarks share it)."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device for `device`: `auto` = CUDA when available, else CPU; `cuda` or `cuda:N` must
    exist here, N counting the cards this process sees (after CUDA_VISIBLE_DEVICES, which the GPU slot
    allocator sets), so a wrong index fails at start-up, not at the first tensor moved."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device}: CUDA requested but not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"device {device}: this process sees {torch.cuda.device_count()} CUDA device(s)"
            )
    return dev
