"""Prediction inputs: `targets.csv`, AlphaFold 3 JSON and Protenix JSON, all parsed into one `Target`.

Three ways in (docs/inputs.md has a worked example of each):

- `targets.csv`: `target_id` plus either `json` (a job file, relative to the CSV's folder) or `chains`,
  an inline list such as `protein:MKTAYx2;ligand:ATP;ligand:smiles=CC(=O)O;dna:ACGT;ion:MG`
  (optional columns `seeds` like `1 2 3` and `bonds` like `A:1:SG-C:1:C1`).
- AlphaFold 3 JSON (`"dialect": "alphafold3"`, versions 1-4), one job or a list of jobs.
- Protenix JSON (a list of jobs with `proteinChain` / `dnaSequence` / `rnaSequence` / `ligand` / `ion`),
  and AlphaFold Server JSON, which has the same shape.

The dialect is detected from the content. Every problem is a `TargetError` whose text is one line
naming the target, the entity, the field and the reason. `load_targets` collects them so that one
bad target never stops the others.
"""

from __future__ import annotations

import csv
import json
import lzma
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gemmi

from model.data.constants import ONE_TO_CCD_DNA, ONE_TO_CCD_RNA, ONE_TO_THREE_PROTEIN, PROTEIN_ONE_LETTER
from model.fileio import read_input_text

ENTITY_KINDS = ("protein", "rna", "dna", "ligand", "ion")
POLYMER_KINDS = ("protein", "rna", "dna")
AF3_VERSIONS = (1, 2, 3, 4)
# Fields each AF3 version introduced (AF3 docs/input.md, "Versions").
_AF3_FIELD_VERSION = {
    "unpairedMsaPath": 2, "pairedMsaPath": 2, "mmcifPath": 2, "userCCDPath": 3, "description": 4,
}  # fmt: skip
# Residue letters per polymer kind; X / N stand for the unknown residue of that kind.
POLYMER_LETTERS = {"protein": PROTEIN_ONE_LETTER + "X", "rna": "ACGUN", "dna": "ACGTN"}
_LETTER_TO_CCD = {
    "protein": {**ONE_TO_THREE_PROTEIN, "X": "UNK"},
    "rna": {**ONE_TO_CCD_RNA, "N": "N"},
    "dna": {**ONE_TO_CCD_DNA, "N": "DN"},
}
TARGET_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,100}")
CHAIN_ID_RE = re.compile(r"[A-Za-z0-9]{1,4}")
CCD_CODE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,31}")  # user CCD codes may be longer, e.g. LIG-1
MAX_SEED = 2**32 - 1
LIGAND_FILE_SUFFIXES = (".sdf", ".mol", ".mol2", ".pdb")
# The columns of targets.csv (workflow/schemas/targets.schema.yaml documents them).
CSV_COLUMNS = ("target_id", "json", "chains", "seeds", "bonds", "reference")


def invalid_row_id(row: int) -> str:
    """The name a row without a usable target_id is reported under: the '@' keeps it a safe file name
    that no real target_id (check_target_id) can ever equal."""
    return f"invalid@row-{row}"


@dataclass(frozen=True)
class InputLimits:
    """What one input file may ask of the parser (config `limits`): its size and its JSON nesting."""

    max_file_mb: float = 100.0
    max_json_depth: int = 32


AtomRef = tuple[str, int, str]  # (chain id, 1-based residue position, atom name)


class TargetError(ValueError):
    """A bad input, rendered as one line: `target X: entity 2 (protein, chain B): field: reason`."""

    def __init__(
        self,
        target_id: str | None,
        reason: str,
        *,
        field: str | None = None,
        entity: int | None = None,
        kind: str | None = None,
        chains: Sequence[str] = (),
        source: str | None = None,
    ) -> None:
        self.target_id = target_id
        self.reason = reason
        self.field = field
        self.entity = entity
        self.kind = kind
        self.chains = tuple(chains)
        self.source = source
        super().__init__(str(self))

    def __reduce__(self) -> tuple:
        # picklable (worker processes send errors back): rebuild from the two positionals, then the rest
        return (type(self), (self.target_id, self.reason), dict(self.__dict__))

    def __str__(self) -> str:
        parts = [f"target {self.target_id}" if self.target_id is not None else (self.source or "input")]
        if self.entity is not None:
            detail = [self.kind] if self.kind else []
            if self.chains:
                detail.append(("chain " if len(self.chains) == 1 else "chains ") + ", ".join(self.chains))
            parts.append(f"entity {self.entity}" + (f" ({', '.join(detail)})" if detail else ""))
        if self.field:
            parts.append(self.field)
        return ": ".join([*parts, self.reason]).replace("\n", " ")


@dataclass(frozen=True)
class Entity:
    """One molecular entity and the chains that are copies of it.

    Polymers carry `sequence` (one letter per residue, X/N = unknown) and `modifications`
    ((1-based position, CCD code) replacing that residue). Ligands carry exactly one of
    `ccd_codes` (one or more residues, as AF3), `smiles` or `ligand_file` (SDF/MOL/MOL2/PDB). Ions carry
    `ccd_codes` of one single-atom component. MSA fields follow AF3: None means "search", "" means
    "no MSA"; `*_path` fields are absolute. `templates` holds AF3 template dicts (None = search).
    """

    kind: str
    chain_ids: tuple[str, ...]
    sequence: str | None = None
    ccd_codes: tuple[str, ...] | None = None
    smiles: str | None = None
    ligand_file: Path | None = None
    modifications: tuple[tuple[int, str], ...] = ()
    unpaired_msa: str | None = None
    unpaired_msa_path: Path | None = None
    paired_msa: str | None = None
    paired_msa_path: Path | None = None
    templates: tuple[dict, ...] | None = None
    templates_path: Path | None = None

    @property
    def is_polymer(self) -> bool:
        return self.kind in POLYMER_KINDS

    def residue_codes(self) -> list[str] | None:
        """CCD code per residue for polymers (modifications applied) and CCD ligands; None otherwise."""
        if self.is_polymer:
            codes = [_LETTER_TO_CCD[self.kind][c] for c in self.sequence]
            for position, code in self.modifications:
                codes[position - 1] = code
            return codes
        return list(self.ccd_codes) if self.ccd_codes is not None else None

    @property
    def num_residues(self) -> int:
        if self.is_polymer:
            return len(self.sequence)
        return len(self.ccd_codes) if self.ccd_codes is not None else 1


