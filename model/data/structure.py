"""Atom-level biomolecular structures: parsed from mmCIF with gemmi, or built from a `Target`.

A `Structure` is a set of flat numpy tables (atoms, residues, chains, bonds) ordered
chain → residue → atom, atoms of a residue in CCD order. Unresolved atoms and residues are
present with `atom_resolved == False` (coordinates NaN), as AF3 keeps them masked.

`parse_mmcif` follows the AF3 data pipeline (supplement §2.1, §2.5): first model only, the
highest-occupancy alternative location, no waters or hydrogens, residue atoms from the CCD
(leaving atoms only where the file has them), unresolved polymer residues from
`entity_poly_seq`, bonds from the CCD, polymer links and `struct_conn`, and biological assembly 1.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from model.data.ccd import Ccd, Component, UnknownComponentError
from model.data.constants import DNA_RESIDUES, PROTEIN_RESIDUES, RNA_RESIDUES
from model.fileio import write_bytes_atomic

# Residues that get one token each (AF3 §2.6); everything else in a polymer is atomised.
STANDARD_RESIDUES = {
    "protein": frozenset((*PROTEIN_RESIDUES, "UNK")),
    "rna": frozenset((*RNA_RESIDUES, "N")),
    "dna": frozenset((*DNA_RESIDUES, "DN")),
}
POLYMER_CHAIN_TYPES = ("protein", "rna", "dna")
# Backbone link between consecutive polymer residues: (atom of residue i, atom of residue i+1).
POLYMER_LINK = {"protein": ("C", "N"), "rna": ("O3'", "P"), "dna": ("O3'", "P")}
# struct_conn types kept as covalent bonds (AF3 §2.5); metalc and hydrog are not bonds here.
COVALENT_CONN_TYPES = ("covale", "covale_base", "covale_phosphate", "covale_sugar", "disulf")
_WATERS = frozenset(("HOH", "DOD", "WAT", "H2O"))
SELENOMETHIONINE = "MSE"  # read as MET in protein chains (AF3 supplement §2.1)
_HYDROGENS = frozenset(("H", "D"))
_ENTITY_POLY_TYPE = {
    "protein": "polypeptide(L)",
    "rna": "polyribonucleotide",
    "dna": "polydeoxyribonucleotide",
}


@dataclass
class Structure:
    """An atom-level structure.

    Atoms [N_atom]: `atom_name` (str), `atom_element` (upper-case symbol), `atom_charge` (int),
    `atom_coords` [N_atom, 3] float32, `atom_resolved` bool, `atom_occupancy`, `atom_b_factor`
    float32, `atom_residue` int (index into residues).
    Residues [N_res]: `res_name` (CCD code), `res_seq_id` (label_seq_id; 1-based position in the
    entity sequence for polymers, position in the chain for branched glycans, 1 for other
    non-polymers), `res_auth_seq_id` (str, with insertion code, "" when unresolved),
    `res_chain` int (index into chains), `res_atom_start` / `res_atom_end` int (atom slice),
    `res_is_standard` bool (one token per residue).
    Chains [N_chain]: `chain_name` (label_asym_id), `chain_auth_name`, `chain_entity_id` (str),
    `chain_type` (one of constants.CHAIN_TYPES), `chain_res_start` / `chain_res_end` int.
    Bonds [N_bond]: `bonds` [N_bond, 2] atom indices (intra-residue from the CCD, polymer links,
    `struct_conn` covalent/disulfide/glycosidic), `bond_type` (str: "ccd", "polymer", "covale",
    "disulf", ...).
    `components` holds user- or SMILES-defined components not in the CCD, keyed by their code.
    `res_sequence_letter` [N_res] (str) is the letter an input job's polymer sequence has at each
    residue ("" for other residues); None for structures read from mmCIF. A modified residue's MSA
    query letter comes from it (docs/network.md, "Featurizer conventions").
    """

    atom_name: np.ndarray
    atom_element: np.ndarray
    atom_charge: np.ndarray
    atom_coords: np.ndarray
    atom_resolved: np.ndarray
    atom_occupancy: np.ndarray
    atom_b_factor: np.ndarray
    atom_residue: np.ndarray
    res_name: np.ndarray
    res_seq_id: np.ndarray
    res_auth_seq_id: np.ndarray
    res_chain: np.ndarray
    res_atom_start: np.ndarray
    res_atom_end: np.ndarray
    res_is_standard: np.ndarray
    chain_name: np.ndarray
    chain_auth_name: np.ndarray
    chain_entity_id: np.ndarray
    chain_type: np.ndarray
    chain_res_start: np.ndarray
    chain_res_end: np.ndarray
    bonds: np.ndarray
    bond_type: np.ndarray
    name: str = ""
    release_date: str | None = None  # ISO date, e.g. "1997-12-10"
    resolution: float | None = None  # Å; None for NMR or when absent
    method: str | None = None
    components: dict[str, Component] = field(default_factory=dict)
    res_sequence_letter: np.ndarray | None = None

    @property
    def num_atoms(self) -> int:
        return len(self.atom_name)

    @property
    def num_residues(self) -> int:
        return len(self.res_name)

    @property
    def num_chains(self) -> int:
        return len(self.chain_name)

    @property
    def atom_chain(self) -> np.ndarray:
        """[N_atom] int: chain index of every atom."""
        return self.res_chain[self.atom_residue]

    def select_chains(self, chains: list[int], names: list[str] | None = None) -> Structure:
        """A new structure made of the given chains (repeats allowed) in the given order.

        `names` renames the copies (label and author chain names alike); bonds are kept when
        both atoms fall in the same selected copy or in two copies listed once each.
        """
        return _assemble(self, [(c, None) for c in chains], names)


# --- parsing ---------------------------------------------------------------------------------------


class _ChainBuilder:
    """Accumulates residues and atoms of one chain of the asymmetric unit."""

    def __init__(self, name: str, auth_name: str, entity_id: str, chain_type: str) -> None:
        self.name, self.auth_name, self.entity_id, self.type = name, auth_name, entity_id, chain_type
        self.residues: list[tuple[str, int, str, bool, list[tuple]]] = []  # (name, seq, auth, std, atoms)


def _split_seq(values: list[str]) -> list[str]:
    return [v.split(",")[0] for v in values]


def _choose_altloc(atoms: list) -> list:
    """Heavy atoms of one residue with one alternative location: the highest total occupancy.

    Atoms without an altloc are always kept; an atom name missing from the chosen altloc takes
    its highest-occupancy variant.
    """
    occ: dict[str, float] = defaultdict(float)
    for a in atoms:
        if a.altloc != "\0":
            occ[a.altloc] += a.occ
    best = max(occ, key=lambda k: (occ[k], -ord(k))) if occ else None
    chosen: dict[str, object] = {}
    for a in atoms:
        if a.element.name.upper() in _HYDROGENS:
            continue
        prev = chosen.get(a.name)
        if prev is None:
            chosen[a.name] = a
        elif prev.altloc != "\0" and (
            a.altloc == "\0"
            or (a.altloc == best and prev.altloc != best)
            or (prev.altloc != best and a.occ > prev.occ)
        ):
            chosen[a.name] = a
    return list(chosen.values())


def _residue_atoms(comp: Component, file_atoms: list, renamed: dict[str, str] | None = None) -> list[tuple]:
    """Atoms of one residue in CCD order: (name, element, charge, xyz, resolved, occ, b).

    CCD heavy atoms absent from the file are kept unresolved, except leaving atoms (OXT, OP3,
    ...), which appear only where the file has them. File atoms the CCD lacks are dropped (AF3).
    `renamed` maps file atom names to the component's (MSE read as MET: SE is SD).
    """
    renamed = renamed or {}
    by_name = {renamed.get(a.name, a.name): a for a in file_atoms}
    out = []
    for name, element, charge, leaving in zip(
        comp.atom_names, comp.elements, comp.charges, comp.leaving_atom, strict=True
    ):
        if element in _HYDROGENS:
            continue
        a = by_name.get(name)
        if a is None:
            if not leaving:
                out.append((name, element, int(charge), None, False, 0.0, 0.0))
            continue
        q = a.charge if a.charge != 0 else int(charge)
        out.append((name, element, q, a.pos.tolist(), True, a.occ, a.b_iso))
    return out


def _polymer_chain_type(polymer_type: str, names: list[str], ccd: Ccd) -> str:
    if "Peptide" in polymer_type:
        return "protein"
    if polymer_type == "Dna":
        return "dna"
    if polymer_type == "Rna":
        return "rna"
    if "Saccharide" in polymer_type:
        return "branched"  # old entries model glycans as polysaccharide polymers
    # Hybrids and unusual polymers: the most common residue class decides.
    counts: dict[str, int] = defaultdict(int)
    for n in names:
        comp = ccd.get(n)
        if comp is not None and comp.polymer_class:
            counts[comp.polymer_class] += 1
    return max(counts, key=counts.get) if counts else "ligand"


def _first(block, tags: list[str]) -> str | None:
    import gemmi

    for tag in tags:
        values = [gemmi.cif.as_string(v) for v in block.find_values(tag)]
        values = [v for v in values if v not in ("", "?", ".")]
        if values:
            return values[0]
    return None


def _release_date(block) -> str | None:
    """Initial release: the first revision of pdbx_audit_revision_history (or, in old-style
    entries, _database_PDB_rev). Without a revision number the earliest date counts."""
    import gemmi

    for prefix, date, num in (
        ("_pdbx_audit_revision_history.", "revision_date", "?ordinal"),
        ("_database_PDB_rev.", "date", "?num"),
    ):
        table = block.find(prefix, [date, num])
        rows = []
        for r in table:
            value = gemmi.cif.as_string(r[0])
            if value:
                order = int(r[1]) if r.has(1) and r[1] not in ("?", ".") else 0
                rows.append((order, value))
        if rows:
            return min(rows)[1]
    return None


def _header(block) -> tuple[str | None, float | None, str | None]:
    import gemmi

    release = _release_date(block)
    res = _first(
        block, ["_refine.ls_d_res_high", "_em_3d_reconstruction.resolution", "_reflns.d_resolution_high"]
    )
    methods = [gemmi.cif.as_string(v) for v in block.find_values("_exptl.method")]
    method = ";".join(m for m in methods if m) or None
    return release, (float(res) if res is not None else None), method


def parse_mmcif(path: str | Path, ccd: Ccd, assembly: str | None = "1") -> Structure:
    """Parse an mmCIF (`.cif` or `.cif.gz`) into a `Structure` (AF3 supplement §2.1, §2.5).

    `assembly` names the biological assembly to build (gemmi expands `pdbx_struct_assembly_gen`);
    None keeps the asymmetric unit, as does a file without assembly records. Chains of later
    assembly copies are named `{label_asym_id}-{k}` (k = 2, 3, ...).
    """
    import gemmi

    path = Path(path)
    entry = path.name.split(".")[0]
    try:
        block = gemmi.cif.read(str(path)).sole_block()
        st = gemmi.make_structure_from_block(block)
    except (RuntimeError, ValueError, OSError) as exc:
        raise ValueError(f"{entry}: mmCIF {str(path)!r}: cannot read: {exc}") from None
    if len(st) == 0:
        raise ValueError(f"{entry}: mmCIF {str(path)!r}: no models in atom_site")
    model = st[0]

    entity_of: dict[str, gemmi.Entity] = {}
    for ent in st.entities:
        for sub in ent.subchains:
            entity_of[sub] = ent

    # Group residues of model 1 by label_asym_id, in order of appearance.
    subchains: dict[str, list] = {}
    auth_of: dict[str, str] = {}
    for chain in model:
        for res in chain:
            if res.name in _WATERS or res.entity_type == gemmi.EntityType.Water:
                continue
            subchains.setdefault(res.subchain, []).append(res)
            auth_of.setdefault(res.subchain, chain.name)

    builders: list[_ChainBuilder] = []
    for sub, residues in subchains.items():
        ent = entity_of.get(sub)
        entity_id = ent.name if ent is not None else residues[0].entity_id or sub
        etype = ent.entity_type if ent is not None else residues[0].entity_type
        if etype == gemmi.EntityType.Polymer:
            b = _polymer_chain(entry, sub, auth_of[sub], entity_id, ent, residues, ccd)
        else:
            b = _nonpolymer_chain(entry, sub, auth_of[sub], entity_id, etype, residues, ccd)
        if b.residues:
            builders.append(b)

    release, resolution, method = _header(block)
    asu = _build(entry, builders, ccd, _struct_conn(block))
    asu.release_date, asu.resolution, asu.method = release, resolution, method
    if assembly is None or not st.assemblies:
        return asu
    found = [a for a in st.assemblies if a.name == assembly]
    if not found:
        names = ", ".join(a.name for a in st.assemblies)
        raise ValueError(f"{entry}: assembly {assembly!r}: not in the file (it has {names})")
    return _expand_assembly(asu, found[0])


def _polymer_chain(entry, sub, auth, entity_id, ent, residues, ccd) -> _ChainBuilder:
    # Microheterogeneity: several residues at one label_seq_id; keep the best-occupied one.
    at_seq: dict[int, object] = {}
    for res in residues:
        if res.label_seq is None:
            continue
        prev = at_seq.get(res.label_seq)
        if prev is None or _mean_occ(res) > _mean_occ(prev):
            at_seq[res.label_seq] = res
    sequence = _split_seq(list(ent.full_sequence)) if ent is not None else []
    positions = sorted(set(range(1, len(sequence) + 1)) | set(at_seq))
    names = [at_seq[p].name if p in at_seq else sequence[p - 1] for p in positions]
    ptype = str(ent.polymer_type).split(".")[-1] if ent is not None else ""
    ctype = _polymer_chain_type(ptype, names, ccd)
    b = _ChainBuilder(sub, auth, entity_id, ctype)
    for pos, name in zip(positions, names, strict=True):
        renamed = None
        if name == SELENOMETHIONINE and ctype == "protein":
            # AF3 supplement §2.1: selenomethionine becomes methionine, its SE the S of SD
            name, renamed = "MET", {"SE": "SD"}
        comp = _component(ccd, name, entry, sub)
        res = at_seq.get(pos)
        atoms = _residue_atoms(comp, _choose_altloc(list(res)) if res is not None else [], renamed)
        auth_seq = f"{res.seqid.num}{res.seqid.icode.strip()}" if res is not None else ""
        std = ctype in POLYMER_CHAIN_TYPES and any(name in s for s in STANDARD_RESIDUES.values())
        b.residues.append((name, pos, auth_seq, std, atoms))
    return b


def _nonpolymer_chain(entry, sub, auth, entity_id, etype, residues, ccd) -> _ChainBuilder:
    import gemmi

    branched = etype == gemmi.EntityType.Branched
    kept = []
    for res in residues:
        comp = _component(ccd, res.name, entry, sub)
        atoms = _residue_atoms(comp, _choose_altloc(list(res)))
        if atoms:
            kept.append((res, comp, atoms))
    if branched:
        ctype = "branched"
    elif len(kept) == 1 and len(kept[0][2]) == 1:
        ctype = "ion"
    else:
        ctype = "ligand"
    b = _ChainBuilder(sub, auth, entity_id, ctype)
    for i, (res, _comp, atoms) in enumerate(kept):
        seq = i + 1 if branched else 1
        b.residues.append((res.name, seq, f"{res.seqid.num}{res.seqid.icode.strip()}", False, atoms))
    return b


def _mean_occ(res) -> float:
    return sum(a.occ for a in res) / max(len(res), 1)


def _component(ccd: Ccd, code: str, entry: str, chain: str) -> Component:
    try:
        return ccd[code]
    except UnknownComponentError as exc:
        raise ValueError(f"{entry}: chain {chain}: residue {code}: {exc}") from None


def _struct_conn(block) -> list[tuple[str, tuple, tuple]]:
    """Covalent `struct_conn` links: (type, partner 1, partner 2), partner = (asym, seq key, comp, atom)."""
    import gemmi

    tags = ["conn_type_id"]
    for p in ("1", "2"):
        tags += [
            f"ptnr{p}_label_asym_id",
            f"ptnr{p}_label_comp_id",
            f"ptnr{p}_label_seq_id",
            f"ptnr{p}_label_atom_id",
            f"?ptnr{p}_auth_seq_id",
            f"?pdbx_ptnr{p}_PDB_ins_code",
            f"?ptnr{p}_symmetry",
        ]
    table = block.find("_struct_conn.", tags)
    out = []
    if not len(table):
        return out
    cols = [
        [gemmi.cif.as_string(v) for v in table.column(i)] if table.has_column(i) else None for i in range(15)
    ]
    for r in range(len(table)):
        ctype = cols[0][r].lower()
        if ctype not in COVALENT_CONN_TYPES:
            continue
        partners = []
        for k in (1, 8):
            sym = cols[k + 6][r] if cols[k + 6] is not None else ""
            if sym not in ("", "1_555"):
                break  # a link to a symmetry mate is not a bond of this copy
            seq = cols[k + 2][r]
            if seq not in ("", ".", "?"):
                key = ("L", int(seq))
            else:
                auth = cols[k + 4][r] if cols[k + 4] is not None else ""
                icode = cols[k + 5][r] if cols[k + 5] is not None else ""
                key = ("A", auth + icode.strip())
            partners.append((cols[k][r], key, cols[k + 1][r], cols[k + 3][r]))
        if len(partners) == 2:
            out.append((ctype, partners[0], partners[1]))
    return out


def _build(entry: str, builders: list[_ChainBuilder], ccd: Ccd, conns: list) -> Structure:
    atom_rows: list[tuple] = []
    atom_res: list[int] = []
    res_rows: list[tuple] = []
    chain_rows: list[tuple] = []
    bonds: list[tuple[int, int]] = []
    bond_type: list[str] = []
    seen: set[tuple[int, int]] = set()
    res_key: dict[tuple, tuple[int, str]] = {}  # (asym, key) -> (residue index, name)
    atom_index: list[dict[str, int]] = []  # per residue: atom name -> atom index

    def add_bond(i: int, j: int, kind: str) -> None:
        pair = (min(i, j), max(i, j))
        if i != j and pair not in seen:
            seen.add(pair)
            bonds.append(pair)
            bond_type.append(kind)

    for c, b in enumerate(builders):
        res_start = len(res_rows)
        prev: int | None = None
        for name, seq, auth, std, atoms in b.residues:
            r = len(res_rows)
            start = len(atom_rows)
            atom_rows.extend(atoms)
            atom_res.extend([r] * len(atoms))
            names = {a[0]: start + k for k, a in enumerate(atoms)}
            atom_index.append(names)
            res_rows.append((name, seq, auth, c, start, len(atom_rows), std))
            res_key[(b.name, ("L", seq) if b.type in POLYMER_CHAIN_TYPES else ("A", auth))] = (r, name)
            if auth:
                res_key.setdefault((b.name, ("A", auth)), (r, name))
            comp = ccd[name]
            for i, j in comp.bonds:
                ni, nj = comp.atom_names[i], comp.atom_names[j]
                if ni in names and nj in names:
                    add_bond(names[ni], names[nj], "ccd")
            if prev is not None and b.type in POLYMER_LINK:
                left, right = POLYMER_LINK[b.type]
                if left in atom_index[prev] and right in names:
                    add_bond(atom_index[prev][left], names[right], "polymer")
            prev = r
        chain_rows.append((b.name, b.auth_name, b.entity_id, b.type, res_start, len(res_rows)))

    for kind, p1, p2 in conns:
        ends = []
        for asym, key, comp_id, atom in p1, p2:
            hit = res_key.get((asym, key))
            if hit is None or hit[1] != comp_id or atom not in atom_index[hit[0]]:
                break  # partner not modelled here (e.g. the other microheterogeneity residue)
            ends.append(atom_index[hit[0]][atom])
        if len(ends) == 2:
            add_bond(ends[0], ends[1], kind)

    n = len(atom_rows)
    coords = np.full((n, 3), np.nan, dtype=np.float32)
    resolved = np.array([a[4] for a in atom_rows], dtype=bool)
    if resolved.any():
        coords[resolved] = np.array([a[3] for a in atom_rows if a[4]], dtype=np.float32)
    return Structure(
        atom_name=np.array([a[0] for a in atom_rows], dtype=object).astype(str),
        atom_element=np.array([a[1] for a in atom_rows], dtype=object).astype(str),
        atom_charge=np.array([a[2] for a in atom_rows], dtype=np.int32),
        atom_coords=coords,
        atom_resolved=resolved,
        atom_occupancy=np.array([a[5] for a in atom_rows], dtype=np.float32),
        atom_b_factor=np.array([a[6] for a in atom_rows], dtype=np.float32),
        atom_residue=np.array(atom_res, dtype=np.int64),
        res_name=_str_array([r[0] for r in res_rows]),
        res_seq_id=np.array([r[1] for r in res_rows], dtype=np.int64),
        res_auth_seq_id=_str_array([r[2] for r in res_rows]),
        res_chain=np.array([r[3] for r in res_rows], dtype=np.int64),
        res_atom_start=np.array([r[4] for r in res_rows], dtype=np.int64),
        res_atom_end=np.array([r[5] for r in res_rows], dtype=np.int64),
        res_is_standard=np.array([r[6] for r in res_rows], dtype=bool),
        chain_name=_str_array([c[0] for c in chain_rows]),
        chain_auth_name=_str_array([c[1] for c in chain_rows]),
        chain_entity_id=_str_array([c[2] for c in chain_rows]),
        chain_type=_str_array([c[3] for c in chain_rows]),
        chain_res_start=np.array([c[4] for c in chain_rows], dtype=np.int64),
        chain_res_end=np.array([c[5] for c in chain_rows], dtype=np.int64),
        bonds=np.array(bonds, dtype=np.int64).reshape(-1, 2),
        bond_type=_str_array(bond_type),
        name=entry,
    )


def _str_array(values: list[str]) -> np.ndarray:
    return np.array(values, dtype=str) if values else np.zeros(0, dtype="<U1")


# --- assemblies ------------------------------------------------------------------------------------


def _expand_assembly(asu: Structure, assembly) -> Structure:
    """Apply gemmi's assembly generators: every (operator, subchain) pair becomes one chain."""
    index = {name: i for i, name in enumerate(asu.chain_name)}
    copies: list[tuple[int, tuple[np.ndarray, np.ndarray]]] = []
    groups: list[int] = []  # the copies made by one operator of one generator form a group
    for gen in assembly.generators:
        subs = sorted(index[s] for s in gen.subchains if s in index)
        for op in gen.operators:
            rot = np.array(op.transform.mat.tolist(), dtype=np.float64)
            vec = np.array(op.transform.vec.tolist(), dtype=np.float64)
            group = len(set(groups))
            for c in subs:
                copies.append((c, (rot, vec)))
                groups.append(group)
    count: dict[int, int] = defaultdict(int)
    names, auth = [], []
    for c, _ in copies:
        count[c] += 1
        suffix = "" if count[c] == 1 else f"-{count[c]}"
        names.append(f"{asu.chain_name[c]}{suffix}")
        auth.append(f"{asu.chain_auth_name[c]}{suffix}")
    return _assemble(asu, copies, names, groups, auth)


