"""Pages of the Snakemake report (rules report_target and report_training).

  python scripts/report.py target --target T --predictions results/predictions/T \
      --viewer workflow/report/3Dmol-min.js --out results/report/T.html \
      [--evaluation results/evaluation/T.json] [--failed results/failed/T.txt]
  python scripts/report.py training --metrics results/train/stage0/metrics.csv --stage 0 \
      --out results/report/training/stage0.png

What each page shows: model/eval/report.py; build the report with
`snakemake predict --report report.html`.
"""

import argparse
import sys
from pathlib import Path


def _optional(value: str) -> Path | None:
    return Path(value) if value else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    page = sub.add_parser("target", help="the HTML page of one target")
    page.add_argument("--target", required=True)
    page.add_argument("--predictions", type=Path, required=True, help="results/predictions/{target}")
    page.add_argument("--viewer", type=Path, required=True, help="the bundled 3Dmol.js (inlined)")
    page.add_argument("--out", type=Path, required=True)
    page.add_argument("--evaluation", type=_optional, default=None, help="results/evaluation/{target}.json")
    page.add_argument("--failed", type=_optional, default=None, help="results/failed/{target}.txt")
    curves = sub.add_parser("training", help="the curves of one training stage")
    curves.add_argument("--metrics", type=Path, required=True, help="results/train/stage{k}/metrics.csv")
    curves.add_argument("--stage", type=int, required=True)
    curves.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    from model.eval.report import write_target_page, write_training_png

    if args.mode == "training":
        write_training_png(args.metrics, args.stage, args.out)
    else:
        write_target_page(args.target, args.predictions, args.viewer, args.out, args.evaluation, args.failed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
