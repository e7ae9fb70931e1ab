"""The search rules end to end in a scratch copy of the workflow: offline download (file:// URL),
database preparation, one search per unique sequence, and no search at all on the second run."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from test_workflow_helpers import make_workdir, snakemake

from model.data.msa import parse_a3m

MYOGLOBIN = (
    "MVLSEGEWQLVLHVWAKVEADVAGHGQDILIRLFKSHPETLEKFDRFKHLKTEAEMKASEDLKKAGVTVLTALGAILKKKGHHEAELKPLAQSHATKHK"
    "IPIKYLEFISEAIIHVLHSRHPGNFGADAQGAMNKALELFRKDIAAKYKELGYQG"
)


def test_download_prepare_search_once(shared_data: Path, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    source = mirror / "uniref90.fasta"
    shutil.copy(shared_data / "seqdb" / "msa_hits_for_shared_queries.fasta", source)
    work = tmp_path / "work"
    targets = tmp_path / "targets.csv"
    # two targets and three chains, one sequence: one search
    targets.write_text(
        f"target_id,json,chains,seeds\nmyo_a,,protein:{MYOGLOBIN},\nmyo_b,,protein:{MYOGLOBIN}x2,\n"
    )
    config = {
        "inputs": str(targets),
        "databases": {
            "protein": {"uniref90": "downloaded/uniref90.fasta"},
            "download": {
                "uniref90": {
                    "url": source.as_uri(),
                    "sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
                    "dest": "downloaded/uniref90.fasta",
                }
            },
        },
    }
    make_workdir(work, config)
    first = snakemake(work, "msa", "templates", "--cores", "2")
    assert (work / "downloaded" / "uniref90.fasta").read_bytes() == source.read_bytes()
    assert (work / "downloaded" / "uniref90.fasta.foldline.json").is_file()
    a3ms = sorted((work / "results" / "msa" / "protein").glob("*.a3m"))
    assert [p.name.endswith(".paired.a3m") for p in a3ms].count(False) == 1
    unpaired = next(p for p in a3ms if not p.name.endswith(".paired.a3m"))
    rows = parse_a3m(unpaired.read_text())
    assert rows[0][1] == MYOGLOBIN and len(rows) > 50
    assert (work / "results" / "templates" / "protein" / unpaired.name.replace(".a3m", ".npz")).is_file()
    assert "search_protein" in first.stderr + first.stdout

    stamp = unpaired.stat().st_mtime_ns
    second = snakemake(work, "msa", "templates", "--cores", "2")
    assert "Nothing to be done" in second.stdout + second.stderr
    assert unpaired.stat().st_mtime_ns == stamp
