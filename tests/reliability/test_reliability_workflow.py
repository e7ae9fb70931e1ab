"""One real `snakemake` run of bad targets beside good ones (issue #14), then caches damaged on disk
and healed by a plain rerun.

The table has a BOM and CRLF line ends (valid), three good targets (two searched proteins, a ligand
from an SDF file with an ion) and bad rows of the kinds that used to take the whole run down or give a
wrong answer. `snakemake results/features.ok` (what `snakemake features` ends with) and then
`snakemake predict` must each write their tables, predict every good target and exit non-zero with a
one-line note per bad target. Then one store a3m is truncated, another has a byte flipped, and the two
feature files get the same: a plain `snakemake predict` must find all four, rebuild them (the a3m files
byte for byte, the feature files with the same features) and predict again.
"""

from __future__ import annotations

import csv
from pathlib import Path

import h5py
import torch
from test_workflow_helpers import make_workdir, snakemake

from model.data import store
from model.search.entries import entry_problem
from reliability.cases import HUGE_SMILES, PROLINE_SDF, TEMPLATE_CIF, _template, af3_job

CONFIG = {"samples": 1, "steps": 2, "cycles": 1, "checkpoint": "none"}
GOOD = {
    "good_a": ",,protein:MKTAYIAKQRQISFVKSHFSRQ,,",
    "good_b": ",,protein:GSHMDPNCSCAAGDSCTCAGSCKCKECKC,,",
    "good_sdf_ion": ",,ligand:file=proline.sdf;ion:MG,,",
}
# target -> (CSV row after the id, the start of its note)
BAD = {
    "latin1_byte": (",,protein:MK\xe9T,,", "target latin1_byte: row "),
    "extra_fields": (",,protein:MKT,1,,surplus", "target extra_fields: row "),
    "huge_smiles": (
        f",,protein:MKT;ligand:smiles={HUGE_SMILES},,",
        "target huge_smiles: entity 2 (ligand, chain B): smiles: 500 heavy atoms",
    ),
    "empty_smiles": (
        ",,protein:MKT;ligand:smiles=,,",
        "target empty_smiles: entity 2 (ligand, chain B): smiles:",
    ),
    "deep_json": (",deep.json,,,", "target deep_json: json: nested deeper than limits.json_depth (32)"),
    "garbage_template": (
        ",garbage_template.json,,,",
        "target garbage_template: entity 1 (protein, chain A): templates[0].mmcif: not a readable",
    ),
    "template_past_query": (
        ",template_past_query.json,,,",
        "target template_past_query: entity 1 (protein, chain A): templates[0].queryIndices: index 10",
    ),
    "huge_target": (f",,protein:{'A' * 120_000},,", "target huge_target: tokens: 120000 tokens, more than"),
    "unknown_ccd": (
        ",,protein:MKT;ligand:XXXYZ,,",
        "target unknown_ccd: entity 2 (ligand, chain B): ccd_codes:",
    ),
}
UNSAFE = ("../escape", ",,protein:MKT,,", "target invalid@row-")


