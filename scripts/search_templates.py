"""Search templates for one protein sequence and write their features (model.search.templates).

    search_templates.py --msa results/msa/protein/{sha}.a3m --seqres pdb_seqres.fasta \
        --mmcif-dir pdb_mmcif --max-date 2100-01-01 [--max-templates 4] [--query-release-date D] \
        --out results/templates/protein/{sha}.npz [--threads 2]

The query is the MSA's first row. The npz holds template_restype [K, L], template_pseudo_beta
[K, L, 3], template_pseudo_beta_mask [K, L], template_backbone [K, L, 3, 3], template_backbone_mask
[K, L] (K <= max templates, may be 0) plus template_names and template_evalues. Also runs as the
`search_templates` rule's script (`snakemake` object: input.msa, output.npz, params, threads, log).
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
from model.search.templates import TemplateSettings, search_templates, write_templates  # noqa: E402


def run(
    msa: Path,
    seqres: Path,
    mmcif_dir: Path,
    max_date: str,
    max_templates: int,
    out: Path,
    threads: int,
    query_release_date: str | None = None,
) -> None:
    rows = parse_a3m(msa.read_text())
    if not rows:
        raise SystemExit(f"search_templates: {msa}: empty MSA")
    query = match_columns(rows[0][1]).upper()
    release = datetime.date.fromisoformat(query_release_date) if query_release_date else None
    hits, arrays = search_templates(
        query,
        rows,
        seqres,
        mmcif_dir,
        datetime.date.fromisoformat(str(max_date)),
        TemplateSettings(max_templates=max_templates),
        query_release_date=release,
        threads=threads,
    )
    write_templates(out, arrays, hits)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--msa", type=Path, required=True)
    parser.add_argument("--seqres", type=Path, required=True)
    parser.add_argument("--mmcif-dir", type=Path, required=True)
    parser.add_argument("--max-date", default="2100-01-01", help="latest template release date (ISO)")
    parser.add_argument("--max-templates", type=int, default=4)
    parser.add_argument("--query-release-date", help="training: templates must be 60 days older than this")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    run(
        args.msa,
        args.seqres,
        args.mmcif_dir,
        args.max_date,
        args.max_templates,
        args.out,
        args.threads,
        args.query_release_date,
    )


if "snakemake" in globals():
    sm = globals()["snakemake"]
    logging.basicConfig(
        filename=sm.log[0] if sm.log else None, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s"
    )
    templates = sm.config["databases"]["templates"]
    run(
        Path(sm.input.msa),
        Path(templates["seqres"]),
        Path(templates["mmcif_dir"]),
        sm.config["search"]["template_max_date"],
        int(sm.config["search"]["max_templates"]),
        Path(sm.output.npz),
        sm.threads,
    )
elif __name__ == "__main__":
    main()
