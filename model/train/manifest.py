"""The training manifest: one row per mmCIF entry, read from its header once (AF3 supplement §2.5.4).

A manifest is a TSV the user can read and edit:

    entry  path  status  release_date  resolution  method  chains  residues  entities

`status` is `ok` or `filtered: <reason>` (or `unreadable: <reason>`); `entities` lists the polymer
entities as `id=molecule:SEQUENCE` joined by `;` (molecule protein, rna, dna or other), the sequences the
MSA search and the featurizer's chains share. Entries come from mmCIF files, folders of them, or a
wwPDB mirror (`{mirror}/mmCIF/ab/1abc.cif.gz`, or the two-letter folders directly).

The AF3 filters applied here (§2.5.4): a release date (needed for the template cutoff, §2.4) no later
than `release_date_cutoff`, resolution at most `max_resolution` Å (no resolution, e.g. NMR, passes),
at most `max_chains` chains, at least one polymer chain. A rerun reuses the rows of files whose size
and modification time are unchanged, so only new or edited entries are read again.

gemmi is imported only where headers are read: `read_manifest` needs nothing beyond the standard library.
"""

from __future__ import annotations

import csv
import datetime
import multiprocessing
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

COLUMNS = ("entry", "path", "status", "release_date", "resolution", "method", "chains", "residues",
           "entities", "stamp")  # fmt: skip
POLYMER_TYPES = {
    "polypeptide(L)": "protein",
    "polyribonucleotide": "rna",
    "polydeoxyribonucleotide": "dna",
}


@dataclass
class ManifestRow:
    """One entry's header: what the filters and the training plan need, without building atoms."""

    entry: str
    path: str
    status: str = "ok"
    release_date: str = ""
    resolution: str = ""  # Å, "" when the header has none
    method: str = ""
    chains: int = 0  # label_asym chains other than water
    residues: int = 0  # polymer residues over all polymer chains
    entities: dict[str, tuple[str, str]] = field(default_factory=dict)  # entity id -> (molecule, seq)
    stamp: str = ""  # "{size}:{mtime_ns}" of the file when read: a rerun reads it again only if changed

    def to_tsv(self) -> list[str]:
        values = [getattr(self, f.name) for f in fields(self)]
        values[COLUMNS.index("entities")] = ";".join(f"{e}={m}:{s}" for e, (m, s) in self.entities.items())
        return [str(v) for v in values]

    @classmethod
    def from_tsv(cls, cells: list[str]) -> ManifestRow:
        row = dict(zip(COLUMNS, cells, strict=True))
        entities = {}
        for item in filter(None, row["entities"].split(";")):
            entity, rest = item.split("=", 1)
            molecule, sequence = rest.split(":", 1)
            entities[entity] = (molecule, sequence)
        return cls(
            **{**row, "chains": int(row["chains"]), "residues": int(row["residues"]), "entities": entities}
        )


def entry_name(path: str | Path) -> str:
    """`1abc` of `.../1abc.cif.gz`."""
    return Path(path).name.split(".")[0]


def list_entries(items: Iterable[str | Path]) -> tuple[dict[str, str], list[str]]:
    """Entry id -> mmCIF path for files, folders of them and wwPDB mirrors; plus one-line notes (a
    missing item, an entry given twice). Folders are searched one level deep (`ab/1abc.cif.gz`)."""
    entries, notes = {}, []
    for item in items:
        path = Path(item)
        if path.is_dir():
            root = path / "mmCIF" if (path / "mmCIF").is_dir() else path
            files = [
                f for pattern in ("*.cif", "*.cif.gz", "*/*.cif", "*/*.cif.gz") for f in root.glob(pattern)
            ]
        elif path.is_file():
            files = [path]
        else:
            notes.append(f"training.entries: {item}: no such file or folder")
            continue
        for f in sorted(files):
            entry = entry_name(f)
            if entry in entries and entries[entry] != str(f):
                notes.append(
                    f"training.entries: entry {entry} given twice ({entries[entry]}, {f}): first kept"
                )
                continue
            entries[entry] = str(f)
    return dict(sorted(entries.items())), notes


def entries_digest(entries: Mapping[str, str]) -> str:
    """A digest of every entry's id, path, size and modification time ("missing" for a file gone):
    the workflow reruns the manifest when it changes, without making 220,000 files rule inputs."""
    import hashlib

    digest = hashlib.sha256()
    for entry, path in sorted(entries.items()):
        try:
            stamp = _file_stamp(path)
        except OSError:
            stamp = "missing"
        digest.update(f"{entry}\t{path}\t{stamp}\n".encode())
    return digest.hexdigest()


def read_id_list(path: str | Path | None) -> set[str]:
    """Entry ids of an include/exclude list: one a line (or whitespace-separated), `#` comments,
    case-insensitive (PDB ids are lower-cased in file names)."""
    if not path:
        return set()
    words = (line.split("#", 1)[0].split() for line in Path(path).read_text().splitlines())
    return {w.lower() for line in words for w in line}


def _file_stamp(path: str) -> str:
    stat = os.stat(path)
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def _sequence(block, entity: str, molecule: str, mon_ids: list[str]) -> str:
    """The entity's one-letter sequence: the canonical code when it has one letter a residue, else
    each residue's standard letter (X for others), as the featurizer's chain sequence reads it."""
    import gemmi

    from model.data.constants import ONE_TO_CCD_DNA, ONE_TO_CCD_RNA, THREE_TO_ONE_PROTEIN

    canonical = {}
    for entity_id, code in block.find("_entity_poly.", ["entity_id", "?pdbx_seq_one_letter_code_can"]):
        canonical[entity_id] = "".join(gemmi.cif.as_string(code).split())
    code = canonical.get(entity, "")
    if len(code) == len(mon_ids) and code.isalpha():
        return code.upper()
    if molecule == "protein":
        letters = THREE_TO_ONE_PROTEIN
    else:
        letters = {ccd: one for one, ccd in {**ONE_TO_CCD_RNA, **ONE_TO_CCD_DNA}.items()}
    return "".join(letters.get(m, "X") for m in mon_ids)