def _table(folder: Path) -> Path:
    (folder / "proline.sdf").write_text(PROLINE_SDF.read_text())
    (folder / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (folder / "garbage_template.json").write_text(
        af3_job("garbage_template", [_template("garbage", [0], [0])])
    )
    (folder / "template_past_query.json").write_text(
        af3_job("template_past_query", [_template(TEMPLATE_CIF, [0, 10], [0, 1])])
    )
    rows = [f"{t}{rest}" for t, rest in GOOD.items()] + [f"{t}{rest}" for t, (rest, _) in BAD.items()]
    rows.append(UNSAFE[0] + UNSAFE[1])
    text = "\ufefftarget_id,json,chains,seeds,bonds\r\n" + "\r\n".join(rows) + "\r\n"
    table = folder / "targets.csv"
    table.write_bytes(text.encode("utf-8").replace("\xe9".encode(), b"\xe9"))  # one latin-1 byte
    return table


def _rows(path: Path) -> dict[str, dict]:
    with path.open() as handle:
        return {r["target_id"]: r for r in csv.DictReader(handle, delimiter="\t")}


def _check_notes(results: Path, summary: dict[str, dict]) -> None:
    for target, (_, note) in BAD.items():
        assert summary[target]["status"] == "failed" and summary[target]["reason"].startswith(note), target
        assert (results / "failed" / f"{target}.txt").read_text().startswith(note)
    (unsafe,) = [t for t in summary if t.startswith("invalid@row-")]
    assert summary[unsafe]["reason"].startswith(f"target {unsafe}: target_id: target_id '../escape'")


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_bad_targets_fail_alone_and_damaged_caches_heal(tmp_path: Path) -> None:
    workdir = make_workdir(tmp_path / "wf", CONFIG)
    table = _table(tmp_path)
    results = workdir / "results"
    args = ("--cores", "2", "--config", f"inputs={table}")

    features = snakemake(workdir, "results/features.ok", *args, check=False, timeout=900)
    assert features.returncode != 0
    summary = _rows(results / "features" / "summary.tsv")
    assert {t: summary[t]["status"] for t in GOOD} == dict.fromkeys(GOOD, "ok")
    _check_notes(results, summary)
    assert set(_rows(results / "features" / "failures.tsv")) == set(summary) - set(GOOD)

    predict = snakemake(workdir, "predict", *args, check=False, timeout=900)
    assert predict.returncode != 0
    assert "target(s) failed" in predict.stderr and "unknown_ccd" in predict.stderr
    summary = _rows(results / "summary.tsv")
    for target in GOOD:
        assert summary[target]["status"] == "ok" and Path(workdir, summary[target]["best_model"]).is_file()
    _check_notes(results, summary)

    # damage: truncate one store a3m and flip a byte of the other; the same for the two feature files
    target_of = {rest.split("protein:")[1].rstrip(","): t for t, rest in GOOD.items() if "protein:" in rest}
    a3m = {}
    for path in (results / "msa" / "protein").glob("*.a3m"):
        query = path.read_text().splitlines()[1]
        if not path.name.endswith(".paired.a3m") and query in target_of:
            a3m[target_of[query]] = path
    h5 = {t: results / "features" / f"{t}.h5" for t in ("good_a", "good_b")}
    before = {p: p.read_bytes() for p in [*a3m.values(), *h5.values()]}
    features_before = {t: store.load_features(p) for t, p in h5.items()}
    a3m["good_a"].write_bytes(before[a3m["good_a"]][: len(before[a3m["good_a"]]) // 2])
    _flip(a3m["good_b"], len(before[a3m["good_b"]]) // 2)
    h5["good_a"].write_bytes(before[h5["good_a"]][: len(before[h5["good_a"]]) // 2])
    with h5py.File(h5["good_b"]) as f:
        offset = f["atom/ref_pos"].id.get_chunk_info(0).byte_offset
    _flip(h5["good_b"], offset + 10)
    assert not store.is_valid(h5["good_a"]) and not store.is_valid(h5["good_b"])
    assert entry_problem(a3m["good_a"]) and entry_problem(a3m["good_b"])

    again = snakemake(workdir, "predict", *args, check=False, timeout=900)
    assert again.returncode != 0
    assert "removed with what follows it" in again.stderr  # the parse found the changed files
    searched = "".join(p.read_text() for p in (workdir / "logs" / "search" / "protein").glob("*.log"))
    assert searched.count("sha256 differs from its checksum") + searched.count("removed, searching") >= 2
    for path in a3m.values():  # searched again, byte for byte (the search is deterministic)
        assert path.read_bytes() == before[path] and entry_problem(path) is None, path
    for target, path in h5.items():  # featurized again: valid, the same features (the code version
        assert store.is_valid(path)  # attribute may differ, so not byte for byte)
        again_features = store.load_features(path)
        assert again_features.keys() == features_before[target].keys()
        assert all(torch.equal(again_features[k], v) for k, v in features_before[target].items())
    log = (workdir / "logs" / "features" / "shard-000.log").read_text()
    built = {line.split("\t")[0]: line.split("\t")[1] for line in log.splitlines() if "\t" in line}
    assert built["good_a"] == built["good_b"] == "ok"  # rebuilt, not "cached"
    summary = _rows(results / "summary.tsv")
    assert {t: summary[t]["status"] for t in GOOD} == dict.fromkeys(GOOD, "ok")
    _check_notes(results, summary)
