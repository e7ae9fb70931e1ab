"""Run a command on its own GPU card(s): a lock-file slot allocator for local Snakemake runs.

Snakemake's `--resources gpu=N` only counts GPUs; it does not say which card a job gets. This wrapper
takes `--gpus K` free cards by locking one file per card (fcntl.flock, released by the kernel when
the job ends, even on a crash), sets CUDA_VISIBLE_DEVICES to them and execs the command, which keeps
the locks. So no two jobs on one machine share a card, across concurrent Snakemake runs too.

Cards: $FOLDLINE_GPUS (a count, or a comma list of ids: `0,` is card 0 alone), else
$CUDA_VISIBLE_DEVICES, else `nvidia-smi -L`. Under SLURM ($SLURM_JOB_ID set) the scheduler has
already chosen the cards: the command runs unchanged. On a machine with no card it runs with
CUDA_VISIBLE_DEVICES="" (CPU).

    python scripts/gpu_slot.py --gpus 1 -- python scripts/predict.py ...
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def machine_cards() -> list[str]:
    """Ids of the GPU cards this machine lets jobs use."""
    given = os.environ.get("FOLDLINE_GPUS")
    if given is not None:
        given = given.strip()
        if given.isdigit():
            return [str(i) for i in range(int(given))]
        return [c for c in given.split(",") if c]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [c for c in visible.split(",") if c]
    if shutil.which("nvidia-smi") is None:
        return []
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False).stdout
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def acquire(cards: list[str], n: int, lock_dir: Path, poll_s: float = 0.5) -> tuple[list[str], list[int]]:
    """Lock `n` free cards (all or none at a time, so two waiting jobs never deadlock)."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    while True:
        taken: list[tuple[str, int]] = []
        for card in cards:
            fd = os.open(lock_dir / f"gpu{card}.lock", os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            taken.append((card, fd))
            if len(taken) == n:
                return [c for c, _ in taken], [fd for _, fd in taken]
        for _, fd in taken:
            os.close(fd)
        time.sleep(poll_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", type=int, default=1, help="cards the command needs")
    parser.add_argument(
        "--lock-dir",
        default=os.environ.get("FOLDLINE_GPU_LOCK_DIR", Path(tempfile.gettempdir()) / "foldline-gpu-slots"),
        help="folder of the per-card lock files (one per machine)",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given (put it after --)")

    if "SLURM_JOB_ID" in os.environ:
        print(
            f"gpu_slot: SLURM job, CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')}",
            file=sys.stderr,
        )
        os.execvp(command[0], command)
    cards = machine_cards()
    if args.gpus <= 0 or not cards:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        if args.gpus <= 0:
            why = "the job asks for no GPU"
        elif os.environ.get("FOLDLINE_GPUS", "").strip() == "0":
            why = "FOLDLINE_GPUS=0 is a count of 0 cards (card 0 alone: FOLDLINE_GPUS=0,)"
        else:
            why = "no GPU card on this machine"
        print(f"gpu_slot: {why}; running on CPU", file=sys.stderr)
        os.execvp(command[0], command)
    if args.gpus > len(cards):
        print(
            f"gpu_slot: the job asks for {args.gpus} GPUs but this machine has {len(cards)}", file=sys.stderr
        )
        return 2
    chosen, fds = acquire(cards, args.gpus, Path(args.lock_dir))
    for fd in fds:
        os.set_inheritable(fd, True)  # the command holds the locks until it (and its children) exit
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(chosen)
    print(f"gpu_slot: CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']}", file=sys.stderr)
    os.execvp(command[0], command)


if __name__ == "__main__":
    sys.exit(main())