@dataclass(frozen=True)
class Target:
    """One prediction job. `bonds` are covalent links between atoms (AF3 `bondedAtomPairs`).

    `seeds` empty means "the workflow's default seeds". `user_ccd` is mmCIF text of extra components,
    `user_ccd_path` a components file; both override the CCD for this target only.
    """

    target_id: str
    entities: tuple[Entity, ...]
    bonds: tuple[tuple[AtomRef, AtomRef], ...] = ()
    seeds: tuple[int, ...] = ()
    user_ccd: str | None = None
    user_ccd_path: Path | None = None
    source: Path | None = field(default=None, compare=False)
    dialect: str = field(default="csv", compare=False)  # "csv" | "alphafold3" | "protenix"

    @property
    def chain_ids(self) -> list[str]:
        return [c for e in self.entities for c in e.chain_ids]

    def entity_of_chain(self, chain_id: str) -> tuple[int, Entity]:
        """(0-based entity index, entity) of a chain id; KeyError when absent."""
        for i, entity in enumerate(self.entities):
            if chain_id in entity.chain_ids:
                return i, entity
        raise KeyError(chain_id)


def chain_id_from_index(index: int) -> str:
    """0 → A, 25 → Z, 26 → AA, 27 → BA (least significant letter first, as AF3 and Protenix)."""
    letters = []
    num = index
    while num >= 0:
        letters.append(chr(ord("A") + num % 26))
        num = num // 26 - 1
    return "".join(letters)


def check_target_id(target_id: Any) -> str | None:
    """The reason `target_id` is not a safe file name, or None when it is."""
    if not isinstance(target_id, str) or not target_id:
        return "target_id is empty"
    if not TARGET_ID_RE.fullmatch(target_id):
        if len(target_id) > 100:
            return f"target_id {target_id[:20]!r}... is longer than 100 characters"
        return f"target_id {target_id!r} is not a safe file name (use only A-Z a-z 0-9 . _ -)"
    if target_id.startswith("."):
        return f"target_id {target_id!r} must not start with a dot"
    return None


# ---------------------------------------------------------------------------------------------
# Parsing context: who we are parsing, where relative paths start, which roots are allowed.


@dataclass
class _Ctx:
    target_id: str | None
    base_dir: Path
    allowed_roots: tuple[Path, ...]
    source: str
    entity: int | None = None
    kind: str | None = None
    chains: tuple[str, ...] = ()

    def error(self, field: str | None, reason: str) -> TargetError:
        return TargetError(
            self.target_id, reason, field=field, entity=self.entity, kind=self.kind, chains=self.chains,
            source=self.source,
        )  # fmt: skip

    def for_entity(self, index: int, kind: str | None, chains: Sequence[str] = ()) -> _Ctx:
        return replace(self, entity=index + 1, kind=kind, chains=tuple(chains))

    def path(self, field: str, value: Any, must_exist: bool = True, is_dir: bool = False) -> Path:
        """Resolve a user path against `base_dir`, inside the allowed roots."""
        if not isinstance(value, str) or not value:
            raise self.error(field, f"expected a non-empty path string, got {value!r}")
        path = (self.base_dir / value).resolve()
        if not any(path.is_relative_to(root) for root in self.allowed_roots):
            roots = ", ".join(str(r) for r in self.allowed_roots)
            raise self.error(field, f"path {value!r} is outside the allowed roots ({roots})")
        if must_exist and not (path.is_dir() if is_dir else path.is_file()):
            raise self.error(field, f"{'folder' if is_dir else 'file'} not found: {value}")
        return path


def _roots(allowed_roots: Iterable[str | Path] | None, default: Path) -> tuple[Path, ...]:
    if allowed_roots is None:
        return (default.resolve(),)
    return tuple(Path(r).resolve() for r in allowed_roots)


