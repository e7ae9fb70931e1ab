"""Build the atom-level `Structure` of a prediction `Target` (no coordinates yet).

Polymers are chains of CCD components without hydrogens. As AF3 builds them, linkage removes
OXT from every protein residue but the C-terminal one and OP3 from every nucleotide but the 5' one.
Modified residues replace the residue at their position. Ligands come from CCD codes (several
codes make one multi-residue ligand, linked only by the target's bonds), from SMILES or from a
ligand file (their `Component`s are kept in `structure.components`). Bonds: the CCD's
intra-residue bonds (`ccd`), polymer links C-N / O3'-P (`polymer`) and the target's bonded atom
pairs (`covale`); at each end of a bonded pair one CCD leaving atom next to the bonded atom goes
(a glycan's anomeric O1 when its C1 is bonded). Coordinates are NaN and every atom is unresolved.
"""

from __future__ import annotations

import datetime
import hashlib
import lzma
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import gemmi
import numpy as np

from model.data.ccd import Ccd, Component, load_ccd
from model.data.conformers import component_from_file, component_from_smiles
from model.data.inputs import Entity, Target, TargetError
from model.data.msa import MsaInput, a3m_to_arrays, parse_msa
from model.data.structure import POLYMER_LINK, SELENOMETHIONINE, STANDARD_RESIDUES, Structure
from model.fileio import one_line, read_input_text, write_text_atomic


class _Lookup:
    """The CCD with a target's own components (SMILES, ligand files, user CCD) in front of it."""

    def __init__(self, ccd: Ccd, extra: dict[str, Component]) -> None:
        self.ccd, self.extra = ccd, extra

    def __contains__(self, code: str) -> bool:
        return code in self.extra or code in self.ccd

    def __getitem__(self, code: str) -> Component:
        return self.extra[code] if code in self.extra else self.ccd[code]


def _user_ccd_file(target: Target) -> Path:
    """A components file for the target's user CCD; inline text goes to a content-named temp file."""
    if target.user_ccd_path is not None:
        return target.user_ccd_path
    digest = hashlib.sha256(target.user_ccd.encode()).hexdigest()
    path = Path(tempfile.gettempdir()) / "foldline-user-ccd" / f"{digest}.cif"
    if not path.is_file():
        write_text_atomic(path, target.user_ccd)
    return path


def user_components(target: Target) -> dict[str, Component]:
    """The components a target defines itself (AF3 `userCCD` / `userCCDPath`), by code."""
    if target.user_ccd is None and target.user_ccd_path is None:
        return {}
    field = "userCCD" if target.user_ccd is not None else "userCCDPath"
    try:
        path = _user_ccd_file(target)
        codes = []
        for block in gemmi.cif.read(str(path)):
            code = block.find_value("_chem_comp.id")
            codes.append(gemmi.cif.as_string(code) if code is not None else block.name)
        user_ccd = load_ccd(path)
        return {code: user_ccd[code] for code in codes}
    except (ValueError, RuntimeError, OSError, KeyError) as exc:
        raise TargetError(target.target_id, f"cannot read components: {exc}", field=field) from None


def _entity_error(target: Target, index: int, entity: Entity, field: str, reason: str) -> TargetError:
    return TargetError(
        target.target_id, reason, field=field, entity=index + 1, kind=entity.kind, chains=entity.chain_ids
    )


