"""jackhmmer/nhmmer in process (model.search) against HMMER's own binaries on the shared databases."""

from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pyhmmer import easel, plan7

from model.search import hmmsearch
from model.search.a3m import alignment_to_a3m, merge_rows
from model.search.databases import split_fasta
from model.search.hmmsearch import _byte_range_pipe, flushed_denormals, record_ranges, search_database
from model.search.jackhmmer import (
    JackhmmerSettings,
    digital_query,
    pipeline_options,
    search_protein,
    search_proteins,
)
from model.search.nhmmer import NhmmerSettings, search_rna, search_rnas

MYOGLOBIN = (
    "MVLSEGEWQLVLHVWAKVEADVAGHGQDILIRLFKSHPETLEKFDRFKHLKTEAEMKASEDLKKAGVTVLTALGAILKKKGHHEAELKPLAQSHATKHK"
    "IPIKYLEFISEAIIHVLHSRHPGNFGADAQGAMNKALELFRKDIAAKYKELGYQG"
)


def _need(binary: str) -> None:
    if shutil.which(binary) is None:
        pytest.fail(f"HMMER's {binary} is not installed (run `make sysdeps`: Debian package hmmer)")


def _stockholm_to_a3m(path: Path) -> dict[str, str]:
    """Independent reading of the binary's -A output: RF 'x' columns are query columns."""
    rows: dict[str, str] = {}
    reference = ""
    for line in path.read_text().splitlines():
        if line.startswith("#=GC RF"):
            reference += line.split()[-1]
        elif line.strip() and not line.startswith(("#", "//")):
            name, seq = line.split()
            rows[name] = rows.get(name, "") + seq
    out = {}
    for name, seq in rows.items():
        chars = []
        for c, ref in zip(seq, reference, strict=True):
            if ref == "x":
                chars.append("-" if c in ".-" else c.upper())
            elif c not in ".-":
                chars.append(c.lower())
        out[name] = "".join(chars)
    return out


@pytest.fixture()
def parallel_small_files(monkeypatch):
    """Let these small test databases be cut into byte ranges searched by several workers."""
    monkeypatch.setattr(hmmsearch, "MIN_PARALLEL_BYTES", 0)


def test_jackhmmer_same_hits_and_rows_as_binary(
    shared_data: Path, tmp_path: Path, parallel_small_files
) -> None:
    _need("jackhmmer")
    db = shared_data / "seqdb" / "msa_hits_for_shared_queries.fasta"
    query = tmp_path / "query.fa"
    query.write_text(f">query\n{MYOGLOBIN}\n")
    sto, tbl = tmp_path / "out.sto", tmp_path / "out.tbl"
    settings = JackhmmerSettings()
    cmd = ["jackhmmer", "-o", "/dev/null", "-A", str(sto), "--tblout", str(tbl), "--noali", "--cpu", "2"]
    subprocess.run([*cmd, *settings.binary_flags(), str(query), str(db)], check=True)
    binary_hits = {line.split()[0] for line in tbl.read_text().splitlines() if not line.startswith("#")}
    binary_rows = _stockholm_to_a3m(sto)
    binary_rows.pop("query")
    assert len(binary_hits) > 50  # myoglobin homologues are in this file

    # two workers and small blocks: several byte ranges and blocks merged into one result
    result = search_protein(MYOGLOBIN, db, settings, threads=2, block_residues=5_000)
    assert set(result.hit_names) == binary_hits
    assert result.n_searched == sum(1 for line in db.read_text().splitlines() if line.startswith(">"))
    assert result.rows[0] == ("query", MYOGLOBIN)
    ours = {desc.split()[0]: row for desc, row in result.rows[1:]}
    assert ours == binary_rows
    assert all(
        len(row.replace("-", "")) > 0 and sum(not c.islower() for c in row) == len(MYOGLOBIN)
        for row in ours.values()
    )


