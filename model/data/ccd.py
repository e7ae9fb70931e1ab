"""The Chemical Component Dictionary: one `Component` per CCD code.

Default source: the complete CCD shipped with `biotite` (`components.bcif`, ~49k components);
a user `components.cif` overrides it. Parsing is cached.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Component:
    """One chemical component (CCD entry or a user/SMILES-defined ligand).

    Atom arrays have length N_atom (heavy atoms and hydrogens as in the CCD; callers drop
    hydrogens). `bonds` is [N_bond, 2] int atom indices with `bond_orders` [N_bond] (1, 2, 3;
    aromatic bonds carry their Kekulé order) and `bond_aromatic` [N_bond] bool.
    """

    code: str
    name: str
    type: str  # _chem_comp.type, e.g. "L-PEPTIDE LINKING", "NON-POLYMER", "RNA LINKING"
    atom_names: tuple[str, ...]
    elements: tuple[str, ...]  # upper-case element symbols, e.g. "C", "FE"
    charges: np.ndarray  # [N_atom] int
    leaving_atom: np.ndarray  # [N_atom] bool (_chem_comp_atom.pdbx_leaving_atom_flag)
    stereo: tuple[str, ...]  # [N_atom] "R" | "S" | "N" (_chem_comp_atom.pdbx_stereo_config)
    ideal_coords: np.ndarray  # [N_atom, 3] float32, NaN where missing
    model_coords: np.ndarray  # [N_atom, 3] float32, NaN where missing
    bonds: np.ndarray  # [N_bond, 2] int
    bond_orders: np.ndarray  # [N_bond] int
    bond_aromatic: np.ndarray  # [N_bond] bool
    smiles: str | None = None  # set for SMILES-defined ligands
    extra: dict = field(default_factory=dict, compare=False)
