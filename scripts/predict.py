#!/usr/bin/env python
"""Predict structures for one shard of targets (feature files) on one device.

  scripts/predict.py --features results/features/T1.h5 [T2.h5 ...] --checkpoint ckpt.pt|none
      --preset tiny|base --out-dir results/predictions --failed-dir results/failed
      [--seeds 1 2] [--samples 5] [--steps 200] [--cycles 10] [--no-trunk-per-seed] [--device auto|cpu|cuda]
      [--precision auto|fp32|bf16] [--trunk-precision auto|fp32|bf16] [--chunk-size auto|none|N]
      [--sample-chunk auto|N] [--ccd components.cif] [--reuse-unchanged] [--done FILE]

`--checkpoint none` runs the randomly initialised network (tests, benchmarks); it is never the
default. The network is the one the checkpoint carries; `--preset` names it for random weights and
for checkpoints without one (released Protenix files, bare state dicts), where the weights' shapes
may pick another preset (model/infer/checkpoint.py); provenance.json records which. `--cycles` and
`--steps` 0 (the default) take N_cycle and N_step from that network's preset, and the sampler and
ranking settings always come from it.

A target that fails (bad feature file, out of memory, ...) gets `{failed-dir}/{target}.txt` with a
one-line reason and the shard goes on; a checkpoint that cannot be loaded (missing, truncated,
unsafe, not fitting) is the failure of every target of the shard, with its one-line reason. The exit
code is 0 once the shard ran, so the run's summary lists the failures. `--done` is touched at the
end (the shard's Snakemake output). Outputs per target: see docs/outputs.md.

`--reuse-unchanged` keeps a target's earlier prediction when its provenance.json (written last, so
only a complete folder has one) records the same features content hash, weights, preset, network
and settings, and the same prediction code (`predictor_sha256`): editing one target of a shard
re-predicts only that target.
Any target that is predicted again has its old folder removed first (no stale sample folders).
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import time
import traceback
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from model.data import store  # noqa: E402
from model.device import resolve_device  # noqa: E402
from model.fileio import error_line, write_failure  # noqa: E402
from model.infer.checkpoint import CheckpointError, LoadedWeights, load_network_weights  # noqa: E402
from model.infer.predict import PredictSettings, predict_features  # noqa: E402


def chunk_arg(value: str) -> int | str | None:
    """auto | none | a positive integer."""
    if value in ("auto", "none"):
        return None if value == "none" else value
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected auto, none or a positive integer, got {value!r}")
    return int(value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--features", nargs="+", required=True, help="feature files (.h5), one per target")
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt, or 'none' for random weights")
    # What the predict_shard rule passes from the config is required: config/config.yaml holds the defaults.
    p.add_argument(
        "--preset", required=True, help="network preset (name or YAML file) when the checkpoint has none"
    )
    p.add_argument("--out-dir", required=True, help="results/predictions")
    p.add_argument("--failed-dir", required=True, help="results/failed")
    p.add_argument("--seeds", nargs="+", type=int, required=True)
    p.add_argument("--samples", type=int, required=True, help="diffusion samples per seed")
    p.add_argument("--steps", type=int, required=True, help="diffusion steps (0: the network preset's)")
    p.add_argument(
        "--cycles", type=int, required=True, help="trunk recycles, N_cycle (0: the network preset's)"
    )
    p.add_argument(
        "--trunk-per-seed",
        action=argparse.BooleanOptionalAction,
        required=True,
        help="each seed its own trunk (own MSA row sample); --no-trunk-per-seed: one trunk per target",
    )
    p.add_argument("--device", required=True, help="auto|cpu|cuda|cuda:N")
    p.add_argument(
        "--precision", required=True, choices=["auto", "fp32", "bf16"], help="sampler + confidence"
    )
    p.add_argument(
        "--trunk-precision", default="auto", choices=["auto", "fp32", "bf16"], help="auto: bf16 on CUDA"
    )
    p.add_argument("--chunk-size", default="auto", type=chunk_arg, help="pair-stack chunk: auto | none | N")
    p.add_argument(
        "--sample-chunk", default="auto", type=chunk_arg, help="samples per denoiser call: auto | N"
    )
    p.add_argument(
        "--ccd", default="", help="components.cif used at featurization ('' = built-in CCD); bond orders"
    )
    p.add_argument(
        "--reuse-unchanged",
        action="store_true",
        help="keep predictions whose inputs and settings are unchanged",
    )
    p.add_argument("--done", default=None, help="file touched when the shard has run")
    return p.parse_args(argv)


def target_name(path: Path) -> str:
    """The target id stored in the file, else the file name without .h5."""
    try:
        return str(store.read_attrs(path).get("target_id") or path.stem)
    except Exception:
        return path.stem


class ComponentLookup:
    """Chemical components by CCD code for ligand bond orders; loads the CCD on first use and
    answers None when it cannot (no biotite, unknown code): orders are then written as unknown."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.ccd = None
        self.failed = False

    def __call__(self, code: str):
        if self.ccd is None and not self.failed:
            try:
                from model.data.ccd import load_ccd

                self.ccd = load_ccd(self.path or None)
            except Exception as err:  # optional extra: never fail a target for it
                print(f"predict: no CCD for bond orders ({error_line(err)})", file=sys.stderr)
                self.failed = True
        if self.ccd is None or code not in self.ccd:
            return None
        return self.ccd[code]


