"""Reference conformers (AF3 §2.8 `ref_pos`) and RDKit ⇄ `Component` conversion.

`reference_conformer(component)` embeds the component with RDKit ETKDGv3, keeping the stereochemistry
of the CCD ideal coordinates or of the SMILES. The seed is fixed (`CONFORMER_SEED`, RDKit's default
seed: the one a process's first unseeded embedding draws), so every featurization of a CCD code gets
the same conformer, as Protenix's precomputed CCD conformers are one per code; the per-residue random
placement AF3 Table 5 asks for is `model.data.reference_frame`. When embedding fails it falls back
to the CCD ideal coordinates, then to the model coordinates; an atom with no coordinates at all gets
`mask == False`.

SMILES and ligand-file ligands become `Component`s here (atom names C1, C2, N1... numbered per
element in input order, as Protenix names them).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import rdDistGeom

from model.data.ccd import Component

_CACHE_SIZE = 4096
# A bound on embedding attempts (not a wall-clock timeout, which would make results machine-dependent);
# a ligand that still fails falls back to its CCD coordinates, as AF3 does.
_MAX_EMBED_ITERATIONS = 200
# RDKit's default ETKDG seed: an unseeded first embedding in a process equals `randomSeed = 42`.
CONFORMER_SEED = 42
_cache: dict[tuple[str, str, int], tuple[np.ndarray, np.ndarray]] = {}
_BOND_TYPES = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}
_ORDER_OF = {Chem.BondType.SINGLE: 1, Chem.BondType.DOUBLE: 2, Chem.BondType.TRIPLE: 3}


def heavy_atom_indices(component: Component) -> np.ndarray:
    """Indices of the component's non-hydrogen atoms, in its atom order. [N_heavy] int"""
    return np.flatnonzero(component.heavy_atom_mask)


def _element_symbol(element: str) -> str:
    return element[:1].upper() + element[1:].lower()


def _stereo_labels(mol: Chem.Mol) -> list[str]:
    centres = dict(Chem.FindMolChiralCenters(mol, includeUnassigned=False, useLegacyImplementation=False))
    return [centres.get(a.GetIdx(), "N") for a in mol.GetAtoms()]


