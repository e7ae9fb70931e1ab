"""Score predictions against reference structures (rules evaluate_target and evaluation_table).

  python scripts/evaluate.py target --target T --predictions results/predictions/T \
      --reference ref.cif --out results/evaluation/T.json
  python scripts/evaluate.py table --out results/evaluation.tsv results/evaluation/*.json

A target whose reference is missing or cannot be matched gets a JSON with a one-line "error" (and
an error row in the table); the command still exits 0 so that the other targets are scored.
The metrics are documented in docs/outputs.md and model/eval/evaluate.py.
"""

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    one = sub.add_parser("target", help="score one target's samples")
    one.add_argument("--target", required=True)
    one.add_argument("--predictions", type=Path, required=True, help="results/predictions/{target}")
    one.add_argument("--reference", default="", help="reference mmCIF/PDB (empty: none)")
    one.add_argument("--out", type=Path, required=True, help="results/evaluation/{target}.json")
    one.add_argument("--no-posebusters", action="store_true", help="skip the PoseBusters checks")
    table = sub.add_parser("table", help="one TSV from the per-target JSON files")
    table.add_argument("--out", type=Path, required=True)
    table.add_argument("results", type=Path, nargs="*")
    args = parser.parse_args(argv)

    from model.eval.evaluate import evaluate_target, evaluation_table, write_result

    if args.mode == "table":
        evaluation_table(args.results, args.out)
        return 0
    reference = Path(args.reference) if args.reference else None
    result = evaluate_target(args.target, args.predictions, reference, not args.no_posebusters)
    write_result(result, args.out)
    if "error" in result:
        print(result["error"], file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
