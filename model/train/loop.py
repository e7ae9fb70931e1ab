"""The training loop: one stage of config/stages.yaml, resumable bit for bit, DDP under torchrun.

Per optimizer step (AF3 supplement §5): N_cycle ~ U{1..n_cycle_max} (the trunk keeps gradients of
the last cycle only), for each example of the micro-batch the trunk runs once, a no-grad
mini-rollout (`mini_rollout_steps` steps of `model.nn.sampler.sample_diffusion`) feeds the chain
and atom permutation and the confidence losses, and `diffusion_batch_size` noised copies of the
augmented truth train the diffusion module. Adam, AF3 LR schedule, gradient clipping, EMA.

Determinism: every random draw of example slot k (data choice, crop, noise, augmentation,
dropout) comes from generators seeded by (seed, stage, k), and N_cycle from (seed, stage, step),
so a resumed run (from `last.pt`) and any split of the global batch over processes see the same
numbers. SIGTERM / SIGUSR1 (SLURM pre-emption) save `last.pt` after the current step and exit
with 128 + signal number; a rerun with the same arguments continues from there.

Imports only torch, numpy (and h5py through the data pipeline).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import math
import os
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from model.data.constants import MOL_DNA, MOL_LIGAND, MOL_RNA
from model.device import resolve_device
from model.eval.dockq import complex_dockq
from model.eval.lddt import lddt
from model.fileio import sha256_file, write_json
from model.infer.checkpoint import load_network_weights
from model.nn.config import ModelConfig, config_from_dict
from model.nn.network import Foldline, load_preset
from model.nn.sampler import centre_random_augmentation, noise_schedule, sample_diffusion
from model.train import data as train_data
from model.train import losses
from model.train.checkpoint import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from model.train.ema import Ema
from model.train.permutation import permute_ground_truth
from model.train.schedule import make_optimizer, make_scheduler

LOSS_TERMS = (
    "loss", "diffusion", "mse", "bond", "smooth_lddt", "distogram",
    "confidence", "plddt", "pae", "pde", "resolved",
)  # fmt: skip
METRIC_COLUMNS = (
    "step", *LOSS_TERMS, "lr", "grad_norm", "n_cycle", "val_lddt", "val_dockq", "step_time", "gpu_mem_gb"
)  # fmt: skip
NONDETERMINISTIC_COLUMNS = ("step_time", "gpu_mem_gb")  # wall clock and allocator: excluded from equality


def example_seed(seed: int, stage_index: int, slot: int) -> int:
    """The torch seed of one example slot (noise, augmentation, dropout)."""
    return int(np.random.default_rng([int(seed), int(stage_index), int(slot), 1]).integers(2**62))


def n_cycle_for_step(seed: int, stage_index: int, step: int, n_max: int) -> int:
    """N_cycle ~ Uniform{1..n_max}, the same on every process of a step."""
    return int(np.random.default_rng([int(seed), int(stage_index), int(step), 2]).integers(1, n_max + 1))


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast or None (fp32). `auto` is bf16 on CUDA and fp32 on CPU."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision not in ("bf16", "fp32"):
        raise ValueError(f"precision {precision!r}: expected auto, fp32 or bf16")
    return torch.bfloat16 if precision == "bf16" else None


def network_config(preset: str | ModelConfig, cfg: dict, device: torch.device) -> ModelConfig:
    """The network config (a preset's, or the one given) with the stage's activation checkpointing
    applied (`checkpoint_blocks`: auto = on for CUDA, where block activations would not fit otherwise)."""
    net_cfg = copy.deepcopy(preset) if isinstance(preset, ModelConfig) else load_preset(preset)
    flag = cfg.get("checkpoint_blocks", "auto")
    net_cfg.checkpoint_blocks = device.type == "cuda" if flag == "auto" else bool(flag)
    return net_cfg


def confidence_module(net: torch.nn.Module) -> torch.nn.Module:
    """The confidence head (the only part trained when `train_confidence_only`)."""
    for name in ("confidence", "confidence_head"):
        head = getattr(net, name, None)
        if isinstance(head, torch.nn.Module):
            return head
    raise AttributeError("network: no confidence head module (expected `net.confidence`)")


def _to_device(tree, device: torch.device):
    if isinstance(tree, torch.Tensor):
        return tree.to(device, non_blocking=True)
    if isinstance(tree, dict):
        return {k: _to_device(v, device) for k, v in tree.items()}
    return tree


class TrainingLoss(torch.nn.Module):
    """The network plus AF3's losses as one module, so that DDP can wrap it (its forward is the
    whole step of one example). Weights come from the stage config `cfg["loss"]["weight"]`."""

    def __init__(self, net: torch.nn.Module, cfg: dict):
        super().__init__()
        self.net = net
        self.cfg = cfg
        self.weight = cfg["loss"]["weight"]
        self.confidence_only = bool(cfg["train_confidence_only"])

    def forward(
        self, feats: dict, aux: dict, n_cycle: int, seed: int, amp_dtype: torch.dtype | None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss (scalar, differentiable) and every term as floats (NaN when weight is 0)."""
        net, w, cfg = self.net, self.weight, self.cfg
        device = feats["atom_pos"].device
        dtype = amp_dtype or torch.float32
        torch.manual_seed(seed)  # anything drawing from the global generator
        gen = torch.Generator(device=device).manual_seed(seed)  # dropout, noise, augmentation
        frozen = torch.no_grad() if self.confidence_only else contextlib.nullcontext()
        terms = dict.fromkeys(LOSS_TERMS, float("nan"))
        with frozen:
            trunk = net.run_trunk(feats, n_cycle, dtype=dtype, generator=gen)
            cond = net.diffusion.prepare(feats, trunk, dtype)
        n_atom = feats["atom_pos"].shape[0]

        def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            return net.diffusion.denoise(x, sigma, cond)

        with torch.no_grad():
            n_step = int(cfg["mini_rollout_steps"])
            x_roll = sample_diffusion(
                denoise, n_atom, int(cfg["mini_rollout_samples"]), n_step, gen,
                schedule=noise_schedule(n_step, sigma_data=net.cfg.sigma_data), device=device,
            )  # fmt: skip
        x_gt, resolved = permute_ground_truth(feats, aux, x_roll[0])
        mol_atom = feats["mol_type"][feats["atom_to_token"]]
        is_nuc = (mol_atom == MOL_DNA) | (mol_atom == MOL_RNA)
        total = x_roll.new_zeros(())

        if w["alpha_diffusion"] > 0:
            n_sample = int(cfg["diffusion_batch_size"])
            sigma_data = float(net.cfg.sigma_data)
            x_aug = centre_random_augmentation(x_gt.expand(n_sample, n_atom, 3), resolved, gen)
            sigma = losses.sample_noise_levels(n_sample, sigma_data, gen).to(device)
            noise = torch.randn(x_aug.shape, generator=gen, device=device) * sigma[:, None, None]
            x_den = denoise(x_aug + noise, sigma).float()
            mse_w = losses.atom_mse_weights(mol_atom, w["alpha_dna"], w["alpha_rna"], w["alpha_ligand"])
            mse = losses.mse_loss(x_den, x_aug, mse_w, resolved)
            edm = losses.edm_loss_weight(sigma, sigma_data)
            diffusion = edm * mse
            terms["mse"] = float(mse.mean().detach())
            if w["alpha_bond"] > 0:
                bond = losses.bond_loss(x_den, x_aug, aux["bond_pairs"], resolved)
                diffusion = diffusion + w["alpha_bond"] * edm * bond
                terms["bond"] = float(bond.mean().detach())
            diffusion = diffusion.mean()
            if w["smooth_lddt"] > 0:
                smooth = losses.smooth_lddt_loss(x_den, x_gt, is_nuc, resolved).mean()
                diffusion = diffusion + w["smooth_lddt"] * smooth
                terms["smooth_lddt"] = float(smooth.detach())
            total = total + w["alpha_diffusion"] * diffusion
            terms["diffusion"] = float(diffusion.detach())

        if w["alpha_distogram"] > 0:
            logits = net.distogram(trunk.z)
            disto = losses.distogram_loss(logits, x_gt, feats["token_rep_atom"], resolved)
            total = total + w["alpha_distogram"] * disto
            terms["distogram"] = float(disto.detach())

        if w["alpha_confidence"] > 0:
            out = net.confidence(feats, trunk, x_roll, dtype)
            centre = feats["token_center_atom"]
            ref_mask = torch.zeros_like(resolved)
            polymer_centres = centre[feats["mol_type"] != MOL_LIGAND]
            ref_mask[polymer_centres] = True
            plddt = losses.plddt_loss(out["plddt_logits"], x_roll, x_gt, resolved, ref_mask, is_nuc)
            pde = losses.pde_loss(out["pde_logits"], x_roll, x_gt, centre, resolved)
            res = losses.resolved_loss(out["resolved_logits"], resolved, torch.ones_like(resolved))
            conf = plddt + pde + res
            terms.update(plddt=float(plddt.detach()), pde=float(pde.detach()), resolved=float(res.detach()))
            if w["alpha_pae"] > 0:
                frame_ok = aux["frame_mask"] & resolved[aux["frame_atoms"]].all(-1)
                pae = losses.pae_loss(
                    out["pae_logits"], x_roll, x_gt, aux["frame_atoms"], frame_ok, centre, resolved
                )
                conf = conf + w["alpha_pae"] * pae
                terms["pae"] = float(pae.detach())
            total = total + w["alpha_confidence"] * conf
            terms["confidence"] = float(conf.detach())
        terms["loss"] = float(total.detach())
        return total, terms


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> tuple[Dist, torch.device]:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK: NCCL on CUDA (one process per GPU), gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), resolve_device(device_name)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, local), device


