"""Pair the MSAs of one target's protein chains by species (model.search.pairing).

    search_pairing.py --manifest-in T.json --out T.paired.json --paired-dir results/msa/paired/T

The workflow pairs at featurization: build_features.py hands every chain's searched UniProt rows to
the featurizer, which pairs them by species (`model.data.msa.pair_by_species`, Protenix 2.0.0's order)
when the target has two or more different protein chains. This command line writes the same pairing
to files for inspection (`model.search.pairing.paired_rows`); featurizing its output pairs the same
rows again (a file's gap rows name no species). It reads a target's
manifest ({"chains": {chain: "results/msa/protein/{sha}.a3m"}}), pairs every chain's
`{sha}.paired.a3m` (UniProt rows), writes one row-aligned a3m per chain into --paired-dir and a
manifest in build_features' format: {"chains": {chain: {"unpaired": a3m, "paired": a3m}}}. Chains
that are not proteins (no .paired.a3m rows) keep their unpaired MSA only.
"""

import argparse
import json
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository's `model` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.fileio import write_json  # noqa: E402
from model.search.a3m import write_a3m  # noqa: E402
from model.search.pairing import paired_rows  # noqa: E402


def run(manifest_in: Path, out: Path, paired_dir: Path) -> None:
    manifest = json.loads(manifest_in.read_text())
    chains = {
        chain: Path(entry if isinstance(entry, str) else entry["unpaired"])
        for chain, entry in manifest.get("chains", {}).items()
    }
    result = {chain: {"unpaired": str(a3m)} for chain, a3m in chains.items()}
    paired_dir.mkdir(parents=True, exist_ok=True)
    for chain, records in paired_rows(chains).items():
        path = paired_dir / f"{chain}.a3m"
        write_a3m(path, records)
        result[chain]["paired"] = str(path)
        logging.info("%s: chain %s paired, %d rows", manifest_in, chain, len(records))
    write_json(out, {**manifest, "chains": result})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--manifest-in", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--paired-dir", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    run(args.manifest_in, args.out, args.paired_dir)


if __name__ == "__main__":
    main()
