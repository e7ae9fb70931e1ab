"""Train one Foldline stage (config/stages.yaml): data -> losses -> checkpoint.pt, resumable.

Writes into --out-dir: checkpoint.pt (final: EMA weights + optimizer + scheduler + step + RNG),
last.pt (resume point, also written on SIGTERM/SIGUSR1), metrics.csv, tensorboard/ and
provenance.json (resolved config, parent checkpoint path and sha256). Rerunning the same command
after an interruption continues from last.pt. Under `torchrun --nproc_per_node N` it runs DDP.

Example:
  python scripts/train.py --stage 0 --stages config/stages.yaml --preset tiny \
      --features results/features/train --out-dir results/train/stage0 --steps 20 --seed 0 --device cpu
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.infer.checkpoint import CheckpointError  # noqa: E402
from model.train.loop import train  # noqa: E402
from model.train.stages import resolve_stage  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--stage", required=True, help="stage index 0-3 (or stage0..stage3)")
    # What the train_stage rule passes from the config is required: config/config.yaml holds the defaults.
    p.add_argument("--stages", required=True, help="stages YAML (the seed table)")
    p.add_argument(
        "--preset", required=True, help="network preset (name or YAML path) when no checkpoint carries one"
    )
    p.add_argument(
        "--features",
        required=True,
        nargs="+",
        help="training features: folders of .h5, .h5 files, or list files (one path a line)",
    )
    p.add_argument(
        "--init-checkpoint",
        default=None,
        help="weights to start from: the parent stage's checkpoint.pt (its EMA weights) or a released "
        "Protenix checkpoint; the network is the one it carries or fits (--preset otherwise)",
    )
    p.add_argument("--out-dir", required=True, help="results/train/stage{K}")
    p.add_argument("--steps", type=int, required=True, help="optimizer steps (0: the stage's own)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any stages.yaml key, e.g. --set train_crop_size=64 (repeatable)",
    )
    p.add_argument("--seed", type=int, required=True, help="the training seed")
    p.add_argument("--clusters", default=None, help="cluster TSV from `python -m model.train.clusters`")
    p.add_argument("--device", required=True, help="auto, cpu, cuda")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = list(args.overrides)
    if args.steps:
        overrides.append(f"steps={args.steps}")
    overrides.append(f"seed={args.seed}")
    cfg = resolve_stage(args.stages, args.stage.removeprefix("stage"), overrides)
    try:
        return train(
            cfg, args.features, args.out_dir, args.preset, args.init_checkpoint, args.device, args.clusters
        )
    except CheckpointError as err:  # a missing, unsafe or unreadable checkpoint: its one-line reason
        print(f"train: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
