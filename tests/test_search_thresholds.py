"""The in-process searches against HMMER's binaries, run with AF3's flags, on databases whose hits lie
at the binaries' thresholds: tests/data/search_thresholds (make_databases.py there built them).

Rows and hit sets must be equal, not merely close: a domain just past jackhmmer's --incdomE, an nhmmer
hit just under -E, a template domain near E = 100 each decide whether an a3m row exists.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from test_search_jackhmmer import MYOGLOBIN, _need, _stockholm_to_a3m

from model.search.jackhmmer import JackhmmerSettings, search_protein
from model.search.nhmmer import NhmmerSettings, search_rna
from model.search.templates import TemplateSettings, search_hits

DATA = Path(__file__).parent / "data" / "search_thresholds"
# The 120-nt Rfam stretch whose mutated copies make the derived rows of rna.fasta.
RNA_QUERY = (
    "GUAAGGGCAAUCUGGCUACAACAUCUGUCACCUCAUUGAUCACCACGGUUGAUCUGGGUA"
    "UCUGGCCUGCUAGGCAGGUGUCCCCUUCCUCCCUUACCUGUGUGCCCCUCCUGAAGCUGC"
)


def _table(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines() if not line.startswith("#")]


def _columns(row: str) -> list[tuple[str, str]]:
    """(match character, insertions after it) per query column of an a3m row."""
    columns: list[tuple[str, str]] = []
    for c in row:
        if c.islower():
            columns[-1] = (columns[-1][0], columns[-1][1] + c)
        else:
            columns.append((c, ""))
    return columns


def test_jackhmmer_rows_equal_the_binary_at_the_domain_threshold(tmp_path: Path) -> None:
    _need("jackhmmer")
    db = DATA / "protein.fasta"
    query = tmp_path / "query.fa"
    query.write_text(f">query\n{MYOGLOBIN}\n")
    sto, tbl, domains = tmp_path / "out.sto", tmp_path / "out.tbl", tmp_path / "out.domtbl"
    settings = JackhmmerSettings()
    cmd = ["jackhmmer", "-o", "/dev/null", "-A", str(sto), "--tblout", str(tbl), "--domtblout", str(domains)]
    subprocess.run([*cmd, "--cpu", "1", *settings.binary_flags(), str(query), str(db)], check=True)
    binary_rows = _stockholm_to_a3m(sto)
    binary_rows.pop("query")
    # the database reaches the threshold: domains of included hits on both sides of incdomE 1e-3
    i_evalues = [float(row[12]) for row in _table(domains)]
    assert sum(1e-3 < e <= 1e-2 for e in i_evalues) >= 5 and sum(1e-4 < e <= 1e-3 for e in i_evalues) >= 5

    result = search_protein(MYOGLOBIN, db, settings, threads=2, block_residues=20_000)
    assert set(result.hit_names) == {row[0] for row in _table(tbl)}
    assert {desc.split()[0]: row for desc, row in result.rows[1:]} == binary_rows


def _af3_rna_rows(stockholm: Path, tmp_path: Path) -> dict[str, str]:
    """AF3's RNA rows: nhmmer's hits (gaps dropped) realigned by `hmmalign --outformat A2M` to
    `hmmbuild --informat afa --rna` of the query alone."""
    hits, profile, aligned = tmp_path / "hits.fa", tmp_path / "query.hmm", tmp_path / "aligned.a2m"
    hits.write_text(
        "".join(f">{n}\n{r.replace('-', '').upper()}\n" for n, r in _stockholm_to_a3m(stockholm).items())
    )
    build = ["hmmbuild", "--informat", "afa", "--rna", str(profile), str(tmp_path / "query.fa")]
    subprocess.run(build, check=True, capture_output=True)
    subprocess.run(
        ["hmmalign", "-o", str(aligned), "--outformat", "A2M", str(profile), str(hits)], check=True
    )
    rows = {}
    for block in aligned.read_text().split(">")[1:]:
        name, *lines = block.splitlines()
        rows[name.split()[0]] = "".join(lines).replace(".", "")
    return rows


def test_nhmmer_rows_equal_the_binaries_at_the_evalue_threshold(tmp_path: Path) -> None:
    for binary in ("nhmmer", "hmmbuild", "hmmalign"):
        _need(binary)
    db = DATA / "rna.fasta"
    query = tmp_path / "query.fa"
    query.write_text(f">query\n{RNA_QUERY}\n")
    sto, tbl = tmp_path / "out.sto", tmp_path / "out.tbl"
    settings = NhmmerSettings()
    cmd = ["nhmmer", "-o", "/dev/null", "-A", str(sto), "--tblout", str(tbl), "--cpu", "1"]
    subprocess.run([*cmd, *settings.binary_flags(len(RNA_QUERY)), str(query), str(db)], check=True)
    hits = _table(tbl)
    assert sum(5e-4 < float(row[12]) <= 1e-3 for row in hits) >= 3  # just under AF3's -E 1e-3
    assert any(int(row[6]) > int(row[7]) for row in hits)  # and hits on the reverse strand
    expected = _af3_rna_rows(sto, tmp_path)
    assert any(row[0].islower() for row in expected.values())  # hmmalign's unaligned ends

    result = search_rna(RNA_QUERY, db, settings, threads=2, block_residues=20_000)
    assert sorted(result.hit_names) == sorted(row[0] for row in hits)
    assert {desc.split()[0]: row for desc, row in result.rows[1:]} == expected


def _af3_stockholm(a3m: list[str]) -> tuple[list[str], str]:
    """AF3's a3m -> Stockholm conversion, column by column: while a row starts with an inserted
    (lower-case) residue, an insert column takes it (upper case) and a gap from every other row."""
    rows, out = [list(row) for row in a3m], [[] for _ in a3m]
    reference = []
    while any(rows):
        insert = any(row and row[0].islower() for row in rows)
        for row, text in zip(rows, out, strict=True):
            text.append(row.pop(0).upper() if row and (row[0].islower() or not insert) else "-")
        reference.append("." if insert else "x")
    return ["".join(text) for text in out], "".join(reference)


def _shared_chain(shared_data: Path, name: str) -> str:
    text = (shared_data / "template_db" / "pdb_seqres_shared_structures.fasta").read_text()
    return next("".join(b.splitlines()[1:]) for b in text.split(">")[1:] if b.split()[0] == name)


@pytest.mark.parametrize("case", ["band database", "shared 1o1z_A"])
def test_template_hits_equal_hmmbuild_and_hmmsearch_near_evalue_100(
    case: str, tmp_path: Path, shared_data: Path
) -> None:
    """AF3's template search: hmmbuild --hand of the MSA's query columns, hmmsearch with E, incE, domE,
    incdomE 100 and F1-F3 0.1. On the shared pdb_seqres, 1o1z_A's profile has hits whose fate at the
    Forward filter and domain definition depends on the rounding of hmmbuild's file."""
    for binary in ("hmmbuild", "hmmsearch"):
        _need(binary)
    if case == "band database":
        query, msa_db, db = MYOGLOBIN, DATA / "protein.fasta", DATA / "protein.fasta"
    else:
        query = _shared_chain(shared_data, "1o1z_A")
        msa_db = shared_data / "seqdb" / "msa_hits_for_shared_queries.fasta"
        db = shared_data / "template_db" / "pdb_seqres_2022_09_28__subsampled_1000.fasta"
    rows = search_protein(query, msa_db).rows
    msa, hmm = tmp_path / "query.sto", tmp_path / "query.hmm"
    columns, reference = _af3_stockholm([row for _, row in rows])
    aligned = [f"row{i} {text}" for i, text in enumerate(columns)]
    msa.write_text("\n".join(["# STOCKHOLM 1.0", *aligned, f"#=GC RF {reference}", "//", ""]))
    build = ["hmmbuild", "--informat", "stockholm", "--hand", "--amino", "--cpu", "1", str(hmm), str(msa)]
    subprocess.run(build, check=True, capture_output=True)
    sto, domains = tmp_path / "out.sto", tmp_path / "out.domtbl"
    flags = ["--F1", "0.1", "--F2", "0.1", "--F3", "0.1", "-E", "100", "--incE", "100"]
    flags += ["--domE", "100", "--incdomE", "100"]
    cmd = ["hmmsearch", "-o", "/dev/null", "-A", str(sto), "--domtblout", str(domains), "--cpu", "1"]
    subprocess.run([*cmd, *flags, str(hmm), str(db)], check=True)
    assert sum(10 < float(row[12]) <= 100 for row in _table(domains)) >= 5  # weak domains near E 100
    binary = set()
    for name, row in _stockholm_to_a3m(sto).items():
        target, span = name.rsplit("/", 1)
        mapping, position = {}, int(span.split("-")[0]) - 1
        for column, (match, inserts) in enumerate(_columns(row)):
            if match != "-":
                mapping[column] = position
                position += 1
            position += len(inserts)
        binary.add((target, tuple(sorted(mapping.items()))))

    hits = search_hits(rows, db, TemplateSettings(), threads=2, block_residues=20_000)
    assert {(h.name, tuple(sorted(h.query_to_hit.items()))) for h in hits} == binary
