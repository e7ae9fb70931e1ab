"""Search the MSA of one unique sequence into the content-addressed store (model.search.store).

    search_msa.py --sequence MVLSEGEW... --molecule protein|rna --config config/config.yaml \
        --out results/msa/protein/{sha}.a3m [--threads 2]
    search_msa.py --batch jobs.tsv --molecule protein|rna --config ... [--threads 2]

`--batch` takes a TSV of `sequence<TAB>out` lines and reads each database once for all of them
(model.search.store.search_msas); each entry is the file the single search writes.

Writes {sha}.a3m (unpaired rows) and {sha}.paired.a3m (protein: UniProt rows for species pairing;
RNA: the query only) atomically, each sealed by its checksum; an entry already in the store (checksum
intact) is not searched again, a corrupt one is removed and searched again. Databases and
settings come from the config's `databases` and `search` sections. The workflow calls `run_batch`
from scripts/search_batch.py.
"""

import argparse
import logging
import sys
from pathlib import Path

import yaml

if __package__ in (None, ""):  # run as a script: make the repository's `model` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.search.a3m import write_a3m  # noqa: E402
from model.search.entries import entry_problem, seal  # noqa: E402
from model.search.store import paired_msa_path, search_msas  # noqa: E402


def run_batch(
    jobs: list[tuple[str, Path]], molecule: str, databases: dict, settings: dict, threads: int
) -> None:
    search_msas(jobs, molecule, databases, settings, threads=threads)
    for sequence, out in jobs:
        paired = paired_msa_path(out)
        if entry_problem(paired):  # RNA has no paired search; a query-only paired MSA keeps outputs uniform
            write_a3m(paired, [("query", sequence.upper())])
            seal(paired)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sequence")
    parser.add_argument("--out", type=Path, help="results/msa/{molecule}/{sha}.a3m")
    parser.add_argument("--batch", type=Path, help="TSV of sequence<TAB>out lines")
    parser.add_argument("--molecule", required=True, choices=("protein", "rna"))
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.batch:
        lines = [line.split("\t") for line in args.batch.read_text().splitlines() if line.strip()]
        jobs = [(sequence, Path(out)) for sequence, out in lines]
    elif args.sequence and args.out:
        jobs = [(args.sequence, args.out)]
    else:
        parser.error("give --sequence and --out, or --batch")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    config = yaml.safe_load(args.config.read_text())
    run_batch(jobs, args.molecule, config["databases"], config["search"], args.threads)


if __name__ == "__main__":
    main()
