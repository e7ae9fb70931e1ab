"""Search one unique sequence into the content-addressed store (model.search.store): its MSA
(scripts/search_msa.py) and, for a protein, its templates from that MSA (scripts/search_templates.py).

    search_sequence.py --settings results/msa/protein.settings.json --molecule protein \
        --sequence MVLSEGEW... --out results/msa/protein/{sha}.a3m \
        [--templates results/templates/protein/{sha}.npz] [--threads 2]

--settings holds the workflow's `databases` and `search` config sections as JSON (the search_settings
rule writes it once per molecule). The template search needs the MSA and the store key covers both,
so the workflow runs them as one job per protein sequence: one queue wait on a cluster instead of two.
"""

import argparse
import json
import logging
from pathlib import Path

import search_msa
import search_templates


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--settings", type=Path, required=True, help="{databases: ..., search: ...} JSON")
    parser.add_argument("--molecule", required=True, choices=("protein", "rna"))
    parser.add_argument("--sequence", required=True)
    parser.add_argument("--out", type=Path, required=True, help="results/msa/{molecule}/{sha}.a3m")
    parser.add_argument("--templates", type=Path, help="protein: results/templates/protein/{sha}.npz")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    settings = json.loads(args.settings.read_text())
    databases, search = settings["databases"], settings["search"]
    search_msa.run(args.sequence, args.molecule, databases, search, args.out, args.threads)
    if args.templates is not None:
        search_templates.run(
            args.out,
            Path(databases["templates"]["seqres"]),
            Path(databases["templates"]["mmcif_dir"]),
            search["template_max_date"],
            int(search["max_templates"]),
            args.templates,
            args.threads,
        )


if __name__ == "__main__":
    main()
