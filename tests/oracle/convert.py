"""Foldline's compact network features in Protenix 2.0.0's input format: the one conversion.

Foldline stores indices (restype, element, atom-name characters) where Protenix feeds one-hot vectors, the
raw deletion count where Protenix feeds `has_deletion`/`deletion_value`, and template coordinates where
Protenix feeds the template distogram and unit vectors. `to_protenix_features` maps one onto the other with
torch only, so it runs in Foldline's environment; Protenix's own relative-position features
(`generate_relp`, `update_input_feature_dict`) are added by callers that have Protenix imported.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from model.nn.template import backbone_unit_vectors, template_distogram


def to_protenix_features(f: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Foldline's features `f` (one target, no batch axis) as Protenix's input feature dict.

    Token features are `[N_token, ...]`, atom features `[N_atom, ...]`, MSA features `[N_msa, N_token]`,
    template features `[N_templ, N_token, N_token, ...]`.
    """
    n_atom = f["ref_pos"].shape[0]
    pbm, bbm = f["template_pseudo_beta_mask"].float(), f["template_backbone_mask"].float()
    pb_2d, bb_2d = pbm[:, :, None] * pbm[:, None, :], bbm[:, :, None] * bbm[:, None, :]
    rep = torch.zeros(n_atom, dtype=torch.bool)
    rep[f["token_rep_atom"].long()] = True
    return {
        "restype": F.one_hot(f["restype"].long(), 32).float(),
        "profile": f["profile"],
        "deletion_mean": f["deletion_mean"],
        "msa": f["msa"].long(),
        "has_deletion": (f["deletion_matrix"] > 0).float(),
        "deletion_value": 2 / math.pi * torch.arctan(f["deletion_matrix"] / 3),
        "ref_pos": f["ref_pos"],
        "ref_charge": f["ref_charge"],
        "ref_mask": f["ref_mask"].float(),
        "ref_element": F.one_hot((f["ref_element"].long() - 1) % 128, 128).float(),
        "ref_atom_name_chars": F.one_hot(f["ref_atom_name_chars"].long(), 64).float().reshape(n_atom, 256),
        "ref_space_uid": f["ref_space_uid"].long(),
        "atom_to_token_idx": f["atom_to_token"].long(),
        **{k: f[k].long() for k in ("asym_id", "residue_index", "entity_id", "token_index", "sym_id")},
        "token_bonds": f["token_bonds"].float(),
        "template_aatype": f["template_restype"].long(),
        # Zero where masked, as Protenix's featurizer writes them (its embedder does not mask them again).
        "template_distogram": template_distogram(f["template_pseudo_beta"]) * pb_2d[..., None],
        "template_pseudo_beta_mask": pb_2d,
        "template_unit_vector": backbone_unit_vectors(f["template_backbone"]) * bb_2d[..., None],
        "template_backbone_frame_mask": bb_2d,
        "distogram_rep_atom_mask": rep,
        "atom_to_tokatom_idx": f["atom_to_tokatom_idx"].long(),
    }