def _assemble(
    s: Structure,
    copies: list[tuple[int, tuple[np.ndarray, np.ndarray] | None]],
    names: list[str] | None,
    groups: list[int] | None = None,
    auth_names: list[str] | None = None,
) -> Structure:
    """Concatenate (transformed) copies of chains.

    A bond is kept in every copy of its chain, and between two chains when both are copied in
    the same group. Without `groups`, all copies form one group unless a chain repeats.
    """
    if groups is None:
        repeats = len({c for c, _ in copies}) < len(copies)
        groups = list(range(len(copies))) if repeats else [0] * len(copies)
    atom_idx, res_idx, coords, atom_res, res_start, res_end, res_chain = [], [], [], [], [], [], []
    shift = np.zeros(len(copies), dtype=np.int64)  # new atom index = old + shift[copy]
    chain_res_start, chain_res_end = [], []
    n_atom = n_res = 0
    for k, (c, op) in enumerate(copies):
        r0, r1 = int(s.chain_res_start[c]), int(s.chain_res_end[c])
        a0, a1 = int(s.res_atom_start[r0]), int(s.res_atom_end[r1 - 1])
        atom_idx.append(np.arange(a0, a1))
        res_idx.append(np.arange(r0, r1))
        xyz = s.atom_coords[a0:a1].astype(np.float64)
        if op is not None:
            xyz = xyz @ op[0].T + op[1]
        coords.append(xyz)
        atom_res.append(s.atom_residue[a0:a1] - r0 + n_res)
        res_start.append(s.res_atom_start[r0:r1] - a0 + n_atom)
        res_end.append(s.res_atom_end[r0:r1] - a0 + n_atom)
        res_chain.append(np.full(r1 - r0, k, dtype=np.int64))
        shift[k] = n_atom - a0
        chain_res_start.append(n_res)
        n_atom += a1 - a0
        n_res += r1 - r0
        chain_res_end.append(n_res)

    def cat(parts: list[np.ndarray], dtype) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    atom_idx_a, res_idx_a = cat(atom_idx, np.int64), cat(res_idx, np.int64)
    # Per group: chain index -> copy index (-1 where the group has no copy of that chain).
    copy_in_group = {g: np.full(s.num_chains, -1, dtype=np.int64) for g in set(groups)}
    for k, (c, _) in enumerate(copies):
        copy_in_group[groups[k]][c] = k
    atom_chain = s.atom_chain
    chain_a, chain_b = atom_chain[s.bonds[:, 0]], atom_chain[s.bonds[:, 1]]
    bonds, kinds = [], []
    for k, (c, _) in enumerate(copies):
        sel = np.flatnonzero(chain_a == c)
        other = copy_in_group[groups[k]][chain_b[sel]]
        other[chain_b[sel] == c] = k
        sel, other = sel[other >= 0], other[other >= 0]
        bonds.append(np.stack([s.bonds[sel, 0] + shift[k], s.bonds[sel, 1] + shift[other]], axis=-1))
        kinds.append(s.bond_type[sel])
    chain_names = names if names is not None else [str(s.chain_name[c]) for c, _ in copies]
    return replace(
        s,
        atom_name=s.atom_name[atom_idx_a],
        atom_element=s.atom_element[atom_idx_a],
        atom_charge=s.atom_charge[atom_idx_a],
        atom_coords=cat(coords, np.float32).reshape(-1, 3),
        atom_resolved=s.atom_resolved[atom_idx_a],
        atom_occupancy=s.atom_occupancy[atom_idx_a],
        atom_b_factor=s.atom_b_factor[atom_idx_a],
        atom_residue=cat(atom_res, np.int64),
        res_name=s.res_name[res_idx_a],
        res_seq_id=s.res_seq_id[res_idx_a],
        res_auth_seq_id=s.res_auth_seq_id[res_idx_a],
        res_chain=cat(res_chain, np.int64),
        res_atom_start=cat(res_start, np.int64),
        res_atom_end=cat(res_end, np.int64),
        res_is_standard=s.res_is_standard[res_idx_a],
        chain_name=_str_array(chain_names),
        chain_auth_name=_str_array(auth_names if auth_names is not None else chain_names),
        chain_entity_id=_str_array([str(s.chain_entity_id[c]) for c, _ in copies]),
        chain_type=_str_array([str(s.chain_type[c]) for c, _ in copies]),
        chain_res_start=np.array(chain_res_start, dtype=np.int64),
        chain_res_end=np.array(chain_res_end, dtype=np.int64),
        bonds=cat(bonds, np.int64).reshape(-1, 2),
        bond_type=np.concatenate(kinds) if kinds else s.bond_type[:0],
        components=dict(s.components),
        res_sequence_letter=None if s.res_sequence_letter is None else s.res_sequence_letter[res_idx_a],
    )


