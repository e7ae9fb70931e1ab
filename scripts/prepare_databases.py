"""Prepare search databases: statistics sidecars, checked downloads, shards (model.search.databases).

    prepare_databases.py prepare DB.fasta [DB2.fasta ...]     write DB.fasta.foldline.json (sequence and
                                                              residue counts, sha256) for each
    prepare_databases.py download --url URL --sha256 HEX --dest PATH
                                                              fetch (http(s), ftp, file://), check, rename
    prepare_databases.py split DB.fasta --shards N --out-dir DIR
                                                              N residue-balanced shards DB.fasta-0000i-of-N

Also runs as the `prepare_database` / `download_*` rules' script (`snakemake` object: params.action).
"""

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository's `model` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.search.databases import download, prepare_database, split_fasta  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    actions = parser.add_subparsers(dest="action", required=True)
    prepare = actions.add_parser("prepare", help="write statistics sidecars")
    prepare.add_argument("databases", type=Path, nargs="+")
    fetch = actions.add_parser("download", help="download and check one database file")
    fetch.add_argument("--url", required=True)
    fetch.add_argument("--sha256", required=True)
    fetch.add_argument("--dest", type=Path, required=True)
    split = actions.add_parser("split", help="split a FASTA database into shards")
    split.add_argument("database", type=Path)
    split.add_argument("--shards", type=int, required=True)
    split.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.action == "prepare":
        for path in args.databases:
            stats = prepare_database(path, write_sidecar=True)
            print(f"{path}: {stats.n_sequences} sequences, {stats.n_residues} residues")
    elif args.action == "download":
        download(args.url, args.dest, args.sha256)
    else:
        for shard in split_fasta(args.database, args.shards, args.out_dir):
            print(shard)


if "snakemake" in globals():
    sm = globals()["snakemake"]
    logging.basicConfig(
        filename=sm.log[0] if sm.log else None, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s"
    )
    if sm.params.action == "prepare":
        prepare_database(sm.input.database, write_sidecar=True)
    else:
        download(sm.params.url, sm.output[0], sm.params.sha256)
elif __name__ == "__main__":
    main()
