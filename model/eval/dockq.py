"""DockQ of one interface between two polymer chains (Basu & Wallner 2016, PLoS ONE 11:e0161879;
DockQ v2 for nucleic acids: Mirabello & Wallner 2024, Bioinformatics 40:btae586). Imports only torch.

    DockQ = (fnat + 1 / (1 + (iRMSD / 1.5 Å)^2) + 1 / (1 + (LRMSD / 8.5 Å)^2)) / 3

- Residue distance: the smallest distance between the heavy atoms of two residues, each structure
  with its own atoms.
- fnat: the fraction of native contacts (reference residue pairs closer than 5 Å) that the model
  reproduces; fnonnat: the fraction of the model's contacts that are not native.
- iRMSD: RMSD of the backbone atoms of the interface residues (reference residue distance below
  10 Å to the other chain) after superposing them.
- LRMSD: RMSD of the ligand chain's backbone after superposing the receptor's backbone; the
  receptor is the chain with more residues in the reference (the second on a tie).
Backbone atoms: N, CA, C, O for amino acids; P, OP1, OP2 and the sugar atoms for nucleotides.
An interface without native contacts has no DockQ (None). The same function scores validation
structures during training (model.train.loop) and predictions against references (model.eval).
"""

from __future__ import annotations

import torch

from model.eval.rmsd import rmsd, weighted_rigid_align

FNAT_DISTANCE = 5.0
INTERFACE_DISTANCE = 10.0
IRMSD_SCALE = 1.5
LRMSD_SCALE = 8.5
BACKBONE_ATOMS = frozenset(
    ("N", "CA", "C", "O", "P", "OP1", "OP2", "O2'", "O3'", "O4'", "O5'", "C1'", "C2'", "C3'", "C4'", "C5'")
)


def dockq_formula(fnat: float, irmsd: float, lrmsd: float) -> float:
    return (fnat + 1.0 / (1.0 + (irmsd / IRMSD_SCALE) ** 2) + 1.0 / (1.0 + (lrmsd / LRMSD_SCALE) ** 2)) / 3.0


def residue_contacts(
    x: torch.Tensor, present: torch.Tensor, residue: torch.Tensor, side: torch.Tensor, cutoffs: list[float]
) -> list[torch.Tensor]:
    """Residue pairs across the two sides closer than each cutoff (smallest heavy-atom distance).

    x: [A, 3]; present: [A] bool; residue: [A] residue index; side: [A] 0 or 1.
    Returns one [R, R] bool per cutoff, R = residue.max() + 1, true only for (side 0, side 1) pairs.
    """
    n_res = int(residue.max()) + 1
    a0 = torch.nonzero((side == 0) & present, as_tuple=True)[0]
    a1 = torch.nonzero((side == 1) & present, as_tuple=True)[0]
    if len(a0) == 0 or len(a1) == 0:
        return [torch.zeros(n_res, n_res, dtype=torch.bool, device=x.device) for _ in cutoffs]
    d = torch.cdist(x[a0], x[a1], compute_mode="donot_use_mm_for_euclid_dist")  # [A0, A1]
    rows = torch.nn.functional.one_hot(residue[a0], n_res).to(x.dtype)  # [A0, R]
    cols = torch.nn.functional.one_hot(residue[a1], n_res).to(x.dtype)  # [A1, R]
    return [(rows.T @ (d < c).to(x.dtype) @ cols) > 0 for c in cutoffs]