class StopFlag:
    """Set by SIGTERM / SIGUSR1; checked (and agreed over all ranks) after every step."""

    def __init__(self):
        self.signum = 0
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame):  # noqa: ARG002
        self.signum = signum


class MetricsLog:
    """metrics.csv (one row per step, flushed) and TensorBoard scalars, rank 0 only."""

    def __init__(self, out_dir: Path, start_step: int, enabled: bool):
        self.enabled = enabled
        self.path = out_dir / "metrics.csv"
        self.tb = None
        if not enabled:
            return
        rows = []
        if start_step > 0 and self.path.is_file():
            with open(self.path) as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= start_step]
        tmp = self.path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.path)  # a resumed run drops rows written after its checkpoint
        self.file = open(self.path, "a", newline="")  # noqa: SIM115 (kept open for the run)
        self.writer = csv.DictWriter(self.file, fieldnames=METRIC_COLUMNS)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out_dir / "tensorboard"), purge_step=start_step)
        except ImportError:
            print("train: tensorboard not installed; metrics.csv only", file=sys.stderr)

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        self.writer.writerow({k: _fmt(row.get(k)) for k in METRIC_COLUMNS})
        self.file.flush()
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, float | int) and not math.isnan(v):
                    tag = f"val/{k.removeprefix('val_')}" if k.startswith("val_") else f"train/{k}"
                    self.tb.add_scalar(tag, v, row["step"])

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            if self.tb is not None:
                self.tb.close()


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