def predictor_digest() -> str:
    """The prediction code's identity (network, sampler, confidence, writers): its sources' sha256,
    so a code change re-predicts and an unrelated commit does not."""
    return store.source_digest("nn", "infer")


def prediction_identity(path: Path, loaded: LoadedWeights, network_config, settings) -> dict:
    """What a prediction depends on, as its provenance.json records it (JSON-normalised)."""
    identity = {
        "content_hash": store.read_attrs(path).get("content_hash"),
        "weights_sha256": loaded.provenance["sha256"],
        "preset": loaded.preset,
        "network_config": network_config,
        "settings": settings.as_dict(),
        "predictor_sha256": predictor_digest(),
    }
    return json.loads(json.dumps(identity))


def recorded_identity(folder: Path) -> dict | None:
    """The identity a finished prediction folder was made with; None when there is none."""
    try:
        prov = json.loads((folder / "provenance.json").read_text())
        return {
            "content_hash": prov["features"]["content_hash"],
            "weights_sha256": prov["sha256"],
            "preset": prov["preset"],
            "network_config": prov["network_config"],
            "settings": prov["settings"],
            "predictor_sha256": prov["predictor_sha256"],
        }
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_target(
    path: Path, net, settings: PredictSettings, device, args, loaded: LoadedWeights, preset_cfg, components
) -> Path:
    from model.infer.writer import TargetLayout, set_bond_orders, write_target

    started = time.perf_counter()
    if not store.is_valid(path):
        raise ValueError(f"feature file {path}: missing, incomplete or corrupt")
    attrs = store.read_attrs(path)
    target = target_name(path)
    feats = store.load_features(path, groups=("token", "atom", "msa", "template"))
    meta = store.load_meta(path)
    missing = [
        k
        for k in (
            "token_res_name",
            "atom_name",
            "atom_element",
            "chain_name",
            "chain_type",
            "chain_entity_id",
        )
        if k not in meta
    ]
    if missing:
        raise ValueError(f"feature file {path}: meta field(s) {', '.join(missing)} missing")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seeds, plan = predict_features(net, feats, meta, settings, device)
    layout = TargetLayout.from_features(feats, meta)
    set_bond_orders(layout, components)
    provenance = {
        "target_id": target,
        "features": {"path": str(path.resolve()), "content_hash": attrs.get("content_hash"), "attrs": attrs},
        **loaded.provenance,
        "preset": loaded.preset,
        "network_source": loaded.network_source,
        "network_config": preset_cfg,
        "settings": settings.as_dict(),
        "precision": plan.as_dict(),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "torch_version": torch.__version__,
        "code_version": store.code_version(),
        "predictor_sha256": predictor_digest(),
        "seconds": {str(s.seed): s.seconds for s in seeds} | {"total": time.perf_counter() - started},
        "peak_memory_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
    }
    samples = [(s.seed, s.coords, s.confidences) for s in seeds]
    return write_target(Path(args.out_dir), target, layout, samples, settings.n_cycle, provenance)