def test_hit_cap_keeps_best_rows(shared_data: Path) -> None:
    db = shared_data / "seqdb" / "msa_hits_for_shared_queries.fasta"
    full = search_protein(MYOGLOBIN, db)
    capped = search_protein(MYOGLOBIN, db, JackhmmerSettings(max_hits=11))
    assert len(capped.rows) == 11
    assert capped.rows == full.rows[:11]


def test_shards_with_fixed_z_equal_whole_database(shared_data: Path, tmp_path: Path) -> None:
    db = shared_data / "seqdb" / "msa_hits_for_shared_queries.fasta"
    shards = split_fasta(db, 3, tmp_path)
    assert "".join(p.read_text() for p in shards) == db.read_text()
    options = pipeline_options(JackhmmerSettings(), db)  # Z = whole database
    background = plan7.Background(easel.Alphabet.amino())
    hmm, _, _ = plan7.Builder(easel.Alphabet.amino()).build(digital_query(MYOGLOBIN), background)
    whole = search_database(hmm, db, options)
    parts = [search_database(hmm, shard, options) for shard in shards]
    merged = parts[0].merge(*parts[1:])
    assert [(h.name, round(h.evalue, 12)) for h in merged.included] == [
        (h.name, round(h.evalue, 12)) for h in whole.included
    ]


def test_nhmmer_same_hits_as_binary(shared_data: Path, tmp_path: Path, parallel_small_files) -> None:
    _need("nhmmer")
    db = shared_data / "seqdb" / "rfam_14_4_clustered_rep_seq__subsampled_1000.fasta"
    # a 120-nt stretch of one Rfam sequence: it has relatives in the file
    records = db.read_text().split(">")[1:]
    query = "".join(records[4].splitlines()[1:])[:120].upper().replace("T", "U")
    fasta, tbl = tmp_path / "q.fa", tmp_path / "out.tbl"
    fasta.write_text(f">query\n{query}\n")
    settings = NhmmerSettings()
    cmd = [
        "nhmmer",
        "-o",
        "/dev/null",
        "--tblout",
        str(tbl),
        "--cpu",
        "2",
        *settings.binary_flags(len(query)),
    ]
    subprocess.run([*cmd, str(fasta), str(db)], check=True)
    binary_hits = [line.split()[0] for line in tbl.read_text().splitlines() if not line.startswith("#")]
    assert len(binary_hits) >= 5

    result = search_rna(query, db, settings, threads=2, block_residues=50_000)
    assert sorted(result.hit_names) == sorted(binary_hits)
    assert result.rows[0] == ("query", query)
    for _, row in result.rows[1:]:
        assert sum(not c.islower() for c in row) == len(query)
        assert set(row.upper()) <= set("ACGUN-")


def test_alignment_to_a3m_insertions_and_deletions() -> None:
    # model positions 2..6 of a 7-column query; target has an insertion after position 3, a deletion at 5
    row = alignment_to_a3m(2, 6, 7, "ab.cde", "ABxC-E")
    assert row == "-ABxC-E-"
    with pytest.raises(ValueError, match="differ"):
        alignment_to_a3m(1, 2, 2, "ab", "A")


def test_merge_rows_deduplicates_on_query_columns_and_caps() -> None:
    query = ("query", "ACDE")
    a = [("h1", "ACDE"), ("h2", "AC-E"), ("h3", "AkC-E")]  # h1 = query, h3 = h2 plus an insertion
    b = [("h4", "GGGG"), ("h5", "AC-E")]
    merged = merge_rows(query, a, b)
    assert [d for d, _ in merged] == ["query", "h2", "h4"]
    assert [d for d, _ in merge_rows(query, a, b, deduplicate=False, max_rows=3)] == ["query", "h1", "h2"]


def test_record_ranges_cover_the_file_at_record_starts(shared_data: Path) -> None:
    db = shared_data / "seqdb" / "msa_hits_for_shared_queries.fasta"
    data = db.read_bytes()
    ranges = record_ranges(db, 7)
    assert len(ranges) == 7 and ranges[0][0] == 0 and ranges[-1][1] == len(data)
    assert all(a[1] == b[0] for a, b in zip(ranges[:-1], ranges[1:], strict=True))
    assert all(data[start : start + 1] == b">" for start, _ in ranges)


@pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64"), reason="HMMER's SSE build and its control register"
)
def test_denormals_flushed_only_inside_the_search_context() -> None:
    # HMMER's binaries flush subnormal floats to zero; searches do the same, and the process's own
    # arithmetic (numpy, torch) is back to IEEE subnormals afterwards, even after an error.
    tiny, scale = np.float32(1e-38), np.float32(1e-3)
    assert tiny * scale > 0  # a subnormal result
    with flushed_denormals():
        assert tiny * scale == 0
        assert np.float32(1e-41) + np.float32(0) == 0  # a subnormal input reads as zero
    assert tiny * scale > 0
    with pytest.raises(RuntimeError), flushed_denormals():
        raise RuntimeError("search failed")
    assert tiny * scale > 0


def _shared_chains(shared_data: Path, molecule: str, count: int) -> list[str]:
    seqres = (shared_data / "template_db" / "pdb_seqres_shared_structures.fasta").read_text()
    chains = []
    for record in seqres.split(">")[1:]:
        header, *lines = record.splitlines()
        sequence = "".join(lines)
        if f"mol:{molecule}" in header and len(sequence) >= 20 and sequence not in chains:
            chains.append(sequence)
    return chains[:count]


@pytest.mark.parametrize("threads", [1, 2])
def test_many_queries_in_one_pass_equal_single_searches(
    shared_data: Path, threads: int, parallel_small_files
) -> None:
    db = shared_data / "seqdb" / "msa_hits_for_shared_queries.fasta"
    queries = [MYOGLOBIN, *_shared_chains(shared_data, "protein", 3)]
    batch = search_proteins(queries, db, threads=threads, block_residues=20_000)
    singles = [search_protein(query, db) for query in queries]
    assert [r.rows for r in batch] == [r.rows for r in singles]
    assert [r.hit_names for r in batch] == [r.hit_names for r in singles]
    assert len(batch[0].hit_names) > 50 and len({len(r.rows) for r in batch}) > 1  # distinct queries


def test_many_rna_queries_in_one_pass_equal_single_searches(shared_data: Path, parallel_small_files) -> None:
    db = shared_data / "seqdb" / "rfam_14_4_clustered_rep_seq__subsampled_1000.fasta"
    records = db.read_text().split(">")[1:]
    queries = ["".join(records[i].splitlines()[1:])[:length] for i, length in ((4, 120), (9, 40))]
    batch = search_rnas(queries, db, threads=2, block_residues=50_000)
    singles = [search_rna(query, db) for query in queries]
    assert [r.rows for r in batch] == [r.rows for r in singles]
    assert len(batch[0].rows) > 1


def test_byte_range_pipe_carries_exactly_the_range(shared_data: Path) -> None:
    db = shared_data / "seqdb" / "msa_hits_for_shared_queries.fasta"
    data = db.read_bytes()
    start, end = record_ranges(db, 3)[1]
    with _byte_range_pipe(db, start, end) as name, open(name, "rb") as pipe:
        assert pipe.read() == data[start:end]
    # a reader that fails mid-file (pyhmmer raising) must not leave dd blocked on a full pipe, and
    # its error is the one raised; a reader that quietly stops early has lost data: an error too.
    # This file is larger than the pipe's 1 MiB.
    big = shared_data / "seqdb" / "nt_rna_2023_02_23_clust_seq_id_90_cov_80_rep_seq__subsampled_1000.fasta"
    with pytest.raises(ValueError, match="bad record"), _byte_range_pipe(big, 0, big.stat().st_size) as name:
        with open(name, "rb") as pipe:
            pipe.read(10)
            raise ValueError("bad record")
    with pytest.raises(OSError, match="dd exited"), _byte_range_pipe(big, 0, big.stat().st_size) as name:
        with open(name, "rb") as pipe:
            assert pipe.read(10) == big.read_bytes()[:10]
