"""The inference precision rule and chunk sizes, chosen by token count (SEED.md, "Inference").

The trunk runs under BF16 autocast on CUDA. The diffusion sampler and the confidence head run in
FP32 unless the target is large:
  more than 3,840 tokens: confidence head and sampler BF16;
  more than 2,560 tokens: confidence head BF16, sampler FP32;
  otherwise: both FP32.
Chunk sizes (pair-stack chunking, and how many diffusion samples go through the denoiser at once)
shrink as the token count grows, so the quadratic/cubic activations stay bounded. Every choice can
be overridden from the config.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

CONFIDENCE_BF16_ABOVE = 2560
SAMPLER_BF16_ABOVE = 3840

# (largest token count, pair-stack chunk size); None = no chunking. Chunking costs speed (on the H100,
# chunk 256 at 1,024 tokens made the trunk several times slower) and unchunked 1,536 tokens fits in
# 80 GB, so chunks start where memory, not speed, is the limit (Protenix: none up to 1,024).
PAIR_CHUNKS: tuple[tuple[int, int | None], ...] = ((1536, None), (2560, 256), (3840, 128), (5120, 64))
PAIR_CHUNK_LARGEST = 32
# Above this many tokens the denoiser sees one sample at a time instead of the whole batch.
SAMPLE_BATCH_ALL_UP_TO = 2048

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class PrecisionPlan:
    """What one target runs with. `sampler`/`confidence`/`trunk` are the torch dtypes the network's
    stages run in (passed as their `dtype`); `pair_chunk` is the pair-stack chunk size (None = unchunked);
    `sample_chunk` the number of diffusion samples per denoiser call."""

    n_token: int
    trunk: torch.dtype
    sampler: torch.dtype
    confidence: torch.dtype
    pair_chunk: int | None
    sample_chunk: int

    def as_dict(self) -> dict:
        """JSON-friendly form for provenance."""
        name = {torch.float32: "fp32", torch.bfloat16: "bf16"}
        return {
            "n_token": self.n_token,
            "trunk": name[self.trunk],
            "sampler": name[self.sampler],
            "confidence": name[self.confidence],
            "pair_chunk": self.pair_chunk,
            "sample_chunk": self.sample_chunk,
        }


def _dtype(value: str, auto: torch.dtype, what: str) -> torch.dtype:
    if value == "auto":
        return auto
    if value not in DTYPES:
        raise ValueError(f"precision {what}: expected auto|fp32|bf16, got {value!r}")
    return DTYPES[value]


def pair_chunk_size(n_token: int) -> int | None:
    """Pair-stack chunk size for a target of n_token tokens (None = unchunked)."""
    for limit, chunk in PAIR_CHUNKS:
        if n_token <= limit:
            return chunk
    return PAIR_CHUNK_LARGEST


def choose_precision(
    n_token: int,
    n_sample: int = 5,
    device: torch.device | str = "cuda",
    sampler: str = "auto",
    confidence: str = "auto",
    trunk: str = "auto",
    pair_chunk: int | None | str = "auto",
    sample_chunk: int | str = "auto",
) -> PrecisionPlan:
    """Apply the precision rule and the chunk-size choice for one target.

    Each of sampler/confidence/trunk is "auto" (the rule), "fp32" or "bf16". On CPU, "auto" means
    FP32 everywhere (CPU BF16 autocast is slow and only used when asked for explicitly).
    pair_chunk: "auto", an int, or None (off); sample_chunk: "auto" or an int >= 1.
    """
    if n_token < 1:
        raise ValueError(f"precision: n_token must be >= 1, got {n_token}")
    on_gpu = torch.device(device).type == "cuda"
    auto_trunk = torch.bfloat16 if on_gpu else torch.float32
    auto_conf = torch.bfloat16 if on_gpu and n_token > CONFIDENCE_BF16_ABOVE else torch.float32
    auto_sampler = torch.bfloat16 if on_gpu and n_token > SAMPLER_BF16_ABOVE else torch.float32
    if pair_chunk == "auto":
        pair_chunk = pair_chunk_size(n_token)
    elif pair_chunk is not None and (not isinstance(pair_chunk, int) or pair_chunk < 1):
        raise ValueError(f"precision pair_chunk: expected auto, None or a positive int, got {pair_chunk!r}")
    if sample_chunk == "auto":
        sample_chunk = n_sample if n_token <= SAMPLE_BATCH_ALL_UP_TO else 1
    elif not isinstance(sample_chunk, int) or sample_chunk < 1:
        raise ValueError(f"precision sample_chunk: expected auto or a positive int, got {sample_chunk!r}")
    return PrecisionPlan(
        n_token=n_token,
        trunk=_dtype(trunk, auto_trunk, "trunk"),
        sampler=_dtype(sampler, auto_sampler, "sampler"),
        confidence=_dtype(confidence, auto_conf, "confidence"),
        pair_chunk=pair_chunk,
        sample_chunk=min(sample_chunk, max(n_sample, 1)),
    )
