"""The inference precision rule (SEED.md) and the chunk-size choice, with overrides."""

from __future__ import annotations

import pytest
import torch

from model.infer.precision import choose_precision, pair_chunk_size

FP32, BF16 = torch.float32, torch.bfloat16


@pytest.mark.parametrize(
    ("n_token", "sampler", "confidence"),
    [
        (100, FP32, FP32),
        (2560, FP32, FP32),  # "more than 2,560" is strict
        (2561, FP32, BF16),
        (3840, FP32, BF16),
        (3841, BF16, BF16),
        (6000, BF16, BF16),
    ],
)
def test_three_regimes_on_gpu(n_token, sampler, confidence):
    plan = choose_precision(n_token, device="cuda")
    assert (plan.sampler, plan.confidence, plan.trunk) == (sampler, confidence, BF16)


def test_cpu_auto_is_fp32_and_overrides_win():
    assert {choose_precision(5000, device="cpu").sampler, choose_precision(5000, device="cpu").trunk} == {
        FP32
    }
    assert choose_precision(5000, device="cuda", sampler="fp32").sampler == FP32
    assert choose_precision(10, device="cuda", confidence="bf16").confidence == BF16
    assert choose_precision(10, device="cpu", trunk="bf16").trunk == BF16
    with pytest.raises(ValueError, match="sampler"):
        choose_precision(10, sampler="fp16")


def test_chunk_sizes_shrink_with_token_count():
    sizes = [1536, 1537, 2560, 2561, 3840, 3841, 5120, 5121, 8000]
    chunks = [pair_chunk_size(n) for n in sizes]
    assert chunks[0] is None  # small targets run unchunked
    numeric = [c for c in chunks if c is not None]
    assert numeric == sorted(numeric, reverse=True) and len(set(numeric)) == 4
    assert chunks[1] == chunks[2] and chunks[1] != chunks[3]  # boundaries are inclusive
    assert choose_precision(3000).pair_chunk == pair_chunk_size(3000)


def test_chunk_overrides_and_sample_batching():
    assert choose_precision(4000, pair_chunk=None).pair_chunk is None
    assert choose_precision(100, pair_chunk=16).pair_chunk == 16
    assert choose_precision(1000, n_sample=5).sample_chunk == 5  # whole batch at once
    assert choose_precision(3000, n_sample=5).sample_chunk == 1  # one sample at a time when large
    assert choose_precision(100, n_sample=5, sample_chunk=2).sample_chunk == 2
    for bad in ({"pair_chunk": 0}, {"sample_chunk": -1}, {"pair_chunk": "big"}):
        with pytest.raises(ValueError):
            choose_precision(100, **bad)
    with pytest.raises(ValueError, match="n_token"):
        choose_precision(0)


def test_plan_is_recorded_as_plain_json():
    d = choose_precision(3000, device="cuda").as_dict()
    assert d["sampler"] == "fp32" and d["confidence"] == "bf16" and d["n_token"] == 3000
