"""Time a dry run of `snakemake predict` over N generated targets (default 10,000).

Targets are deterministic (seeded): protein chains of 30-400 residues, every 10th with a CCD ligand and
every 7th a DNA duplex; a tenth of the sequences repeat, as in real screens, so searches are shared.
The workflow is copied into a scratch folder, so the repository's results/ is untouched.

    .venv/bin/python bench/dag.py [--targets 10000] [--keep DIR]
Prints a markdown table row: targets, jobs in the plan, seconds (goal: <= 30 s for 10,000).
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from test_workflow_helpers import make_workdir, snakemake  # noqa: E402

AMINO = "ACDEFGHIKLMNPQRSTVWY"
LIGANDS = ("ATP", "HEM", "NAG", "GOL", "SO4", "FMN")


def write_targets(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    pool = [
        "".join(rng.choice(AMINO) for _ in range(rng.randint(30, 400))) for _ in range(max(1, n * 9 // 10))
    ]
    lines = ["target_id,chains"]
    for i in range(n):
        chains = [f"protein:{pool[i % len(pool)] if i % 10 == 9 else pool[rng.randrange(len(pool))]}"]
        if i % 10 == 0:
            chains.append(f"ligand:{LIGANDS[i % len(LIGANDS)]}")
        if i % 7 == 0:
            chains.append("dna:" + "".join(rng.choice("ACGT") for _ in range(12)) + "x2")
        lines.append(f"t{i:05d}," + ";".join(chains))
    path.write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=10000)
    parser.add_argument("--keep", type=Path, help="scratch folder to keep (default: a temp folder, removed)")
    args = parser.parse_args()
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="foldline-dag-"))
    try:
        workdir = make_workdir(scratch / "wf")
        targets = scratch / "targets.csv"
        write_targets(targets, args.targets)
        start = time.perf_counter()
        proc = snakemake(
            workdir,
            "--dry-run",
            "--quiet",
            "rules",
            "--config",
            f"inputs={targets}",
            "checkpoint=none",
            "--",
            "predict",
            timeout=3600,
        )
        seconds = time.perf_counter() - start
        total = re.search(r"^total\s+(\d+)", proc.stdout + proc.stderr, re.MULTILINE)
        print("| targets | jobs planned | dry run (s) |\n|---|---|---|")
        print(f"| {args.targets:,} | {total.group(1) if total else '?'} | {seconds:.1f} |")
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
