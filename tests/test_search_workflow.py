"""The search rules end to end in a scratch copy of the workflow: offline download (file:// URL),
database preparation, one search per unique sequence, no search at all on the second run, and only the
new sequences searched when they join a finished search batch, with the same templates as a search of
each alone."""

from __future__ import annotations

import datetime
import hashlib
import random
import shutil
from pathlib import Path

import numpy as np
import yaml
from test_workflow_helpers import make_workdir, snakemake

from model.data.msa import parse_a3m
from model.search.store import msa_key
from model.search.templates import TemplateSettings, search_templates, write_templates

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
    # the shared template database (copied: its sidecar is written beside it) finds templates for
    # myoglobin variants, so the batch's template path has hits to compare
    seqres = tmp_path / "templates" / "pdb_seqres.fasta"
    seqres.parent.mkdir()
    shutil.copy(shared_data / "template_db" / "pdb_seqres_shared_structures.fasta", seqres)
    targets = tmp_path / "targets.csv"
    # two targets and three chains, one sequence: one search
    targets.write_text(
        f"target_id,json,chains,seeds\nmyo_a,,protein:{MYOGLOBIN},\nmyo_b,,protein:{MYOGLOBIN}x2,\n"
    )
    config = {
        "inputs": str(targets),
        "databases": {
            "protein": {"uniref90": "downloaded/uniref90.fasta"},
            "templates": {"seqres": str(seqres), "mmcif_dir": str(shared_data / "mmcif")},
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

    # two new sequences in the same search batch (same first two hex digits of the key) rerun that
    # batch, which searches the new sequences only, both in one pass (search_batch.py's run_batch)
    monkeypatch.chdir(work)  # the config's database paths are relative to the workflow
    merged = yaml.safe_load((work / "config" / "config.yaml").read_text())
    rng = random.Random(0)
    variants = []
    while len(variants) < 2:
        # ~85% identical to myoglobin: myoglobin templates are kept (AF3 drops only near-exact copies)
        variant = "".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") if rng.random() < 0.15 else a for a in MYOGLOBIN)
        sha = msa_key(variant, "protein", merged["databases"], merged["search"])
        if sha[:2] == unpaired.name[:2]:
            variants.append((variant, sha))
    with targets.open("a") as fh:
        fh.writelines(f"variant{i},,protein:{variant},\n" for i, (variant, _) in enumerate(variants))
    snakemake(work, "msa", "templates", "--cores", "2")
    assert unpaired.stat().st_mtime_ns == stamp
    log = (work / "logs" / "search" / "protein" / f"{unpaired.name[:2]}.log").read_text()
    assert f"{unpaired.relative_to(work)}: already in the store" in log
    assert "2 protein queries: searching uniref90" in log
    search = merged["search"]
    for variant, sha in variants:
        rows = parse_a3m((work / "results" / "msa" / "protein" / f"{sha}.a3m").read_text())
        assert rows[0][1] == variant
        kept, arrays = search_templates(
            variant,
            rows,
            seqres,
            shared_data / "mmcif",
            datetime.date.fromisoformat(str(search["template_max_date"])),
            TemplateSettings(max_templates=int(search["max_templates"])),
        )
        assert kept  # the comparison is not between two empty stacks
        single = tmp_path / f"{sha}.npz"
        write_templates(single, arrays, kept)
        batch = work / "results" / "templates" / "protein" / f"{sha}.npz"
        with np.load(batch) as data:
            assert list(data["template_names"]) == [h.name for h in kept]
        assert batch.read_bytes() == single.read_bytes()