def normalize_target(target: Target, ccd: Ccd | None = None) -> Target:
    """The same target with a ligand of one single-atom CCD component marked as an ion.

    Makes AF3 (`ligand` with `ccdCodes: ["MG"]`), Protenix (`ion: MG`) and CSV inputs give the same
    `Target`. Raises TargetError for an ion that is unknown or not a single atom.
    """
    lookup = _Lookup((ccd if ccd is not None else load_ccd()), user_components(target))
    entities = []
    for i, entity in enumerate(target.entities):
        if entity.kind in ("ligand", "ion") and entity.ccd_codes is not None and len(entity.ccd_codes) == 1:
            code = entity.ccd_codes[0]
            if code not in lookup:
                field = "ion" if entity.kind == "ion" else "ccd_codes"
                raise _entity_error(target, i, entity, field, f"unknown CCD code {code!r}")
            single = lookup[code].num_heavy_atoms == 1
            if entity.kind == "ion" and not single:
                raise _entity_error(target, i, entity, "ion", f"{code} is not a single-atom ion component")
            if single:
                entity = replace(entity, kind="ion")
        entities.append(entity)
    return replace(target, entities=tuple(entities))


@dataclass(frozen=True)
class _ResidueTemplate:
    """One residue's atoms (a component's kept atoms, in CCD order) and its intra-residue bonds."""

    names: list[str]
    elements: list[str]
    charges: list[int]
    index: dict[str, int]  # atom name -> offset in the residue
    bonds: np.ndarray  # [n, 2] offsets, low-high

    @classmethod
    def of(cls, component: Component, keep: tuple[int, ...]) -> _ResidueTemplate:
        offset = np.full(len(component.atom_names), -1, dtype=np.int64)
        offset[list(keep)] = np.arange(len(keep))
        pairs = offset[component.bonds].reshape(-1, 2)
        pairs = np.sort(pairs[(pairs >= 0).all(axis=1)], axis=1)
        names = [component.atom_names[k] for k in keep]
        return cls(
            names=names,
            elements=[component.elements[k] for k in keep],
            charges=[int(component.charges[k]) for k in keep],
            index={name: n for n, name in enumerate(names)},
            bonds=pairs,
        )


def _kept_atoms(component: Component, kind: str, position: int, length: int) -> list[int]:
    """Component atom indices a residue keeps before bonds: heavy atoms, minus the linkage's leaving atoms.

    As AF3 (`atom_layout.get_link_drop_atoms`): a protein residue loses OXT unless it is the C-terminus,
    a nucleotide loses OP3 unless it is the 5' end; ligands keep all heavy atoms.
    """
    dropped = set()
    if kind == "protein" and position < length:
        dropped.add("OXT")
    elif kind in ("rna", "dna") and position > 1:
        dropped.add("OP3")
    return [
        int(i) for i in np.flatnonzero(component.heavy_atom_mask) if component.atom_names[i] not in dropped
    ]


def _leaving_partners(component: Component, centres: set[str], kept: set[str]) -> set[str]:
    """Leaving atoms that covalent bonds at `centres` replace: one kept CCD leaving neighbour per centre.

    E.g. the anomeric O1 of a glycan whose C1 is bonded, as Protenix removes leaving groups at
    bond centres. `kept` holds the residue's (heavy) atom names still present.
    """
    dropped: set[str] = set()
    for centre in sorted(centres):
        for a, b in component.bonds.tolist():
            names = component.atom_names[a], component.atom_names[b]
            if centre not in names:
                continue
            other = b if names[0] == centre else a
            name = component.atom_names[other]
            if component.leaving_atom[other] and name in kept and name not in centres | dropped:
                dropped.add(name)
                break
    return dropped


def _ligand_component(target: Target, index: int, entity: Entity, code: str) -> Component:
    try:
        if entity.smiles is not None:
            return component_from_smiles(entity.smiles, code)
        return component_from_file(entity.ligand_file, code)
    except (ValueError, OSError) as exc:
        field = "smiles" if entity.smiles is not None else "ligand_file"
        raise _entity_error(target, index, entity, field, str(exc)) from None


def _modification_problem(component: Component, kind: str) -> str | None:
    """Why a component cannot stand in a `kind` chain, or None.

    A residue of another polymer class never can. A component of no polymer class (caps such as
    NH2 or ACE, a 5' GTP in RNA; all seen in PDB polymers) can when it has a linking atom.
    """
    if component.polymer_class == kind:
        return None
    if component.polymer_class is not None:
        return f"is a {component.type} component, not a {kind} residue"
    if not set(POLYMER_LINK[kind]) & set(component.atom_names):
        link = " or ".join(POLYMER_LINK[kind])
        return f"is a {component.type} component with no {link} atom to link into a {kind} chain"
    return None


