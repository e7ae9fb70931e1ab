"""Tokenization (AF3 supplement §2.6): one token per standard residue, one per atom otherwise.

Standard amino acids and nucleotides in polymer chains are one token each; ligands, ions,
glycans and modified (non-standard) polymer residues get one token per heavy atom. Each atom token
of a modified polymer residue takes its parent's `restype` class (AF3 §2.8 Table 5: SEP -> SER,
PSU -> U) from the CCD's one-letter code, read with the molecule type of the residue's own CCD
class; a residue with no single parent letter is that type's unknown (UNK, N or DN), and one whose
CCD class is not a polymer class is UNK, as Protenix reads them. Ligands, ions and glycans are UNK.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from model.data.ccd import Component
from model.data.constants import (
    CENTER_ATOM,
    MOL_DNA,
    MOL_LIGAND,
    MOL_PROTEIN,
    MOL_RNA,
    ONE_TO_CCD_DNA,
    ONE_TO_CCD_RNA,
    ONE_TO_THREE_PROTEIN,
    PURINES,
    RESTYPE_INDEX,
    UNKNOWN_DNA,
    UNKNOWN_PROTEIN,
    UNKNOWN_RNA,
)
from model.data.structure import STANDARD_RESIDUES, Structure

_MOL_TYPE = {"protein": MOL_PROTEIN, "rna": MOL_RNA, "dna": MOL_DNA}


@dataclass
class Tokens:
    """Token tables of one structure; every array has length N_token unless noted.

    `token_index` 0..T-1; `residue_index` the residue's `res_seq_id`; `asym_id` the 0-based chain
    index; `entity_id` 0-based, in order of first appearance of the entity; `sym_id` the copy
    number of the chain within its entity (0-based); `restype` in [0, 32); `mol_type`
    (constants.MOL_*, the chain's type; atomised tokens of ligands, ions and glycans are ligand);
    `token_center_atom` / `token_rep_atom` atom indices; `token_residue` the residue index;
    `token_atom_start` / `token_atom_end` the token's atom slice (atoms stay in structure order);
    `token_res_name` the residue's CCD code; `atom_to_token` [N_atom]; `atom_to_tokatom_idx`
    [N_atom] each atom's index in its standard residue's CCD heavy-atom list (which starts with OP3
    for nucleotides, so it does not depend on which atoms are present), 0 in atomised tokens.
    `bond_pairs` [N_pair, 2] token pairs (i < j) joined by a bond that counts for AF3's
    `token_bonds`; `token_bonds` [N_token, N_token] bool is built from them on access.
    """

    token_index: np.ndarray
    residue_index: np.ndarray
    asym_id: np.ndarray
    entity_id: np.ndarray
    sym_id: np.ndarray
    restype: np.ndarray
    mol_type: np.ndarray
    token_center_atom: np.ndarray
    token_rep_atom: np.ndarray
    token_residue: np.ndarray
    token_atom_start: np.ndarray
    token_atom_end: np.ndarray
    token_res_name: np.ndarray
    token_is_atomized: np.ndarray
    atom_to_token: np.ndarray
    atom_to_tokatom_idx: np.ndarray
    bond_pairs: np.ndarray

    @property
    def num_tokens(self) -> int:
        return len(self.token_index)

    @property
    def token_bonds(self) -> np.ndarray:
        """[N_token, N_token] bool, symmetric (AF3 `token_bonds`)."""
        n = self.num_tokens
        out = np.zeros((n, n), dtype=bool)
        out[self.bond_pairs[:, 0], self.bond_pairs[:, 1]] = True
        out[self.bond_pairs[:, 1], self.bond_pairs[:, 0]] = True
        return out


def _rep_atom_name(res_name: str, mol: str) -> str:
    """Representative (distogram) atom: CB (CA for glycine), C4 for purines, C2 for pyrimidines."""
    if mol == "protein":
        return "CA" if res_name == "GLY" else "CB"
    return "C4" if res_name in PURINES else "C2"


def parent_restype(component: Component | None) -> int:
    """`restype` of the atom tokens of a modified residue in a polymer chain: the class of the CCD
    one-letter code under the residue's own CCD molecule type (see the module docstring)."""
    mol = component.polymer_class if component is not None else None
    letter = str(component.extra.get("one_letter_code", "")) if component is not None else ""
    if mol == "protein":
        return (
            RESTYPE_INDEX[ONE_TO_THREE_PROTEIN[letter]] if letter in ONE_TO_THREE_PROTEIN else UNKNOWN_PROTEIN
        )
    if mol == "rna":
        return RESTYPE_INDEX[ONE_TO_CCD_RNA[letter]] if letter in ONE_TO_CCD_RNA else UNKNOWN_RNA
    if mol == "dna":
        return RESTYPE_INDEX[ONE_TO_CCD_DNA[letter]] if letter in ONE_TO_CCD_DNA else UNKNOWN_DNA
    return UNKNOWN_PROTEIN


def _heavy_atom_order(component: Component) -> dict[str, int]:
    """Atom name -> index among the component's heavy atoms, in CCD order."""
    names = [n for n, heavy in zip(component.atom_names, component.heavy_atom_mask, strict=True) if heavy]
    return {n: i for i, n in enumerate(names)}


def tokenize(structure: Structure, ccd: Any) -> Tokens:
    """Tokens of `structure` following AF3 §2.6 (see the module docstring).

    `ccd` (a `model.data.ccd.Ccd` or any mapping with `get`) gives the components of standard and
    modified polymer residues that `structure.components` does not hold.
    """
    s = structure
    components: dict[str, Component | None] = {}

    def component(code: str) -> Component | None:
        if code not in components:
            components[code] = s.components.get(code) or ccd.get(code)
        return components[code]

    atom_orders: dict[str, dict[str, int]] = {}
    tokatom = np.zeros(s.num_atoms, dtype=np.int64)
    entity_index: dict[str, int] = {}
    entity_copies: dict[str, int] = {}
    chain_entity, chain_sym = [], []
    for e in s.chain_entity_id:
        e = str(e)
        chain_entity.append(entity_index.setdefault(e, len(entity_index)))
        chain_sym.append(entity_copies.get(e, 0))
        entity_copies[e] = entity_copies.get(e, 0) + 1

    rows: list[
        tuple[int, int, int, int, int, int, int, bool]
    ] = []  # res, start, end, center, rep, restype, mol
    for r in range(s.num_residues):
        a0, a1 = int(s.res_atom_start[r]), int(s.res_atom_end[r])
        name = str(s.res_name[r])
        if s.res_is_standard[r]:
            mol = next(m for m, names in STANDARD_RESIDUES.items() if name in names)
            atoms = {str(n): a0 + k for k, n in enumerate(s.atom_name[a0:a1])}
            center = atoms.get(CENTER_ATOM[mol], a0)
            # Unknown residues (UNK, N, DN) may lack the representative atom: use the centre.
            rep = atoms.get(_rep_atom_name(name, mol), center)
            rows.append((r, a0, a1, center, rep, RESTYPE_INDEX[name], _MOL_TYPE[mol], False))
            if name not in atom_orders:
                standard = component(name)
                atom_orders[name] = _heavy_atom_order(standard) if standard is not None else {}
            order = atom_orders[name]
            tokatom[a0:a1] = [order.get(str(n), 0) for n in s.atom_name[a0:a1]]
        else:
            mol = _MOL_TYPE.get(str(s.chain_type[s.res_chain[r]]), MOL_LIGAND)
            restype = parent_restype(component(name)) if mol != MOL_LIGAND else UNKNOWN_PROTEIN
            rows.extend((r, a, a + 1, a, a, restype, mol, True) for a in range(a0, a1))

    table = np.array([row[:7] for row in rows], dtype=np.int64).reshape(-1, 7)
    res, start, end = table[:, 0], table[:, 1], table[:, 2]
    atomized = np.array([row[7] for row in rows], dtype=bool)
    n_token = len(rows)
    atom_to_token = np.repeat(np.arange(n_token), end - start)
    chain = s.res_chain[res]

    # AF3 token_bonds: polymer-ligand and ligand-ligand bonds; polymer backbone links never count.
    keep = s.bond_type != "polymer"
    ti, tj = atom_to_token[s.bonds[keep, 0]], atom_to_token[s.bonds[keep, 1]]
    sel = (ti != tj) & (atomized[ti] | atomized[tj])
    pairs = np.unique(np.sort(np.stack([ti[sel], tj[sel]], axis=-1), axis=-1), axis=0).reshape(-1, 2)

    return Tokens(
        token_index=np.arange(n_token, dtype=np.int64),
        residue_index=s.res_seq_id[res].astype(np.int64),
        asym_id=chain.astype(np.int64),
        entity_id=np.array(chain_entity, dtype=np.int64)[chain] if n_token else chain,
        sym_id=np.array(chain_sym, dtype=np.int64)[chain] if n_token else chain,
        restype=table[:, 5].copy(),
        mol_type=table[:, 6].copy(),
        token_center_atom=table[:, 3].copy(),
        token_rep_atom=table[:, 4].copy(),
        token_residue=res.copy(),
        token_atom_start=start.copy(),
        token_atom_end=end.copy(),
        token_res_name=s.res_name[res],
        token_is_atomized=atomized,
        atom_to_token=atom_to_token.astype(np.int64),
        atom_to_tokatom_idx=tokatom,
        bond_pairs=pairs.astype(np.int64),
    )
