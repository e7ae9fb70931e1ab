"""Content-addressed MSA/template store: one search per (sequence, databases, settings).

    results/msa/{molecule}/{sha}.a3m          unpaired MSA (protein: UniRef90 + small BFD + MGnify,
                                              deduplicated; RNA: Rfam + RNAcentral + NT-RNA)
    results/msa/{molecule}/{sha}.paired.a3m   protein only: UniProt hits in E-value order, headers
                                              kept for species pairing (model.search.pairing)
    results/templates/{molecule}/{sha}.npz    protein only: template features (model.search.templates)

`sha` = sha256 of the upper-case sequence, the molecule, every database the molecule's search reads
(file name, size, head/tail hash: the same file anywhere gives the same key) and every setting that
changes the result (thresholds, hit caps, template date and count), never the thread count. Identical
chains across targets, and between training and prediction, therefore share one search, and a file
already in the store is never searched again.

Every store file is sealed by a checksum beside it (model.search.entries): a search treats a file
without its seal, or whose bytes no longer match it, as absent, removes it and searches again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from model.search.a3m import merge_rows, write_a3m
from model.search.databases import quick_identity
from model.search.entries import entry_problem, remove_entry, seal
from model.search.jackhmmer import JackhmmerSettings, search_proteins
from model.search.nhmmer import NhmmerSettings, search_rnas
from model.search.templates import TemplateSettings

log = logging.getLogger(__name__)

STORE_VERSION = 4  # bump when search output changes for the same inputs and settings
PROTEIN_UNPAIRED = ("uniref90", "small_bfd", "mgnify")  # AF3's merge order
PROTEIN_PAIRED = ("uniprot",)
RNA_DATABASES = ("rfam", "rnacentral", "nt_rna")
MOLECULES = ("protein", "rna")
DEFAULT_MAX_HITS = {
    "uniref90": 10_000,
    "mgnify": 5_000,
    "small_bfd": 5_000,
    "uniprot": 50_000,
    "rfam": 10_000,
    "rnacentral": 10_000,
    "nt_rna": 10_000,
}


def database_identity(path: str | Path, databases: Mapping) -> dict[str, str | int]:
    """How a key names a database: its download checksum when config `databases.download` fetches it
    (known before the file exists), else `quick_identity` of the file."""
    for spec in (databases.get("download") or {}).values():
        if Path(spec["dest"]) == Path(path):
            return {"name": Path(path).name, "sha256": spec["sha256"]}
    try:
        stat = os.stat(path)
    except OSError:
        return quick_identity(path)  # raises its DatabaseError
    return dict(_file_identity(os.path.abspath(path), stat.st_size, stat.st_mtime_ns))


@functools.cache
def _file_identity(path: str, size: int, mtime_ns: int) -> dict[str, str | int]:
    """`quick_identity` once per file version: a workflow parse computes a key per unique sequence,
    and each call re-resolving and re-statting every database path cost ~130 us (1.3 s per 10,000
    sequences). Callers get copies, so the cached dict is never changed."""
    return quick_identity(path)


def molecule_databases(molecule: str, databases: Mapping) -> dict[str, str]:
    """The {name: path} a molecule's search reads, from config `databases` (empty paths skipped)."""
    if molecule not in MOLECULES:
        raise ValueError(f"msa search: molecule {molecule!r} has no MSA search (only {MOLECULES})")
    group = databases.get(molecule, {})
    names = PROTEIN_UNPAIRED + PROTEIN_PAIRED if molecule == "protein" else RNA_DATABASES
    return {name: str(group[name]) for name in names if group.get(name)}


# The search settings a key names, built once: `asdict` per key was a third of msa_key's time. Only
# read (json.dumps), never changed.
_DEFAULT_SEARCH_SETTINGS = {
    "jackhmmer": asdict(JackhmmerSettings()),
    "nhmmer": asdict(NhmmerSettings()),
    "hmmsearch": {k: v for k, v in asdict(TemplateSettings()).items() if k != "max_templates"},
}


def _key_settings(molecule: str, databases: Mapping, settings: Mapping) -> dict:
    max_hits = {**DEFAULT_MAX_HITS, **settings.get("max_hits", {})}
    dbs = molecule_databases(molecule, databases)
    key: dict = {"max_hits": {name: max_hits[name] for name in dbs}}
    if molecule == "protein":
        key["jackhmmer"] = _DEFAULT_SEARCH_SETTINGS["jackhmmer"]
        templates = databases.get("templates", {})
        if templates.get("seqres"):
            key["templates"] = {
                "seqres": database_identity(templates["seqres"], databases),
                "max_date": str(settings.get("template_max_date", "2100-01-01")),
                "max_templates": int(settings.get("max_templates", 4)),
                "hmmsearch": _DEFAULT_SEARCH_SETTINGS["hmmsearch"],
            }
    else:
        key["nhmmer"] = _DEFAULT_SEARCH_SETTINGS["nhmmer"]
    return key


def database_paths(databases: Mapping) -> list[str]:
    """Every FASTA database config `databases` names: protein and RNA MSA databases, template seqres."""
    paths = [str(p) for group in MOLECULES for p in databases.get(group, {}).values() if p]
    if databases.get("templates", {}).get("seqres"):
        paths.append(str(databases["templates"]["seqres"]))
    return sorted(set(paths))


