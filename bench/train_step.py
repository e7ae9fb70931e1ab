"""Training benchmarks (torch/numpy/h5py only: runs on GPU hosts without the chemistry stack).

step mode: one Initial-training step (stage0 of config/stages.yaml: crop 384, diffusion batch 48,
  BF16 mixed) of the base preset on synthetic features (`model.nn.synthetic`) with synthetic
  ground truth: forward (trunk, mini-rollout, 48-sample diffusion, confidence, distogram), backward,
  Adam step. Reports seconds per step per N_cycle and peak GPU memory. Seed anchors (SEED.md):
  A100 ~12 s / ~34 GB; Protenix on H100 9.4-12.2 s / 14.7 GiB.
    python bench/train_step.py step --preset base --device cuda

overfit mode: train on one real protein's feature file (no crop) until the all-atom lDDT of a
  sampled structure reaches --target (0.9), printing the curve (step, minutes, loss, lDDT). The
  feature file is built on a CPU machine with the featurizer and carried as HDF5:
    python scripts/build_features.py --mmcif ../shared/data/mmcif/1a7g.cif.gz --ccd "" \
        --out bench/data/1a7g.h5 --failed-dir /tmp/failed
    python bench/train_step.py overfit --features bench/data/1a7g.h5 --preset base --device cuda \
        --state results/bench/overfit_state.pt --json results/bench/overfit.json
  Rerunning the same command continues from --state (the device allows 10 minutes a command).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.device import resolve_device  # noqa: E402
from model.eval.lddt import lddt  # noqa: E402
from model.nn.network import Foldline  # noqa: E402
from model.nn.sampler import noise_schedule, sample_diffusion  # noqa: E402
from model.nn.synthetic import synthetic_features  # noqa: E402
from model.train import data as train_data  # noqa: E402
from model.train.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from model.train.loop import TrainingLoss, autocast_dtype, network_config  # noqa: E402
from model.train.schedule import make_optimizer, make_scheduler  # noqa: E402
from model.train.stages import resolve_stage  # noqa: E402

STAGES = Path(__file__).resolve().parents[1] / "config" / "stages.yaml"


def aux_arrays(feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The loss-only arrays of `model.train.data` for features already in memory."""
    f = {k: v.numpy() for k, v in feats.items()}
    names = train_data.atom_names(f["ref_atom_name_chars"])
    frames, mask = train_data.token_frames(f, names)
    return {
        "frame_atoms": torch.from_numpy(frames),
        "frame_mask": torch.from_numpy(mask),
        "bond_pairs": torch.zeros((0, 2), dtype=torch.long),
        "swap_pairs": torch.from_numpy(train_data.symmetric_swaps(f, names)),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_step(args: argparse.Namespace) -> dict:
    device = resolve_device(args.device)
    overrides = [f"train_crop_size={args.crop}", f"diffusion_batch_size={args.diffusion_batch}",
                 f"precision={args.precision}", f"checkpoint_blocks={args.checkpoint_blocks}"]  # fmt: skip
    cfg = resolve_stage(STAGES, 0, overrides)
    amp = autocast_dtype(cfg["precision"], device)
    feats = synthetic_features(args.crop, args.atoms_per_token, args.n_msa, args.n_templ, seed=0)
    aux = aux_arrays(feats)
    feats = {k: v.to(device) for k, v in feats.items()}
    aux = {k: v.to(device) for k, v in aux.items()}
    torch.manual_seed(0)
    net = Foldline(network_config(args.preset, cfg, device)).to(device)
    module = TrainingLoss(net, cfg)
    opt = make_optimizer(net.parameters(), cfg)
    results = {"preset": args.preset, "crop": args.crop, "n_atom": int(feats["atom_pos"].shape[0]),
               "diffusion_batch": args.diffusion_batch, "n_msa": args.n_msa, "precision": str(amp),
               "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "checkpoint_blocks": net.cfg.checkpoint_blocks,
               "params": sum(p.numel() for p in net.parameters()), "steps": []}  # fmt: skip
    cycles = [int(c) for c in args.cycles.split(",")]
    for i, n_cycle in enumerate([cycles[0]] * args.warmup + cycles * args.repeat):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        _sync(device)
        t0 = time.perf_counter()
        loss, terms = module(feats, aux, n_cycle, 1000 + i, amp)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), float(cfg["grad_clip_norm"]))
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(device)
        dt = time.perf_counter() - t0
        mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
        warm = i < args.warmup
        print(f"{'warmup' if warm else 'step'} n_cycle={n_cycle} {dt:.2f} s peak {mem:.1f} GiB "
              f"loss {terms['loss']:.3f}", flush=True)  # fmt: skip
        if not warm:
            results["steps"].append({"n_cycle": n_cycle, "seconds": dt, "peak_gib": mem})
    for n_cycle in cycles:
        times = [s["seconds"] for s in results["steps"] if s["n_cycle"] == n_cycle]
        print(f"n_cycle={n_cycle}: median {np.median(times):.2f} s/step", flush=True)
    times = [s["seconds"] for s in results["steps"]]
    results["mean_seconds_uniform_ncycle"] = float(np.mean(times))
    results["peak_gib"] = max(s["peak_gib"] for s in results["steps"])
    print(f"mean over N_cycle {cycles}: {results['mean_seconds_uniform_ncycle']:.2f} s/step, "
          f"peak {results['peak_gib']:.1f} GiB", flush=True)  # fmt: skip
    return results