def _entity_components(target: Target, lookup: _Lookup, own: dict[str, Component]) -> list[list[Component]]:
    """The component of every residue of every entity (one list per entity); checks CCD codes."""
    out = []
    for i, entity in enumerate(target.entities):
        if entity.smiles is not None or entity.ligand_file is not None:
            code = f"l{len(own) + 1:02d}"  # lower case never clashes with a CCD code (as Protenix)
            own[code] = _ligand_component(target, i, entity, code)
            out.append([own[code]])
            continue
        residues = []
        modified = dict(entity.modifications)
        for position, code in enumerate(entity.residue_codes(), start=1):
            if entity.kind == "protein" and code == SELENOMETHIONINE:
                code = "MET"  # AF3 supplement §2.1, as Protenix's featurizer: MSE is read as MET
            field = (
                "modifications"
                if position in modified
                else ("sequence" if entity.is_polymer else "ccd_codes")
            )
            if code not in lookup:
                reason = f"unknown CCD code {code!r}" + (
                    f" at position {position}" if entity.is_polymer else ""
                )
                raise _entity_error(target, i, entity, field, reason)
            component = lookup[code]
            if position in modified and (reason := _modification_problem(component, entity.kind)):
                raise _entity_error(target, i, entity, field, f"{code} at position {position} {reason}")
            residues.append(component)
        out.append(residues)
    return out


def _chain_type(entity: Entity) -> str:
    if entity.kind == "ligand" and entity.ccd_codes is not None and len(entity.ccd_codes) > 1:
        return "branched"
    return entity.kind


