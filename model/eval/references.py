"""Where a target's reference structure is (read when Snakemake parses the workflow: stdlib only).

`references` (config key) is either a folder holding `{target_id}.cif` (or .cif.gz, .mmcif,
.pdb, .pdb.gz, .ent, .ent.gz), or a CSV table with the columns `target_id,reference`, reference
paths relative to the table's folder; with no `references`, the `reference` column of the targets
table itself.
"""

from __future__ import annotations

import csv
from pathlib import Path

SUFFIXES = (".cif", ".cif.gz", ".mmcif", ".mmcif.gz", ".pdb", ".pdb.gz", ".ent", ".ent.gz")


def reference_table(references: str | Path) -> dict[str, Path]:
    """target_id -> reference file, for every target that has one (files that exist only)."""
    root = Path(references)
    found: dict[str, Path] = {}
    if root.is_dir():
        for path in sorted(root.iterdir()):
            for suffix in SUFFIXES:
                if path.name.lower().endswith(suffix) and path.is_file():
                    found.setdefault(path.name[: -len(suffix)], path)
    elif root.is_file():
        with root.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
            for row in csv.DictReader(line for line in handle if not line.lstrip().startswith("#")):
                target, ref = (row.get("target_id") or "").strip(), (row.get("reference") or "").strip()
                if target and ref and (root.parent / ref).is_file():
                    found[target] = root.parent / ref
    return found
