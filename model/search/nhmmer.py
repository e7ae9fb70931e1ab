"""RNA MSA search: nhmmer with AlphaFold 3's settings, in process, streamed, on all threads.

AF3 (data/pipeline.py, tools/nhmmer.py) runs `nhmmer -E 1e-3 --rna --F3 1e-5` (`--F3 0.02` for
queries shorter than 50 nt, as RNAcentral recommends) against Rfam, RNAcentral and NT-RNA, keeping
10,000 rows each, then realigns the hits to the query's profile with hmmalign so every row spans the
query's columns. Here the profile *is* the query's, so each hit's alignment to it already is that
row (hmm_from..hmm_to of the query's columns, insertions lower case). Both strands are searched.
DNA chains and ligands get no MSA (AF3 §2.3).

Every other option is the binary's default, which pyhmmer's LongTargetsPipeline and Builder share
(incE 0.01, F1 0.02, F2 3e-3, bias filter, null2, popen 0.03125, pextend 0.75, DNA1 scores). A hit
is included only if reported (E <= 1e-3), with its one domain. Z is in megabases of one strand, as
nhmmer's -Z: both the binary and pyhmmer double it when both strands are searched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pyhmmer import easel, plan7

from model.search.hmmsearch import (
    DEFAULT_BLOCK_RESIDUES,
    build_profiles,
    database_z,
    hits_to_rows,
    search_database_many,
)
from model.search.jackhmmer import SearchResult

log = logging.getLogger(__name__)

RNA_ALPHABET = easel.Alphabet.rna()
SHORT_QUERY = 50  # nt; below this AF3 loosens the Forward filter


@dataclass(frozen=True)
class NhmmerSettings:
    """nhmmer options (AF3 defaults). `z_value`: megabases of one strand; None = counted from the
    database."""

    e_value: float = 1e-3
    f3: float = 1e-5
    f3_short: float = 0.02
    z_value: float | None = None
    max_hits: int = 10_000  # rows kept, query included

    def filter_f3(self, query_length: int) -> float:
        return self.f3_short if query_length < SHORT_QUERY else self.f3

    def binary_flags(self, query_length: int) -> list[str]:
        """The same options for HMMER's `nhmmer` binary."""
        flags = ["--rna", "-E", str(self.e_value), "--F3", str(self.filter_f3(query_length))]
        if self.z_value is not None:
            flags += ["-Z", str(self.z_value)]
        return flags


def build_query_profile(sequence: str) -> plan7.HMM:
    """nhmmer's profile of one RNA query (U, not T), calibrated."""
    try:
        query = easel.TextSequence(name=b"query", sequence=sequence).digitize(RNA_ALPHABET)
    except ValueError as err:
        raise ValueError(f"query: not an RNA sequence ({err})") from err
    return plan7.Builder(RNA_ALPHABET).build(query, plan7.Background(RNA_ALPHABET))[0]


def search_rna(
    sequence: str,
    database: str | Path,
    settings: NhmmerSettings = NhmmerSettings(),
    threads: int = 1,
    block_residues: int = DEFAULT_BLOCK_RESIDUES,
) -> SearchResult:
    """nhmmer the RNA `sequence` against the FASTA `database` (T read as U); a3m rows, hit names."""
    return search_rnas([sequence], database, settings, threads, block_residues)[0]


def search_rnas(
    sequences: list[str],
    database: str | Path,
    settings: NhmmerSettings = NhmmerSettings(),
    threads: int = 1,
    block_residues: int = DEFAULT_BLOCK_RESIDUES,
) -> list[SearchResult]:
    """nhmmer every sequence against `database` in one pass over it; each result equals
    `search_rna` of that sequence alone."""
    sequences = [sequence.upper().replace("T", "U") for sequence in sequences]
    hmms = build_profiles(build_query_profile, sequences, threads)
    z_value = settings.z_value if settings.z_value is not None else database_z(database, long_targets=True)
    options = [dict(E=settings.e_value, F3=settings.filter_f3(len(seq)), Z=z_value) for seq in sequences]
    found = search_database_many(
        hmms, database, options, long_targets=True, threads=threads, block_residues=block_residues
    )
    results = []
    for sequence, hits in zip(sequences, found, strict=True):
        log.info("nhmmer %s: %d included hits", Path(database).name, len(hits.included))
        rows = [("query", sequence)]
        rows += hits_to_rows(hits, len(sequence), max_rows=settings.max_hits - 1)
        names = [hit.name for hit in hits.included]
        results.append(SearchResult(rows=rows, hit_names=names, n_searched=int(hits.searched_sequences)))
    return results