def structure_from_target(target: Target, ccd: Ccd | None = None) -> Structure:
    """The `Structure` of a target: atoms in chain → residue → CCD atom order, all unresolved.

    Raises TargetError (one line) for unknown CCD codes, modifications of the wrong type,
    SMILES that RDKit rejects, unreadable ligand files and bonds to atoms that do not exist.
    """
    ccd = ccd if ccd is not None else load_ccd()
    target = normalize_target(target, ccd)  # a single-atom ligand is an ion chain, however it was written
    own: dict[str, Component] = {}
    user = user_components(target)
    lookup = _Lookup(ccd, user)
    per_entity = _entity_components(target, lookup, own)

    # Pass 1: the atoms each residue keeps, by name.
    kept: dict[tuple[str, int], list[int]] = {}
    known: dict[tuple, list[int]] = {}  # the same residue type at the same kind of place keeps the same atoms
    for entity, components in zip(target.entities, per_entity, strict=True):
        kind = entity.kind if entity.is_polymer else "ligand"
        for chain in entity.chain_ids:
            for position, component in enumerate(components, start=1):
                place = (component.code, kind, position == 1, position == len(components))
                if place not in known:
                    known[place] = _kept_atoms(component, kind, position, len(components))
                kept[(chain, position)] = known[place]

    # Pass 2: the target's bonds, by atom name; their centres shed one leaving atom each.
    links = []
    centres: dict[tuple[str, int], set[str]] = {}
    for pair in dict.fromkeys(target.bonds):  # de-duplicated, order kept
        ends = []
        for chain, position, atom in pair:
            index, entity = target.entity_of_chain(chain)
            component = per_entity[index][position - 1]
            if atom.startswith("#"):  # Protenix SMILES atom-map number or ligand-file atom index
                mapped = component.extra.get("atom_map", {}).get(int(atom[1:]))
                atom = component.atom_names[mapped] if mapped is not None else atom
            if atom not in {component.atom_names[k] for k in kept[(chain, position)]}:
                where = f"residue {position} ({component.code}) of chain {chain}"
                raise _entity_error(
                    target, index, entity, "bonds", f"bond to atom {atom!r} that does not exist in {where}"
                )
            ends.append((chain, position, atom))
        if ends[0] == ends[1]:
            raise _entity_error(target, index, entity, "bonds", f"bond from atom {pair[0]} to itself")
        links.append(tuple(ends))
        for chain, position, atom in ends:
            centres.setdefault((chain, position), set()).add(atom)
    for key, names in centres.items():
        index, _entity = target.entity_of_chain(key[0])
        component = per_entity[index][key[1] - 1]
        gone = _leaving_partners(component, names, {component.atom_names[k] for k in kept[key]})
        kept[key] = [k for k in kept[key] if component.atom_names[k] not in gone]

    # Pass 3: the tables, residue by residue from per-(component, kept atoms) templates.
    atom_name: list[str] = []
    atom_element: list[str] = []
    atom_charge: list[int] = []
    res_name, res_seq_id, res_chain, res_start, res_end, res_standard = [], [], [], [], [], []
    res_letter: list[str] = []
    chain_name, chain_entity, chain_type, chain_start, chain_end = [], [], [], [], []
    bond_blocks: list[np.ndarray] = []  # [n, 2] atom index pairs, low-high
    bond_kinds: list[str] = []  # one per block
    templates: dict[tuple[str, tuple[int, ...]], _ResidueTemplate] = {}
    residue_first: dict[tuple[str, int], tuple[int, dict[str, int]]] = {}  # first atom, name -> offset
    for i, (entity, components) in enumerate(zip(target.entities, per_entity, strict=True)):
        for chain in entity.chain_ids:
            chain_start.append(len(res_name))
            previous: tuple[int, dict[str, int]] | None = None
            for position, component in enumerate(components, start=1):
                keep = tuple(kept[(chain, position)])
                template = templates.get((component.code, keep))
                if template is None:
                    template = templates[(component.code, keep)] = _ResidueTemplate.of(component, keep)
                first = len(atom_name)
                atom_name += template.names
                atom_element += template.elements
                atom_charge += template.charges
                bond_blocks.append(template.bonds + first)
                bond_kinds.append("ccd")
                if entity.is_polymer and previous is not None:
                    out_atom, in_atom = POLYMER_LINK[entity.kind]
                    if out_atom in previous[1] and in_atom in template.index:
                        link = previous[0] + previous[1][out_atom], first + template.index[in_atom]
                        bond_blocks.append(np.array([sorted(link)], dtype=np.int64))
                        bond_kinds.append("polymer")
                previous = residue_first[(chain, position)] = (first, template.index)
                res_name.append(component.code)
                res_letter.append(entity.sequence[position - 1] if entity.is_polymer else "")
                res_seq_id.append(position)
                res_chain.append(len(chain_name))
                res_start.append(first)
                res_end.append(len(atom_name))
                res_standard.append(entity.is_polymer and component.code in STANDARD_RESIDUES[entity.kind])
            chain_name.append(chain)
            chain_entity.append(str(i + 1))
            chain_type.append(_chain_type(entity))
            chain_end.append(len(res_name))
    for ends in links:
        pair = sorted(residue_first[(c, p)][0] + residue_first[(c, p)][1][a] for c, p, a in ends)
        bond_blocks.append(np.array([pair], dtype=np.int64))
        bond_kinds.append("covale")
    bonds = np.concatenate([np.zeros((0, 2), np.int64), *bond_blocks])
    bond_type = np.repeat(np.array(bond_kinds, dtype=str), [len(b) for b in bond_blocks])
    # each atom pair once, first occurrence kept (a user bond may repeat a CCD bond), as parse_mmcif
    _, first_seen = np.unique(bonds, axis=0, return_index=True)
    order = np.sort(first_seen)
    bonds, bond_type = bonds[order], bond_type[order]

    n_atom = len(atom_name)
    used = {c.code for comps in per_entity for c in comps}
    return Structure(
        atom_name=np.array(atom_name, dtype=str),
        atom_element=np.array(atom_element, dtype=str),
        atom_charge=np.array(atom_charge, dtype=np.int32),
        atom_coords=np.full((n_atom, 3), np.nan, dtype=np.float32),
        atom_resolved=np.zeros(n_atom, dtype=bool),
        atom_occupancy=np.zeros(n_atom, dtype=np.float32),
        atom_b_factor=np.zeros(n_atom, dtype=np.float32),
        atom_residue=np.repeat(np.arange(len(res_name)), np.subtract(res_end, res_start)).astype(np.int64),
        res_name=np.array(res_name, dtype=str),
        res_seq_id=np.array(res_seq_id, dtype=np.int64),
        res_auth_seq_id=np.array([str(s) for s in res_seq_id], dtype=str),
        res_chain=np.array(res_chain, dtype=np.int64),
        res_atom_start=np.array(res_start, dtype=np.int64),
        res_atom_end=np.array(res_end, dtype=np.int64),
        res_is_standard=np.array(res_standard, dtype=bool),
        chain_name=np.array(chain_name, dtype=str),
        chain_auth_name=np.array(chain_name, dtype=str),
        chain_entity_id=np.array(chain_entity, dtype=str),
        chain_type=np.array(chain_type, dtype=str),
        chain_res_start=np.array(chain_start, dtype=np.int64),
        chain_res_end=np.array(chain_end, dtype=np.int64),
        bonds=bonds,
        bond_type=bond_type,
        name=target.target_id,
        components={**{k: v for k, v in user.items() if k in used}, **own},
        res_sequence_letter=np.array(res_letter, dtype=str),
    )