@torch.no_grad()
def validate(net: torch.nn.Module, examples: list[dict], cfg: dict, device, amp_dtype) -> tuple[float, float]:
    """Mean all-atom lDDT (15 Å, resolved atoms) of one sample per held-out example, and the mean
    DockQ of the examples that are complexes (model.eval.dockq.complex_dockq; NaN when none is)."""
    was_training = net.training
    net.eval()
    scores, dockqs = [], []
    dtype = amp_dtype or torch.float32
    for i, ex in enumerate(examples):
        feats = _to_device(ex["feats"], device)
        gen = torch.Generator(device=device).manual_seed(int(cfg["seed"]) * 1000 + i)
        trunk = net.run_trunk(feats, int(cfg["n_cycle_max"]), dtype=dtype)
        cond = net.diffusion.prepare(feats, trunk, dtype)

        def denoise(x, sigma, cond=cond):
            return net.diffusion.denoise(x, sigma, cond)

        n_atom = feats["atom_pos"].shape[0]
        n_step = int(cfg["val_steps"])
        schedule = noise_schedule(n_step, sigma_data=net.cfg.sigma_data)
        x = sample_diffusion(denoise, n_atom, 1, n_step, gen, schedule=schedule, device=device)
        scores.append(float(lddt(x[0], feats["atom_pos"], feats["atom_resolved"])))
        dockq = complex_dockq(
            x[0], feats["atom_pos"], feats["atom_resolved"], feats["atom_to_token"], feats["asym_id"],
            feats["mol_type"], feats["ref_atom_name_chars"],
        )  # fmt: skip
        if dockq is not None:
            dockqs.append(dockq)
    net.train(was_training)
    lddt_mean, dockq_mean = (float(np.mean(v)) if v else float("nan") for v in (scores, dockqs))
    return lddt_mean, dockq_mean


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def train(
    cfg: dict,
    features,
    out_dir: str | Path,
    preset: str,
    init_checkpoint: str | Path | None = None,
    device_name: str = "auto",
    clusters: str | Path | None = None,
) -> int:
    """Run (or resume) one stage. Returns the exit code: 0 done, 128 + signal when pre-empted."""
    out_dir = Path(out_dir)
    ddp, device = init_distributed(device_name)
    if device.type == "cpu":  # without it, multithreaded CPU training gave run-to-run different weights
        torch.use_deterministic_algorithms(True)
    if ddp.main:
        out_dir.mkdir(parents=True, exist_ok=True)
    seed, stage_index = int(cfg["seed"]), int(cfg["stage_index"])
    amp_dtype = autocast_dtype(str(cfg["precision"]), device)
    steps, accum = int(cfg["steps"]), int(cfg["grad_accum_steps"])
    if int(cfg["batch_size"]) != 1:
        raise ValueError("batch_size: only 1 example per process and micro-step (use grad_accum_steps)")

    # --- data ---
    entries = train_data.build_index(train_data.feature_files(features))
    entries, dropped = train_data.apply_filters(entries, cfg["filters"])
    cluster_method = _assign_clusters(entries, clusters)
    n_val = int(cfg["val_entries"])
    val_entries: list = []
    if n_val > 0 and len(entries) > 2 * n_val:
        val_entries, entries = entries[-n_val:], entries[:-n_val]
    dataset = train_data.TrainDataset(entries, cfg)
    val_examples = [train_data.validation_example(e, cfg) for e in val_entries] if ddp.main else []

    # --- model, optimizer, EMA ---
    # The network: the one last.pt carries (resume), else the init checkpoint's (a Foldline checkpoint's
    # own, or the preset a released Protenix file fits), else the preset.
    last = out_dir / "last.pt"
    resume = load_checkpoint(last, map_location=device) if last.is_file() else None
    init = None
    parent = None
    if resume is not None and isinstance(resume.get("network"), dict):
        base_cfg: str | ModelConfig = config_from_dict(resume["network"], f"checkpoint {last}: network")
    elif resume is None and init_checkpoint:
        init = load_network_weights(init_checkpoint, preset)
        base_cfg = init.config
        parent = {"path": str(init_checkpoint), "sha256": init.provenance["sha256"],
                  "network": init.network_source}  # fmt: skip
    else:
        base_cfg = preset
    torch.manual_seed(seed)
    np.random.seed(seed)  # nothing draws from these, but the checkpoint stores their states
    random.seed(seed)
    net_cfg = network_config(base_cfg, cfg, device)
    net = Foldline(net_cfg).to(device)
    if init is not None:
        net.load_state_dict(init.state)  # the parent's EMA weights (a Protenix file: its weights)
        init = None
    if cfg["train_confidence_only"]:
        head = set(map(id, confidence_module(net).parameters()))
        for p in net.parameters():
            p.requires_grad_(id(p) in head)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    ema = Ema(net, float(cfg["ema_decay"]))
    step = 0
    if resume is not None:
        state, resume = resume, None
        net.load_state_dict(state["raw_model"])
        ema.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        step = int(state["step"])
        parent = state.get("parent", parent)
        if ddp.main:
            _log(f"train {cfg['stage']}: resumed from {last} at step {step}")
    final = out_dir / "checkpoint.pt"

    loss_module = TrainingLoss(net, cfg)
    model = loss_module
    if ddp.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            loss_module, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True,
        )  # fmt: skip

    def save(path: Path, step_now: int) -> None:
        if ddp.main:
            save_checkpoint(path, {
                "model": ema.state_dict(), "raw_model": net.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "step": step_now, "rng": rng_state(),
                "sampler_position": step_now * ddp.world * accum, "config": cfg, "parent": parent,
                "preset": preset, "network": asdict(net_cfg),
            })  # fmt: skip

    metrics = MetricsLog(out_dir, step, ddp.main)
    stop = StopFlag()
    loader = train_data.make_loader(
        dataset, step, ddp.rank, ddp.world, accum, int(cfg["num_workers"]), int(cfg["prefetch_factor"])
    )
    batches = iter(loader)
    if ddp.main:
        _log(f"train {cfg['stage']} ({cfg.get('name', '')}): {len(entries)} entries "
             f"({len(dropped)} filtered out, {len(val_entries)} held out), {ddp.world} process(es) x "
             f"{accum} accumulation, steps {step}->{steps} on {device}")  # fmt: skip
    net.train()
    t_start, first_step = time.time(), step
    while step < steps:
        t0 = time.time()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        n_cycle = n_cycle_for_step(seed, stage_index, step, int(cfg["n_cycle_max"]))
        sums = dict.fromkeys(LOSS_TERMS, 0.0)
        for micro in range(accum):
            ex = next(batches)
            feats, aux = _to_device(ex["feats"], device), _to_device(ex["aux"], device)
            sync = contextlib.nullcontext()
            if ddp.world > 1 and micro < accum - 1:
                sync = model.no_sync()
            with sync:
                ex_seed = example_seed(seed, stage_index, ex["slot"])
                loss, terms = model(feats, aux, n_cycle, ex_seed, amp_dtype)
                (loss / accum).backward()
            for k in LOSS_TERMS:
                sums[k] += terms[k] / accum
        grad_norm = torch.nn.utils.clip_grad_norm_(params, float(cfg["grad_clip_norm"]))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        ema.update(net)
        step += 1
        row = {"step": step, **_all_mean(sums, ddp, device), "lr": optimizer.param_groups[0]["lr"],
               "grad_norm": float(grad_norm), "n_cycle": n_cycle}  # fmt: skip
        if val_examples and step % int(cfg["val_every"]) == 0:
            live = {k: v.clone() for k, v in net.state_dict().items()}
            ema.copy_to(net)
            row["val_lddt"], row["val_dockq"] = validate(net, val_examples, cfg, device, amp_dtype)
            net.load_state_dict(live)
        row["step_time"] = time.time() - t0
        row["gpu_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
        metrics.write(row)
        if ddp.main and step % int(cfg["log_every"]) == 0:
            eta = (time.time() - t_start) / max(step - first_step, 1) * (steps - step)
            _log(f"{cfg['stage']} step {step}/{steps} loss {row['loss']:.4f} lr {row['lr']:.2e} "
                 f"grad_norm {row['grad_norm']:.3g} n_cycle {n_cycle} {row['step_time']:.2f} s/step "
                 f"eta {eta / 60:.1f} min")  # fmt: skip
        signum = _agree_stop(stop.signum, ddp, device)
        if signum or step % int(cfg["save_every"]) == 0 or step == steps:
            save(last, step)
        if signum:
            metrics.close()
            if ddp.main:
                _log(f"train {cfg['stage']}: signal {signum}; saved {last} at step {step}, exiting")
            _barrier(ddp)
            return 128 + signum
    _barrier(ddp)
    if ddp.main:
        if not final.is_file() or load_checkpoint(final).get("step") != steps:
            save(final, steps)
        write_json(out_dir / "provenance.json", {
            "stage": cfg["stage"], "name": cfg.get("name"), "config": cfg, "preset": preset,
            "network": asdict(net_cfg),
            "parent_checkpoint": parent, "checkpoint_sha256": sha256_file(final), "steps": steps,
            "seed": seed, "world_size": ddp.world, "grad_accum_steps": accum, "device": str(device),
            "torch": torch.__version__, "entries": [e.target_id for e in entries],
            "validation_entries": [e.target_id for e in val_entries], "filtered_out": dropped,
            "clusters": cluster_method,
        }, indent=2, sort_keys=True)  # fmt: skip
    metrics.close()
    return 0


def _assign_clusters(entries: list, clusters: str | Path | None) -> str:
    """Cluster table if given, else pyhmmer clustering when importable, else identical sequences."""
    if clusters:
        train_data.read_cluster_table(clusters, entries)
        return f"table:{clusters}"
    try:
        from model.train.clusters import assign_clusters
    except ImportError:
        train_data.exact_clusters(entries)
        return "identical-sequence"
    return assign_clusters(entries)


def _all_mean(values: dict[str, float], ddp: Dist, device: torch.device) -> dict[str, float]:
    if ddp.world == 1:
        return dict(values)
    t = torch.tensor([values[k] for k in LOSS_TERMS], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(v) / ddp.world for k, v in zip(LOSS_TERMS, t.tolist(), strict=True)}


def _agree_stop(signum: int, ddp: Dist, device: torch.device) -> int:
    if ddp.world == 1:
        return signum
    t = torch.tensor([signum], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def _barrier(ddp: Dist) -> None:
    if ddp.world > 1:
        dist.barrier()