# --- writing ---------------------------------------------------------------------------------------


def _split_auth_seq(auth: str, fallback: int) -> tuple[str, str | bool]:
    """ "52A" -> ("52", "A"); "" -> (fallback, False) so that gemmi writes "?"."""
    digits = auth.lstrip("-")
    n = len(digits) - len(digits.lstrip("0123456789"))
    if n == 0:
        return str(fallback), False
    return auth[: len(auth) - len(digits) + n], (digits[n:] or False)


def to_cif_document(structure: Structure):
    """The structure as a one-block gemmi `cif.Document`: entity, entity_poly(_seq), struct_asym, atom_site,
    struct_conn and the header items `parse_mmcif` reads. Unresolved atoms are not written;
    parsing restores them from the CCD and `entity_poly_seq`."""
    import gemmi

    s = structure
    doc = gemmi.cif.Document()
    block = doc.add_new_block(s.name or "foldline")
    block.set_pair("_entry.id", gemmi.cif.quote(s.name or "foldline"))
    if s.method:
        block.set_mmcif_category(
            "_exptl.",
            {"entry_id": [s.name] * len(s.method.split(";")), "method": s.method.split(";")},
            raw=False,
        )
    if s.resolution is not None:
        block.set_mmcif_category(
            "_refine.",
            {"pdbx_refine_id": [s.method or "?"], "ls_d_res_high": [f"{s.resolution:g}"]},
            raw=False,
        )
    if s.release_date:
        block.set_mmcif_category(
            "_pdbx_audit_revision_history.",
            {
                "ordinal": ["1"],
                "data_content_type": ["Structure model"],
                "major_revision": ["1"],
                "minor_revision": ["0"],
                "revision_date": [s.release_date],
            },
            raw=False,
        )

    entity_chain: dict[str, int] = {}
    for c, e in enumerate(s.chain_entity_id):
        entity_chain.setdefault(str(e), c)
    entity_type = {
        e: {"branched": "branched"}.get(
            str(s.chain_type[c]), "polymer" if s.chain_type[c] in POLYMER_CHAIN_TYPES else "non-polymer"
        )
        for e, c in entity_chain.items()
    }
    block.set_mmcif_category(
        "_entity.", {"id": list(entity_type), "type": list(entity_type.values())}, raw=False
    )
    poly = [e for e, t in entity_type.items() if t == "polymer"]
    if poly:
        block.set_mmcif_category(
            "_entity_poly.",
            {
                "entity_id": poly,
                "type": [_ENTITY_POLY_TYPE[str(s.chain_type[entity_chain[e]])] for e in poly],
            },
            raw=False,
        )
        seq = {"entity_id": [], "num": [], "mon_id": [], "hetero": []}
        for e in poly:
            c = entity_chain[e]
            for r in range(s.chain_res_start[c], s.chain_res_end[c]):
                seq["entity_id"].append(e)
                seq["num"].append(str(s.res_seq_id[r]))
                seq["mon_id"].append(str(s.res_name[r]))
                seq["hetero"].append("n")
        block.set_mmcif_category("_entity_poly_seq.", seq, raw=False)
    block.set_mmcif_category(
        "_struct_asym.",
        {"id": [str(n) for n in s.chain_name], "entity_id": [str(e) for e in s.chain_entity_id]},
        raw=False,
    )

    atoms = np.flatnonzero(s.atom_resolved)
    res = s.atom_residue[atoms]
    chain = s.res_chain[res]
    polymer = np.isin(s.chain_type[chain], POLYMER_CHAIN_TYPES)
    auth = [_split_auth_seq(str(s.res_auth_seq_id[r]), int(s.res_seq_id[r])) for r in range(s.num_residues)]
    xyz = s.atom_coords[atoms]
    n = len(atoms)
    block.set_mmcif_category(
        "_atom_site.",
        {
            "group_PDB": ["ATOM" if s.res_is_standard[r] else "HETATM" for r in res],
            "id": [str(i + 1) for i in range(n)],
            "type_symbol": [str(e) for e in s.atom_element[atoms]],
            "label_atom_id": [str(a) for a in s.atom_name[atoms]],
            "label_alt_id": [False] * n,
            "label_comp_id": [str(s.res_name[r]) for r in res],
            "label_asym_id": [str(s.chain_name[c]) for c in chain],
            "label_entity_id": [str(s.chain_entity_id[c]) for c in chain],
            "label_seq_id": [str(s.res_seq_id[r]) if p else False for r, p in zip(res, polymer, strict=True)],
            "pdbx_PDB_ins_code": [auth[r][1] for r in res],
            "Cartn_x": [f"{v:.3f}" for v in xyz[:, 0]],
            "Cartn_y": [f"{v:.3f}" for v in xyz[:, 1]],
            "Cartn_z": [f"{v:.3f}" for v in xyz[:, 2]],
            "occupancy": [f"{v:.2f}" for v in s.atom_occupancy[atoms]],
            "B_iso_or_equiv": [f"{v:.2f}" for v in s.atom_b_factor[atoms]],
            "pdbx_formal_charge": [str(q) for q in s.atom_charge[atoms]],
            "auth_seq_id": [auth[r][0] for r in res],
            "auth_comp_id": [str(s.res_name[r]) for r in res],
            "auth_asym_id": [str(s.chain_auth_name[c]) for c in chain],
            "auth_atom_id": [str(a) for a in s.atom_name[atoms]],
            "pdbx_PDB_model_num": ["1"] * n,
        },
        raw=False,
    )

    links = [b for b in range(len(s.bonds)) if s.bond_type[b] not in ("ccd", "polymer")]
    if links:
        conn: dict[str, list] = defaultdict(list)
        for k, b in enumerate(links):
            conn["id"].append(f"{s.bond_type[b]}{k + 1}")
            conn["conn_type_id"].append(str(s.bond_type[b]))
            for p, a in (("1", s.bonds[b, 0]), ("2", s.bonds[b, 1])):
                r = s.atom_residue[a]
                c = s.res_chain[r]
                is_poly = s.chain_type[c] in POLYMER_CHAIN_TYPES
                conn[f"ptnr{p}_label_asym_id"].append(str(s.chain_name[c]))
                conn[f"ptnr{p}_label_comp_id"].append(str(s.res_name[r]))
                conn[f"ptnr{p}_label_seq_id"].append(str(s.res_seq_id[r]) if is_poly else False)
                conn[f"ptnr{p}_label_atom_id"].append(str(s.atom_name[a]))
                conn[f"ptnr{p}_auth_asym_id"].append(str(s.chain_auth_name[c]))
                conn[f"ptnr{p}_auth_seq_id"].append(auth[r][0])
                conn[f"pdbx_ptnr{p}_PDB_ins_code"].append(auth[r][1])
                conn[f"ptnr{p}_symmetry"].append("1_555")
        block.set_mmcif_category("_struct_conn.", dict(conn), raw=False)
    return doc


def write_mmcif(structure: Structure, path: str | Path) -> None:
    """Write `structure` as mmCIF (gzip when `path` ends in .gz), atomically (temp file + rename).

    `parse_mmcif(path, ccd, assembly=None)` gives back the same atoms, coordinates (to 1e-3 Å),
    residues, chains and bonds.
    """
    import gzip

    path = Path(path)
    text = to_cif_document(structure).as_string()
    data = text.encode()
    write_bytes_atomic(path, gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