def check_target(target: Target, ccd: Ccd | None = None) -> Target:
    """Check a target's chemistry by building its structure; returns it with single-atom ligands as ions.

    Raises TargetError for unknown CCD codes, modifications of the wrong type, bad ions, SMILES that
    RDKit rejects, unreadable ligand files and bonds to atoms that do not exist.
    """
    target = normalize_target(target, ccd)
    structure_from_target(target, ccd)
    return target


def check_targets(
    targets: list[Target], errors: list[TargetError], ccd: Ccd | None = None
) -> tuple[list[Target], list[TargetError]]:
    """`check_target` for each of `load_targets`' targets: the good ones, and `errors` plus one
    TargetError per target whose chemistry fails, so that one bad ligand never stops the others."""
    good, errors = [], list(errors)
    for target in targets:
        try:
            good.append(check_target(target, ccd))
        except TargetError as exc:
            errors.append(exc)
    return good, errors


def user_msas(target: Target) -> dict[str, MsaInput]:
    """The MSAs the user gave (AF3 `unpairedMsa`/`pairedMsa` text or `*Path` file), per chain name:
    a3m or Stockholm (`model.data.msa.parse_msa`), a file plain, gzip or xz. The one reader of user
    MSAs: the featurize-shard job (scripts/build_features.py) reads them through it.

    Chains without any are absent (they get searched, or a query-only MSA). A given empty string
    means "no MSA" and yields an empty `MsaInput`. A file that cannot be read or an alignment whose
    rows differ in width is a TargetError naming the entity and the field.
    """
    out = {}
    for index, entity in enumerate(target.entities):
        given = (entity.unpaired_msa, entity.unpaired_msa_path, entity.paired_msa, entity.paired_msa_path)
        if all(v is None for v in given):
            continue
        unpaired = _user_msa_rows(
            target, index, entity, "unpairedMsa", entity.unpaired_msa_path, entity.unpaired_msa
        )
        paired = _user_msa_rows(target, index, entity, "pairedMsa", entity.paired_msa_path, entity.paired_msa)
        msa = MsaInput(unpaired, paired)
        out.update({chain: msa for chain in entity.chain_ids})
    return out


