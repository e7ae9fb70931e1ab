"""Content-addressed MSA store: keys, one search per key, and the rule scripts around it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

import model.search.entries as entries
import model.search.store as store
from model.data.msa import parse_a3m
from model.search.databases import DatabaseError
from model.search.jackhmmer import SearchResult
from model.search.store import msa_key, msa_path, search_msa, search_msas

MYOGLOBIN = (
    "MVLSEGEWQLVLHVWAKVEADVAGHGQDILIRLFKSHPETLEKFDRFKHLKTEAEMKASEDLKKAGVTVLTALGAILKKKGHHEAELKPLAQSHATKHK"
    "IPIKYLEFISEAIIHVLHSRHPGNFGADAQGAMNKALELFRKDIAAKYKELGYQG"
)
SETTINGS = {
    "threads": 2,
    "max_hits": {"uniref90": 10000},
    "template_max_date": "2100-01-01",
    "max_templates": 4,
}


@pytest.fixture()
def databases(shared_data: Path) -> dict:
    seqdb = shared_data / "seqdb"
    return {
        "protein": {
            "uniref90": str(seqdb / "msa_hits_for_shared_queries.fasta"),
            "mgnify": str(seqdb / "mgy_clusters__subsampled_1000.fa"),
            "uniprot": str(seqdb / "uniprot_all__subsampled_1000.fasta"),
        },
        "rna": {"rfam": str(seqdb / "rfam_14_4_clustered_rep_seq__subsampled_1000.fasta")},
        "templates": {"seqres": str(shared_data / "template_db" / "pdb_seqres_shared_structures.fasta")},
    }


def test_key_depends_on_content_not_location(databases: dict, tmp_path: Path) -> None:
    key = msa_key(MYOGLOBIN, "protein", databases, SETTINGS)
    assert len(key) == 64 and key == msa_key(MYOGLOBIN.lower(), "protein", databases, SETTINGS)
    assert key == msa_key(MYOGLOBIN, "protein", databases, {**SETTINGS, "threads": 16})  # threads: no effect
    moved = json.loads(json.dumps(databases))
    copy = tmp_path / "elsewhere.fasta"
    shutil.copy(databases["protein"]["mgnify"], copy)
    moved["protein"]["mgnify"] = str(copy)
    # same bytes under another name and folder: the name is part of the identity, the folder is not
    assert msa_key(MYOGLOBIN, "protein", moved, SETTINGS) != key
    (tmp_path / "sub").mkdir()
    same_name = tmp_path / "sub" / Path(databases["protein"]["mgnify"]).name
    shutil.copy(databases["protein"]["mgnify"], same_name)
    moved["protein"]["mgnify"] = str(same_name)
    assert msa_key(MYOGLOBIN, "protein", moved, SETTINGS) == key
    changes = [
        msa_key(MYOGLOBIN[:-1], "protein", databases, SETTINGS),
        msa_key(MYOGLOBIN, "protein", databases, {**SETTINGS, "max_hits": {"uniref90": 10}}),
        msa_key(MYOGLOBIN, "protein", databases, {**SETTINGS, "template_max_date": "2020-01-01"}),
        msa_key(
            MYOGLOBIN,
            "protein",
            {**databases, "protein": {"uniref90": databases["protein"]["uniref90"]}},
            SETTINGS,
        ),
    ]
    assert len({key, *changes}) == len(changes) + 1
    with pytest.raises(ValueError, match="molecule 'dna'"):
        msa_key("ACGT", "dna", databases, SETTINGS)


# A key is a content address, so a change here orphans every store. Update only with STORE_VERSION
# or a changed search setting (version 4: jackhmmer's incdomE, nhmmer's Z and hmmalign rows, the
# template profile's insert columns and thresholds).
PINNED_KEYS = {
    "protein": "6adb687cc6a030d595c606c6a4c750b910a95a473d1f8c8e76d18f3dcd58f437",
    "rna": "55a769d4c05bc31de75b491b389848ff2bac7c013538f07f20108a6050b2a2fc",
    "download": "cb876e3f8a1c1663df8a6ff58ba08297607dee73603ac325fb62098a4f2af931",
}


def test_keys_are_pinned(databases: dict) -> None:
    for _ in range(2):  # the second round is served by the identity cache
        assert msa_key(MYOGLOBIN, "protein", databases, SETTINGS) == PINNED_KEYS["protein"]
        assert msa_key("GGGAAACUCCGGUUCC", "rna", databases, SETTINGS) == PINNED_KEYS["rna"]
        spec = {"dest": databases["protein"]["uniref90"], "sha256": "0" * 64}
        downloaded = {**databases, "download": {"uniref90": spec}}
        assert msa_key(MYOGLOBIN, "protein", downloaded, SETTINGS) == PINNED_KEYS["download"]


def test_key_names_the_settings_each_search_runs_with(databases: dict, tmp_path: Path, monkeypatch) -> None:
    """Field by field, thresholds included: an MSA searched with other settings is never reused."""
    used: dict[str, list[dict]] = {}

    def recorder(tool: str):
        def search(sequences, path, settings, threads=1):
            used.setdefault(tool, []).append(asdict(settings))
            return [SearchResult(rows=[("query", s)], hit_names=[], n_searched=1) for s in sequences]

        return search

    monkeypatch.setattr(store, "search_proteins", recorder("jackhmmer"))
    monkeypatch.setattr(store, "search_rnas", recorder("nhmmer"))
    search_msa(MYOGLOBIN, "protein", databases, SETTINGS, tmp_path / "protein.a3m")
    search_msa("GGGAAACUCCGGUUCC", "rna", databases, SETTINGS, tmp_path / "rna.a3m")
    for molecule, tool, n_databases in (("protein", "jackhmmer", 3), ("rna", "nhmmer", 1)):
        key = store._key_settings(molecule, databases, SETTINGS)
        assert sorted(s["max_hits"] for s in used[tool]) == sorted(key["max_hits"].values())
        assert len(used[tool]) == n_databases
        for settings in used[tool]:
            assert {**settings, "max_hits": None} == {**key[tool], "max_hits": None}
    assert key_protein_thresholds(databases) == (1e-3, 100.0)


def key_protein_thresholds(databases: dict) -> tuple[float, float]:
    key = store._key_settings("protein", databases, SETTINGS)
    return key["jackhmmer"]["inc_dom_e"], key["templates"]["hmmsearch"]["e_value"]


def test_key_follows_a_changed_database(databases: dict, tmp_path: Path) -> None:
    """The identity cache is per file version: a database rewritten in place gives a new key at once,
    and its old bytes and mtime give the old key back."""
    db = tmp_path / "uniref90.fasta"
    db.write_text(">a\nMKV\n")
    old_stat = db.stat()
    databases = {**databases, "protein": {"uniref90": str(db)}}
    key = msa_key(MYOGLOBIN, "protein", databases, SETTINGS)
    db.write_text(">a\nMKW\n")  # same size, other bytes
    os.utime(db, ns=(old_stat.st_atime_ns, old_stat.st_mtime_ns + 1_000_000))
    changed = msa_key(MYOGLOBIN, "protein", databases, SETTINGS)
    assert changed != key
    db.write_text(">a\nMKV\n")
    os.utime(db, ns=(old_stat.st_atime_ns, old_stat.st_mtime_ns))
    assert msa_key(MYOGLOBIN, "protein", databases, SETTINGS) == key
    db.unlink()
    with pytest.raises(DatabaseError, match="file not found"):
        msa_key(MYOGLOBIN, "protein", databases, SETTINGS)


def test_second_search_does_no_search(databases: dict, tmp_path: Path, monkeypatch) -> None:
    sha = msa_key(MYOGLOBIN, "protein", databases, SETTINGS)
    out = msa_path(tmp_path, "protein", sha)
    assert search_msa(MYOGLOBIN, "protein", databases, SETTINGS, out, threads=2)
    rows = parse_a3m(out.read_text())
    assert rows[0] == ("query", MYOGLOBIN) and len(rows) > 50
    # deduplicated on query columns
    columns = ["".join(c for c in seq if not c.islower()) for _, seq in rows]
    assert len(columns) == len(set(columns))
    paired = out.with_name(f"{sha}.paired.a3m")
    assert parse_a3m(paired.read_text())[0] == ("query", MYOGLOBIN)
    stamp = out.stat().st_mtime_ns

    def no_search(*args, **kwargs):
        raise AssertionError("searched again")

    monkeypatch.setattr(store, "search_proteins", no_search)
    assert not search_msa(MYOGLOBIN, "protein", databases, SETTINGS, out, threads=2)
    assert out.stat().st_mtime_ns == stamp


@pytest.mark.parametrize("damage", ["truncate", "flip", "unseal"])
def test_a_damaged_entry_is_searched_again(databases: dict, tmp_path: Path, damage: str) -> None:
    """A truncated, flipped or unsealed store file is no longer "already in the store": the next
    search removes it and writes the same bytes again (the old code skipped any file that existed)."""
    sha = msa_key(MYOGLOBIN, "protein", databases, SETTINGS)
    out = msa_path(tmp_path, "protein", sha)
    assert search_msa(MYOGLOBIN, "protein", databases, SETTINGS, out, threads=2)
    good = out.read_bytes()
    assert entries.entry_problem(out) is None
    if damage == "truncate":
        out.write_bytes(good[: len(good) // 2])
    elif damage == "flip":
        out.write_bytes(good[:100] + bytes([good[100] ^ 0x20]) + good[101:])
    else:
        entries.checksum_path(out).unlink()
    assert entries.entry_problem(out) is not None
    assert search_msa(MYOGLOBIN, "protein", databases, SETTINGS, out, threads=2)
    assert out.read_bytes() == good and entries.entry_problem(out) is None


def test_a_reader_removes_a_corrupt_entry_and_its_batch_record(tmp_path: Path) -> None:
    sha = "ab" + "0" * 62
    a3m = msa_path(tmp_path, "protein", sha)
    a3m.parent.mkdir(parents=True)
    a3m.write_text(">query\nMKT\n")
    entries.seal(a3m)
    record = entries.batch_record_path(tmp_path, "protein", sha)
    record.parent.mkdir()
    record.write_text(f"{sha}\tMKT\n")
    assert entries.read_entry(a3m) == ">query\nMKT\n"
    a3m.write_text(">query\nMK")  # truncated
    with pytest.raises(entries.StoreEntryError, match=f"store entry {a3m} is corrupt"):
        entries.read_entry(a3m)
    assert not a3m.exists() and not entries.checksum_path(a3m).exists() and not record.exists()
    by_hand = tmp_path / "by_hand.a3m"  # no checksum: accepted as given
    by_hand.write_text(">query\nMKT\n")
    assert entries.read_entry(by_hand) == ">query\nMKT\n"


def test_batch_search_writes_the_single_search_files(
    databases: dict, tmp_path: Path, shared_data: Path
) -> None:
    seqres = (shared_data / "template_db" / "pdb_seqres_shared_structures.fasta").read_text()
    chains = ["".join(r.splitlines()[1:]) for r in seqres.split(">")[1:] if "mol:protein" in r.split()[1]]
    queries = [MYOGLOBIN, *dict.fromkeys(c for c in chains[1:] if len(c) >= 20)][:4]
    single, batch = tmp_path / "single", tmp_path / "batch"
    for query in queries:
        assert search_msa(query, "protein", databases, SETTINGS, single / f"{query[:8]}.a3m", threads=2)
    jobs = [(query, batch / f"{query[:8]}.a3m") for query in queries]
    done = batch / f"{queries[0][:8]}.a3m"  # already in the store: skipped, not overwritten
    done.parent.mkdir()
    done.write_text(">query\nX\n")
    done.with_name(f"{queries[0][:8]}.paired.a3m").write_text(">query\nX\n")
    for path in (done, done.with_name(f"{queries[0][:8]}.paired.a3m")):
        entries.seal(path)
    assert search_msas(jobs, "protein", databases, SETTINGS, threads=2) == [out for _, out in jobs[1:]]
    assert done.read_text() == ">query\nX\n"
    for query in queries[1:]:
        for suffix in (".a3m", ".paired.a3m"):
            name = f"{query[:8]}{suffix}"
            assert (batch / name).read_bytes() == (single / name).read_bytes()
    assert search_msas(jobs, "protein", databases, SETTINGS) == []


def test_rna_search_into_store(databases: dict, tmp_path: Path, shared_data: Path) -> None:
    records = (
        (shared_data / "seqdb" / "rfam_14_4_clustered_rep_seq__subsampled_1000.fasta").read_text().split(">")
    )
    query = "".join(records[5].splitlines()[1:])[:120].upper()
    sha = msa_key(query, "rna", databases, SETTINGS)
    out = msa_path(tmp_path, "rna", sha)
    assert search_msa(query, "rna", databases, SETTINGS, out)
    rows = parse_a3m(out.read_text())
    assert rows[0] == ("query", query.replace("T", "U")) and len(rows) > 5


def test_scripts_run_standalone(databases: dict, tmp_path: Path, repo_root: Path, shared_data: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"databases": databases, "search": SETTINGS}))  # JSON is YAML
    out = tmp_path / "msa" / "protein" / "x.a3m"
    run = [sys.executable, str(repo_root / "scripts" / "search_msa.py"), "--sequence", MYOGLOBIN]
    subprocess.run([*run, "--molecule", "protein", "--config", str(config), "--out", str(out)], check=True)
    batch_out = tmp_path / "batch" / "x.a3m"
    (tmp_path / "jobs.tsv").write_text(f"{MYOGLOBIN}\t{batch_out}\n")
    batch = [
        sys.executable,
        str(repo_root / "scripts" / "search_msa.py"),
        "--batch",
        str(tmp_path / "jobs.tsv"),
    ]
    subprocess.run([*batch, "--molecule", "protein", "--config", str(config)], check=True)
    assert batch_out.read_bytes() == out.read_bytes()
    npz = tmp_path / "templates" / "x.npz"
    cmd = [sys.executable, str(repo_root / "scripts" / "search_templates.py"), "--msa", str(out)]
    cmd += ["--seqres", databases["templates"]["seqres"], "--mmcif-dir", str(shared_data / "mmcif")]
    subprocess.run([*cmd, "--max-date", "2000-01-01", "--out", str(npz)], check=True)
    batch_npz = tmp_path / "templates" / "batch.npz"
    (tmp_path / "templates.tsv").write_text(f"{out}\t{batch_npz}\n")
    batch = [sys.executable, str(repo_root / "scripts" / "search_templates.py"), "--batch"]
    batch += [str(tmp_path / "templates.tsv"), *cmd[4:], "--max-date", "2000-01-01"]
    subprocess.run(batch, check=True)
    with np.load(npz) as single, np.load(batch_npz) as batched:
        assert single.keys() == batched.keys()
        assert all(np.array_equal(single[k], batched[k]) for k in single)
    with np.load(npz) as data:
        assert data["template_restype"].shape[1] == len(MYOGLOBIN)
        # 102m (1998) is an exact copy of the query (AF3 drops it); 8f9h is too recent
        assert not {"102m_A", "8f9h_A"} & set(data["template_names"])
