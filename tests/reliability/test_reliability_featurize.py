"""Bad inputs that only featurization can find, through the build_features rule's script with a shard
of them beside two good targets: each fails alone with its note, the good targets get their h5."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from model.data import store
from model.search.entries import checksum_path, seal
from reliability.cases import GOOD_ROWS, HEADER, HUGE_SMILES, af3_job

REPO = Path(__file__).resolve().parents[2]


def _msa_job(name: str, a3m: str) -> str:
    return af3_job(
        name, [{"protein": {"id": "A", "sequence": "MKTAYIAKQR", "unpairedMsa": a3m, "pairedMsa": ""}}]
    )


BAD_COLUMNS = _msa_job("msa_columns", ">q\nMKTAYIAKQR\n>h\nMKT\n")
NO_HEADER = _msa_job("msa_no_header", "MKTAYIAKQR\n")
# (target, row, files, the start of its note); None: featurized
SHARD = [
    ("good_a", GOOD_ROWS[0], {}, None),
    ("good_b", GOOD_ROWS[1], {}, None),
    ("unknown_ccd", "unknown_ccd,,protein:MKT;ligand:XXXYZ,,", {},
     "target unknown_ccd: entity 2 (ligand, chain B): ccd_codes: unknown CCD code 'XXXYZ'"),
    ("bond_atom", "bond_atom,,protein:MKT;ligand:ATP,,A:1:XX-B:1:PG", {},
     "target bond_atom: entity 1 (protein, chain A): bonds: bond to atom 'XX' that does not exist"),
    ("mod_type", "mod_type,,protein:MK(ATP)T,,", {},
     "target mod_type: entity 1 (protein, chain A): modifications: ATP at position 3 is a"),
    ("ion_not_single", "ion_not_single,,ion:ATP,,", {},
     "target ion_not_single: entity 1 (ion, chain A): ion: ATP is not a single-atom ion component"),
    ("msa_columns", "msa_columns,msa_columns.json,,,", {"msa_columns.json": BAD_COLUMNS},
     "target msa_columns: entity 1 (protein, chain A): unpairedMsa: a3m: row 1 has 3 match columns"),
    ("msa_no_header", "msa_no_header,msa_no_header.json,,,", {"msa_no_header.json": NO_HEADER},
     "target msa_no_header: entity 1 (protein, chain A): unpairedMsa: a3m: sequence line before the"),
    ("slow", f"slow,,ligand:smiles={HUGE_SMILES},,", {},
     "target slow: featurization: took longer than limits.featurize_seconds (10 s)"),
    ("store_corrupt", "store_corrupt,,protein:MKTAYIAKQW,,", {},
     "target store_corrupt: MSA/template input: store entry "),
]  # fmt: skip


def test_a_shard_featurizes_its_good_targets_and_fails_each_bad_one_alone(tmp_path: Path) -> None:
    rows = [HEADER]
    for _target, row, files, _note in SHARD:
        rows.append(row)
        for name, content in files.items():
            (tmp_path / name).write_text(content)
    table = tmp_path / "targets.csv"
    table.write_text("\n".join(rows) + "\n")
    # a sealed store entry that was truncated after it was written; its batch record claims it
    sha = "cd" + "1" * 62
    a3m = tmp_path / "results" / "msa" / "protein" / f"{sha}.a3m"
    a3m.parent.mkdir(parents=True)
    a3m.write_text(">query\nMKTAYIAKQW\n>hit\nMKTAYIAKQF\n")
    seal(a3m)
    record = a3m.parent / "batches" / "cd.tsv"
    record.parent.mkdir()
    record.write_text(f"{sha}\tMKTAYIAKQW\n")
    a3m.write_text(">query\nMKTAYI")
    shard = {t: {"chains": {"A": str(a3m)} if t == "store_corrupt" else {}, "pair": False} for t, *_ in SHARD}
    out, failed, status = tmp_path / "features", tmp_path / "failed", tmp_path / "shard-000.tsv"
    # 10 s: ample for a good target on a loaded machine (~2 s idle); the huge ligand embeds for minutes
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_features.py"), "--inputs", str(table),
         "--shard", json.dumps(shard), "--out-dir", str(out), "--failed-dir", str(failed),
         "--status", str(status), "--featurize-seconds", "10"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {line.split("\t")[0]: line.split("\t")[1:] for line in status.read_text().splitlines()}
    assert set(rows) == {t for t, *_ in SHARD}
    for target, _row, _files, note in SHARD:
        state, detail = rows[target]
        if note is None:
            assert state == "ok" and store.is_valid(detail), (target, detail)
            assert not (failed / f"{target}.txt").exists()
        else:
            assert state == "failed" and detail.startswith(note), (target, detail)
            assert (failed / f"{target}.txt").read_text() == detail + "\n"
            assert not (out / f"{target}.h5").exists()
    assert str(a3m) in rows["store_corrupt"][1]  # the note names the file
    assert not a3m.exists() and not checksum_path(a3m).exists() and not record.exists()
    assert list(out.glob(".*")) == []  # the slow target's killed worker left no temp file