def _user_msa_rows(
    target: Target, index: int, entity: Entity, field: str, path: Path | None, text: str | None
) -> list[tuple[str, str]]:
    if path is not None:
        field += "Path"
    try:
        rows = parse_msa(read_input_text(path) if path is not None else text or "")
        if rows:  # every row one residue per query column (AF3 input.md, "Multiple Sequence Alignment")
            a3m_to_arrays([sequence for _, sequence in rows], entity.kind)
    except (OSError, EOFError, lzma.LZMAError, ValueError) as err:  # MsaError and UnicodeDecodeError too
        reason = one_line(str(err)) or type(err).__name__
        raise _entity_error(target, index, entity, field, reason) from None
    return rows


def user_templates(
    target: Target,
    hit_mmcif_dir: Path | None = None,
    max_date: datetime.date | None = None,
    max_templates: int = 4,
) -> dict[str, dict[str, np.ndarray]]:
    """The templates the user gave, per chain of every entity that gives any, as [K, L, ...] arrays in
    the template search's format (model.search.templates: the same reader and feature code):

    - AF3 `templates`: `mmcif` or `mmcifPath` (plain, gzip or xz) with 0-based `queryIndices` ->
      `templateIndices`, taken as given (AF3 applies no filter to them). `[]` gives K = 0: no template
      (and no template search, workflow/rules/common.smk).
    - Protenix `templatesPath`: a template search's hits as a3m (hmmsearch against pdb_seqres), made
      templates from `hit_mmcif_dir` with the search's own filters (`select_templates`: release date
      up to `max_date`, AF3 supplement §2.4), the first `max_templates` kept.
    """
    # here, not at the top: the template code imports pyhmmer, which building a structure never needs
    from model.search.templates import (
        TemplateSettings,
        hits_from_a3m,
        select_templates,
        stack_templates,
        template_chain,
        template_features,
    )

    out = {}
    for index, entity in enumerate(target.entities):
        if entity.templates is None and entity.templates_path is None:
            continue
        length = len(entity.sequence or "")
        features = []
        if entity.templates is not None and entity.templates_path is not None:
            raise _entity_error(
                target, index, entity, "templatesPath", "give templates or templatesPath, not both"
            )
        if entity.templates_path is not None:
            if hit_mmcif_dir is None or max_date is None:
                reason = "needs the template mmCIF folder and date (build_features --template-mmcif-dir)"
                raise _entity_error(target, index, entity, "templatesPath", reason)
            try:
                hits = hits_from_a3m(parse_msa(read_input_text(entity.templates_path)), length)
            except (OSError, EOFError, lzma.LZMAError, ValueError) as err:
                reason = one_line(str(err)) or type(err).__name__
                raise _entity_error(target, index, entity, "templatesPath", reason) from None
            settings = TemplateSettings(max_templates=max_templates)
            _, features = select_templates(entity.sequence, hits, hit_mmcif_dir, max_date, settings)
        for i, template in enumerate(entity.templates or ()):
            field = f"templates[{i}]"
            path = Path(template["mmcifPath"]) if "mmcifPath" in template else None
            try:
                text = read_input_text(path) if path is not None else template["mmcif"]
                block = gemmi.cif.read_string(text).sole_block()
                chain = template_chain(block, None, path.name if path is not None else field)
            except (OSError, EOFError, lzma.LZMAError, ValueError, RuntimeError) as err:
                reason = one_line(str(err)) or type(err).__name__
                raise _entity_error(target, index, entity, field, reason) from None
            mapping = dict(zip(template["queryIndices"], template["templateIndices"], strict=True))
            last = max(mapping.values(), default=-1)
            if last >= len(chain.res_names):
                reason = f"index {last} is past the template chain's {len(chain.res_names)} residues"
                raise _entity_error(target, index, entity, f"{field}.templateIndices", reason)
            features.append(template_features(length, mapping, chain))
        arrays = stack_templates(length, features)
        out.update({chain: arrays for chain in entity.chain_ids})
    return out