def read_header(path: str | Path) -> ManifestRow:
    """An entry's manifest row from its mmCIF (first data block); an unreadable file is a row whose
    status says why."""
    import gemmi

    from model.data.structure import _header

    row = ManifestRow(entry=entry_name(path), path=str(path))
    try:
        row.stamp = _file_stamp(str(path))
        block = gemmi.cif.read(str(path)).sole_block()
        release, resolution, method = _header(block)
        row.release_date, row.method = release or "", method or ""
        row.resolution = "" if resolution is None else f"{resolution:g}"
        water = {
            e for e, kind in block.find("_entity.", ["id", "type"]) if gemmi.cif.as_string(kind) == "water"
        }
        molecule_of = {e: POLYMER_TYPES.get(gemmi.cif.as_string(t), "other")
                       for e, t in block.find("_entity_poly.", ["entity_id", "type"])}  # fmt: skip
        mon_ids: dict[str, dict[str, str]] = {}
        for entity, num, mon in block.find("_entity_poly_seq.", ["entity_id", "num", "mon_id"]):
            mon_ids.setdefault(entity, {}).setdefault(num, mon)  # microheterogeneity: the first residue
        asym_entities = [e for _, e in block.find("_struct_asym.", ["id", "entity_id"]) if e not in water]
        row.chains = len(asym_entities)
        for entity, molecule in molecule_of.items():
            residues = list(mon_ids.get(entity, {}).values())
            row.entities[entity] = (molecule, _sequence(block, entity, molecule, residues))
            row.residues += len(residues) * asym_entities.count(entity)
    except Exception as err:  # one unreadable file is its row's note, not the manifest's failure
        row.status = f"unreadable: {' '.join(str(err).split()) or type(err).__name__}"
    return row


def filter_reason(row: ManifestRow, filters: Mapping) -> str | None:
    """Why an entry leaves the training set (AF3 §2.5.4), or None to keep it."""
    if not row.release_date:
        return "no release date in the header"
    cutoff = str(filters.get("release_date_cutoff") or "")
    if cutoff and row.release_date > cutoff:
        return f"released {row.release_date}, after the cutoff {cutoff}"
    max_resolution = filters.get("max_resolution")
    if max_resolution is not None and row.resolution and float(row.resolution) > float(max_resolution):
        return f"resolution {row.resolution} A > {max_resolution} A"
    max_chains = filters.get("max_chains")
    if max_chains is not None and row.chains > int(max_chains):
        return f"{row.chains} chains > {max_chains}"
    if not row.entities:
        return "no polymer chain"
    return None


def build_manifest(
    entries: Mapping[str, str],
    filters: Mapping,
    include: set[str] | None = None,
    exclude: set[str] | None = None,
    previous: Mapping[str, ManifestRow] | None = None,
    workers: int = 1,
) -> list[ManifestRow]:
    """The manifest rows of `entries` (id -> path), headers read in parallel batches; `include` keeps
    only those ids (empty: all), `exclude` drops ids; rows of `previous` with the same path and file
    stamp are reused. Every row's status is then set by `filter_reason`."""
    wanted = {e: p for e, p in entries.items() if (not include or e.lower() in include)
              and e.lower() not in (exclude or set())}  # fmt: skip
    rows, todo = {}, []
    for entry, path in wanted.items():
        old = (previous or {}).get(entry)
        try:
            same = old is not None and old.path == path and old.stamp == _file_stamp(path)
        except OSError:
            same = False
        if same and not old.status.startswith("unreadable"):
            rows[entry] = old
        else:
            todo.append(path)
    if workers > 1 and len(todo) > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            read = pool.imap(read_header, todo, chunksize=max(1, min(64, len(todo) // (4 * workers))))
            rows.update((row.entry, row) for row in read)
    else:
        rows.update((row.entry, row) for row in map(read_header, todo))
    for row in rows.values():
        if not row.status.startswith("unreadable"):
            reason = filter_reason(row, filters)
            row.status = f"filtered: {reason}" if reason else "ok"
    return [rows[e] for e in sorted(rows)]


def write_manifest(path: str | Path, rows: Iterable[ManifestRow]) -> None:
    """The manifest TSV, written to a temp name and renamed."""
    from model.fileio import write_text_atomic

    lines = ["\t".join(COLUMNS)] + ["\t".join(row.to_tsv()) for row in rows]
    write_text_atomic(path, "\n".join(lines) + "\n")


def read_manifest(path: str | Path) -> tuple[dict[str, ManifestRow], list[str]]:
    """Entry -> row of a manifest TSV, plus a one-line note per row that cannot be read (never raises
    for a bad row: the workflow reads this while it is parsed). A missing file is no rows."""
    rows, notes = {}, []
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return rows, notes
    except (OSError, UnicodeDecodeError) as err:
        return rows, [f"{path}: unreadable: {err}"]
    for number, cells in enumerate(csv.reader(lines[1:], delimiter="\t", quoting=csv.QUOTE_NONE), start=2):
        try:
            row = ManifestRow.from_tsv(cells)
            datetime.date.fromisoformat(row.release_date) if row.status == "ok" else None
        except (ValueError, TypeError) as err:
            notes.append(f"{path} line {number}: {' '.join(str(err).split())}")
            continue
        rows[row.entry] = row
    return rows, notes