def bench_overfit(args: argparse.Namespace) -> dict:
    device = resolve_device(args.device)
    overrides = [f"diffusion_batch_size={args.diffusion_batch}", f"precision={args.precision}",
                 f"lr={args.lr}", f"lr_schedule.warmup_steps={args.warmup_steps}",
                 f"checkpoint_blocks={args.checkpoint_blocks}"]  # fmt: skip
    cfg = resolve_stage(STAGES, 0, overrides)
    amp = autocast_dtype(cfg["precision"], device)
    entry = train_data.index_entry(args.features)
    ex = train_data.load_example(entry, 10**6, np.random.default_rng(0), None)  # no crop: the whole protein
    feats = {k: v.to(device) for k, v in ex["feats"].items()}
    aux = {k: v.to(device) for k, v in ex["aux"].items()}
    torch.manual_seed(0)
    net = Foldline(network_config(args.preset, cfg, device)).to(device)
    module = TrainingLoss(net, cfg)
    opt = make_optimizer(net.parameters(), cfg)
    sched = make_scheduler(opt, cfg)
    n_atom = int(feats["atom_pos"].shape[0])
    print(f"overfit {entry.target_id}: {entry.n_token} tokens, {n_atom} atoms, preset {args.preset}, "
          f"device {device}", flush=True)  # fmt: skip
    curve, step, best, before = [], 0, 0.0, 0.0
    state_path = Path(args.state) if args.state else None
    if state_path is not None and state_path.is_file():  # continue a run cut by the command time limit
        state = load_checkpoint(state_path, map_location=device)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        curve, step, best, before = state["curve"], state["step"], state["best"], state["minutes"]
        print(f"resumed at step {step} ({before:.1f} min of training so far)", flush=True)
    t_start = time.time() - before * 60
    t_limit = time.time() + args.max_minutes * 60
    while step < args.max_steps and time.time() < t_limit and best < args.target:
        n_cycle = args.n_cycle or int(np.random.default_rng([step, 7]).integers(1, 5))
        loss, terms = module(feats, aux, n_cycle, step, amp)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), float(cfg["grad_clip_norm"]))
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        if step % args.eval_every == 0:
            score = evaluate(net, feats, cfg, args, amp, device)
            best = max(best, score)
            minutes = (time.time() - t_start) / 60
            curve.append({"step": step, "minutes": minutes, "loss": terms["loss"], "lddt": score})
            print(f"step {step} {minutes:.1f} min loss {terms['loss']:.4f} mse {terms['mse']:.3f} "
                  f"lDDT {score:.3f}", flush=True)  # fmt: skip
    minutes = (time.time() - t_start) / 60
    if state_path is not None:
        save_checkpoint(state_path, {"model": net.state_dict(), "optimizer": opt.state_dict(),
                                     "scheduler": sched.state_dict(), "curve": curve, "step": step,
                                     "best": best, "minutes": minutes})  # fmt: skip
    return {"target_id": entry.target_id, "n_token": entry.n_token, "n_atom": n_atom,
            "reached": best >= args.target, "best_lddt": best, "steps": step, "minutes": minutes,
            "curve": curve}  # fmt: skip


@torch.no_grad()
def evaluate(net, feats, cfg, args, amp, device) -> float:
    """All-atom lDDT (15 Å) of one sample of the current (raw) weights, AF3 sampler."""
    net.eval()
    dtype = amp or torch.float32
    trunk = net.run_trunk(feats, args.n_cycle or 4, dtype=dtype)  # the recycles it was trained with
    cond = net.diffusion.prepare(feats, trunk, dtype)
    gen = torch.Generator(device=device).manual_seed(0)
    n_atom = feats["atom_pos"].shape[0]
    schedule = noise_schedule(args.sample_steps, sigma_data=net.cfg.sigma_data)
    x = sample_diffusion(
        lambda x, s: net.diffusion.denoise(x, s, cond), n_atom, 1, args.sample_steps, gen, schedule=schedule
    )
    net.train()
    return float(lddt(x[0], feats["atom_pos"], feats["atom_resolved"]))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="mode", required=True)
    for name in ("step", "overfit"):
        s = sub.add_parser(name)
        s.add_argument("--preset", default="base")
        s.add_argument("--device", default="auto")
        s.add_argument("--precision", default="auto", help="auto (bf16 on CUDA), bf16 or fp32")
        s.add_argument("--diffusion-batch", type=int, default=48)
        s.add_argument("--checkpoint-blocks", default="auto", help="auto (on CUDA), true, false")
        s.add_argument("--json", default=None, help="also write the results here")
    step = sub.choices["step"]
    step.add_argument("--crop", type=int, default=384)
    step.add_argument("--atoms-per-token", type=int, default=8, help="synthetic atoms per token (~proteins)")
    step.add_argument("--n-msa", type=int, default=512)
    step.add_argument("--n-templ", type=int, default=4)
    step.add_argument("--cycles", default="1,2,3,4", help="N_cycle values timed (training draws 1..4)")
    step.add_argument("--warmup", type=int, default=1)
    step.add_argument("--repeat", type=int, default=1)
    over = sub.choices["overfit"]
    over.add_argument("--features", required=True, help="one training feature file (.h5, with ground truth)")
    over.add_argument("--lr", type=float, default=1.8e-3)
    over.add_argument("--warmup-steps", type=int, default=100)
    over.add_argument("--target", type=float, default=0.9)
    over.add_argument("--eval-every", type=int, default=25)
    over.add_argument("--sample-steps", type=int, default=50)
    over.add_argument("--max-steps", type=int, default=20000)
    over.add_argument("--n-cycle", type=int, default=0, help="recycles per step (0: 1-4 at random)")
    over.add_argument("--max-minutes", type=float, default=9.0, help="wall-clock budget of this invocation")
    over.add_argument("--state", default=None, help="save the run here at the end; rerun to continue it")
    args = p.parse_args(argv)
    results = bench_step(args) if args.mode == "step" else bench_overfit(args)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
