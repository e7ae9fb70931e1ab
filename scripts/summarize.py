"""Summarize a prediction run: one row per target and a table of the failures.

Tables mode (the `summarize` rule, or standalone) writes, all atomically and without timestamps:
  results/summary.tsv   target_id, status (ok|failed), stage (input|features|predict), best model,
                        its ranking_score / ptm / iptm / has_clash, and the reason of a failure;
  results/failures.tsv  target_id, stage, reason (header only when nothing failed);
  results/provenance.json  code version, the resolved config, sha256 of the targets table;
and results/failed/{target}.txt for targets the input parser rejected (they never entered the DAG).
The `summarize_features` rule (`snakemake features`, params.until = "features") writes the same two
tables under results/features/, following each target only up to its features.

Check mode (the `check_failures` rule) prints the failures and exits 1 if there are any, else
touches the --ok file:  python scripts/summarize.py --check results/failures.tsv --ok results/predict.ok
"""

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from model.fileio import one_line, write_failure, write_json, write_text_atomic

SUMMARY_COLUMNS = (
    "target_id",
    "status",
    "stage",
    "tokens",
    "best_model",
    "ranking_score",
    "ptm",
    "iptm",
    "has_clash",
    "reason",
)
FAILURE_COLUMNS = ("target_id", "stage", "reason")


def _tsv(columns: tuple[str, ...], rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, delimiter="\t", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c, "") for c in columns})
    return buf.getvalue()


def best_prediction(pred_dir: Path) -> dict | None:
    """The top-ranked sample of a target's predictions (ranking_scores.csv), or None if absent."""
    scores = pred_dir / "ranking_scores.csv"
    if not scores.is_file():
        return None
    with scores.open() as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return None
    # ties go to the first (lowest seed, sample) as written
    best = max(rows, key=lambda r: float(r["ranking_score"]))
    sample_dir = pred_dir / f"seed-{best['seed']}_sample-{best['sample']}"
    summary = json.loads((sample_dir / "summary_confidences.json").read_text())
    return {
        "best_model": str(pred_dir / f"{pred_dir.name}_model.cif"),
        "ranking_score": f"{float(best['ranking_score']):.4f}",
        "ptm": "" if summary.get("ptm") is None else f"{summary['ptm']:.4f}",
        "iptm": "" if summary.get("iptm") is None else f"{summary['iptm']:.4f}",
        "has_clash": "" if summary.get("has_clash") is None else str(bool(summary["has_clash"])),
    }


def read_statuses(paths: list[Path]) -> dict[str, tuple[str, str]]:
    """target -> (ok | failed, h5 path | reason) from build_features' per-shard status tables."""
    statuses = {}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            target_id, state, detail = line.split("\t", 2)
            statuses[target_id] = (state, detail)
    return statuses


def target_row(
    target_id: str,
    results: Path,
    invalid: dict[str, str],
    tokens: dict[str, int],
    statuses: dict[str, tuple[str, str]],
    until: str = "predict",
) -> dict:
    """Status of one target from the files its jobs left behind, up to stage `until` (features |
    predict)."""
    row = {"target_id": target_id, "tokens": tokens.get(target_id, "")}
    if target_id in invalid:
        return row | {"status": "failed", "stage": "input", "reason": one_line(invalid[target_id])}
    state, detail = statuses.get(target_id, ("failed", "no features status was written"))
    if state != "ok":
        return row | {"status": "failed", "stage": "features", "reason": one_line(detail)}
    if until == "features":
        return row | {"status": "ok", "stage": "features"}
    failed = results / "failed" / f"{target_id}.txt"
    if failed.is_file():
        return row | {"status": "failed", "stage": "predict", "reason": one_line(failed.read_text())}
    best = best_prediction(results / "predictions" / target_id)
    if best is None:
        return row | {"status": "failed", "stage": "predict", "reason": "no predictions were written"}
    return row | {"status": "ok", "stage": "predict"} | best


def summarize(
    targets: list[str],
    invalid: dict[str, str],
    results: Path,
    tokens: dict[str, int],
    status_files: list[Path],
    config: dict,
    inputs: Path,
    out_summary: Path,
    out_failures: Path,
    out_provenance: Path | None,
    until: str = "predict",
) -> list[dict]:
    """Write the tables (provenance unless None), each target followed up to stage `until` (features |
    predict); return the failure rows."""
    from model.data.store import code_version, content_hash

    for target_id, message in sorted(invalid.items()):
        write_failure(results / "failed", target_id, message)
    statuses = read_statuses(status_files)
    rows = [
        target_row(t, results, invalid, tokens, statuses, until) for t in sorted(set(targets) | set(invalid))
    ]
    failures = [r for r in rows if r["status"] == "failed"]
    write_text_atomic(out_summary, _tsv(SUMMARY_COLUMNS, rows))
    write_text_atomic(out_failures, _tsv(FAILURE_COLUMNS, failures))
    if out_provenance is None:
        return failures
    provenance = {
        "code_version": code_version(),
        "inputs": str(inputs),
        "inputs_sha256": content_hash([inputs.read_bytes()]),
        "config": config,
        "targets": len(rows),
        "failed": len(failures),
    }
    write_json(out_provenance, provenance, sort_keys=True)
    return failures


def check(failures_tsv: Path, ok: Path) -> int:
    """Print the failures; 1 if any, else touch `ok` and return 0."""
    with failures_tsv.open() as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if rows:
        width = max(len(r["target_id"]) for r in rows)
        print(f"{len(rows)} target(s) failed (details in {failures_tsv}):", file=sys.stderr)
        for r in rows:
            print(f"  {r['target_id']:<{width}}  {r['stage']:<8}  {r['reason']}", file=sys.stderr)
        return 1
    write_text_atomic(ok, "")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", type=Path, help="failures.tsv to check (check mode)")
    parser.add_argument("--ok", type=Path, help="file touched when nothing failed (check mode)")
    parser.add_argument("--inputs", type=Path, help="targets.csv (tables mode)")
    parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    if args.check:
        if args.ok is None:
            parser.error("--check needs --ok")
        return check(args.check, args.ok)
    if args.inputs is None:
        parser.error("give --inputs (tables mode) or --check (check mode)")
    from model.data.inputs import load_targets

    targets, errors = load_targets(args.inputs)
    failures = summarize(
        [t.target_id for t in targets],
        {e.target_id: str(e) for e in errors},
        args.results,
        {},
        sorted((args.results / "features" / "shards").glob("*.tsv")),
        {"inputs": str(args.inputs)},
        args.inputs,
        args.results / "summary.tsv",
        args.results / "failures.tsv",
        args.results / "provenance.json",
    )
    return 1 if failures else 0


if "snakemake" in globals():
    smk = snakemake  # noqa: F821
    summarize(
        smk.params.targets,
        smk.params.invalid,
        Path(smk.params.results),
        smk.params.tokens,
        [Path(p) for p in smk.input.status],
        smk.params.config,
        Path(smk.params.config["inputs"]),
        Path(smk.output.summary),
        Path(smk.output.failures),
        Path(smk.output.provenance) if "provenance" in smk.output.keys() else None,
        smk.params.get("until", "predict"),
    )
elif __name__ == "__main__":
    sys.exit(main())