def dockq(
    x_model: torch.Tensor,
    x_ref: torch.Tensor,
    residue: torch.Tensor,
    side: torch.Tensor,
    backbone: torch.Tensor,
    model_present: torch.Tensor,
    ref_present: torch.Tensor,
    receptor: int,
) -> dict[str, float] | None:
    """DockQ, fnat, fnonnat, iRMSD and LRMSD of the interface between side 0 and side 1.

    x_model, x_ref: [A, 3] (the union of both structures' atoms, residue by residue); residue: [A]
    residue index from 0; side: [A] 0 or 1 (the chain); backbone, model_present, ref_present: [A]
    bool; receptor: the side that is the receptor (see module docstring).
    Returns None when the reference has no contact across the interface.
    """
    x_model, x_ref = x_model.double(), x_ref.double()
    native, near = residue_contacts(x_ref, ref_present, residue, side, [FNAT_DISTANCE, INTERFACE_DISTANCE])
    n_native = int(native.sum())
    if n_native == 0:
        return None
    (contacts,) = residue_contacts(x_model, model_present, residue, side, [FNAT_DISTANCE])
    n_model = int(contacts.sum())
    fnat = int((contacts & native).sum()) / n_native
    fnonnat = int((contacts & ~native).sum()) / n_model if n_model else 0.0

    interface_res = near.any(1) | near.any(0)  # [n_res]
    both = model_present & ref_present & backbone
    in_interface = both & interface_res[residue]
    irmsd = float(rmsd(x_model[in_interface], x_ref[in_interface]))

    fit = both & (side == receptor)
    moved = weighted_rigid_align(x_model[both], x_ref[both], fit[both].double())
    lig = (side[both] != receptor).double()
    lrmsd = float(rmsd(moved, x_ref[both], mask=lig.bool(), align=False))
    return {
        "dockq": dockq_formula(fnat, irmsd, lrmsd),
        "fnat": fnat,
        "fnonnat": fnonnat,
        "irmsd": irmsd,
        "lrmsd": lrmsd,
    }


def _atom_names(name_chars: torch.Tensor) -> list[str]:
    """Atom names from AF3's ref_atom_name_chars [A, 4] (ord(c) - 32 per character)."""
    return ["".join(chr(int(c) + 32) for c in row).strip() for row in name_chars.tolist()]


def complex_dockq(
    x_pred: torch.Tensor,
    x_true: torch.Tensor,
    resolved: torch.Tensor,
    atom_to_token: torch.Tensor,
    asym_id: torch.Tensor,
    mol_type: torch.Tensor,
    atom_name_chars: torch.Tensor,
) -> float | None:
    """Mean DockQ over the protein-protein and protein-nucleic chain pairs of a featurized structure
    with native contacts (the validation score of complexes during training); None when there is none.

    x_pred, x_true: [A, 3]; resolved: [A] bool (reference atoms present); atom_to_token: [A];
    asym_id, mol_type: [T]; atom_name_chars: [A, 4]. Residues are tokens; the model has every atom.
    """
    protein, ligand = 0, 3  # model.data.constants.MOL_PROTEIN, MOL_LIGAND (kept import-free)
    atom_chain = asym_id[atom_to_token]
    atom_mol = mol_type[atom_to_token]
    backbone = torch.tensor([n in BACKBONE_ATOMS for n in _atom_names(atom_name_chars)], device=x_pred.device)
    chains = [int(c) for c in torch.unique(atom_chain[atom_mol != ligand])]
    kinds = {c: set(atom_mol[atom_chain == c].tolist()) for c in chains}
    scores = []
    for i, a in enumerate(chains):
        for b in chains[i + 1 :]:
            if protein not in kinds[a] | kinds[b]:
                continue
            atoms = (atom_chain == a) | (atom_chain == b)
            tokens = torch.unique(atom_to_token[atoms], return_inverse=True)[1]
            n_res_a = int(torch.unique(atom_to_token[atom_chain == a]).numel())
            n_res_b = int(torch.unique(atom_to_token[atom_chain == b]).numel())
            value = dockq(
                x_pred[atoms],
                x_true[atoms],
                tokens,
                (atom_chain[atoms] == b).long(),
                backbone[atoms],
                torch.ones_like(resolved[atoms]),
                resolved[atoms],
                receptor=0 if n_res_a > n_res_b else 1,
            )
            if value is not None:
                scores.append(value["dockq"])
    return sum(scores) / len(scores) if scores else None
