"""Species pairing of heteromer MSAs (model.search.pairing) on the shared Protenix pairing MSAs."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from model.data.msa import pair_by_species, parse_a3m, species_id
from model.search.pairing import pair_msas


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("UniRef100_UPI00186459A6_118141/\t154\t0.287", "118141"),
        ("UniRef100_A0A0F8BJQ4\t115\t0.246\t1.153E-25", ""),  # no taxon in the header
        ("tr|A0A3A3JCS5|A0A3A3JCS5_SALMO Octaprenyl synthase OS=Salmonella montevideo OX=115981", "SALMO"),
        ("sp|P69905|HBA_HUMAN Hemoglobin subunit alpha OS=Homo sapiens GN=HBA1 PE=1", "HUMAN"),
        # Protenix pairs by these two formats only: a UniRef90 cluster's TaxID names no species
        ("UniRef90_A0A024R161 Guanine nucleotide-binding n=1 Tax=Homo sapiens TaxID=9606 RepID=X", ""),
        ("MGYP000012345 some metagenomic protein", ""),
        ("query", ""),
    ],
)
def test_species_id(header: str, expected: str) -> None:
    assert species_id(header) == expected


def _taxid(header: str) -> str | None:
    """The test's own reading of Protenix pairing headers: >UniRef100_<accession>_<taxid>/..."""
    match = re.match(r"UniRef100_[^_]+_(\d+)/", header)
    return match.group(1) if match else None


def test_heterodimer_rows_share_species(shared_data: Path) -> None:
    # two different proteins of the shared set treated as the chains of one heterodimer
    chains = {
        "A": parse_a3m((shared_data / "msa" / "5zyh_1" / "pairing.a3m").read_text()),
        "B": parse_a3m((shared_data / "msa" / "7zzx_1" / "pairing.a3m").read_text()),
    }
    counts = {name: Counter(_taxid(desc) for desc, _ in rows[1:]) for name, rows in chains.items()}
    common = (set(counts["A"]) & set(counts["B"])) - {None}
    assert common, "the two shared MSAs have species in common"
    expected_rows = 1 + sum(min(counts["A"][t], counts["B"][t]) for t in common)

    paired = pair_msas(chains)
    assert len(paired["A"]) == len(paired["B"]) == expected_rows
    assert paired["A"][0] == chains["A"][0] and paired["B"][0] == chains["B"][0]
    for (desc_a, row_a), (desc_b, row_b) in zip(paired["A"][1:], paired["B"][1:], strict=True):
        assert _taxid(desc_a) == _taxid(desc_b) is not None
        assert (desc_a, row_a) in chains["A"] and (desc_b, row_b) in chains["B"]
    # every species contributes as many rows as the chain with fewer hits of it has
    assert Counter(_taxid(d) for d, _ in paired["A"][1:]) == {
        t: min(counts["A"][t], counts["B"][t]) for t in common
    }


def test_species_in_more_chains_first_then_by_product_of_row_numbers() -> None:
    """Protenix 2.0.0's order: MID (all three chains) first; then ZZZ and AAA (two chains) row by
    row by the product of their row numbers (ZZZ 3*1, AAA 1*5, ZZZ 5*3), not by first appearance
    or name; a chain without the species gets a gap row; rows naming no species never pair."""
    chains = {
        "A": [("q", "AAAA"), ("sp|P1|A1_AAA", "AAAC"), ("tr|P2|A2_MID", "AACC"), ("sp|P3|A3_ZZZ", "ACCC"),
              ("no species", "CCCC"), ("sp|P5|A5_ZZZ", "AAAD")],
        "B": [("q", "CCCC"), ("sp|Q1|B1_ZZZ", "CCCD"), ("sp|Q2|B2_MID", "CCDD"), ("sp|Q3|B3_ZZZ", "CDDD"),
              ("no species", "DDDD"), ("sp|Q5|B5_AAA", "CCCA")],
        "C": [("q", "GGGG"), ("sp|R1|C1_MID", "GGGA"), ("no species", "GGAA")],
    }  # fmt: skip
    paired = pair_msas(chains)
    assert [d for d, _ in paired["A"]] == [
        "q",
        "tr|P2|A2_MID",
        "sp|P3|A3_ZZZ",
        "sp|P1|A1_AAA",
        "sp|P5|A5_ZZZ",
    ]
    assert [d for d, _ in paired["B"]] == [
        "q",
        "sp|Q2|B2_MID",
        "sp|Q1|B1_ZZZ",
        "sp|Q5|B5_AAA",
        "sp|Q3|B3_ZZZ",
    ]
    assert paired["C"][:2] == chains["C"][:2] and [s for _, s in paired["C"][2:]] == ["----"] * 3
    assert len(pair_msas(chains, max_rows=2)["A"]) == 2
    # at most max_per_species rows per species: ZZZ brings one row
    capped = pair_by_species([[species_id(d) for d, _ in rows] for rows in chains.values()], 100, 1)
    assert capped[:, 0].tolist() == [0, 2, 3, 1]


def test_searched_heterodimer_gets_species_paired_msa(
    shared_data: Path, tmp_path: Path, repo_root: Path
) -> None:
    """Search two chains against a UniProt-like database built from the shared pairing hits, pair them
    with the rule script, and check that every paired row of the two chains is one species."""
    import json
    import sys

    from model.search.store import msa_key, msa_path, search_msa

    sys.path.insert(0, str(repo_root / "scripts"))
    from search_pairing import run as pair_target

    queries, records = {}, []
    for chain, entry in (("A", "5zyh_1"), ("B", "7zzx_1")):
        rows = parse_a3m((shared_data / "msa" / entry / "pairing.a3m").read_text())
        queries[chain] = rows[0][1]
        for desc, seq in rows[1:301]:  # 300 hits each: about 40 species in common
            residues = "".join(c for c in seq if c.isalpha()).upper()
            records.append(f">{desc.split()[0]}\n{residues}\n")
    uniprot = tmp_path / "uniprot.fasta"
    uniprot.write_text("".join(records))
    databases = {"protein": {"uniprot": str(uniprot)}}
    settings = {"max_hits": {"uniprot": 50000}}
    manifest = {"target_id": "dimer", "chains": {}}
    for chain, sequence in queries.items():
        out = msa_path(tmp_path / "results", "protein", msa_key(sequence, "protein", databases, settings))
        search_msa(sequence, "protein", databases, settings, out, threads=2)
        manifest["chains"][chain] = str(out)
    (tmp_path / "dimer.json").write_text(json.dumps(manifest))
    pair_target(tmp_path / "dimer.json", tmp_path / "dimer.paired.json", tmp_path / "paired")

    result = json.loads((tmp_path / "dimer.paired.json").read_text())["chains"]
    paired = {chain: parse_a3m(Path(result[chain]["paired"]).read_text()) for chain in "AB"}
    assert len(paired["A"]) == len(paired["B"]) > 10
    assert paired["A"][0][1] == queries["A"] and paired["B"][0][1] == queries["B"]
    for (desc_a, _), (desc_b, _) in zip(paired["A"][1:], paired["B"][1:], strict=True):
        assert _taxid(desc_a) is not None and _taxid(desc_a) == _taxid(desc_b)
