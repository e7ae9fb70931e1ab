"""Database preparation, checked downloads (offline, file:// URLs) and gzip databases."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from model.search.databases import DatabaseError, download, prepare_database, sidecar_path, split_fasta
from model.search.jackhmmer import search_protein

MYOGLOBIN = (
    "MVLSEGEWQLVLHVWAKVEADVAGHGQDILIRLFKSHPETLEKFDRFKHLKTEAEMKASEDLKKAGVTVLTALGAILKKKGHHEAELKPLAQSHATKHK"
    "IPIKYLEFISEAIIHVLHSRHPGNFGADAQGAMNKALELFRKDIAAKYKELGYQG"
)


@pytest.fixture()
def hits_fasta(shared_data: Path, tmp_path: Path) -> Path:
    path = tmp_path / "hits.fasta"
    shutil.copy(shared_data / "seqdb" / "msa_hits_for_shared_queries.fasta", path)
    return path


def test_prepare_counts_and_sidecar(hits_fasta: Path) -> None:
    lines = hits_fasta.read_text().splitlines()
    stats = prepare_database(hits_fasta)
    assert stats.n_sequences == sum(line.startswith(">") for line in lines)
    assert stats.n_residues == sum(len(line) for line in lines if not line.startswith(">"))
    assert stats.sha256 == hashlib.sha256(hits_fasta.read_bytes()).hexdigest()
    assert not sidecar_path(hits_fasta).exists()  # only written when asked
    prepare_database(hits_fasta, write_sidecar=True)
    record = json.loads(sidecar_path(hits_fasta).read_text())
    assert record["n_sequences"] == stats.n_sequences
    # a changed file invalidates the sidecar
    with open(hits_fasta, "a") as handle:
        handle.write(">extra\nACDEFGHIK\n")
    assert prepare_database(hits_fasta).n_sequences == stats.n_sequences + 1


def test_download_file_url_checks_sha256(hits_fasta: Path, tmp_path: Path) -> None:
    digest = hashlib.sha256(hits_fasta.read_bytes()).hexdigest()
    dest = tmp_path / "db" / "uniref90.fasta"
    assert download(hits_fasta.as_uri(), dest, digest) == dest
    assert dest.read_bytes() == hits_fasta.read_bytes()
    bad = tmp_path / "db" / "bad.fasta"
    with pytest.raises(DatabaseError, match="sha256 mismatch"):
        download(hits_fasta.as_uri(), bad, "0" * 64)
    assert not bad.exists() and not list(bad.parent.glob(".*part"))
    # a .gz URL to a plain destination is decompressed; the checksum is the file written
    packed = tmp_path / "hits.fasta.gz"
    packed.write_bytes(gzip.compress(hits_fasta.read_bytes()))
    plain = tmp_path / "db" / "from_gz.fasta"
    download(packed.as_uri(), plain, digest)
    assert plain.read_bytes() == hits_fasta.read_bytes()


def test_gzipped_database_gives_same_hits(hits_fasta: Path, tmp_path: Path) -> None:
    packed = tmp_path / "hits.fasta.gz"
    packed.write_bytes(gzip.compress(hits_fasta.read_bytes()))
    plain = search_protein(MYOGLOBIN, hits_fasta, threads=2)
    assert search_protein(MYOGLOBIN, packed, threads=2).rows == plain.rows


def test_split_fasta_balances_residues(hits_fasta: Path, tmp_path: Path) -> None:
    shards = split_fasta(hits_fasta, 4, tmp_path / "shards")
    assert [p.name for p in shards] == [f"hits.fasta-{i:05d}-of-00004" for i in range(4)]
    assert "".join(p.read_text() for p in shards) == hits_fasta.read_text()
    sizes = [prepare_database(p).n_residues for p in shards]
    assert max(sizes) < 2 * min(sizes)
