"""Write the training manifest (model.train.manifest): one TSV row per mmCIF entry from its header,
with the AF3 §2.5.4 filters of config/stages.yaml (`defaults.filters`) applied.

    training_manifest.py --entries mirror/ [more.cif ...] --stages config/stages.yaml
        [--include ids.txt] [--exclude ids.txt] [--workers 8] --out results/train/manifest.tsv

Rows of files unchanged since the previous manifest at --out (same size and modification time) are
reused, so a rerun reads only new or edited entries. Prints how many entries were kept and filtered.
"""

import argparse
import sys
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository's `model` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.train.manifest import (  # noqa: E402
    build_manifest,
    list_entries,
    read_id_list,
    read_manifest,
    write_manifest,
)
from model.train.stages import resolve_stage  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", nargs="+", required=True, help="mmCIF files, folders, wwPDB mirrors")
    parser.add_argument("--stages", required=True, help="config/stages.yaml (its defaults.filters)")
    parser.add_argument("--include", default="", help="only these entry ids (one a line)")
    parser.add_argument("--exclude", default="", help="never these entry ids (one a line)")
    parser.add_argument("--workers", type=int, default=1, help="processes reading headers")
    parser.add_argument("--out", required=True, help="the manifest TSV")
    args = parser.parse_args(argv)
    entries, notes = list_entries(args.entries)
    for note in notes:
        print(note, file=sys.stderr)
    previous, _ = read_manifest(args.out)
    rows = build_manifest(
        entries,
        resolve_stage(args.stages, 0)["filters"],
        read_id_list(args.include),
        read_id_list(args.exclude),
        previous,
        args.workers,
    )
    write_manifest(args.out, rows)
    counts = Counter(row.status.split(":")[0] for row in rows)
    print(f"{args.out}: {len(rows)} entries: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
