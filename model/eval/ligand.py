"""Ligand pose metrics: pocket-aligned RMSD (AF3 main text, PoseBusters benchmark; Buttenschoen
et al. 2024, Chem Sci 15:3130) and the PoseBusters validity checks (`posebusters` package).

Pocket-aligned RMSD: the pocket is every polymer residue of the reference with a heavy atom within
10 Å of a ligand heavy atom; the model is superposed on the reference by the pocket's backbone
representative atoms (Cα, C1' for nucleotides), then the RMSD of the ligand's heavy atoms is taken
without refitting. A pose succeeds below 2 Å. Atoms are matched by name, so the RMSD is exact for
CCD ligands (the writer keeps CCD atom names); symmetric atoms are not permuted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from model.eval.rmsd import rmsd, weighted_rigid_align

POCKET_DISTANCE = 10.0
SUCCESS_RMSD = 2.0
POCKET_ATOMS = ("CA", "C1'")


def pocket_aligned_rmsd(
    model_xyz: np.ndarray,
    ref_xyz: np.ndarray,
    is_ligand: np.ndarray,
    is_polymer: np.ndarray,
    residue: np.ndarray,
    atom_name: np.ndarray,
) -> dict | None:
    """Pocket-aligned RMSD of one ligand (see module docstring).

    model_xyz, ref_xyz: [A, 3] matched atoms; is_ligand, is_polymer: [A] bool; residue: [A]
    residue index; atom_name: [A]. Returns {"rmsd", "success", "pocket_residues"} or None when
    the pocket has fewer than 3 representative atoms.
    """
    lig = np.nonzero(is_ligand)[0]
    poly = np.nonzero(is_polymer)[0]
    if len(lig) == 0 or len(poly) == 0:
        return None
    d = np.linalg.norm(ref_xyz[poly][:, None] - ref_xyz[lig][None], axis=-1).min(-1)
    pocket_res = np.unique(residue[poly][d < POCKET_DISTANCE])
    pocket = is_polymer & np.isin(residue, pocket_res) & np.isin(atom_name, POCKET_ATOMS)
    if pocket.sum() < 3:
        return None
    x = torch.as_tensor(model_xyz, dtype=torch.float64)
    x_ref = torch.as_tensor(ref_xyz, dtype=torch.float64)
    moved = weighted_rigid_align(x, x_ref, torch.as_tensor(pocket, dtype=torch.float64))
    value = float(rmsd(moved, x_ref, mask=torch.as_tensor(is_ligand), align=False))
    return {"rmsd": value, "success": value < SUCCESS_RMSD, "pocket_residues": len(pocket_res)}


def posebusters_checks(ligand_sdf: str | Path, receptor_pdb: str | Path) -> dict[str, bool]:
    """PoseBusters' `dock` checks of a predicted ligand (SDF) in its predicted receptor (PDB):
    chemistry (sanitisation, bond lengths and angles, planarity, internal clashes, energy ratio)
    and the pose against the receptor (no clash with protein, no overlap with other ligands).
    Returns {check: passed}, with "all" true when every check passes, or {"error": one line} when
    PoseBusters cannot read or check the files (the other metrics of the target still count)."""
    from posebusters import PoseBusters

    try:
        frame = PoseBusters(config="dock").bust(mol_pred=str(ligand_sdf), mol_cond=str(receptor_pdb))
    except Exception as error:  # a third-party checker on arbitrary chemistry: report, never abort
        return {"error": " ".join(f"{type(error).__name__}: {error}".split())}
    row = frame.iloc[0]
    checks = {str(k): bool(v) for k, v in row.items() if isinstance(v, (bool, np.bool_))}
    checks["all"] = all(checks.values())
    return checks