def _config_dict(cfg) -> dict | str:
    if isinstance(cfg, dict):
        return cfg
    if hasattr(cfg, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(cfg)
    return str(cfg)


def fail_shard(args: argparse.Namespace, reason: str) -> int:
    """Every target of the shard fails with `reason` (a checkpoint that cannot be loaded); the shard
    counts as run, so the run's summary and failures tables list them."""
    failed_dir = Path(args.failed_dir)
    for f in args.features:
        target = target_name(Path(f))
        shutil.rmtree(Path(args.out_dir) / target, ignore_errors=True)  # no earlier prediction survives
        write_failure(failed_dir, target, reason)
    print(f"predict: FAILED every target of the shard: {reason}", file=sys.stderr)
    if args.done:
        Path(args.done).parent.mkdir(parents=True, exist_ok=True)
        Path(args.done).touch()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from model.nn.network import Foldline

    try:
        device = resolve_device(args.device)
    except RuntimeError as err:
        print(f"predict: {err}", file=sys.stderr)
        return 1
    try:
        loaded = load_network_weights(args.checkpoint, args.preset)
    except CheckpointError as err:
        return fail_shard(args, error_line(err))
    cfg = loaded.config
    settings = PredictSettings.for_network(
        cfg,
        n_cycle=args.cycles,
        n_step=args.steps,
        n_sample=args.samples,
        seeds=tuple(args.seeds),
        trunk_per_seed=args.trunk_per_seed,
        precision=args.precision,
        trunk_precision=args.trunk_precision,
        pair_chunk=args.chunk_size,
        sample_chunk=args.sample_chunk if args.sample_chunk is not None else "auto",
    )
    torch.manual_seed(0)  # a `--checkpoint none` run gets the same random weights every time
    net = Foldline(cfg)
    if loaded.state is not None:
        net.load_state_dict(loaded.state, strict=True)
    del loaded.state
    net = net.to(device).eval()
    print(
        f"predict: network from {loaded.network_source}; {settings.n_cycle} cycles, {settings.n_step} steps"
    )
    failed_dir = Path(args.failed_dir)
    components = ComponentLookup(args.ccd)
    failures = []
    reused = 0
    for f in args.features:
        path = Path(f)
        target = target_name(path)
        folder = Path(args.out_dir) / target
        try:
            if args.reuse_unchanged:
                identity = prediction_identity(path, loaded, _config_dict(cfg), settings)
                if recorded_identity(folder) == identity:
                    (failed_dir / f"{target}.txt").unlink(missing_ok=True)
                    print(f"predict: {target}: unchanged, kept {folder}")
                    reused += 1
                    continue
            shutil.rmtree(folder, ignore_errors=True)  # an earlier prediction's files never linger
            folder = run_target(path, net, settings, device, args, loaded, _config_dict(cfg), components)
            (failed_dir / f"{target}.txt").unlink(missing_ok=True)
            print(f"predict: {target}: wrote {folder}")
        except Exception as err:  # one bad target (input, OOM, ...) must not stop the shard
            traceback.print_exc()
            shutil.rmtree(Path(args.out_dir) / target, ignore_errors=True)  # no half-written target folder
            reason = write_failure(failed_dir, target, error_line(err))
            failures.append(reason)
            print(f"predict: FAILED {reason}", file=sys.stderr)
        finally:
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if args.done:
        Path(args.done).parent.mkdir(parents=True, exist_ok=True)
        Path(args.done).touch()
    predicted = len(args.features) - len(failures) - reused
    print(f"predict: {predicted} predicted, {reused} unchanged, {len(failures)} failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
