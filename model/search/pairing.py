"""Cross-chain MSA pairing by species for heteromers (AF3 supplement §2.3, after AF-Multimer).

Each chain's paired search (UniProt hits, `{sha}.paired.a3m`) is grouped by species; inside a species
rows are ranked by identity to the query; the i-th row of a species in every chain that has it goes
into one paired row (chains without it get a gap row there). Only species found in at least two
chains are paired; rows covering more chains come first, then species in order of their best hit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from model.data.msa import parse_a3m
from model.search.a3m import Row, match_columns

MAX_PAIRED_ROWS = 8191  # AF3: paired rows take at most half of the 16,384-row MSA

_TAXID = re.compile(r"(?:\bOX=|\bTaxID=|\btaxid=)(\d+)")
_ORGANISM = re.compile(r"\bOS=(.+?)(?:\s+[A-Z]{2}=|$)")
_UNIREF_SUFFIX = re.compile(r"^UniRef\d+_[A-Za-z0-9]+_(\d+)/?")  # Protenix: UniRef100_<acc>_<taxid>/
_UNIPROT_MNEMONIC = re.compile(r"^(?:sp|tr)\|[A-Za-z0-9]+\|[A-Za-z0-9]+_([A-Za-z0-9]{1,5})\b")


def species_id(description: str) -> str | None:
    """Species of a hit from its a3m header: NCBI taxon id (`OX=`, `TaxID=`, Protenix `_<taxid>/`
    suffix), else the organism name (`OS=`), else the UniProt entry-name mnemonic; None if absent."""
    if match := _TAXID.search(description):
        return f"taxid:{match.group(1)}"
    if match := _UNIREF_SUFFIX.match(description):
        return f"taxid:{match.group(1)}"
    if match := _ORGANISM.search(description):
        return f"os:{match.group(1).strip()}"
    if match := _UNIPROT_MNEMONIC.match(description):
        return f"mnemonic:{match.group(1)}"
    return None


def identity_to_query(query: str, row: str) -> float:
    """Fraction of query columns where the row has the query's residue."""
    aligned = match_columns(row)
    return sum(a == b for a, b in zip(query, aligned, strict=True)) / max(1, len(query))


def _by_species(rows: Sequence[Row]) -> dict[str, list[Row]]:
    """Hit rows (query excluded) grouped by species, best identity first, in first-seen order."""
    query = rows[0][1]
    groups: dict[str, list[Row]] = {}
    for desc, seq in rows[1:]:
        species = species_id(desc)
        if species is not None:
            groups.setdefault(species, []).append((desc, seq))
    for species, members in groups.items():
        # stable sort: equal identities keep the search's E-value order
        groups[species] = sorted(members, key=lambda r: -identity_to_query(query, r[1]))
    return groups


def pair_msas(chains: Mapping[str, Sequence[Row]], max_rows: int = MAX_PAIRED_ROWS) -> dict[str, list[Row]]:
    """Paired a3m rows per chain: equal length, query first, row i of every chain from one species.

    `chains` maps chain name -> that chain's paired-search rows (query first). Rows a chain lacks
    are all gaps (`-` over its query). `max_rows` caps the rows, query included.
    """
    groups = {name: _by_species(rows) for name, rows in chains.items() if rows}
    if len(groups) != len(chains):
        missing = sorted(set(chains) - set(groups))
        raise ValueError(f"pairing: chains {missing} have no rows (not even the query)")
    order: dict[str, int] = {}
    for per_chain in groups.values():
        for species in per_chain:
            order.setdefault(species, len(order))
    candidates = []
    for species, rank in order.items():
        present = [name for name in chains if species in groups[name]]
        if len(present) < 2:
            continue
        depth = min(len(groups[name][species]) for name in present)
        candidates.append((-len(present), rank, species, present, depth))
    candidates.sort()
    paired: dict[str, list[Row]] = {name: [rows[0]] for name, rows in chains.items()}
    gaps = {name: "-" * len(rows[0][1]) for name, rows in chains.items()}
    for _, _, species, present, depth in candidates:
        for i in range(depth):
            if len(paired[next(iter(chains))]) >= max_rows:
                return paired
            for name in chains:
                if name in present:
                    paired[name].append(groups[name][species][i])
                else:
                    paired[name].append((f"gap {species}", gaps[name]))
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
