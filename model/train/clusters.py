"""Sequence clusters of the training chains for AF3's sampling weights (supplement §2.5.1, §2.5.3).

Proteins of 10 residues or more: all-vs-all pyhmmer `phmmer`, single-linkage clusters at 40 %
sequence identity (identical positions over the shorter sequence's length, so that a short
fragment of a long chain does not join its cluster on a local match). Peptides and nucleic acids:
identical sequence (AF3 clusters nucleic acids at 100 %). Ligands: the same set of CCD codes.

This is the CPU-side preprocessing step: pyhmmer is imported here only, never by the training loop
on GPU nodes (`model.train.loop` falls back to identical-sequence clusters when it is missing).
Run standalone: `python -m model.train.clusters --features DIR_OR_LIST --out clusters.tsv`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyhmmer

from model.fileio import write_text_atomic
from model.train.data import Entry, build_index, feature_files

PROTEIN_IDENTITY = 0.4
MIN_PROTEIN_LENGTH = 10


def protein_clusters(sequences: list[str], identity: float = PROTEIN_IDENTITY, cpus: int = 0) -> list[int]:
    """Single-linkage cluster index of each protein sequence (phmmer all-vs-all, E <= 1e-3)."""
    parent = list(range(len(sequences)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    alphabet = pyhmmer.easel.Alphabet.amino()
    digital = [
        pyhmmer.easel.TextSequence(name=str(i).encode(), sequence=s.replace("X", "A")).digitize(alphabet)
        for i, s in enumerate(sequences)
    ]
    block = pyhmmer.easel.DigitalSequenceBlock(alphabet, digital)
    for q, hits in enumerate(pyhmmer.hmmer.phmmer(block, block, cpus=cpus, E=1e-3)):
        for hit in hits.included:
            t = int(hit.name.decode() if isinstance(hit.name, bytes) else hit.name)
            if t == q:
                continue
            same = sum(sum(c.isalpha() for c in d.alignment.identity_sequence) for d in hit.domains.included)
            if same / min(len(sequences[q]), len(sequences[t])) >= identity:
                parent[find(q)] = find(t)
    roots = [find(i) for i in range(len(sequences))]
    renumber = {r: k for k, r in enumerate(dict.fromkeys(roots))}
    return [renumber[r] for r in roots]


def assign_clusters(entries: list[Entry], cpus: int = 0) -> str:
    """Set `Chain.cluster` on every chain in place; returns a short description of the method."""
    proteins = sorted({c.sequence for e in entries for c in e.chains
                       if c.mol_class == "protein" and len(c.sequence) >= MIN_PROTEIN_LENGTH})  # fmt: skip
    ids = dict(zip(proteins, protein_clusters(proteins, cpus=cpus), strict=True)) if proteins else {}
    for e in entries:
        for c in e.chains:
            if c.sequence in ids and c.mol_class == "protein":
                c.cluster = f"protein:{ids[c.sequence]}"
            else:
                c.cluster = f"{c.mol_class}:{c.sequence}"
    return f"pyhmmer {pyhmmer.__version__} phmmer, single linkage at {PROTEIN_IDENTITY:.0%} identity"


def write_table(entries: list[Entry], path: str | Path) -> None:
    """TSV (target_id, asym_id, cluster), written atomically; read by `data.read_cluster_table`."""
    lines = ["# target_id\tasym_id\tcluster"]
    lines += [f"{e.target_id}\t{c.asym_id}\t{c.cluster}" for e in entries for c in e.chains]
    write_text_atomic(path, "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", required=True, nargs="+", help="folders, .h5 files or list files")
    parser.add_argument("--out", required=True, help="output TSV")
    parser.add_argument("--cpus", type=int, default=0)
    args = parser.parse_args(argv)
    entries = build_index(feature_files(args.features))
    assign_clusters(entries, args.cpus)
    write_table(entries, args.out)


if __name__ == "__main__":
    main()
