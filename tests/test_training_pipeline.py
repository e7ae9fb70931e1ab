"""Training data through the workflow (workflow/rules/manifest.smk): the manifest, the searches of the
training chains in the content-addressed store, templates with the entry's release-date cutoff (AF3
§2.4), featurization in shards with content-hash reuse, and precomputed alignments (training.msa_dir).

Real components throughout: pyhmmer jackhmmer against the miniature databases (the hits of the shared
queries as UniRef90, AF3's UniProt subsample), hmmsearch of pdb_seqres of the shared entries with the
shared mmCIFs as the template structures, gemmi, HDF5.
"""

from __future__ import annotations

import datetime
import gzip
import shutil
from pathlib import Path

import gemmi
import h5py
import numpy as np
import pytest
import yaml
from conftest import MMCIF_DIR, SHARED_DATA
from test_workflow_helpers import make_workdir, snakemake

from model.data.msa import parse_a3m
from model.search.store import msa_key
from model.search.templates import DAYS_BEFORE_QUERY_DATE, release_date
from model.train.manifest import build_manifest, list_entries, read_manifest, write_manifest

ENTRIES = ("102m", "1igy")  # myoglobin (hits in the miniature UniRef90); IgG heteromer (templates: 1ncb)
TARGET = "results/features/train/training_set.txt"


def miniature_databases(root: Path) -> dict:
    """The miniature protein databases (AF3's, with the shared queries' real hits as UniRef90), copied:
    their statistics sidecars are written beside them."""
    root.mkdir()
    copies = {
        "uniref90": SHARED_DATA / "seqdb" / "msa_hits_for_shared_queries.fasta",
        "uniprot": SHARED_DATA / "seqdb" / "uniprot_all__subsampled_1000.fasta",
        "mgnify": SHARED_DATA / "seqdb" / "mgy_clusters__subsampled_1000.fa",
        "small_bfd": SHARED_DATA / "seqdb" / "bfd-first_non_consensus_sequences__subsampled_1000.fasta",
        "seqres": SHARED_DATA / "template_db" / "pdb_seqres_shared_structures.fasta",
    }
    for name, source in copies.items():
        shutil.copy(source, root / f"{name}.fasta")
    return {
        "protein": {"uniref90": str(root / "uniref90.fasta"), "mgnify": str(root / "mgnify.fasta"),
                    "small_bfd": str(root / "small_bfd.fasta"),
                    "uniprot": str(root / "uniprot.fasta")},
        "templates": {"seqres": str(root / "seqres.fasta"), "mmcif_dir": str(MMCIF_DIR)},
    }  # fmt: skip


@pytest.fixture(scope="module")
def workflow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("training-pipeline")
    entries = root / "entries"
    entries.mkdir()
    for entry in ENTRIES:  # plain text, so that a test can edit one by hand
        (entries / f"{entry}.cif").write_bytes(gzip.decompress((MMCIF_DIR / f"{entry}.cif.gz").read_bytes()))
    workdir = make_workdir(
        root / "wf", {"databases": miniature_databases(root / "db"), "training": {"entries": [str(entries)]}}
    )
    snakemake(workdir, "-c2", TARGET, timeout=900)
    return workdir


def _h5(workdir: Path, entry: str) -> h5py.File:
    return h5py.File(workdir / "results" / "features" / "train" / f"{entry}.h5", "r")


def test_manifest_and_searched_msa(workflow: Path) -> None:
    rows, notes = read_manifest(workflow / "results" / "train" / "manifest.tsv")
    assert not notes and sorted(rows) == list(ENTRIES)
    assert rows["102m"].status == "ok" and rows["102m"].release_date == "1998-04-08"
    assert rows["1igy"].entities.keys() == {"1", "2"}  # light and heavy chain
    listed = (workflow / TARGET).read_text().split()
    assert sorted(Path(p).stem for p in listed) == sorted(ENTRIES)
    with _h5(workflow, "102m") as f:
        # query + rows found by jackhmmer in the miniature UniRef90 (96 hits for myoglobin)
        assert f["msa/msa"].shape[0] > 50
    # the training search is the prediction store: one a3m per unique sequence, keyed as prediction
    config = yaml.safe_load((workflow / "config" / "config.yaml").read_text())
    keys = {msa_key(sequence, "protein", config["databases"], config["search"])
            for row in rows.values() for _, sequence in row.entities.values()}  # fmt: skip
    a3ms = {p.name.removesuffix(".a3m") for p in (workflow / "results" / "msa" / "protein").glob("*.a3m")}
    assert len(keys) == 3 and a3ms == keys | {f"{k}.paired" for k in keys}  # 102m; 1igy light, heavy


