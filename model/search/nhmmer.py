"""RNA MSA search: nhmmer with AlphaFold 3's settings, in process, streamed, on all threads.

AF3 (data/pipeline.py, tools/nhmmer.py) runs `nhmmer -E 1e-3 --rna --F3 1e-5` (`--F3 0.02` for
queries shorter than 50 nt, as RNAcentral recommends) against Rfam, RNAcentral and NT-RNA, keeping
10,000 rows each (query included), then realigns each hit's aligned residues with `hmmalign
--outformat A2M` to `hmmbuild --informat afa --rna` of the query alone: a profile of a one-sequence
alignment (priors), not nhmmer's own single-sequence profile (DNA1 scores), so the rows are
hmmalign's, with unaligned ends as insertions, not nhmmer's local alignments. Both steps run here in
process (`realign_rows`). Both strands are searched. DNA chains and ligands get no MSA (AF3 §2.3).

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
from pyhmmer.hmmer import hmmalign

from model.search.a3m import Row
from model.search.hmmsearch import (
    DEFAULT_BLOCK_RESIDUES,
    as_written,
    build_profiles,
    database_z,
    flushed_denormals,
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


def build_alignment_profile(sequence: str) -> plan7.HMM:
    """hmmbuild --rna of the query read as a one-sequence alignment, as hmmalign reads it back."""
    query = easel.TextSequence(name=b"query", sequence=sequence)
    msa = easel.TextMSA(name=b"query", sequences=[query]).digitize(RNA_ALPHABET)
    hmm = plan7.Builder(RNA_ALPHABET).build_msa(msa, plan7.Background(RNA_ALPHABET))[0]
    return as_written(hmm)


def realign_rows(profile: plan7.HMM, rows: list[Row]) -> list[Row]:
    """AF3's hmmalign step: each row's residues (gaps dropped) aligned to `profile`, as a3m rows over
    its match states (query columns), insertions lower case."""
    if not rows:
        return []
    sequences = [
        easel.TextSequence(name=str(i).encode(), sequence=row.replace("-", "").upper()).digitize(RNA_ALPHABET)
        for i, (_, row) in enumerate(rows)
    ]
    with flushed_denormals():  # hmmalign's arithmetic
        msa = hmmalign(profile, sequences, cpus=1)
    consensus = [mark == "x" for mark in msa.reference]
    aligned = []
    for (name, _), text in zip(rows, msa.alignment, strict=True):
        row = []
        for char, is_match in zip(text, consensus, strict=True):
            if is_match:
                row.append("-" if char in ".-" else char.upper())
            elif char not in ".-":
                row.append(char.lower())
        aligned.append((name, "".join(row)))
    return aligned


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
    alignment_profiles = build_profiles(build_alignment_profile, sequences, threads)
    z_value = settings.z_value if settings.z_value is not None else database_z(database, long_targets=True)
    options = [dict(E=settings.e_value, F3=settings.filter_f3(len(seq)), Z=z_value) for seq in sequences]
    found = search_database_many(
        hmms, database, options, long_targets=True, threads=threads, block_residues=block_residues
    )
    results = []
    for sequence, profile, hits in zip(sequences, alignment_profiles, found, strict=True):
        log.info("nhmmer %s: %d included hits", Path(database).name, len(hits.included))
        rows = [("query", sequence)]
        rows += realign_rows(profile, hits_to_rows(hits, len(sequence), max_rows=settings.max_hits - 1))
        names = [hit.name for hit in hits.included]
        results.append(SearchResult(rows=rows, hit_names=names, n_searched=int(hits.searched_sequences)))
    return results
