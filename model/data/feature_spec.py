"""The feature contract between the featurizer, the HDF5 store, crops and the network.

Features are stored compactly (indices, not one-hot); the network one-hots and derives the rest
(has_deletion, deletion_value, template distogram and unit vectors) itself. One example has no
batch dimension. Names follow AF3 supplement Table 5 where it has one.

`FEATURES[name] = (group, dims, dtype)`; dims are symbolic:
  T = N_token, A = N_atom, M = N_msa rows, K = N_templ (the featurizer always writes
  constants.MAX_TEMPLATES; the network also takes 0), or a literal size.
"""

from __future__ import annotations

import numpy as np

from model.data.constants import ATOM_NAME_CHARS, NUM_RESTYPES

FEATURES: dict[str, tuple[str, tuple[str | int, ...], type]] = {
    # token group: one row per token
    "residue_index": ("token", ("T",), np.int32),  # label_seq_id (1 for ligands)
    "token_index": ("token", ("T",), np.int32),
    "asym_id": ("token", ("T",), np.int32),  # 0-based chain index
    "entity_id": ("token", ("T",), np.int32),
    "sym_id": ("token", ("T",), np.int32),  # copy index within the entity
    "restype": ("token", ("T",), np.int32),  # in [0, 32)
    "mol_type": ("token", ("T",), np.int32),  # constants.MOL_*
    "token_center_atom": ("token", ("T",), np.int32),  # atom index (CA / C1' / the atom)
    "token_rep_atom": ("token", ("T",), np.int32),  # atom index (CB|CA / C4|C2 / the atom)
    "token_bonds": ("token", ("T", "T"), np.bool_),  # AF3 token_bonds (ligand/polymer-ligand)
    # atom group: one row per atom, in token order
    "atom_to_token": ("atom", ("A",), np.int32),
    # index in the standard residue's CCD heavy-atom list (OP3 first for nucleotides); 0 if atomised
    "atom_to_tokatom_idx": ("atom", ("A",), np.int32),
    "ref_pos": ("atom", ("A", 3), np.float32),
    "ref_mask": ("atom", ("A",), np.bool_),
    "ref_element": ("atom", ("A",), np.int32),  # atomic number in [0, 128)
    "ref_charge": ("atom", ("A",), np.float32),
    "ref_atom_name_chars": ("atom", ("A", ATOM_NAME_CHARS), np.int32),  # ord(c) - 32
    "ref_space_uid": ("atom", ("A",), np.int32),
    # msa group: rows [0, msa_paired_rows) are the paired block, the rest the unpaired block; each
    # block starts with the query row (model/data/msa.py)
    "msa": ("msa", ("M", "T"), np.int32),  # restype indices, 31 = gap
    "deletion_matrix": ("msa", ("M", "T"), np.float32),  # raw deletion counts
    "profile": ("msa", ("T", NUM_RESTYPES), np.float32),
    "deletion_mean": ("msa", ("T",), np.float32),
    # template group
    "template_restype": ("template", ("K", "T"), np.int32),
    "template_pseudo_beta": ("template", ("K", "T", 3), np.float32),
    "template_pseudo_beta_mask": ("template", ("K", "T"), np.bool_),
    "template_backbone": ("template", ("K", "T", 3, 3), np.float32),  # N, CA, C positions
    "template_backbone_mask": ("template", ("K", "T"), np.bool_),
    # truth group (training entries only)
    "atom_pos": ("truth", ("A", 3), np.float32),
    "atom_resolved": ("truth", ("A",), np.bool_),
}

TRUTH_FEATURES = tuple(k for k, v in FEATURES.items() if v[0] == "truth")
GROUPS = ("token", "atom", "msa", "template", "truth")


def check_features(features: dict, require_truth: bool = False) -> dict[str, int]:
    """Check names, shapes and dtypes against FEATURES; returns the symbolic sizes found.

    Works for numpy arrays and torch tensors. Raises ValueError naming the offending feature.
    """
    sizes: dict[str, int] = {}
    for name, (_group, dims, dtype) in FEATURES.items():
        if name not in features:
            if name in TRUTH_FEATURES and not require_truth:
                continue
            raise ValueError(f"feature {name!r}: missing")
        shape = tuple(features[name].shape)
        if len(shape) != len(dims):
            raise ValueError(f"feature {name!r}: expected {len(dims)} dims {dims}, got shape {shape}")
        for dim, size in zip(dims, shape, strict=True):
            if isinstance(dim, int):
                if size != dim:
                    raise ValueError(f"feature {name!r}: expected size {dim}, got shape {shape}")
            elif sizes.setdefault(dim, size) != size:
                raise ValueError(f"feature {name!r}: {dim}={size} disagrees with {dim}={sizes[dim]}")
        kind = np.dtype(dtype).kind
        found = str(features[name].dtype)
        ok = {"i": "int" in found, "f": "float" in found, "b": "bool" in found}[kind]
        if not ok:
            raise ValueError(f"feature {name!r}: expected {np.dtype(dtype).name}, got {found}")
    return sizes


# meta group: what writers need to turn coordinates back into mmCIF/SDF. Not fed to the network
# and not cropped (inference never crops). Strings are stored as UTF-8 in HDF5.
META: dict[str, tuple[tuple[str | int, ...], type]] = {
    "token_res_name": (("T",), np.str_),  # CCD code of the token's residue
    "atom_name": (("A",), np.str_),
    "atom_element": (("A",), np.str_),  # upper-case symbol
    "chain_name": (("C",), np.str_),  # label_asym_id per asym_id
    "chain_type": (("C",), np.str_),  # constants.CHAIN_TYPES
    "chain_entity_id": (("C",), np.str_),
    "atom_bonds": (("B", 2), np.int32),  # every covalent bond between atoms (CCD + links)
    "atom_bond_is_link": (("B",), np.bool_),  # inter-residue bond (struct_conn, not polymer)
}
