"""Build protein.fasta and rna.fasta: real sequences plus derived ones whose hits fall at the search
thresholds AF3's HMMER binaries use, checked with the binaries themselves.

    python tests/data/search_thresholds/make_databases.py   (needs jackhmmer and nhmmer on PATH)

protein.fasta: 150 UniRef90 sequences and 20 real myoglobin homologues (../shared/data/seqdb), then
derived sequences made of UniRef90 flanks around mutated copies of myoglobin: a strong first copy and a
weak partial second copy (its domain i-Evalue near jackhmmer's --incdomE 1e-3), or one weak copy (its
sequence E-value near AF3's -E/--incE 1e-4). Headers are pdb_seqres-style so hmmsearch of the template
search reads the same file; its hits near E = 100 come from the real sequences.
rna.fasta: 100 RNAcentral sequences (<= 600 nt) and derived ones with a mutated copy (either strand) of
a 120-nt Rfam query whose nhmmer E-value is near AF3's -E 1e-3.
The random choices are seeded, so the script rewrites the same files.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEQDB = HERE.parents[2].parent / "shared" / "data" / "seqdb"
MYOGLOBIN = (
    "MVLSEGEWQLVLHVWAKVEADVAGHGQDILIRLFKSHPETLEKFDRFKHLKTEAEMKASEDLKKAGVTVLTALGAILKKKGHHEAELKPLAQSHATKHK"
    "IPIKYLEFISEAIIHVLHSRHPGNFGADAQGAMNKALELFRKDIAAKYKELGYQG"
)
AMINO = "ACDEFGHIKLMNPQRSTVWY"
FILTERS = ["-N", "1", "--F1", "0.0005", "--F2", "5e-05", "--F3", "5e-07"]
JACKHMMER_FLAGS = [*FILTERS, "-E", "0.0001", "--incE", "0.0001"]


def read_fasta(path: Path) -> list[tuple[str, str]]:
    records = []
    for block in path.read_text().split(">")[1:]:
        head, *lines = block.splitlines()
        records.append((head, "".join(lines)))
    return records


def rna_query() -> str:
    """The 120-nt stretch of one Rfam sequence that tests/test_search_jackhmmer.py also searches."""
    records = read_fasta(SEQDB / "rfam_14_4_clustered_rep_seq__subsampled_1000.fasta")
    return records[4][1][:120].upper().replace("T", "U")


def mutate(seq: str, rate: float, alphabet: str, rng: np.random.Generator) -> str:
    out = [rng.choice(list(alphabet)) if rng.random() < rate else c for c in seq]
    return "".join(out)


def reverse_complement(seq: str) -> str:
    return seq[::-1].translate(str.maketrans("ACGU", "UGCA"))


def write_fasta(path: Path, records: list[tuple[str, str]]) -> None:
    path.write_text("".join(f">{name}\n{seq}\n" for name, seq in records))


def protein_records(rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """Real sequences, and candidates: derived sequences at mutation rates around the thresholds."""
    uniref = [s for _, s in read_fasta(SEQDB / "uniref90__subsampled_1000.fasta") if set(s) <= set(AMINO)]
    homologues = [s for _, s in read_fasta(SEQDB / "msa_hits_for_shared_queries.fasta")]
    background = [uniref[i] for i in rng.choice(len(uniref), 150, replace=False) if len(uniref[i]) <= 700]
    real = background + [homologues[i] for i in rng.choice(len(homologues), 20, replace=False)]
    candidates = []
    for _ in range(150):  # a strong copy, then a weak partial second copy of 60-100 residues
        flank = uniref[int(rng.integers(len(uniref)))]
        start, length = int(rng.integers(0, 60)), int(rng.integers(60, 100))
        second = mutate(MYOGLOBIN[start : start + length], rng.uniform(0.55, 0.7), AMINO, rng)
        strong = mutate(MYOGLOBIN, 0.35, AMINO, rng)
        candidates.append(flank[:40] + strong + flank[40:70] + second + flank[70:110])
    for _ in range(200):  # one weak copy
        flank = uniref[int(rng.integers(len(uniref)))]
        candidates.append(flank[:50] + mutate(MYOGLOBIN, rng.uniform(0.7, 0.82), AMINO, rng) + flank[50:90])
    return real, candidates


def rna_records(rng: np.random.Generator) -> tuple[list[str], list[str]]:
    central = read_fasta(SEQDB / "rnacentral_active_seq_id_90_cov_80_linclust__subsampled_1000.fasta")
    short = [
        s.upper().replace("T", "U") for _, s in central if len(s) <= 600 and set(s.upper()) <= set("ACGT")
    ]
    real = [short[i] for i in rng.choice(len(short), 100, replace=False)]
    query = rna_query()
    candidates = []
    for k in range(300):
        flank = short[int(rng.integers(len(short)))]
        copy = mutate(query[10:110], rng.uniform(0.4, 0.52), "ACGU", rng)
        candidates.append(flank[:60] + (reverse_complement(copy) if k % 3 == 0 else copy) + flank[60:140])
    return real, candidates


def jackhmmer_domains(db: Path, tmp: Path, flags: list[str]) -> list[tuple[str, float, float]]:
    """(target, sequence E-value, domain i-Evalue) of every domain the binary reports."""
    query, table = tmp / "query.fa", tmp / "domains.tbl"
    query.write_text(f">query\n{MYOGLOBIN}\n")
    cmd = ["jackhmmer", "-o", "/dev/null", "--domtblout", str(table), *flags, str(query), str(db)]
    subprocess.run(cmd, check=True)
    rows = [line.split() for line in table.read_text().splitlines() if not line.startswith("#")]
    return [(r[0], float(r[6]), float(r[12])) for r in rows]


def nhmmer_hits(db: Path, tmp: Path) -> list[tuple[str, float]]:
    """(target, E-value) of every hit nhmmer reports up to E = 0.1."""
    query, table = tmp / "query.fa", tmp / "hits.tbl"
    query.write_text(f">query\n{rna_query()}\n")
    cmd = ["nhmmer", "-o", "/dev/null", "--tblout", str(table), "--rna", "-E", "0.1", "--F3", "1e-05"]
    subprocess.run([*cmd, str(query), str(db)], check=True)
    rows = [line.split() for line in table.read_text().splitlines() if not line.startswith("#")]
    return [(r[0], float(r[12])) for r in rows]


def protein_fasta(path: Path, sequences: list[str]) -> None:
    names = [f"{i + 1}x{i % 10}{chr(97 + i % 26)}_A" for i in range(len(sequences))]  # pdb_seqres-like
    headers = [
        f"{name} mol:protein length:{len(seq)}  derived" for name, seq in zip(names, sequences, strict=True)
    ]
    write_fasta(path, list(zip(headers, sequences, strict=True)))


def kept_protein(real: list[str], candidates: list[str], path: Path, tmp: Path) -> list[str]:
    """Candidates whose weakest domain or whose sequence E-value lies near a jackhmmer threshold."""
    protein_fasta(path, real + candidates)
    near = set()
    for name, evalue, i_evalue in jackhmmer_domains(path, tmp, [*FILTERS, "-E", "1", "--incE", "1"]):
        index = int(name.split("x")[0]) - 1 - len(real)
        if index >= 0 and (1e-6 < evalue < 1e-2 or 1e-5 < i_evalue < 1e-1):
            near.add(index)
    return [candidates[i] for i in sorted(near)]


def kept_rna(real: list[str], candidates: list[str], path: Path, tmp: Path) -> list[str]:
    names = [f"rna{i + 1}" for i in range(len(real) + len(candidates))]
    write_fasta(path, list(zip(names, real + candidates, strict=True)))
    hits = nhmmer_hits(path, tmp)
    near = {int(name[3:]) - 1 - len(real) for name, evalue in hits if 1e-5 < evalue < 1e-1}
    return [candidates[i] for i in sorted(near) if i >= 0]


def main() -> None:
    rng = np.random.default_rng(13)
    protein, rna = HERE / "protein.fasta", HERE / "rna.fasta"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        real, candidates = protein_records(rng)
        protein_fasta(protein, real + kept_protein(real, candidates, protein, tmp))
        real, candidates = rna_records(rng)
        kept = kept_rna(real, candidates, rna, tmp)
        write_fasta(rna, [(f"rna{i + 1}", s) for i, s in enumerate(real + kept)])
        domains = jackhmmer_domains(protein, tmp, JACKHMMER_FLAGS)
        loose = jackhmmer_domains(protein, tmp, [*FILTERS, "-E", "1", "--incE", "1"])
        rna_evalues = [evalue for _, evalue in nhmmer_hits(rna, tmp)]
    print("jackhmmer domains with i-Evalue in (1e-3, 1e-2]:", sum(1e-3 < d[2] <= 1e-2 for d in domains))
    print("jackhmmer domains with i-Evalue in (1e-4, 1e-3]:", sum(1e-4 < d[2] <= 1e-3 for d in domains))
    print(
        "jackhmmer sequences with E-value in (1e-5, 1e-4]:", len({d[0] for d in loose if 1e-5 < d[1] <= 1e-4})
    )
    print(
        "jackhmmer sequences with E-value in (1e-4, 1e-3]:", len({d[0] for d in loose if 1e-4 < d[1] <= 1e-3})
    )
    print("nhmmer hits with E-value in (5e-4, 1e-3]:", sum(5e-4 < e <= 1e-3 for e in rna_evalues))
    print("nhmmer hits with E-value in (1e-3, 1e-2]:", sum(1e-3 < e <= 1e-2 for e in rna_evalues))


if __name__ == "__main__":
    main()
