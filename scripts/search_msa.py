"""Search the MSA of one unique sequence into the content-addressed store (model.search.store).

    search_msa.py --sequence MVLSEGEW... --molecule protein|rna --config config/config.yaml \
        --out results/msa/protein/{sha}.a3m [--threads 2]

Writes {sha}.a3m (unpaired rows) and {sha}.paired.a3m (protein: UniProt rows for species pairing;
RNA: the query only) atomically; an entry already in the store is not searched again. Databases and
settings come from the config's `databases` and `search` sections. Also runs as the `search_msa`
rule's script (`snakemake` object: params.sequence, params.molecule, output.a3m, threads, log).
"""

import argparse
import logging
import sys
from pathlib import Path

import yaml

if __package__ in (None, ""):  # run as a script: make the repository's `model` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.search.a3m import write_a3m  # noqa: E402
from model.search.store import search_msa  # noqa: E402


def run(sequence: str, molecule: str, databases: dict, settings: dict, out: Path, threads: int) -> None:
    search_msa(sequence, molecule, databases, settings, out, threads=threads)
    paired = out.with_name(out.name.removesuffix(".a3m") + ".paired.a3m")
    if not paired.is_file():  # RNA has no paired search; an empty paired MSA keeps outputs uniform
        write_a3m(paired, [("query", sequence.upper())])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sequence", required=True)
    parser.add_argument("--molecule", required=True, choices=("protein", "rna"))
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    parser.add_argument("--out", type=Path, required=True, help="results/msa/{molecule}/{sha}.a3m")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    config = yaml.safe_load(args.config.read_text())
    run(args.sequence, args.molecule, config["databases"], config["search"], args.out, args.threads)


if "snakemake" in globals():
    sm = globals()["snakemake"]
    logging.basicConfig(
        filename=sm.log[0] if sm.log else None, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s"
    )
    run(
        sm.params.sequence,
        sm.params.molecule,
        sm.config["databases"],
        sm.config["search"],
        Path(sm.output.a3m),
        sm.threads,
    )
elif __name__ == "__main__":
    main()
