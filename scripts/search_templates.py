"""Search templates for one protein sequence and write their features (model.search.templates).

    search_templates.py --msa results/msa/protein/{sha}.a3m --seqres pdb_seqres.fasta \
        --mmcif-dir pdb_mmcif --max-date 2100-01-01 [--max-templates 4] [--query-release-date D] \
        --out results/templates/protein/{sha}.npz [--threads 2]
    search_templates.py --batch jobs.tsv --seqres ... --mmcif-dir ... [--max-date ...] [--threads 2]

`--batch` takes a TSV of `msa<TAB>out` lines (inference: no query release date) and reads pdb_seqres
once for all of them (model.search.templates.search_templates_many); outputs that exist are kept.

The query is the MSA's first row. The npz holds template_restype [K, L], template_pseudo_beta
[K, L, 3], template_pseudo_beta_mask [K, L], template_backbone [K, L, 3, 3], template_backbone_mask
[K, L] (K <= max templates, may be 0) plus template_names and template_evalues. The workflow calls
`run_batch` from scripts/search_batch.py.
"""

import argparse
import datetime
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository's `model` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.data.msa import parse_a3m  # noqa: E402
from model.search.a3m import match_columns  # noqa: E402
from model.search.entries import entry_problem, read_entry, remove_entry, seal  # noqa: E402
from model.search.templates import (  # noqa: E402
    TemplateSettings,
    search_templates_many,
    write_templates,
)


def run_batch(
    jobs: list[tuple[Path, Path, str | None]],
    seqres: Path,
    mmcif_dir: Path,
    max_date: str,
    max_templates: int,
    threads: int,
) -> None:
    """Template features for every (msa, out, query release date or None); existing outs are kept."""
    todo, queries = [], []
    for msa, out, release in jobs:
        problem = entry_problem(out)
        if problem is None:
            logging.info("%s: already there, no template search", out)
            continue
        if problem != "missing":
            logging.warning("%s: %s: removed, searching again", out, problem)
        remove_entry(out)
        rows = parse_a3m(read_entry(msa))
        if not rows:
            raise SystemExit(f"search_templates: {msa}: empty MSA")
        query = match_columns(rows[0][1]).upper()
        todo.append(out)
        queries.append((query, rows, datetime.date.fromisoformat(release) if release else None))
    if not queries:
        return
    results = search_templates_many(
        queries,
        seqres,
        mmcif_dir,
        datetime.date.fromisoformat(str(max_date)),
        TemplateSettings(max_templates=max_templates),
        threads=threads,
    )
    for out, (hits, arrays) in zip(todo, results, strict=True):
        write_templates(out, arrays, hits)
        seal(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--msa", type=Path)
    parser.add_argument("--seqres", type=Path, required=True)
    parser.add_argument("--mmcif-dir", type=Path, required=True)
    parser.add_argument("--max-date", default="2100-01-01", help="latest template release date (ISO)")
    parser.add_argument("--max-templates", type=int, default=4)
    parser.add_argument("--query-release-date", help="training: templates must be 60 days older than this")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--batch", type=Path, help="TSV of msa<TAB>out lines")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.batch:
        lines = [line.split("\t") for line in args.batch.read_text().splitlines() if line.strip()]
        jobs = [(Path(msa), Path(out), None) for msa, out in lines]
    elif args.msa and args.out:
        jobs = [(args.msa, args.out, args.query_release_date)]
    else:
        parser.error("give --msa and --out, or --batch")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    run_batch(jobs, args.seqres, args.mmcif_dir, args.max_date, args.max_templates, args.threads)


if __name__ == "__main__":
    main()
