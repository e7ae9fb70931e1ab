"""Time a dry run of `snakemake predict` over N generated targets (default 10,000), or of
`snakemake train_stage3` over a generated PDB-size training manifest (--training 220000).

Targets are deterministic (seeded): protein chains of 30-400 residues, every 10th with a CCD ligand and
every 7th a DNA duplex; a tenth of the sequences repeat, as in real screens, so searches are shared.
Training: a wwPDB-layout mirror of N empty `mmCIF/ab/1abc.cif.gz` files and the manifest the
`training_manifest` checkpoint would have written for them (1-4 polymer entities an entry, about half
the sequences unique, as in the PDB: ~100,000 unique protein sequences in ~220,000 entries).
The workflow is copied into a scratch folder, so the repository's results/ is untouched.

    .venv/bin/python bench/dag.py [--targets 10000] [--training 220000] [--keep DIR]
Prints a markdown table row: targets or entries, jobs in the plan, seconds (goals: <= 30 s for 10,000
targets; <= 60 s and <= 2,000 jobs for 220,000 training entries).
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
sys.path.insert(0, str(REPO))
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


def write_training_mirror(root: Path, manifest: Path, n: int, seed: int = 0) -> None:
    """N empty entries in the wwPDB layout and their manifest rows (model.train.manifest columns)."""
    from model.train.manifest import ManifestRow, write_manifest

    rng = random.Random(seed)
    pool = ["".join(rng.choice(AMINO) for _ in range(rng.randint(30, 600))) for _ in range(max(1, n // 2))]
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    rows = []
    for i in range(n):
        code = i // 9
        entry = f"{1 + i % 9}" + "".join(alphabet[code // 36**k % 36] for k in (2, 1, 0))
        path = root / "mmCIF" / entry[1:3] / f"{entry}.cif.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        entities = {str(k + 1): ("protein", rng.choice(pool)) for k in range(rng.randint(1, 4))}
        rows.append(ManifestRow(entry=entry, path=str(path), release_date="2010-01-01", resolution="2.0",
                                method="X-RAY DIFFRACTION", chains=len(entities), entities=entities,
                                residues=sum(len(s) for _, s in entities.values())))  # fmt: skip
    manifest.parent.mkdir(parents=True, exist_ok=True)
    write_manifest(manifest, rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=10000)
    parser.add_argument("--training", type=int, help="dry-run train_stage3 over this many entries instead")
    parser.add_argument("--keep", type=Path, help="scratch folder to keep (default: a temp folder, removed)")
    args = parser.parse_args()
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="foldline-dag-"))
    try:
        workdir = make_workdir(scratch / "wf")
        targets = scratch / "targets.csv"
        write_targets(targets, 1 if args.training else args.targets)
        goal, config = "predict", [f"inputs={targets}", "checkpoint=none"]
        if args.training:
            start = time.perf_counter()
            write_training_mirror(
                scratch / "pdb", workdir / "results" / "train" / "manifest.tsv", args.training
            )
            print(f"generated mirror and manifest in {time.perf_counter() - start:.1f} s", file=sys.stderr)
            goal, config = "train_stage3", [*config, f"training={{'entries': ['{scratch / 'pdb'}']}}"]
        start = time.perf_counter()
        proc = snakemake(
            workdir, "--dry-run", "--quiet", "rules", "--config", *config, "--", goal, timeout=3600
        )
        seconds = time.perf_counter() - start
        total = re.search(r"^total\s+(\d+)", proc.stdout + proc.stderr, re.MULTILINE)
        label = "training entries" if args.training else "targets"
        print(f"| {label} | jobs planned | dry run (s) |\n|---|---|---|")
        print(f"| {args.training or args.targets:,} | {total.group(1) if total else '?'} | {seconds:.1f} |")
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
