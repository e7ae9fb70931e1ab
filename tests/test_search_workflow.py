"""The search rules end to end in a scratch copy of the workflow: offline download (file:// URL),
database preparation, one search per unique sequence, no search at all on the second run, and only the
new sequence searched when one joins a finished search batch."""

from __future__ import annotations

import hashlib
import random
import shutil
from pathlib import Path

import yaml
from test_workflow_helpers import make_workdir, snakemake

from model.data.msa import parse_a3m
from model.search.store import msa_key

MYOGLOBIN = (
    "MVLSEGEWQLVLHVWAKVEADVAGHGQDILIRLFKSHPETLEKFDRFKHLKTEAEMKASEDLKKAGVTVLTALGAILKKKGHHEAELKPLAQSHATKHK"
    "IPIKYLEFISEAIIHVLHSRHPGNFGADAQGAMNKALELFRKDIAAKYKELGYQG"
)


def test_download_prepare_search_once(shared_data: Path, tmp_path: Path, monkeypatch) -> None:
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

    # a new sequence in the same search batch (same first two hex digits of the key) reruns that
    # batch, which searches the new sequence only
    monkeypatch.chdir(work)  # the config's database paths are relative to the workflow
    merged = yaml.safe_load((work / "config" / "config.yaml").read_text())
    rng = random.Random(0)
    while True:
        peptide = "".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(30))
        sha = msa_key(peptide, "protein", merged["databases"], merged["search"])
        if sha[:2] == unpaired.name[:2]:
            break
    with targets.open("a") as fh:
        fh.write(f"new,,protein:{peptide},\n")
    snakemake(work, "msa", "templates", "--cores", "2")
    assert unpaired.stat().st_mtime_ns == stamp
    assert (work / "results" / "msa" / "protein" / f"{sha}.a3m").is_file()
    assert (work / "results" / "templates" / "protein" / f"{sha}.npz").is_file()
    log = (work / "logs" / "search" / "protein" / f"{sha[:2]}.log").read_text()
    assert f"{unpaired.relative_to(work)}: already in the store" in log
