"""Protein MSA search: jackhmmer with AlphaFold 3's settings, in process, streamed, on all threads.

AF3 (supplement §2.3; data/pipeline.py) runs `jackhmmer -N 1 -E 1e-4 --incE 1e-4 --F1 5e-4 --F2 5e-5
--F3 5e-7` against UniRef90 (10,000 rows kept), MGnify (5,000), small BFD (5,000) and UniProt
(50,000, for pairing). With one iteration jackhmmer is: build a profile from the query alone
(BLOSUM62, popen 0.02, pextend 0.4, as pyhmmer's single-sequence Builder does), search it, keep the
included domains of the included hits. Only AF3's single iteration is offered: every a3m row is then
a pairwise alignment to the query's own profile, so profile position k is query column k.

Every other option is the binary's default, which pyhmmer's Pipeline shares (domE 10, bias filter,
null2, seed 42, Z = sequences searched, domZ = sequences reported) except the domain inclusion
threshold: jackhmmer's --incdomE is 1e-3, pyhmmer's (hmmsearch's) 0.01, so it is set here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pyhmmer import easel, plan7

from model.search.a3m import Row
from model.search.hmmsearch import (
    DEFAULT_BLOCK_RESIDUES,
    build_profiles,
    database_z,
    hits_to_rows,
    search_database_many,
)

log = logging.getLogger(__name__)

PROTEIN_ALPHABET = easel.Alphabet.amino()


@dataclass(frozen=True)
class JackhmmerSettings:
    """jackhmmer options (AF3 defaults). `z_value`/`dom_z`: None = counted from the database."""

    e_value: float = 1e-4
    inc_e: float = 1e-4
    f1: float = 5e-4
    f2: float = 5e-5
    f3: float = 5e-7
    inc_dom_e: float = 1e-3  # jackhmmer's default --incdomE, which AF3 keeps
    z_value: int | None = None
    dom_z: int | None = None
    max_hits: int = 10_000  # rows kept, query included

    def binary_flags(self) -> list[str]:
        """The flags AF3 passes to HMMER's `jackhmmer` binary for these settings (tests and bench
        compare against it); `inc_dom_e` is the binary's default, not a flag."""
        flags = ["-N", "1", "-E", str(self.e_value), "--incE", str(self.inc_e)]
        flags += ["--F1", str(self.f1), "--F2", str(self.f2), "--F3", str(self.f3)]
        if self.z_value is not None:
            flags += ["-Z", str(self.z_value)]
        if self.dom_z is not None:
            flags += ["--domZ", str(self.dom_z)]
        return flags


@dataclass
class SearchResult:
    """Rows of the a3m (query first) and the names of the included target sequences."""

    rows: list[Row]
    hit_names: list[str]
    n_searched: int


def pipeline_options(settings: JackhmmerSettings, database: str | Path) -> dict:
    """pyhmmer Pipeline keywords for `settings`; Z defaults to the database's sequence count."""
    options = dict(E=settings.e_value, incE=settings.inc_e, incdomE=settings.inc_dom_e)
    options.update(F1=settings.f1, F2=settings.f2, F3=settings.f3)
    options["Z"] = settings.z_value if settings.z_value is not None else database_z(database)
    if settings.dom_z is not None:
        options["domZ"] = settings.dom_z
    return options


def digital_query(sequence: str, name: str = "query") -> easel.DigitalSequence:
    """The query as a digital protein sequence; raises ValueError naming the bad residue."""
    try:
        return easel.TextSequence(name=name.encode(), sequence=sequence.upper()).digitize(PROTEIN_ALPHABET)
    except ValueError as err:
        raise ValueError(f"query {name}: not a protein sequence ({err})") from err


def build_query_profile(sequence: str) -> plan7.HMM:
    """jackhmmer's first-iteration profile: the query alone (BLOSUM62), calibrated."""
    background = plan7.Background(PROTEIN_ALPHABET)
    return plan7.Builder(PROTEIN_ALPHABET).build(digital_query(sequence), background)[0]


def search_protein(
    sequence: str,
    database: str | Path,
    settings: JackhmmerSettings = JackhmmerSettings(),
    threads: int = 1,
    block_residues: int = DEFAULT_BLOCK_RESIDUES,
) -> SearchResult:
    """jackhmmer `sequence` against the FASTA `database`; returns a3m rows and included hit names."""
    return search_proteins([sequence], database, settings, threads, block_residues)[0]


def search_proteins(
    sequences: list[str],
    database: str | Path,
    settings: JackhmmerSettings = JackhmmerSettings(),
    threads: int = 1,
    block_residues: int = DEFAULT_BLOCK_RESIDUES,
) -> list[SearchResult]:
    """jackhmmer every sequence against `database` in one pass over it; each result equals
    `search_protein` of that sequence alone."""
    hmms = build_profiles(build_query_profile, list(sequences), threads)
    options = pipeline_options(settings, database)
    found = search_database_many(
        hmms, database, [options] * len(hmms), threads=threads, block_residues=block_residues
    )
    results = []
    for sequence, hits in zip(sequences, found, strict=True):
        log.info("jackhmmer %s: %d included hits", Path(database).name, len(hits.included))
        rows = [("query", sequence.upper())]
        rows += hits_to_rows(hits, len(sequence), max_rows=settings.max_hits - 1)
        names = [hit.name for hit in hits.included]
        results.append(SearchResult(rows=rows, hit_names=names, n_searched=int(hits.searched_sequences)))
    return results
