"""Time the Foldline forward pass (trunk, diffusion sampling, confidence head) on CUDA.

Needs only torch and numpy (the GPU host has no featurizer dependencies): features come from
model.nn.synthetic. Weights are random; the timing and memory of a forward pass do not depend on them.

    python bench/nn_forward.py --tokens 512 --cycles 1 --steps 10
    python bench/nn_forward.py --tokens 512 1024 --cycles 10 --steps 200 --samples 5

Prints one line per token count and a JSON record per run (phase times in seconds, peak memory in
GiB from torch.cuda.max_memory_allocated).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.nn.network import Foldline, load_preset  # noqa: E402
from model.nn.sampler import noise_schedule, sample_diffusion  # noqa: E402
from model.nn.synthetic import synthetic_features  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", type=int, nargs="+", default=[512])
    p.add_argument("--atoms-per-token", type=int, default=10)
    p.add_argument("--msa", type=int, default=512, help="MSA rows")
    p.add_argument("--templates", type=int, default=4)
    p.add_argument("--cycles", type=int, default=10)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--samples", type=int, default=5)
    p.add_argument("--preset", default="base")
    p.add_argument("--trunk", choices=DTYPES, default="bf16")
    p.add_argument(
        "--sampler",
        choices=[*DTYPES, "auto"],
        default="auto",
        help="auto = SEED.md rule: bf16 above 3,840 tokens, else fp32",
    )
    p.add_argument(
        "--confidence",
        choices=[*DTYPES, "auto"],
        default="auto",
        help="auto = SEED.md rule: bf16 above 2,560 tokens, else fp32",
    )
    p.add_argument("--chunk-size", type=int, default=None, help="pair-stack chunk size (default off)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first (cuDNN/cuBLAS autotuning)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def timed(device: torch.device, fn):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - start


def seed_rule(n_token: int, stage: str, choice: str) -> str:
    """SEED.md inference precision rule by token count, unless a dtype was named."""
    if choice != "auto":
        return choice
    return "bf16" if n_token > {"sampler": 3840, "confidence": 2560}[stage] else "fp32"


def run_once(net: Foldline, feats: dict, args: argparse.Namespace, device: torch.device) -> dict:
    gen = torch.Generator(device=device).manual_seed(args.seed)
    n_atom, n_token = feats["ref_pos"].shape[0], feats["restype"].shape[0]
    sampler_dtype = DTYPES[seed_rule(n_token, "sampler", args.sampler)]
    confidence_dtype = DTYPES[seed_rule(n_token, "confidence", args.confidence)]
    trunk, t_trunk = timed(
        device,
        lambda: net.run_trunk(feats, args.cycles, dtype=DTYPES[args.trunk], chunk_size=args.chunk_size),
    )

    def sample():
        cond = net.diffusion.prepare(feats, trunk, dtype=sampler_dtype, chunk_size=args.chunk_size)
        return sample_diffusion(
            lambda x, s: net.diffusion.denoise(x, s, cond),
            n_atom,
            args.samples,
            args.steps,
            gen,
            schedule=noise_schedule(args.steps, sigma_data=net.cfg.sigma_data),
            device=device,
        )

    x, t_diff = timed(device, sample)
    _, t_conf = timed(
        device,
        lambda: net.confidence(feats, trunk, x, dtype=confidence_dtype, chunk_size=args.chunk_size),
    )
    return {
        "trunk_s": t_trunk,
        "diffusion_s": t_diff,
        "confidence_s": t_conf,
        "total_s": t_trunk + t_diff + t_conf,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    net = Foldline(load_preset(args.preset)).to(device).eval()
    n_param = sum(p.numel() for p in net.parameters())
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"# {args.preset}: {n_param / 1e6:.2f} M parameters on {card}, torch {torch.__version__}")
    for n_token in args.tokens:
        feats = synthetic_features(
            n_token, args.atoms_per_token, args.msa, args.templates, args.seed, with_truth=False
        )
        feats = {k: v.to(device) for k, v in feats.items()}
        with torch.no_grad():
            for _ in range(args.warmup):
                run_once(net, feats, args, device)
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            record = run_once(net, feats, args, device)
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
        record.update(
            tokens=n_token, atoms=n_token * args.atoms_per_token, msa=args.msa, templates=args.templates,
            cycles=args.cycles, steps=args.steps, samples=args.samples, trunk=args.trunk,
            sampler=seed_rule(n_token, "sampler", args.sampler),
            confidence=seed_rule(n_token, "confidence", args.confidence), chunk_size=args.chunk_size,
            peak_gib=peak, device=card, torch=torch.__version__, preset=args.preset,
        )  # fmt: skip
        print(
            f"{n_token} tokens: total {record['total_s']:.2f} s (trunk {record['trunk_s']:.2f}, "
            f"diffusion {record['diffusion_s']:.2f}, confidence {record['confidence_s']:.2f}), "
            f"peak {peak:.2f} GiB"
        )
        print(json.dumps(record))


if __name__ == "__main__":
    main()
