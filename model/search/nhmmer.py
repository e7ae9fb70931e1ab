"""RNA MSA search: nhmmer with AlphaFold 3's settings, in process, streamed, on all threads.

AF3 (data/pipeline.py, tools/nhmmer.py) runs `nhmmer -E 1e-3 --rna --F3 1e-5` (`--F3 0.02` for
queries shorter than 50 nt, as RNAcentral recommends) against Rfam, RNAcentral and NT-RNA, keeping
10,000 rows each, then realigns the hits to the query's profile with hmmalign so every row spans the
query's columns. Here the profile *is* the query's, so each hit's alignment to it already is that
row (hmm_from..hmm_to of the query's columns, insertions lower case). Both strands are searched.
DNA chains and ligands get no MSA (AF3 §2.3).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pyhmmer import easel, plan7

from model.search.hmmsearch import DEFAULT_BLOCK_RESIDUES, database_z, hits_to_rows, search_database
from model.search.jackhmmer import SearchResult

log = logging.getLogger(__name__)

RNA_ALPHABET = easel.Alphabet.rna()
SHORT_QUERY = 50  # nt; below this AF3 loosens the Forward filter


@dataclass(frozen=True)
class NhmmerSettings:
    """nhmmer options (AF3 defaults). `z_value` is in megabases; None = counted from the database."""

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


def search_rna(
    sequence: str,
    database: str | Path,
    settings: NhmmerSettings = NhmmerSettings(),
    threads: int = 1,
    block_residues: int = DEFAULT_BLOCK_RESIDUES,
) -> SearchResult:
    """nhmmer the RNA `sequence` against the FASTA `database` (T read as U); a3m rows, hit names."""
    sequence = sequence.upper().replace("T", "U")
    try:
        query = easel.TextSequence(name=b"query", sequence=sequence).digitize(RNA_ALPHABET)
    except ValueError as err:
        raise ValueError(f"query: not an RNA sequence ({err})") from err
    background = plan7.Background(RNA_ALPHABET)
    hmm, _, _ = plan7.Builder(RNA_ALPHABET).build(query, background)
    options = dict(E=settings.e_value, F3=settings.filter_f3(len(sequence)))
    options["Z"] = (
        settings.z_value if settings.z_value is not None else database_z(database, long_targets=True)
    )
    hits = search_database(
        hmm, database, options, long_targets=True, threads=threads, block_residues=block_residues
    )
    log.info("nhmmer %s: %d included hits", Path(database).name, len(hits.included))
    rows = [("query", sequence)]
    rows += hits_to_rows(hits, len(sequence), max_rows=settings.max_hits - 1)
    return SearchResult(
        rows=rows, hit_names=[hit.name for hit in hits.included], n_searched=int(hits.searched_sequences)
    )
