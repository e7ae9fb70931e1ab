"""Atom-level biomolecular structures: parsed from mmCIF with gemmi, or built from a `Target`.

A `Structure` is a set of flat numpy tables (atoms, residues, chains, bonds) ordered
chain → residue → atom, atoms of a residue in CCD order. Unresolved atoms and residues are
present with `atom_resolved == False` (coordinates NaN), as AF3 keeps them masked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from model.data.ccd import Component


@dataclass
class Structure:
    """An atom-level structure.

    Atoms [N_atom]: `atom_name` (str), `atom_element` (upper-case symbol), `atom_charge` (int),
    `atom_coords` [N_atom, 3] float32, `atom_resolved` bool, `atom_occupancy`, `atom_b_factor`
    float32, `atom_residue` int (index into residues).
    Residues [N_res]: `res_name` (CCD code), `res_seq_id` (label_seq_id; 1-based position in the
    entity sequence for polymers, 1 for non-polymers), `res_auth_seq_id` (str, with insertion code),
    `res_chain` int (index into chains), `res_atom_start` / `res_atom_end` int (atom slice),
    `res_is_standard` bool (one token per residue) .
    Chains [N_chain]: `chain_name` (label_asym_id), `chain_auth_name`, `chain_entity_id` (str),
    `chain_type` (one of constants.CHAIN_TYPES), `chain_res_start` / `chain_res_end` int.
    Bonds [N_bond]: `bonds` [N_bond, 2] atom indices (intra-residue from the CCD, polymer links,
    `struct_conn` covalent/disulfide/glycosidic), `bond_type` (str: "ccd", "polymer", "covale",
    "disulf", ...).
    `components` holds user- or SMILES-defined components not in the CCD, keyed by their code.
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

    @property
    def num_atoms(self) -> int:
        return len(self.atom_name)

    @property
    def num_residues(self) -> int:
        return len(self.res_name)

    @property
    def num_chains(self) -> int:
        return len(self.chain_name)