def msa_key(sequence: str, molecule: str, databases: Mapping, settings: Mapping) -> str:
    """sha256 naming the search of `sequence` (config `databases` and `search` sections)."""
    return msa_keyer(molecule, databases, settings)(sequence)


def msa_keyer(molecule: str, databases: Mapping, settings: Mapping) -> Callable[[str], str]:
    """`msa_key` of any sequence for one molecule, databases and settings: the JSON around the
    sequence is made once (per key it was ~150 us, most of the plan of a 220,000-entry training set)."""
    payload = {
        "version": STORE_VERSION,
        "molecule": molecule,
        "sequence": _SEQUENCE_SLOT,
        "databases": {
            n: database_identity(p, databases) for n, p in molecule_databases(molecule, databases).items()
        },
        "settings": _key_settings(molecule, databases, settings),
    }
    head, tail = json.dumps(payload, sort_keys=True).split(json.dumps(_SEQUENCE_SLOT))

    def key(sequence: str) -> str:
        return hashlib.sha256(f"{head}{json.dumps(sequence.upper())}{tail}".encode()).hexdigest()

    return key


_SEQUENCE_SLOT = "<sequence>"  # where msa_keyer's JSON takes the sequence


def msa_path(results_dir: str | Path, molecule: str, sha: str) -> Path:
    return Path(results_dir) / "msa" / molecule / f"{sha}.a3m"


def paired_msa_path(a3m: str | Path) -> Path:
    """The `.paired.a3m` beside a store entry's `.a3m`."""
    a3m = Path(a3m)
    return a3m.with_name(a3m.name.removesuffix(".a3m") + ".paired.a3m")


def template_path(results_dir: str | Path, molecule: str, sha: str) -> Path:
    """Where build_features looks for a chain's templates: beside the MSA's name, under templates/."""
    return Path(results_dir) / "templates" / molecule / f"{sha}.npz"


def entry_files(results_dir: str | Path, molecule: str, sha: str) -> list[Path]:
    """Every store file one search of `sha` writes: the a3m, its paired rows, protein templates."""
    a3m = msa_path(results_dir, molecule, sha)
    files = [a3m, paired_msa_path(a3m)]
    return files + [template_path(results_dir, molecule, sha)] if molecule == "protein" else files


def search_msa(
    sequence: str,
    molecule: str,
    databases: Mapping,
    settings: Mapping,
    out_a3m: str | Path,
    threads: int = 1,
) -> bool:
    """Fill the store entry `out_a3m` (and its `.paired.a3m` for proteins); False if already there.

    A missing database in config is skipped (and is not part of the key); a listed one that does not
    exist is an error.
    """
    return bool(search_msas([(sequence, out_a3m)], molecule, databases, settings, threads))


def search_msas(
    jobs: Sequence[tuple[str, str | Path]],
    molecule: str,
    databases: Mapping,
    settings: Mapping,
    threads: int = 1,
) -> list[Path]:
    """Fill the store entries of many (sequence, out_a3m) pairs of one molecule type, reading each
    database once for all of them; entries already in the store are skipped. Every file written is
    the one `search_msa` writes for its sequence alone. Returns the entries written."""
    protein = molecule == "protein"
    todo = []
    for sequence, out_a3m in jobs:
        out_a3m = Path(out_a3m)
        problems = {p: entry_problem(p) for p in (out_a3m, paired_msa_path(out_a3m))}
        if not any(problems.values()):
            log.info("%s: already in the store, no search", out_a3m)
            continue
        for path, problem in problems.items():
            if problem not in (None, "missing"):
                log.warning("%s: %s: removed, searching again", path, problem)
            remove_entry(path)
        sequence = sequence.upper() if protein else sequence.upper().replace("T", "U")
        todo.append((sequence, out_a3m))
    if not todo:
        return []
    search, make_settings = (search_proteins, JackhmmerSettings) if protein else (search_rnas, NhmmerSettings)
    max_hits = {**DEFAULT_MAX_HITS, **settings.get("max_hits", {})}
    dbs = molecule_databases(molecule, databases)
    sequences = [sequence for sequence, _ in todo]
    start = time.perf_counter()
    found: dict[str, list] = {}
    for i, (name, path) in enumerate(dbs.items(), start=1):
        log.info("%d %s queries: searching %s (%d of %d)", len(todo), molecule, name, i, len(dbs))
        results = search(sequences, path, make_settings(max_hits=max_hits[name]), threads=threads)
        found[name] = [result.rows[1:] for result in results]
    order = PROTEIN_UNPAIRED if protein else RNA_DATABASES
    for j, (sequence, out_a3m) in enumerate(todo):
        query = ("query", sequence)
        if protein:
            paired = merge_rows(
                query, *(found[n][j] for n in PROTEIN_PAIRED if n in found), deduplicate=False
            )
            write_a3m(paired_msa_path(out_a3m), paired)
            seal(paired_msa_path(out_a3m))
        unpaired = merge_rows(query, *(found[n][j] for n in order if n in found))
        write_a3m(out_a3m, unpaired)
        seal(out_a3m)
        log.info("%s: %d rows from %s", out_a3m, len(unpaired), ", ".join(dbs))
    log.info("%d %s MSAs in %.1f s", len(todo), molecule, time.perf_counter() - start)
    return [out_a3m for _, out_a3m in todo]