def component_from_mol(mol: Chem.Mol, code: str, smiles: str | None = None, name: str = "") -> Component:
    """A NON-POLYMER `Component` of the heavy atoms of an RDKit molecule, in its atom order.

    Atom names are element + running number per element (C1, C2, N1). A conformer present on
    `mol` becomes the ideal coordinates. `extra["atom_map"]` maps SMILES atom-map numbers (or, for
    molecules without any, 0-based atom indices) to component atom indices;
    `extra["implicit_hydrogens"]` tells `mol_from_component` to add the hydrogens left out.
    """
    heavy = [a for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
    index_of = {a.GetIdx(): i for i, a in enumerate(heavy)}
    counts: Counter[str] = Counter()
    names, elements = [], []
    for atom in heavy:
        element = atom.GetSymbol().upper()
        counts[element] += 1
        names.append(f"{element}{counts[element]}")
        elements.append(element)
    map_numbers = {a.GetAtomMapNum(): index_of[a.GetIdx()] for a in heavy if a.GetAtomMapNum()}
    atom_map = map_numbers or {a.GetIdx(): i for a, i in ((a, index_of[a.GetIdx()]) for a in heavy)}
    kekule = Chem.Mol(mol)
    Chem.Kekulize(kekule, clearAromaticFlags=False)
    bonds, orders, aromatic = [], [], []
    for bond in kekule.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        if i in index_of and j in index_of:
            bonds.append((index_of[i], index_of[j]))
            orders.append(_ORDER_OF.get(bond.GetBondType(), 1))
            aromatic.append(bond.GetIsAromatic())
    coords = np.full((len(heavy), 3), np.nan, dtype=np.float32)
    if mol.GetNumConformers():
        positions = mol.GetConformer().GetPositions()
        coords[:] = positions[[a.GetIdx() for a in heavy]]
    stereo = _stereo_labels(mol)
    return Component(
        code=code,
        name=name or code,
        type="NON-POLYMER",
        atom_names=tuple(names),
        elements=tuple(elements),
        charges=np.array([a.GetFormalCharge() for a in heavy], dtype=np.int64),
        leaving_atom=np.zeros(len(heavy), dtype=bool),
        stereo=tuple(stereo[a.GetIdx()] for a in heavy),
        ideal_coords=coords,
        model_coords=np.full((len(heavy), 3), np.nan, dtype=np.float32),
        bonds=np.array(bonds, dtype=np.int64).reshape(-1, 2),
        bond_orders=np.array(orders, dtype=np.int64),
        bond_aromatic=np.array(aromatic, dtype=bool),
        smiles=smiles,
        extra={"atom_map": atom_map, "implicit_hydrogens": True},
    )


def component_from_smiles(smiles: str, code: str) -> Component:
    """A `Component` from a SMILES string; ValueError when RDKit rejects it."""
    with rdBase.BlockLogs():  # RDKit's own stderr lines; the caller reports one line
        mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        raise ValueError(f"RDKit cannot parse SMILES {smiles!r}")
    if any(a.GetAtomicNum() == 0 for a in mol.GetAtoms()):
        raise ValueError(f"SMILES {smiles!r} has a wildcard atom '*'")
    if all(a.GetAtomicNum() == 1 for a in mol.GetAtoms()):
        raise ValueError(f"SMILES {smiles!r} has no heavy atom")
    return component_from_mol(mol, code, smiles=smiles)


def read_ligand_file(path: str | Path) -> Chem.Mol:
    """The first molecule of an SDF / MOL / MOL2 / PDB file, with its 3D coordinates.

    ValueError when RDKit cannot read it or it has no 3D coordinates.
    """
    path = Path(path)
    readers = {
        ".sdf": lambda p: next(iter(Chem.SDMolSupplier(p, removeHs=False)), None),
        ".mol": lambda p: Chem.MolFromMolFile(p, removeHs=False),
        ".mol2": lambda p: Chem.MolFromMol2File(p, removeHs=False),
        ".pdb": lambda p: Chem.MolFromPDBFile(p, removeHs=False),
    }
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise ValueError(f"unsupported ligand file type {path.suffix!r} (sdf, mol, mol2, pdb)")
    with rdBase.BlockLogs():  # RDKit's own stderr lines; the caller reports one line
        mol = reader(str(path))
    if mol is None or mol.GetNumAtoms() == 0:
        raise ValueError(f"RDKit cannot read a molecule from {path.name}")
    if all(a.GetAtomicNum() == 1 for a in mol.GetAtoms()):
        raise ValueError(f"{path.name} has no heavy atom")
    if not mol.GetNumConformers() or not mol.GetConformer().Is3D():
        raise ValueError(f"{path.name} has no 3D coordinates")
    return mol


def component_from_file(path: str | Path, code: str) -> Component:
    """A `Component` from a ligand file; its coordinates become the ideal coordinates (they fix stereo)."""
    mol = read_ligand_file(path)
    Chem.AssignStereochemistryFrom3D(mol)
    return component_from_mol(mol, code, name=Path(path).stem)


def mol_from_component(component: Component) -> tuple[Chem.Mol, np.ndarray]:
    """RDKit molecule of a component with explicit hydrogens, and the mol indices of its heavy atoms.

    SMILES components are re-read from their SMILES (same heavy-atom order). CCD components are
    built from elements, charges and Kekulé bond orders with the CCD's hydrogens; stereo comes
    from the ideal coordinates (model coordinates when ideal ones are missing).
    """
    if component.smiles is not None:
        mol = Chem.MolFromSmiles(component.smiles)
        heavy = np.array([a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1], dtype=np.int64)
        return Chem.AddHs(mol), heavy  # AddHs appends hydrogens, heavy indices stay
    # CCD components list every hydrogen (none at all for SO4, NO, CMO); components made here from
    # RDKit molecules keep heavy atoms only, so RDKit adds their hydrogens back.
    explicit_hydrogens = not component.extra.get("implicit_hydrogens", False)
    rw = Chem.RWMol()
    for element, charge in zip(component.elements, component.charges, strict=True):
        atom = Chem.Atom(_element_symbol(element))
        atom.SetFormalCharge(int(charge))
        atom.SetNoImplicit(explicit_hydrogens)
        rw.AddAtom(atom)
    for (i, j), order in zip(component.bonds, component.bond_orders, strict=True):
        rw.AddBond(int(i), int(j), _BOND_TYPES.get(int(order), Chem.BondType.SINGLE))
    mol = rw.GetMol()
    with rdBase.BlockLogs():  # a failed sanitisation is expected for metal complexes
        try:
            Chem.SanitizeMol(mol)
        except (Chem.rdchem.AtomValenceException, Chem.rdchem.KekulizeException, ValueError):
            # Metal complexes (HEM's Fe-N bonds) break valence rules; embedding still works without them.
            mol.UpdatePropertyCache(strict=False)
            Chem.SanitizeMol(mol, Chem.SANITIZE_ALL ^ Chem.SANITIZE_PROPERTIES, catchErrors=True)
    for coords in (component.ideal_coords, component.model_coords):
        if len(coords) and np.isfinite(coords).all():
            conformer = Chem.Conformer(mol.GetNumAtoms())
            for k, xyz in enumerate(coords.astype(np.float64)):
                conformer.SetAtomPosition(k, xyz.tolist())
            conformer.Set3D(True)
            conf_id = mol.AddConformer(conformer, assignId=True)
            Chem.AssignStereochemistryFrom3D(mol, confId=conf_id)
            mol.RemoveAllConformers()
            break
    if not explicit_hydrogens:
        mol = Chem.AddHs(mol)  # appended after the heavy atoms, whose indices stay
    return mol, heavy_atom_indices(component)


def _fingerprint(component: Component) -> str:
    digest = hashlib.sha1()
    for part in (
        component.code,
        component.smiles or "",
        "|".join(component.atom_names),
        "|".join(component.elements),
    ):
        digest.update(part.encode() + b"\0")
    arrays = (
        component.charges,
        component.bonds,
        component.bond_orders,
        component.ideal_coords,
        component.model_coords,
    )
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _embed(mol: Chem.Mol, seed: int, random_coords_retry: bool) -> bool:
    """One seeded ETKDGv3 embedding of `mol` (as AF3); a retry from random coordinates on request."""
    for random_coords in (False, True) if random_coords_retry else (False,):
        params = rdDistGeom.ETKDGv3()
        params.randomSeed = seed % (2**31 - 1)
        params.useRandomCoords = random_coords
        params.numThreads = 1
        params.maxIterations = _MAX_EMBED_ITERATIONS
        with rdBase.BlockLogs():  # e.g. UFF has no types for the metals of HEM or IRI
            if rdDistGeom.EmbedMolecule(mol, params) == 0:
                return True
    return False


def reference_conformer(component: Component, seed: int = CONFORMER_SEED) -> tuple[np.ndarray, np.ndarray]:
    """A seeded 3D conformer of the component's heavy atoms, in its atom order, in RDKit's frame.

    Returns `coords` [N_heavy, 3] float32 (0 where unknown) and `mask` [N_heavy] bool.
    Order of preference: RDKit ETKDGv3 with `seed` (RDKit reads seeds 0 and 1 alike); the CCD ideal
    coordinates; the CCD model coordinates. Cached per (component, seed).
    """
    key = (component.code, _fingerprint(component), int(seed))
    if key not in _cache:
        if len(_cache) >= _CACHE_SIZE:
            _cache.clear()
        _cache[key] = _compute_conformer(component, int(seed))
    coords, mask = _cache[key]
    return coords.copy(), mask.copy()


def _compute_conformer(component: Component, seed: int) -> tuple[np.ndarray, np.ndarray]:
    heavy = heavy_atom_indices(component)
    n_heavy = len(heavy)
    if n_heavy == 1:  # ions and single atoms: the origin is the conformer
        return np.zeros((1, 3), np.float32), np.ones(1, bool)
    mol, mol_heavy = mol_from_component(component)
    # The slow random-coordinate retry (B1Z: 25 s) only where no CCD coordinates could stand in.
    fallback = any(
        len(c) and np.isfinite(c[heavy]).all() for c in (component.ideal_coords, component.model_coords)
    )
    if _embed(mol, seed, random_coords_retry=not fallback):
        coords = mol.GetConformer().GetPositions()[mol_heavy].astype(np.float32)
        return coords, np.ones(n_heavy, bool)
    for source in (component.ideal_coords, component.model_coords):
        coords = source[heavy] if len(source) else np.empty((0, 3))
        if n_heavy and np.isfinite(coords).all():
            return coords.astype(np.float32), np.ones(n_heavy, bool)
    return np.zeros((n_heavy, 3), np.float32), np.zeros(n_heavy, bool)