def test_templates_released_before_the_entry(workflow: Path) -> None:
    rows, _ = read_manifest(workflow / "results" / "train" / "manifest.tsv")
    kept = 0
    for entry in ENTRIES:
        entry_date = datetime.date.fromisoformat(rows[entry].release_date)
        stores = sorted((workflow / "results" / "templates" / "protein").glob(f"*.before-{entry_date}.npz"))
        assert stores, f"{entry}: no template store file with its release-date cutoff"
        for store in stores:
            with np.load(store) as data:
                names = [str(n) for n in data["template_names"]]
            for name in names:
                pdb_id = name.split("_")[0].lower()
                assert pdb_id != entry
                block = gemmi.cif.read(str(next(MMCIF_DIR.glob(f"{pdb_id}.cif*")))).sole_block()
                assert release_date(block) <= entry_date - datetime.timedelta(days=DAYS_BEFORE_QUERY_DATE)
                kept += 1
    assert kept > 0  # 1igy's Fab chains find 1ncb (1994); 102m's hits (itself, 8f9h) are too recent
    with _h5(workflow, "1igy") as f:
        assert f["template/template_pseudo_beta_mask"][:].any(axis=1).sum() > 0


def test_rerun_searches_nothing_and_edit_refeaturizes_alone(workflow: Path) -> None:
    rerun = snakemake(workflow, "-c2", "--dry-run", TARGET)
    assert "Nothing to be done" in rerun.stdout + rerun.stderr
    features = workflow / "results" / "features" / "train"
    before = {e: (features / f"{e}.h5").stat().st_mtime_ns for e in ENTRIES}
    searches = sorted((workflow / "results" / "msa" / "protein" / "batches").glob("*.tsv"))
    searched = {p: p.stat().st_mtime_ns for p in searches}
    edited = Path(read_manifest(workflow / "results" / "train" / "manifest.tsv")[0]["102m"].path)
    edited.write_text(edited.read_text() + "# edited by hand\n")
    snakemake(workflow, "-c2", TARGET, timeout=600)
    assert (features / "102m.h5").stat().st_mtime_ns != before["102m"]
    assert (features / "1igy.h5").stat().st_mtime_ns == before["1igy"]
    assert {p: p.stat().st_mtime_ns for p in searches} == searched  # same sequences: no search ran


def test_precomputed_msa_dir_is_used_instead_of_search(tmp_path: Path) -> None:
    entries = tmp_path / "entries"
    entries.mkdir()
    shutil.copy(MMCIF_DIR / "102m.cif.gz", entries)
    msa_dir = SHARED_DATA / "msa"
    workdir = make_workdir(
        tmp_path / "wf", {"training": {"entries": [str(entries)], "msa_dir": str(msa_dir)}}
    )
    snakemake(workdir, "-c2", TARGET, timeout=600)
    assert not list((workdir / "results").rglob("*.a3m"))  # nothing searched
    rows = sum(len(parse_a3m(a3m.read_text())) for a3m in (msa_dir / "102m_1").glob("*.a3m"))
    with _h5(workdir, "102m") as f:
        # the precomputed files' 98 unpaired and 771 paired rows (less the repeated queries and rows
        # beyond the paired cap); a search of the miniature databases finds under 100
        assert 500 < f["msa/msa"].shape[0] <= rows


def test_manifest_filters_real_headers_and_reads_bad_rows_as_notes(tmp_path: Path) -> None:
    entries, notes = list_entries([MMCIF_DIR / "3zee.cif.gz", MMCIF_DIR / "7gsa.cif.gz", tmp_path / "gone"])
    assert sorted(entries) == ["3zee", "7gsa"] and notes == [
        f"training.entries: {tmp_path / 'gone'}: no such file or folder"
    ]
    filters = {"max_resolution": 6.0, "release_date_cutoff": "2021-09-30", "max_chains": 300}
    rows = {row.entry: row for row in build_manifest(entries, filters)}
    assert rows["3zee"].status == "filtered: resolution 6.1 A > 6.0 A"  # cryo-EM at 6.1 A
    assert rows["7gsa"].status == "filtered: released 2024-01-24, after the cutoff 2021-09-30"
    manifest = tmp_path / "manifest.tsv"
    write_manifest(manifest, rows.values())
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join([*lines, "broken\trow"]) + "\n")
    read, problems = read_manifest(manifest)
    assert read == rows and len(problems) == 1 and "line 4" in problems[0]
