#!/usr/bin/env python
"""GPU benchmark of the fast paths (issue #18): correctness against the reference path, then timings.

One call checks every fast path against the plain FP32 reference (the FlexAttention triangle attention
against SDPA, forward and on CUDA backward, module and two pairformer blocks; the CUDA-graph denoiser
against the eager one over a few sampler steps; TF32 denoiser matmuls against FP32, allowed BF16's
error), prints max abs/rel errors and stops with exit code 1 if one is off. It then times
`predict_features` (trunk, diffusion, confidence separately, after a warm-up; peak memory from
torch.cuda.max_memory_allocated) on synthetic targets for each size and each variant, and one
Initial-stage training step (crop 384, diffusion batch 48) per triangle kernel. What would overrun
`--max-seconds` is skipped; the JSON at `--out` is rewritten after every measurement.

  python bench/gpu.py --out gpu.json                                   # base, 512..4096, 10/200/5
  python bench/gpu.py --sizes 2048 --variants auto/graph,auto/graph+tf32 --no-train --no-checks \
      --out gpu_2048.json
  python bench/gpu.py --sizes 1024 --profile --no-train --out prof.json  # + per-module table, 1 cycle
  python bench/gpu.py --preset tiny --sizes 16,24 --cycles 1 --steps 2 --samples 2 --device cpu \\
      --train-crop 16 --train-diffusion-batch 2 --check-size 20 --out /tmp/gpu.json   # CPU smoke

A variant is `<triangle kernel>/<denoiser>`: kernel auto (FlexAttention on CUDA), flex or sdpa;
denoiser eager or graph (CUDA graph), either with `+tf32` (TF32 matmuls in the FP32 denoiser).
Imports only torch, numpy, h5py and yaml (the GPU host's stack).
Random weights: time and memory do not depend on their values.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from model.device import resolve_device  # noqa: E402
from model.fileio import write_json  # noqa: E402
from model.infer.predict import PredictSettings, make_plan, predict_features  # noqa: E402
from model.nn.config import PRESET_DIR, load_preset  # noqa: E402
from model.nn.diffusion import DiffusionModule  # noqa: E402
from model.nn.network import Foldline, TrunkOutput  # noqa: E402
from model.nn.pairformer import (  # noqa: E402
    TRIANGLE_ATTENTION_KERNELS,
    PairformerStack,
    TriangleAttention,
    set_triangle_attention_kernel,
)
from model.nn.primitives import FLEX_KERNEL, precision  # noqa: E402
from model.nn.sampler import noise_schedule, sample_diffusion  # noqa: E402
from model.nn.synthetic import randomize_parameters, synthetic_features  # noqa: E402

DENOISERS = ("eager", "graph", "eager+tf32", "graph+tf32")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# A fast path may differ from the FP32 reference by this much (max |fast - ref| / max |ref|) plus twice
# what the reference kernel itself loses in the same dtype.
CHECK_FLOOR = {"fp32": 5e-3, "bf16": 2e-2}  # fp32: room for TF32 in a compiled kernel
# Time ~ N^2.5 between the measured sizes (512 -> 1,024 tokens took 4.2x); used to skip what won't fit.
SIZE_EXPONENT = 2.5


def load_bench_module(name: str):
    """A sibling benchmark script as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sync(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def compare(fast: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    fast, ref = fast.detach().float(), ref.detach().float()
    err = (fast - ref).abs().max().item()
    return {"max_abs": err, "max_rel": err / max(ref.abs().max().item(), 1e-30)}


def errors(result: tuple[torch.Tensor, list], reference: tuple[torch.Tensor, list]) -> list[dict]:
    """`compare` of an output and its gradients against the reference's, output first."""
    (out, grads), (ref_out, ref_grads) = result, reference
    return [compare(out, ref_out)] + [compare(g, r) for g, r in zip(grads, ref_grads, strict=True)]


def check_record(name: str, dtype: str, fast: dict, ref_kernel: dict | None) -> dict:
    """One check's line: the fast path's error against FP32, and the reference kernel's in the same dtype."""
    tol = CHECK_FLOOR[dtype] + (2 * ref_kernel["max_rel"] if ref_kernel else 0.0)
    record = {"check": name, "dtype": dtype, **fast, "tolerance_rel": tol, "ok": fast["max_rel"] <= tol}
    if ref_kernel:
        record["reference_kernel_max_rel"] = ref_kernel["max_rel"]
    ref_txt = f" (reference kernel {ref_kernel['max_rel']:.2e})" if ref_kernel else ""
    print(
        f"{'ok  ' if record['ok'] else 'FAIL'} {name} [{dtype}]: max abs {fast['max_abs']:.2e}, "
        f"max rel {fast['max_rel']:.2e}{ref_txt}, tolerance {tol:.2e}",
        flush=True,
    )
    return record


def run_module(module: torch.nn.Module, kernel: str, dtype: str, device: torch.device, z: torch.Tensor, fn):
    """fn(module, z) under `dtype` with every triangle attention on `kernel` -> the output and, on CUDA,
    the gradients of a fixed projection of it with respect to z and every parameter it reaches."""
    set_triangle_attention_kernel(module, kernel)
    grad = device.type == "cuda"  # eager FlexAttention (off CUDA) has no backward
    z = z.clone().requires_grad_(grad)
    with torch.set_grad_enabled(grad), precision(device, DTYPES[dtype]):
        out = fn(module, z).float()
    if not grad:
        return out, []
    weights = torch.cos(torch.arange(out.numel(), device=device, dtype=torch.float32)).view(out.shape)
    grads = torch.autograd.grad((out * weights).sum(), [z, *module.parameters()], allow_unused=True)
    return out.detach(), [g for g in grads if g is not None]


def check_triangle_attention(cfg, n: int, device: torch.device) -> list[dict]:
    """FlexAttention against SDPA for one triangle attention (ending node: the transposed path) and two
    pairformer blocks at the preset's sizes, in FP32 and BF16, each against SDPA in FP32; gradients
    too on CUDA. In BF16 the tolerance adds twice SDPA's own BF16 error."""
    fast = "auto" if device.type == "cuda" else "flex"
    gen = torch.Generator(device="cpu").manual_seed(0)
    z = torch.randn(n, n, cfg.c_z, generator=gen).to(device)
    s = torch.randn(n, cfg.c_s, generator=gen).to(device)
    t = cfg.triangle
    cases = {
        f"triangle attention N={n}": (
            TriangleAttention(cfg.c_z, t.att_hidden, t.att_heads, starting=False),
            lambda module, z: module(z),
        ),
        f"pairformer 2 blocks N={n}": (
            PairformerStack(cfg.c_z, cfg.c_s, 2, cfg).eval(),
            lambda module, z: module(s, z)[1],
        ),
    }
    records = []
    for name, (module, fn) in cases.items():
        module = randomize_parameters(module, seed=1, scale=0.5).to(device)
        reference = run_module(module, "sdpa", "fp32", device, z, fn)
        for dtype in DTYPES:
            fast_err = errors(run_module(module, fast, dtype, device, z, fn), reference)
            sdpa_err = [None] * len(fast_err)
            if dtype != "fp32":
                sdpa_err = errors(run_module(module, "sdpa", dtype, device, z, fn), reference)
            label = f"{name} {fast} vs sdpa"
            records.append(check_record(f"{label}: output", dtype, fast_err[0], sdpa_err[0]))
            if len(fast_err) > 1:  # the gradient closest to its tolerance
                pairs = list(zip(fast_err, sdpa_err, strict=True))[1:]
                worst = max(pairs, key=lambda p: p[0]["max_rel"] - (2 * p[1]["max_rel"] if p[1] else 0.0))
                records.append(check_record(f"{label}: worst gradient", dtype, *worst))
        del module
    if device.type == "cuda" and FLEX_KERNEL.failed:
        records.append({"check": "FlexAttention compiled", "ok": False, "note": "fell back to SDPA"})
        print("FAIL FlexAttention failed to compile or run and fell back to SDPA (see the log line)")
    return records


def check_denoiser_paths(cfg, n: int, device: torch.device, n_step: int = 4) -> list[dict]:
    """Four sampler steps of a random diffusion module: the CUDA-graph denoiser (one capture, three
    replays) against the eager one in FP32 and BF16, and TF32 matmuls against FP32, allowed as much
    error as BF16 (what the precision rule already runs above 3,840 tokens)."""
    if device.type != "cuda":
        print("skip denoiser checks (CUDA graph, TF32): need CUDA", flush=True)
        return [{"check": "denoiser CUDA graph and TF32", "ok": None, "note": "skipped: needs CUDA"}]
    feats = {k: v.to(device) for k, v in synthetic_features(n, seed=1, with_truth=False).items()}
    gen = torch.Generator(device="cpu").manual_seed(2)
    trunk = TrunkOutput(
        torch.randn(n, cfg.c_s_inputs, generator=gen).to(device),
        torch.randn(n, cfg.c_s, generator=gen).to(device),
        torch.randn(n, n, cfg.c_z, generator=gen).to(device),
    )
    module = randomize_parameters(DiffusionModule(cfg), seed=3, scale=0.5).to(device).eval()
    n_atom = int(feats["atom_to_token"].shape[0])
    records, coords = [], {}
    for dtype, denoiser in (("fp32", "eager"), ("fp32", "graph"), ("bf16", "eager"), ("bf16", "graph"),
                            ("fp32", "eager+tf32")):  # fmt: skip
        apply_denoiser(module, denoiser)
        with torch.no_grad():
            cond = module.prepare(feats, trunk, DTYPES[dtype])
            sampler_gen = torch.Generator(device=device).manual_seed(4)
            coords[dtype, denoiser] = sample_diffusion(
                lambda x, sigma, cond=cond: module.denoise(x, sigma, cond), n_atom, 2, n_step, sampler_gen,
                schedule=noise_schedule(n_step, sigma_data=module.sigma_data),
            )  # fmt: skip
        if "graph" in denoiser and not any(g.graph is not None for g in cond.graphs.values()):
            records.append({"check": "denoiser CUDA graph captured", "dtype": dtype, "ok": False})
            print(f"FAIL denoiser CUDA graph [{dtype}]: nothing was captured (see the log line)")
    for dtype in DTYPES:
        records.append(
            check_record(f"denoiser CUDA graph vs eager, N={n}, {n_step} steps", dtype,
                         compare(coords[dtype, "graph"], coords[dtype, "eager"]), None)
        )  # fmt: skip
    bf16_error = compare(coords["bf16", "eager"], coords["fp32", "eager"])["max_rel"]
    tf32 = check_record(f"denoiser TF32 vs FP32, N={n}, {n_step} steps", "fp32",
                        compare(coords["fp32", "eager+tf32"], coords["fp32", "eager"]), None)  # fmt: skip
    tf32.update(tolerance_rel=bf16_error, ok=tf32["max_rel"] <= bf16_error)
    print(
        f"{'ok  ' if tf32['ok'] else 'FAIL'} TF32 error {tf32['max_rel']:.2e} against BF16's {bf16_error:.2e}"
    )
    records.append(tf32)
    apply_denoiser(module, "eager")
    return records


def parse_variant(text: str) -> tuple[str, str]:
    kernel, _, denoiser = text.partition("/")
    if kernel not in TRIANGLE_ATTENTION_KERNELS or denoiser not in DENOISERS:
        raise argparse.ArgumentTypeError(
            f"variant {text!r}: expected <{'|'.join(TRIANGLE_ATTENTION_KERNELS)}>/<{'|'.join(DENOISERS)}>"
        )
    return kernel, denoiser


def apply_denoiser(module: DiffusionModule, denoiser: str) -> None:
    module.cuda_graph = "graph" in denoiser
    module.tf32 = "tf32" in denoiser


def apply_variant(net: Foldline, variant: tuple[str, str]) -> None:
    set_triangle_attention_kernel(net, variant[0])
    apply_denoiser(net.diffusion, variant[1])


def time_predict(net: Foldline, n_token: int, variant: tuple[str, str], args, device, meta_fn) -> dict:
    """One timed `predict_features` (the workflow's inference call) after an untimed warm-up."""
    apply_variant(net, variant)
    feats = synthetic_features(n_token, seed=0)
    meta = meta_fn(feats)
    settings = PredictSettings(n_cycle=args.cycles, n_step=args.steps, n_sample=args.samples, seeds=(1,))
    t0 = sync(device)
    if args.warmup:  # compilation for this size bucket, cuBLAS and allocator warm-up; not timed
        warm = PredictSettings(n_cycle=1, n_step=2, n_sample=args.samples, seeds=(0,))
        predict_features(net, feats, meta, warm, device)
    warmup_s = sync(device) - t0
    free_memory(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = sync(device)
    seeds, plan = predict_features(net, feats, meta, settings, device)
    total = sync(device) - t0
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {
        "n_token": n_token,
        "n_atom": int(feats["atom_to_token"].shape[0]),
        "variant": "/".join(variant),
        "cycles": args.cycles,
        "steps": args.steps,
        "samples": args.samples,
        "seconds": round(total, 3),
        "stage_seconds": {k: round(v, 3) for k, v in seeds[0].seconds.items()},
        "peak_gib": round(peak, 3) if peak is not None else None,
        "warmup_seconds": round(warmup_s, 2),
        "precision": plan.as_dict(),
        "flex_fell_back": FLEX_KERNEL.failed,
    }


def time_train_step(kernel: str, args, device: torch.device) -> dict:
    """bench/train_step.py's Initial-stage step with every triangle attention on `kernel`."""
    train_step = load_bench_module("train_step")
    preset = load_preset_yaml(args.preset)
    preset.setdefault("triangle", {})["attention_kernel"] = kernel
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{Path(args.preset).stem}-{kernel}.yaml"
        path.write_text(yaml.safe_dump(preset))
        step_args = argparse.Namespace(
            preset=str(path), device=str(device), crop=args.train_crop, atoms_per_token=8, n_msa=512,
            n_templ=4, diffusion_batch=args.train_diffusion_batch, precision="auto", checkpoint_blocks="auto",
            cycles=args.train_cycles, warmup=1, repeat=1,
        )  # fmt: skip
        result = train_step.bench_step(step_args)
    result.update(preset=args.preset, triangle_kernel=kernel, flex_fell_back=FLEX_KERNEL.failed)
    return result


def load_preset_yaml(name_or_path: str) -> dict:
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = PRESET_DIR / f"{name_or_path}.yaml"
    return yaml.safe_load(path.read_text()) or {}


def profile_trunk(net: Foldline, n_token: int, device: torch.device, rows: int = 40) -> dict:
    """torch.profiler table of one trunk cycle, with a range per module (by class name)."""
    feats = {k: v.to(device) for k, v in synthetic_features(n_token, seed=0).items()}
    plan = make_plan(n_token, PredictSettings(), device)

    def trunk_cycle() -> None:
        with torch.no_grad():
            net.run_trunk(feats, n_cycle=1, dtype=plan.trunk, chunk_size=plan.pair_chunk)
        sync(device)

    trunk_cycle()  # compilation and warm-up
    open_ranges = []

    def enter(module, _inputs):
        open_ranges.append(torch.profiler.record_function(f"module::{type(module).__name__}"))
        open_ranges[-1].__enter__()

    def leave(_module, _inputs, _output):
        open_ranges.pop().__exit__(None, None, None)

    handles = []
    for module in net.modules():
        if not isinstance(module, (torch.nn.ModuleList, torch.nn.Sequential, Foldline)):
            handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    try:
        with torch.profiler.profile(activities=activities) as prof:
            t0 = sync(device)
            trunk_cycle()
            seconds = sync(device) - t0
    finally:
        for handle in handles:
            handle.remove()
    averages = prof.key_averages()
    if device.type != "cuda":
        sort_by = "cpu_time_total"
    else:
        sort_by = "device_time_total" if hasattr(averages[0], "device_time_total") else "cuda_time_total"
    table = averages.table(sort_by=sort_by, row_limit=rows)
    print(f"\nprofile: one trunk cycle at {n_token} tokens, {seconds:.3f} s (under the profiler)\n{table}")
    return {"n_token": n_token, "seconds": seconds, "sort_by": sort_by, "table": table}


def predicted_seconds(done: list[dict], n_token: int, variant: str) -> float | None:
    """Warm-up plus timed run of `variant` at n_token, scaled from its largest measured smaller size."""
    smaller = [r for r in done if r["variant"] == variant and "seconds" in r and r["n_token"] <= n_token]
    if not smaller:
        return None
    last = max(smaller, key=lambda r: r["n_token"])
    return (last["seconds"] + last["warmup_seconds"]) * (n_token / last["n_token"]) ** SIZE_EXPONENT


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="base")
    p.add_argument("--sizes", default="512,1024,2048,4096", help="token counts, comma-separated")
    p.add_argument("--cycles", type=int, default=10)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--samples", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--variants",
        default="sdpa/eager,auto/graph",
        type=lambda text: [parse_variant(v) for v in text.split(",") if v],
        help="comma-separated <kernel>/<denoiser>",
    )
    p.add_argument("--max-seconds", type=float, default=540.0, help="skip what would end after this")
    p.add_argument("--out", default="gpu_bench.json", help="JSON results (rewritten as they come)")
    p.add_argument("--check-size", type=int, default=100, help="tokens of the correctness checks")
    p.add_argument("--no-checks", dest="checks", action="store_false")
    p.add_argument("--keep-going", action="store_true", help="time even if a check failed")
    p.add_argument("--no-warmup", dest="warmup", action="store_false")
    p.add_argument("--no-train", dest="train", action="store_false")
    p.add_argument("--train-crop", type=int, default=384)
    p.add_argument("--train-diffusion-batch", type=int, default=48)
    p.add_argument("--train-cycles", default="1,4", help="N_cycle values of the timed training steps")
    p.add_argument("--profile", action="store_true", help="per-module profile of one trunk cycle")
    p.add_argument("--profile-size", type=int, default=None, help="tokens (default: the first size)")
    args = p.parse_args(argv)
    args.sizes = [int(n) for n in str(args.sizes).split(",") if n]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    device = resolve_device(args.device)
    out = Path(args.out)
    cfg = load_preset(args.preset)
    results = {
        "preset": args.preset,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "args": {k: v for k, v in vars(args).items() if k != "variants"}
        | {"variants": ["/".join(v) for v in args.variants]},
        "checks": [],
        "predict": [],
        "train": [],
        "skipped": [],
    }
    print(f"# bench/gpu.py: {args.preset} on {results['device']}, torch {torch.__version__}", flush=True)

    def elapsed() -> float:
        return time.perf_counter() - start

    def skip(what: str, why: str) -> None:
        print(f"skip {what}: {why}", flush=True)
        results["skipped"].append({"what": what, "why": why})

    if args.checks:
        for check in (check_triangle_attention, check_denoiser_paths):
            try:
                results["checks"] += check(cfg, args.check_size, device)
            except Exception as err:  # noqa: BLE001 (a crash is a failed check: record it, say it, go on)
                traceback.print_exc()
                results["checks"].append({"check": check.__name__, "ok": False, "error": repr(err)[:500]})
                print(f"FAIL {check.__name__} raised {err!r}", flush=True)
        free_memory(device)
        write_json(out, results)
        failed = [c["check"] for c in results["checks"] if c["ok"] is False]
        if failed:
            print(f"CHECKS FAILED: {failed}", flush=True)
            if not args.keep_going:
                results["elapsed_s"] = elapsed()
                write_json(out, results)
                return 1

    if args.train:
        for kernel in dict.fromkeys(v[0] for v in args.variants):
            if kernel == "flex" and device.type != "cuda":
                skip("train step [flex]", "eager FlexAttention has no backward")
                continue
            if elapsed() > args.max_seconds:
                skip(f"train step [{kernel}]", f"{elapsed():.0f} s used of {args.max_seconds:.0f}")
                continue
            try:
                results["train"].append(time_train_step(kernel, args, device))
            except Exception as err:  # noqa: BLE001 (out of memory or a failed kernel: record it, go on)
                traceback.print_exc()
                results["train"].append({"triangle_kernel": kernel, "error": repr(err)[:500]})
            free_memory(device)
            write_json(out, results)

    torch.manual_seed(0)
    with torch.device(device):  # initialise on the GPU: 368 M parameters initialise slowly on CPU
        net = Foldline(cfg).eval()
    results["n_param_M"] = round(sum(p.numel() for p in net.parameters()) / 1e6, 2)
    meta_fn = load_bench_module("predict").meta_from_features
    if args.profile:
        try:
            results["profile"] = profile_trunk(net, args.profile_size or args.sizes[0], device)
        except Exception as err:  # noqa: BLE001 (the timings below still count)
            traceback.print_exc()
            results["profile"] = {"error": repr(err)[:500]}
        free_memory(device)
        write_json(out, results)

    for n_token in args.sizes:
        for variant in args.variants:
            name = "/".join(variant)
            guess = predicted_seconds(results["predict"], n_token, name)
            if elapsed() > args.max_seconds or (guess is not None and elapsed() + guess > args.max_seconds):
                why = f"{elapsed():.0f} s used of {args.max_seconds:.0f}" + (
                    f", this one would take ~{guess:.0f} s" if guess is not None else ""
                )
                skip(f"predict {n_token} tokens [{name}]", why)
                continue
            try:
                row = time_predict(net, n_token, variant, args, device, meta_fn)
            except Exception as err:  # noqa: BLE001 (out of memory or a failed kernel: record it, go on)
                traceback.print_exc()
                row = {"n_token": n_token, "variant": name, "error": repr(err)[:500]}
            free_memory(device)
            results["predict"].append(row)
            print(json.dumps(row), flush=True)
            write_json(out, results)

    results["elapsed_s"] = elapsed()
    write_json(out, results)
    print_tables(results)
    return 0


def print_tables(results: dict) -> None:
    print("\n| N_token | variant | time (s) | trunk / diffusion / confidence (s) | peak (GiB) |")
    print("|---|---|---|---|---|")
    for r in results["predict"]:
        if "seconds" not in r:
            print(f"| {r['n_token']} | {r['variant']} | {r['error']} | | |")
            continue
        st = r["stage_seconds"]
        print(
            f"| {r['n_token']} | {r['variant']} | {r['seconds']:.2f} | "
            f"{st['trunk']:.2f} / {st['diffusion']:.2f} / {st['confidence']:.2f} | {r['peak_gib']} |"
        )
    for t in results["train"]:
        if "error" in t:
            print(f"train step [{t['triangle_kernel']}]: {t['error']}")
        else:
            print(
                f"train step [{t['triangle_kernel']}] crop {t['crop']}, diffusion batch "
                f"{t['diffusion_batch']}: {t['mean_seconds_uniform_ncycle']:.2f} s/step, "
                f"peak {t['peak_gib']:.1f} GiB"
            )


if __name__ == "__main__":
    sys.exit(main())
