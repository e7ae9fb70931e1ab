"""Cross-chain MSA pairing by species for heteromers, written out as row-aligned a3m files.

The featurizer pairs the chains' paired hits itself (`model.data.msa.pair_by_species`, AF3 supplement
§2.3 in Protenix 2.0.0's order, reading species with `model.data.msa.species_id`); this module writes
the same pairing as one a3m per chain (row i of every chain is one species, `-` rows where a chain
lacks it) for inspection (scripts/search_pairing.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from model.data.constants import MAX_MSA_ROWS
from model.data.msa import pair_by_species, parse_a3m, species_id
from model.search.a3m import Row, match_columns


def pair_msas(chains: Mapping[str, Sequence[Row]], max_rows: int = MAX_MSA_ROWS // 2) -> dict[str, list[Row]]:
    """Paired a3m rows per chain: equal length, query first, row i of every chain from one species.

    `chains` maps chain name -> that chain's paired-search rows (query first). Rows a chain lacks
    are all gaps (`-` over its query). `max_rows` caps the rows, query included.
    """
    if empty := sorted(name for name, rows in chains.items() if not rows):
        raise ValueError(f"pairing: chains {empty} have no rows (not even the query)")
    names = list(chains)
    index = pair_by_species([[species_id(desc) for desc, _ in chains[name]] for name in names], max_rows)
    paired = {}
    for name, rows in zip(names, index.T, strict=True):
        gap_row = ("gap", "-" * len(match_columns(chains[name][0][1])))
        paired[name] = [chains[name][i] if i >= 0 else gap_row for i in rows]
    return paired


def paired_rows(chains: dict[str, Path]) -> dict[str, list[tuple[str, str]]]:
    """Species-paired rows per chain (row i of every chain is one species) from the `.paired.a3m`
    beside each chain's searched a3m; {} when fewer than two chains have UniProt hits."""
    from model.search.store import paired_msa_path  # the store needs pyhmmer; pairing alone does not

    rows = {}
    for chain, a3m in chains.items():
        paired = paired_msa_path(a3m)
        if paired.is_file() and len(records := parse_a3m(paired.read_text())) > 1:
            rows[chain] = records
    return pair_msas(rows) if len(rows) >= 2 else {}
