"""Training examples per second from the feature store, as the training loop loads them.

Each example is what `train()` feeds the GPU: an entry and chain/interface drawn by the AF3 §2.5.1
weights, the AF3 Table 4 crop (contiguous / spatial / spatial-interface) at the given size, every
reference space placed anew, the MSA and template features of the crop, and the loss-only arrays
(model.train.data.TrainDataset through make_loader, the loop's DataLoader with persistent,
prefetching workers). MSA rows are loaded as stored (the data path has no per-step MSA subsampling).

    .venv/bin/python bench/dataload.py --features results/features/train [--crops 384 768]
        [--workers 0 1 2] [--examples 40]
Prints a markdown table: crop, workers, examples/s, ms per example. The goal (issue #16) is at least 3x
the per-GPU step rate of the base preset: 4.4 s/step at crop 384 on an H100 -> >= 0.68 examples/s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.train.data import TrainDataset, build_index, feature_files, make_loader  # noqa: E402
from model.train.stages import resolve_stage  # noqa: E402


def examples_per_second(dataset: TrainDataset, workers: int, examples: int) -> float:
    """Examples/s once the workers are up (the first `workers + 1` examples are not timed)."""
    loader = iter(make_loader(dataset, 0, 0, 1, 1, workers, 2))
    for _ in range(workers + 1):
        next(loader)
    start = time.perf_counter()
    for _ in range(examples):
        next(loader)
    return examples / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", nargs="+", required=True, help="training .h5 files or folders")
    parser.add_argument("--stages", default=str(REPO / "config" / "stages.yaml"))
    parser.add_argument("--crops", type=int, nargs="+", default=[384, 768])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--examples", type=int, default=40)
    args = parser.parse_args()
    cfg = resolve_stage(args.stages, 0)
    entries = build_index(feature_files(args.features))
    print(f"{len(entries)} entries, {sum(len(e.chains) for e in entries)} chains", file=sys.stderr)
    print("| crop | workers | examples/s | ms per example |\n|---|---|---|---|")
    for crop in args.crops:
        dataset = TrainDataset(entries, cfg, crop_size=crop)
        for workers in args.workers:
            rate = examples_per_second(dataset, workers, args.examples)
            print(f"| {crop} | {workers} | {rate:.2f} | {1000 / rate:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