def _int(ctx: _Ctx, field: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    # bool is an int subclass in Python; JSON true is not a number.
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ctx.error(field, f"expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ctx.error(field, f"must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ctx.error(field, f"must be <= {maximum}, got {value}")
    return value


def _seeds(ctx: _Ctx, field: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise ctx.error(field, f"expected a non-empty list of integer seeds, got {value!r}")
    return tuple(_int(ctx, field, v, 0, MAX_SEED) for v in value)


def _sequence(ctx: _Ctx, kind: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ctx.error("sequence", f"expected a string, got {value!r}")
    sequence = "".join(value.split()).upper()
    if not sequence:
        raise ctx.error("sequence", "empty sequence")
    allowed = POLYMER_LETTERS[kind]
    for i, letter in enumerate(sequence):
        if letter not in allowed:
            raise ctx.error("sequence", f"unknown residue letter {letter!r} at {i + 1}")
    return sequence


def _ccd_code(ctx: _Ctx, field: str, value: Any) -> str:
    if not isinstance(value, str) or not CCD_CODE_RE.fullmatch(value):
        raise ctx.error(field, f"{value!r} is not a CCD code (letters, digits and '-')")
    return value


def _modifications(ctx: _Ctx, items: Any, length: int, pos_key: str, type_key: str, prefix: str) -> tuple:
    if items is None:
        return ()
    if not isinstance(items, list):
        raise ctx.error("modifications", f"expected a list, got {items!r}")
    seen: dict[int, str] = {}
    for item in items:
        if not isinstance(item, dict) or pos_key not in item or type_key not in item:
            raise ctx.error(
                "modifications", f"each modification needs {type_key!r} and {pos_key!r}: {item!r}"
            )
        position = _int(ctx, f"modifications.{pos_key}", item[pos_key])
        if not 1 <= position <= length:
            raise ctx.error(f"modifications.{pos_key}", f"position {position} is out of range 1..{length}")
        code = item[type_key]
        if prefix and isinstance(code, str):
            if not code.startswith(prefix):
                raise ctx.error(f"modifications.{type_key}", f"expected {prefix}<code>, got {code!r}")
            code = code[len(prefix) :]
        code = _ccd_code(ctx, f"modifications.{type_key}", code)
        if position in seen:
            raise ctx.error(f"modifications.{pos_key}", f"position {position} is modified twice")
        seen[position] = code
    return tuple(sorted(seen.items()))


def _ligand_file(ctx: _Ctx, field: str, value: str) -> Path:
    path = ctx.path(field, value.strip())
    if path.suffix.lower() not in LIGAND_FILE_SUFFIXES:
        raise ctx.error(field, f"ligand file must end in {', '.join(LIGAND_FILE_SUFFIXES)}: {value.strip()}")
    return path


def _check_keys(ctx: _Ctx, what: str, data: dict, allowed: Iterable[str]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ctx.error(what, f"unknown field {unknown[0]!r}")


def _chain_ids(ctx: _Ctx, value: Any) -> tuple[str, ...]:
    ids = [value] if isinstance(value, str) else value
    if not isinstance(ids, list) or not ids:
        raise ctx.error("id", f"expected a chain id or a non-empty list of chain ids, got {value!r}")
    for chain in ids:
        if not isinstance(chain, str) or not CHAIN_ID_RE.fullmatch(chain):
            raise ctx.error("id", f"chain id {chain!r} must be 1-4 letters or digits")
    return tuple(ids)


def _unique_chains(ctx: _Ctx, entities: Sequence[Entity]) -> None:
    seen: set[str] = set()
    for i, entity in enumerate(entities):
        for chain in entity.chain_ids:
            if chain in seen:
                raise ctx.for_entity(i, entity.kind, entity.chain_ids).error(
                    "id", f"duplicate chain id {chain!r}"
                )
            seen.add(chain)


def _bond_ref(ctx: _Ctx, field: str, ref: Any, entities: Sequence[Entity]) -> AtomRef:
    if not (isinstance(ref, list | tuple) and len(ref) == 3 and isinstance(ref[0], str)):
        raise ctx.error(field, f"expected [chain id, residue number, atom name], got {ref!r}")
    chain, residue, atom = ref[0], _int(ctx, field, ref[1]), ref[2]
    if not isinstance(atom, str) or not atom:
        raise ctx.error(field, f"atom name must be a non-empty string, got {atom!r}")
    owner = [e for e in entities if chain in e.chain_ids]
    if not owner:
        raise ctx.error(field, f"bond to unknown chain {chain!r}")
    if not 1 <= residue <= owner[0].num_residues:
        raise ctx.error(
            field, f"residue {residue} of chain {chain} is out of range 1..{owner[0].num_residues}"
        )
    return (chain, residue, atom)


# ---------------------------------------------------------------------------------------------
# AlphaFold 3 JSON


_AF3_TOP = (
    "dialect",
    "version",
    "name",
    "modelSeeds",
    "sequences",
    "bondedAtomPairs",
    "userCCD",
    "userCCDPath",
)
_AF3_ENTITY = {
    "protein": ("id", "sequence", "modifications", "unpairedMsa", "unpairedMsaPath", "pairedMsa",
                "pairedMsaPath", "templates", "description"),
    "rna": ("id", "sequence", "modifications", "unpairedMsa", "unpairedMsaPath", "description"),
    "dna": ("id", "sequence", "modifications", "description"),
    "ligand": ("id", "ccdCodes", "smiles", "description"),
}  # fmt: skip


def _af3_version_check(ctx: _Ctx, data: dict, version: int) -> None:
    for key in data:
        if _AF3_FIELD_VERSION.get(key, 1) > version:
            raise ctx.error(
                key, f"needs AlphaFold 3 input version >= {_AF3_FIELD_VERSION[key]}, file has {version}"
            )


def _af3_msa(ctx: _Ctx, data: dict, key: str) -> tuple[str | None, Path | None]:
    text, path = data.get(key), data.get(key + "Path")
    if text is not None and path is not None:
        raise ctx.error(key, f"give {key} or {key}Path, not both")
    if text is not None and not isinstance(text, str):
        raise ctx.error(key, f"expected a3m text, got {type(text).__name__}")
    return text, (ctx.path(key + "Path", path) if path is not None else None)


def _brief(exc: BaseException) -> str:
    """A parser's message on one line, cut short (gemmi quotes the offending text)."""
    return " ".join(str(exc).split())[:120]


def _template_residues(ctx: _Ctx, field: str, text: str) -> int:
    """Residues of a template's (first) chain, unresolved ones included (its entity_poly_seq, as
    AF3's `templateIndices` count them); the mmCIF must parse and hold atoms."""
    try:
        document = gemmi.cif.read_string(text)
        structure = gemmi.make_structure_from_block(document[0])
    except (RuntimeError, ValueError, IndexError) as exc:
        raise ctx.error(field, f"not a readable mmCIF ({_brief(exc)})") from None
    if len(structure) == 0 or len(structure[0]) == 0 or len(structure[0][0]) == 0:
        raise ctx.error(field, "the mmCIF holds no atoms")
    structure.setup_entities()
    entity = structure.get_entity_of(structure[0][0].get_polymer())
    return len(entity.full_sequence) if entity is not None and entity.full_sequence else len(structure[0][0])


def _af3_templates(ctx: _Ctx, value: Any, length: int) -> tuple[dict, ...] | None:
    """AF3 `templates` entries: the mmCIF must parse and both index lists must lie inside the query
    (`length` residues) and the template's chain."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise ctx.error("templates", f"expected a list, got {value!r}")
    out = []
    for i, template in enumerate(value):
        field = f"templates[{i}]"
        if not isinstance(template, dict):
            raise ctx.error(field, f"expected an object, got {template!r}")
        if ("mmcif" in template) == ("mmcifPath" in template):
            raise ctx.error(field, "give exactly one of mmcif and mmcifPath")
        for key in ("queryIndices", "templateIndices"):
            indices = template.get(key)
            if not isinstance(indices, list) or not all(isinstance(x, int) and x >= 0 for x in indices):
                raise ctx.error(f"{field}.{key}", "expected a list of non-negative integers")
        if len(template["queryIndices"]) != len(template["templateIndices"]):
            raise ctx.error(field, "queryIndices and templateIndices differ in length")
        template = dict(template)
        if "mmcifPath" in template:
            path = ctx.path(f"{field}.mmcifPath", template["mmcifPath"])
            template["mmcifPath"] = str(path)
            try:
                text = read_input_text(path)
            except (OSError, EOFError, lzma.LZMAError, UnicodeDecodeError) as exc:
                raise ctx.error(f"{field}.mmcifPath", f"cannot read {path.name} ({_brief(exc)})") from None
            residues = _template_residues(ctx, f"{field}.mmcifPath", text)
        elif isinstance(template["mmcif"], str):
            residues = _template_residues(ctx, f"{field}.mmcif", template["mmcif"])
        else:
            raise ctx.error(f"{field}.mmcif", "expected mmCIF text")
        for key, size, what in (("queryIndices", length, "query"), ("templateIndices", residues, "template")):
            if template[key] and max(template[key]) >= size:
                raise ctx.error(
                    f"{field}.{key}", f"index {max(template[key])} is past the {what}'s {size} residues"
                )
        out.append(template)
    return tuple(out)


def _parse_af3_entity(ctx: _Ctx, index: int, item: Any, version: int) -> Entity:
    if not isinstance(item, dict) or len(item) != 1:
        raise ctx.for_entity(index, None).error(None, "expected one of protein, rna, dna, ligand")
    kind, data = next(iter(item.items()))
    if kind not in _AF3_ENTITY:
        raise ctx.for_entity(index, None).error(
            None, f"unknown entity type {kind!r} (protein, rna, dna, ligand)"
        )
    if not isinstance(data, dict):
        raise ctx.for_entity(index, kind).error(None, f"expected an object, got {data!r}")
    chains = _chain_ids(ctx.for_entity(index, kind), data.get("id"))
    ectx = ctx.for_entity(index, kind, chains)
    _check_keys(ectx, kind, data, _AF3_ENTITY[kind])
    _af3_version_check(ectx, data, version)
    if kind == "ligand":
        codes, smiles = data.get("ccdCodes"), data.get("smiles")
        if codes is not None and smiles is not None:
            raise ectx.error("ccdCodes", "give ccdCodes or smiles, not both")
        if codes is None and smiles is None:
            raise ectx.error("ccdCodes", "give ccdCodes or smiles")
        if smiles is not None:
            if not isinstance(smiles, str) or not smiles.strip():
                raise ectx.error("smiles", "empty SMILES")
            return Entity("ligand", chains, smiles=smiles.strip())
        if not isinstance(codes, list) or not codes:
            raise ectx.error("ccdCodes", f"expected a non-empty list of CCD codes, got {codes!r}")
        return Entity("ligand", chains, ccd_codes=tuple(_ccd_code(ectx, "ccdCodes", c) for c in codes))
    sequence = _sequence(ectx, kind, data.get("sequence"))
    pos_key, type_key = (
        ("ptmPosition", "ptmType") if kind == "protein" else ("basePosition", "modificationType")
    )
    mods = _modifications(ectx, data.get("modifications"), len(sequence), pos_key, type_key, "")
    unpaired, unpaired_path = _af3_msa(ectx, data, "unpairedMsa") if kind != "dna" else (None, None)
    paired, paired_path = _af3_msa(ectx, data, "pairedMsa") if kind == "protein" else (None, None)
    if kind == "protein" and (unpaired is None and unpaired_path is None) != (
        paired is None and paired_path is None
    ):
        # AF3: set both (an empty string means "none") or neither (search)
        raise ectx.error(
            "pairedMsa", "unpairedMsa and pairedMsa must be both set or both unset ('' = no MSA)"
        )
    return Entity(
        kind, chains, sequence=sequence, modifications=mods, unpaired_msa=unpaired,
        unpaired_msa_path=unpaired_path, paired_msa=paired, paired_msa_path=paired_path,
        templates=_af3_templates(ectx, data.get("templates"), len(sequence)),
    )  # fmt: skip


def _check_user_ccd(ctx: _Ctx, field: str, text: str) -> None:
    """User components must be mmCIF blocks, each with its _chem_comp_atom atoms."""
    try:
        document = gemmi.cif.read_string(text)
    except (RuntimeError, ValueError) as exc:
        raise ctx.error(field, f"not readable mmCIF ({_brief(exc)})") from None
    if len(document) == 0:
        raise ctx.error(field, "holds no component (no data_ block)")
    for block in document:
        if not list(block.find_values("_chem_comp_atom.atom_id")):
            raise ctx.error(field, f"component {block.name!r} has no _chem_comp_atom atoms")


def _parse_af3_job(ctx: _Ctx, job: dict) -> Target:
    version = job.get("version")
    if version not in AF3_VERSIONS:
        raise ctx.error("version", f"unsupported AlphaFold 3 input version {version!r} (supported: 1-4)")
    _check_keys(ctx, "job", job, _AF3_TOP)
    _af3_version_check(ctx, job, version)
    sequences = job.get("sequences")
    if not isinstance(sequences, list) or not sequences:
        raise ctx.error("sequences", "expected a non-empty list of entities")
    entities = tuple(_parse_af3_entity(ctx, i, item, version) for i, item in enumerate(sequences))
    _unique_chains(ctx, entities)
    bonds = []
    pairs = job.get("bondedAtomPairs") or []
    if not isinstance(pairs, list):
        raise ctx.error("bondedAtomPairs", f"expected a list, got {pairs!r}")
    for i, pair in enumerate(pairs):
        field = f"bondedAtomPairs[{i}]"
        if not isinstance(pair, list) or len(pair) != 2:
            raise ctx.error(field, f"expected a pair of atoms, got {pair!r}")
        bonds.append(tuple(_bond_ref(ctx, field, ref, entities) for ref in pair))
    user_ccd = job.get("userCCD")
    if user_ccd is not None and not isinstance(user_ccd, str):
        raise ctx.error("userCCD", "expected mmCIF text")
    user_ccd_path = ctx.path("userCCDPath", job["userCCDPath"]) if job.get("userCCDPath") else None
    if user_ccd and user_ccd_path:
        raise ctx.error("userCCD", "give userCCD or userCCDPath, not both")
    if user_ccd:
        _check_user_ccd(ctx, "userCCD", user_ccd)
    elif user_ccd_path is not None and user_ccd_path.suffix.lower() not in (".gz", ".xz"):
        _check_user_ccd(ctx, "userCCDPath", user_ccd_path.read_text(errors="replace"))
    return Target(
        ctx.target_id, entities, tuple(bonds), _seeds(ctx, "modelSeeds", job.get("modelSeeds")),
        user_ccd=user_ccd or None, user_ccd_path=user_ccd_path, dialect="alphafold3",
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Protenix JSON (also the AlphaFold Server shape it derives from)


_PX_KINDS = {
    "proteinChain": "protein",
    "rnaSequence": "rna",
    "dnaSequence": "dna",
    "ligand": "ligand",
    "ion": "ion",
}
_PX_ENTITY = {
    "proteinChain": ("sequence", "count", "id", "modifications", "glycans", "msa", "unpairedMsa",
                     "unpairedMsaPath", "pairedMsa", "pairedMsaPath", "templates", "templatesPath"),
    "rnaSequence": ("sequence", "count", "id", "modifications", "msa", "unpairedMsa", "unpairedMsaPath"),
    "dnaSequence": ("sequence", "count", "id", "modifications"),
    "ligand": ("ligand", "count", "id"),
    "ion": ("ion", "count", "id"),
}  # fmt: skip
_PX_TOP = ("name", "sequences", "covalent_bonds", "modelSeeds", "assembly_id", "dialect", "version")


def _parse_protenix_entity(ctx: _Ctx, index: int, item: Any) -> tuple[str, dict, int]:
    """(kind key, data, count) of one Protenix `sequences` entry; chain ids come later."""
    if not isinstance(item, dict) or len(item) != 1:
        raise ctx.for_entity(index, None).error(None, f"expected one of {', '.join(_PX_KINDS)}")
    key, data = next(iter(item.items()))
    if key not in _PX_KINDS:
        raise ctx.for_entity(index, None).error(None, f"unknown entity type {key!r} ({', '.join(_PX_KINDS)})")
    ectx = ctx.for_entity(index, _PX_KINDS[key])
    if not isinstance(data, dict):
        raise ectx.error(None, f"expected an object, got {data!r}")
    _check_keys(ectx, key, data, _PX_ENTITY[key])
    return key, data, _int(ectx, "count", data.get("count", 1), minimum=1)


def _protenix_entity(ctx: _Ctx, key: str, data: dict, chains: tuple[str, ...]) -> Entity:
    kind = _PX_KINDS[key]
    if kind == "ion":
        code = data.get("ion")
        code = code[4:] if isinstance(code, str) and code.startswith("CCD_") else code
        return Entity("ion", chains, ccd_codes=(_ccd_code(ctx, "ion", code),))
    if kind == "ligand":
        value = data.get("ligand")
        if not isinstance(value, str) or not value.strip():
            raise ctx.error("ligand", f"expected CCD_<code>, FILE_<path> or a SMILES string, got {value!r}")
        value = value.strip()
        if value.startswith("CCD_"):
            codes = value[4:].split("_")
            return Entity("ligand", chains, ccd_codes=tuple(_ccd_code(ctx, "ligand", c) for c in codes))
        if value.startswith("FILE_"):
            return Entity("ligand", chains, ligand_file=_ligand_file(ctx, "ligand", value[5:]))
        return Entity("ligand", chains, smiles=value)
    sequence = _sequence(ctx, kind, data.get("sequence"))
    pos_key, type_key = (
        ("ptmPosition", "ptmType") if kind == "protein" else ("basePosition", "modificationType")
    )
    mods = _modifications(ctx, data.get("modifications"), len(sequence), pos_key, type_key, "CCD_")
    unpaired, unpaired_path = _af3_msa(ctx, data, "unpairedMsa") if kind != "dna" else (None, None)
    paired, paired_path = _af3_msa(ctx, data, "pairedMsa") if kind == "protein" else (None, None)
    msa = data.get("msa")
    if (
        msa is not None
        and unpaired is None
        and unpaired_path is None
        and paired is None
        and paired_path is None
    ):
        if not isinstance(msa, dict):
            raise ctx.error("msa", f"expected an object with precomputed_msa_dir, got {msa!r}")
        if msa.get("precomputed_msa_dir"):
            folder = ctx.path("msa.precomputed_msa_dir", msa["precomputed_msa_dir"], is_dir=True)
            unpaired_path = folder / "non_pairing.a3m" if (folder / "non_pairing.a3m").is_file() else None
            paired_path = folder / "pairing.a3m" if (folder / "pairing.a3m").is_file() else None
            if unpaired_path is None and paired_path is None:
                raise ctx.error("msa.precomputed_msa_dir", "holds neither non_pairing.a3m nor pairing.a3m")
    if data.get("glycans"):
        raise ctx.error("glycans", "not supported; give each glycan as a ligand with covalent_bonds")
    templates_path = ctx.path("templatesPath", data["templatesPath"]) if data.get("templatesPath") else None
    return Entity(
        kind, chains, sequence=sequence, modifications=mods, unpaired_msa=unpaired,
        unpaired_msa_path=unpaired_path, paired_msa=paired, paired_msa_path=paired_path,
        templates=_af3_templates(ctx, data.get("templates"), len(sequence)), templates_path=templates_path,
    )  # fmt: skip


def _protenix_bond_side(
    ctx: _Ctx, field: str, bond: dict, side: int, entities: list[Entity]
) -> list[AtomRef]:
    """Atom refs of one side of a Protenix covalent bond: one per copy when `copy` is not given."""
    old = ("left", "right")[side]
    get = lambda name: bond.get(f"{name}{side + 1}", bond.get(f"{old}_{name}"))  # noqa: E731
    entity_no = _int(ctx, f"{field}.entity{side + 1}", get("entity"))
    if not 1 <= entity_no <= len(entities):
        raise ctx.error(f"{field}.entity{side + 1}", f"entity {entity_no} is out of range 1..{len(entities)}")
    entity = entities[entity_no - 1]
    position = _int(ctx, f"{field}.position{side + 1}", get("position"))
    atom = get("atom")
    if isinstance(atom, int) or (isinstance(atom, str) and atom.isdigit()):
        atom = f"#{int(atom)}"  # SMILES atom-map number / file atom index, resolved by from_target
    if not isinstance(atom, str) or not atom:
        raise ctx.error(f"{field}.atom{side + 1}", f"expected an atom name, got {atom!r}")
    copy = get("copy")
    chains = entity.chain_ids
    if copy is not None:
        copy = _int(ctx, f"{field}.copy{side + 1}", copy, 1, len(chains))
        chains = (chains[copy - 1],)
    return [_bond_ref(ctx, field, [c, position, atom], entities) for c in chains]


def _parse_protenix_job(ctx: _Ctx, job: dict) -> Target:
    _check_keys(ctx, "job", job, _PX_TOP)
    sequences = job.get("sequences")
    if not isinstance(sequences, list) or not sequences:
        raise ctx.error("sequences", "expected a non-empty list of entities")
    parsed = [_parse_protenix_entity(ctx, i, item) for i, item in enumerate(sequences)]
    # Explicit ids first, then A, B, C... skipping taken ones, in entity order (as Protenix).
    used: set[str] = set()
    for i, (key, data, count) in enumerate(parsed):
        if data.get("id") is not None:
            ids = _chain_ids(ctx.for_entity(i, _PX_KINDS[key]), data["id"])
            if len(ids) != count:
                raise ctx.for_entity(i, _PX_KINDS[key], ids).error(
                    "id", f"{len(ids)} chain ids for count {count}"
                )
            for chain in ids:
                if chain in used:
                    raise ctx.for_entity(i, _PX_KINDS[key], ids).error("id", f"duplicate chain id {chain!r}")
                used.add(chain)
    entities: list[Entity] = []
    next_index = 0
    for i, (key, data, count) in enumerate(parsed):
        if data.get("id") is not None:
            chains = _chain_ids(ctx, data["id"])
        else:
            chains = []
            while len(chains) < count:
                candidate = chain_id_from_index(next_index)
                next_index += 1
                if candidate not in used:
                    chains.append(candidate)
                    used.add(candidate)
            chains = tuple(chains)
        entities.append(_protenix_entity(ctx.for_entity(i, _PX_KINDS[key], chains), key, data, chains))
    bonds = []
    covalent = job.get("covalent_bonds") or []
    if not isinstance(covalent, list):
        raise ctx.error("covalent_bonds", f"expected a list, got {covalent!r}")
    for i, bond in enumerate(covalent):
        field = f"covalent_bonds[{i}]"
        if not isinstance(bond, dict):
            raise ctx.error(field, f"expected an object, got {bond!r}")
        left, right = (_protenix_bond_side(ctx, field, bond, s, entities) for s in (0, 1))
        if len(left) != len(right):  # as Protenix: copy k bonds to copy k, or name the copies
            raise ctx.error(field, f"{len(left)} and {len(right)} copies to pair; give copy1 and copy2")
        bonds.extend(zip(left, right, strict=True))
    # AlphaFold Server jobs (the shape Protenix reads) may give "modelSeeds": [] for "any seed"
    seeds = _seeds(ctx, "modelSeeds", job["modelSeeds"]) if job.get("modelSeeds") not in (None, []) else ()
    dialect = "alphafoldserver" if job.get("dialect") == "alphafoldserver" else "protenix"
    return Target(ctx.target_id, tuple(entities), tuple(bonds), seeds, dialect=dialect)


# ---------------------------------------------------------------------------------------------
# Job files


def detect_dialect(data: Any) -> str:
    """'alphafold3', 'alphafoldserver' or 'protenix' for a parsed JSON job file; ValueError otherwise.

    AlphaFold Server jobs have the shape Protenix reads (proteinChain, ..., count) and are parsed alike.
    """
    jobs = data if isinstance(data, list) else [data]
    if not jobs or not all(isinstance(j, dict) for j in jobs):
        raise ValueError("expected a job object or a non-empty list of job objects")
    job = jobs[0]
    if "dialect" in job:
        if job["dialect"] not in ("alphafold3", "alphafoldserver"):
            supported = "alphafold3, alphafoldserver, or Protenix without one"
            raise ValueError(f"unknown dialect {job['dialect']!r} (supported: {supported})")
        return job["dialect"]
    entries = job.get("sequences")
    if isinstance(entries, list) and entries and all(isinstance(e, dict) for e in entries):
        keys = {k for e in entries for k in e}
        if keys & set(_PX_KINDS):
            return "protenix"
        if keys & set(_AF3_ENTITY):
            raise ValueError('AlphaFold 3 job without "dialect": "alphafold3" and "version"')
    raise ValueError(
        "neither an AlphaFold 3 job (dialect alphafold3) nor a Protenix job (sequences of proteinChain...)"
    )


def _job_name(job: dict, index: int, path: Path) -> str:
    """The job's `name` (else the file name, numbered after the first job) as a safe target id."""
    name = job.get("name")
    if not isinstance(name, str) or not name.strip():
        name = path.name.split(".")[0] + (f"_{index + 1}" if index else "")
    # AF3 sanitises job names into file names the same way.
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name.strip()).lstrip(".")[:100] or f"job_{index + 1}"


def _file_size_problem(path: Path, limits: InputLimits) -> str | None:
    size_mb = path.stat().st_size / 2**20
    if size_mb > limits.max_file_mb:
        return f"file is {size_mb:.1f} MB, more than limits.input_file_mb ({limits.max_file_mb:g} MB)"
    return None


def json_depth(data: Any, limit: int) -> int:
    """Nesting depth of parsed JSON (containers only), counted level by level; stops past `limit`."""
    depth, level = 0, [data]
    while True:
        containers = [x for x in level if isinstance(x, dict | list)]
        if not containers or depth > limit:
            return depth
        depth += 1
        level = [v for c in containers for v in (c.values() if isinstance(c, dict) else c)]


def _read_json(ctx: _Ctx, path: Path, limits: InputLimits) -> Any:
    try:
        if problem := _file_size_problem(path, limits):
            raise ctx.error("json", f"{path.name}: {problem}")
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ctx.error("json", f"file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ctx.error("json", f"invalid JSON: {exc}") from None
    except RecursionError:
        raise ctx.error("json", f"nested deeper than limits.json_depth ({limits.max_json_depth})") from None
    if json_depth(data, limits.max_json_depth) > limits.max_json_depth:
        raise ctx.error("json", f"nested deeper than limits.json_depth ({limits.max_json_depth})")
    return data


def _read_job_file(
    path: Path, target_id: str | None, roots: tuple[Path, ...], source: str, limits: InputLimits
) -> tuple[list[Target], list[TargetError]]:
    ctx = _Ctx(target_id, path.parent, roots, source)
    data = _read_json(ctx, path, limits)
    try:
        dialect = detect_dialect(data)
    except ValueError as exc:
        raise ctx.error("dialect", str(exc)) from None
    jobs = data if isinstance(data, list) else [data]
    names = [_job_name(job, i, path) for i, job in enumerate(jobs)]
    if target_id is not None:
        if len(jobs) > 1:
            if target_id not in names:
                raise ctx.error("json", f"{path.name} holds {len(jobs)} jobs and none is named {target_id!r}")
            jobs = [jobs[names.index(target_id)]]
        names = [target_id]
    parse = _parse_af3_job if dialect == "alphafold3" else _parse_protenix_job
    targets, errors = [], []
    folded = [n.lower() for n in names]
    for job, name in zip(jobs, names, strict=True):
        try:
            if folded.count(name.lower()) > 1:
                raise replace(ctx, target_id=name).error(
                    "name", f"{folded.count(name.lower())} jobs share the name {name!r}"
                )
            if job.get("dialect", "protenix") != dialect:
                raise ctx.error("dialect", f"job {name!r} is not dialect {dialect} like the first job")
            targets.append(replace(parse(replace(ctx, target_id=name), job), source=path))
        except TargetError as exc:
            errors.append(exc)
        except Exception as exc:  # whatever the job holds, it fails alone
            errors.append(replace(ctx, target_id=name).error(None, unexpected(exc)))
    return targets, errors


def unexpected(exc: BaseException) -> str:
    """One line for an error no check foresaw: its type and message."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}".rstrip(": ")


# ---------------------------------------------------------------------------------------------
# targets.csv inline chains


_COPIES_RE = re.compile(r"^(.*?)x(\d+)$", re.DOTALL)
_INLINE_RESIDUE_RE = re.compile(r"\(([A-Za-z0-9]{1,5})\)|(.)", re.DOTALL)
_UNKNOWN_LETTER = {"protein": "X", "rna": "N", "dna": "N"}


def _inline_polymer(ctx: _Ctx, kind: str, value: str) -> tuple[str, tuple[tuple[int, str], ...]]:
    """`MK(SEP)T` → sequence 'MKXT' with modification (3, 'SEP')."""
    letters, mods = [], []
    for match in _INLINE_RESIDUE_RE.finditer("".join(value.split())):
        if match.group(1):
            mods.append((len(letters) + 1, match.group(1).upper()))
            letters.append(_UNKNOWN_LETTER[kind])
        else:
            letters.append(match.group(2))
    return _sequence(ctx, kind, "".join(letters)), tuple(mods)


def parse_inline_chains(ctx: _Ctx, spec: str) -> tuple[Entity, ...]:
    """Entities from the `chains` column; chain ids A, B, C... in order."""
    entities: list[Entity] = []
    next_index = 0
    items = [s.strip() for s in spec.split(";")]
    if not any(items):
        raise ctx.error("chains", "no chains given")
    for i, item in enumerate(items):
        if not item:
            continue
        kind, sep, value = item.partition(":")
        kind = kind.strip().lower()
        ectx = ctx.for_entity(len(entities), kind if kind in ENTITY_KINDS else None)
        if not sep or kind not in ENTITY_KINDS:
            raise ectx.error(
                "chains",
                f"item {i + 1} {item[:30]!r} must be KIND:VALUE with KIND one of {', '.join(ENTITY_KINDS)}",
            )
        value, count = value.strip(), 1
        if match := _COPIES_RE.match(value):
            value, count = match.group(1).strip(), _int(ectx, "chains", match.group(2), minimum=1)
        chains = tuple(chain_id_from_index(next_index + k) for k in range(count))
        next_index += count
        ectx = ctx.for_entity(len(entities), kind, chains)
        if not value:
            raise ectx.error("chains", f"item {i + 1} has an empty value")
        if kind in POLYMER_KINDS:
            sequence, mods = _inline_polymer(ectx, kind, value)
            entities.append(Entity(kind, chains, sequence=sequence, modifications=mods))
        elif kind == "ion":
            entities.append(Entity("ion", chains, ccd_codes=(_ccd_code(ectx, "chains", value.upper()),)))
        elif value.lower().startswith("smiles="):
            if not value[7:].strip():
                raise ectx.error("smiles", "empty SMILES")
            entities.append(Entity("ligand", chains, smiles=value[7:].strip()))
        elif value.lower().startswith("file="):
            path = _ligand_file(ectx, "ligand_file", value[5:])
            entities.append(Entity("ligand", chains, ligand_file=path))
        else:
            codes = tuple(_ccd_code(ectx, "chains", c.strip().upper()) for c in value.split("_"))
            entities.append(Entity("ligand", chains, ccd_codes=codes))
    return tuple(entities)


def _inline_bonds(ctx: _Ctx, spec: str, entities: Sequence[Entity]) -> tuple:
    bonds = []
    for i, item in enumerate(s.strip() for s in spec.split(";")):
        if not item:
            continue
        sides = item.split("-")
        refs = [side.split(":") for side in sides]
        if len(sides) != 2 or any(len(r) != 3 for r in refs):
            raise ctx.error("bonds", f"bond {i + 1} {item!r} must look like A:1:SG-B:1:C1")
        bonds.append(
            tuple(_bond_ref(ctx, "bonds", [r[0].strip(), r[1].strip(), r[2].strip()], entities) for r in refs)
        )
    return tuple(bonds)


def _csv_seeds(ctx: _Ctx, spec: str) -> tuple[int, ...]:
    return _seeds(ctx, "seeds", [s for s in re.split(r"[\s,]+", spec.strip()) if s])


# ---------------------------------------------------------------------------------------------
# Public entry points


def load_job_json(
    path: str | Path,
    target_id: str | None = None,
    allowed_roots: Iterable[str | Path] | None = None,
    limits: InputLimits = InputLimits(),
) -> list[Target]:
    """Targets of an AlphaFold 3 or Protenix job file (one job or a list); raises the first TargetError.

    `target_id` names the single job (or picks the job of that name from a list). Relative paths
    inside the file start at its folder; every path must lie under `allowed_roots` (default: the
    file's folder). The chemistry is `model.data.from_target.check_target`'s job.
    """
    path = Path(path).resolve()
    targets, errors = _read_job_file(path, target_id, _roots(allowed_roots, path.parent), path.name, limits)
    if errors:
        raise errors[0]
    return targets


@dataclass(frozen=True)
class _CsvRow:
    number: int  # the row's line in the table without comment lines (header = 1)
    values: dict[str, str]
    problem: str | None = None  # why the row cannot be read (bad bytes, too many fields)


def _csv_rows(csv_path: Path, file_ctx: _Ctx, limits: InputLimits) -> list[_CsvRow]:
    """The table's rows; a BOM and CRLF line ends are accepted, '#' lines skipped. A line that is
    not UTF-8 or a row with more fields than the header spoils that row alone (`problem`); a table
    without a target_id header, or with an unknown column, is a TargetError."""
    try:
        if problem := _file_size_problem(csv_path, limits):
            raise file_ctx.error(None, problem)
        raw = csv_path.read_bytes()
    except FileNotFoundError:
        raise file_ctx.error(None, "file not found") from None
    except OSError as exc:
        raise file_ctx.error(None, f"cannot read: {exc.strerror or exc}") from None
    lines, bad_bytes = [], {}
    for line in raw.removeprefix(b"\xef\xbb\xbf").splitlines(keepends=True):
        text = line.decode("utf-8", errors="replace")
        if text.lstrip().startswith("#"):
            continue
        lines.append(text)
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad_bytes[len(lines)] = f"byte 0x{line[exc.start]:02x} at column {exc.start + 1} is not UTF-8"
    reader = csv.reader(lines)
    header = [c.strip() for c in next(reader, [])]
    if not any(header):
        raise file_ctx.error(None, "empty: no header and no target rows")
    if 1 in bad_bytes:
        raise file_ctx.error(None, f"header line: {bad_bytes[1]} (save the table as UTF-8)")
    if "target_id" not in header:
        if not set(header) & set(CSV_COLUMNS):
            found = ",".join(header)[:60]
            raise file_ctx.error(
                None, f"no header: the first line must name the columns, e.g. target_id,chains: {found!r}"
            )
        raise file_ctx.error(None, f"no target_id column (columns: {', '.join(header)})")
    unknown = [c for c in header if c not in CSV_COLUMNS]
    if unknown:
        raise file_ctx.error(None, f"unknown column {unknown[0]!r} (columns: {', '.join(CSV_COLUMNS)})")
    if len(set(header)) != len(header):
        raise file_ctx.error(None, f"a column is named twice: {','.join(header)}")
    if not {"json", "chains"} & set(header):
        raise file_ctx.error(None, "needs a json or a chains column")
    rows, first_line = [], 2
    for fields in reader:
        number, last_line = first_line, reader.line_num
        first_line = last_line + 1
        if not any(f.strip() for f in fields):
            continue
        problem = next((bad_bytes[n] for n in range(number, last_line + 1) if n in bad_bytes), None)
        if problem is None and len(fields) > len(header):
            problem = (
                f"{len(fields)} fields but the header has {len(header)} columns"
                " (quote a value that holds a comma)"
            )
        rows.append(_CsvRow(number, dict(zip(header, fields, strict=False)), problem))
    if not rows:
        raise file_ctx.error(None, "empty: no target rows")
    return rows


def load_targets(
    csv_path: str | Path,
    allowed_roots: Iterable[str | Path] | None = None,
    limits: InputLimits = InputLimits(),
) -> tuple[list[Target], list[TargetError]]:
    """Good targets and one TargetError per bad row of a targets.csv (or a single JSON job file).

    Raises TargetError only when the file itself is unusable (missing, no header, an unknown column,
    no rows); anything wrong with a row, whatever it is, becomes that row's error. `allowed_roots`
    defaults to the CSV's folder. Only parses: `model.data.from_target.check_targets` checks the
    chemistry (CCD codes, SMILES, bonds) by building each structure.
    """
    csv_path = Path(csv_path).resolve()
    roots = _roots(allowed_roots, csv_path.parent)
    if csv_path.suffix.lower() == ".json":
        targets, errors = _read_job_file(csv_path, None, roots, csv_path.name, limits)
        return targets, errors
    file_ctx = _Ctx(None, csv_path.parent, roots, csv_path.name)
    rows = _csv_rows(csv_path, file_ctx, limits)
    folded: dict[str, int] = {}
    for row in rows:
        key = (row.values.get("target_id") or "").strip().lower()
        folded[key] = folded.get(key, 0) + 1
    targets: list[Target] = []
    errors: list[TargetError] = []
    for row in rows:
        target_id = (row.values.get("target_id") or "").strip()
        reason = check_target_id(target_id)
        # An unsafe id never names a file (failed/{target}.txt); its row number does instead.
        ctx = replace(file_ctx, target_id=invalid_row_id(row.number) if reason else target_id)
        try:
            if reason:
                raise ctx.error("target_id", reason)
            if row.problem:
                raise ctx.error(f"row {row.number}", row.problem)
            if folded[target_id.lower()] > 1:
                raise ctx.error(
                    "target_id", f"duplicate target_id {target_id!r} (ids are compared case-insensitively)"
                )
            targets.append(_row_target(ctx, row, csv_path, roots, limits))
        except TargetError as exc:
            errors.append(exc)
        except Exception as exc:  # whatever the row holds, it fails alone
            errors.append(ctx.error(None, unexpected(exc)))
    return targets, errors


def _row_target(
    ctx: _Ctx,
    row: _CsvRow,
    csv_path: Path,
    roots: tuple[Path, ...],
    limits: InputLimits,
) -> Target:
    values, target_id = row.values, ctx.target_id
    json_spec, chains_spec = (values.get("json") or "").strip(), (values.get("chains") or "").strip()
    if bool(json_spec) == bool(chains_spec):
        raise ctx.error("json", "give exactly one of the json and chains columns")
    if json_spec:
        job_path = ctx.path("json", json_spec)
        found, bad = _read_job_file(job_path, target_id, roots, csv_path.name, limits)
        if bad:
            raise bad[0]
        target = found[0]
    else:
        entities = parse_inline_chains(ctx, chains_spec)
        _unique_chains(ctx, entities)
        bonds = _inline_bonds(ctx, values.get("bonds") or "", entities)
        target = Target(target_id, entities, bonds, source=csv_path, dialect="csv")
    if (values.get("seeds") or "").strip():
        target = replace(target, seeds=_csv_seeds(ctx, values["seeds"]))
    return target
