"""The AF3 input features of one `Structure` (supplement §2.8, Table 5), per `feature_spec`.

Token features come from `tokens.tokenize`; reference features from the one RDKit conformer of each
residue's CCD component (`conformers.reference_conformer`), one `ref_space_uid` per residue instance,
each space centred, shifted and rotated at random with a generator seeded by `seed`
(`reference_frame.place_reference_spaces`); MSA features from per-chain a3m records
(`msa.assemble_msa`); template features from per-chain arrays already in the template-group format,
always `MAX_TEMPLATES` slots; ground truth from the structure's coordinates. Where Protenix 2.0.0's
inference featurizer has a convention, these features follow it (docs/network.md, "Featurizer
conventions").
"""

from __future__ import annotations

from typing import Any, NamedTuple

import gemmi
import numpy as np

from model.data.ccd import Component
from model.data.conformers import heavy_atom_indices, reference_conformer
from model.data.constants import (
    ATOM_NAME_CHARS,
    GAP,
    MAX_TEMPLATES,
    ONE_TO_CCD_DNA,
    ONE_TO_CCD_RNA,
    THREE_TO_ONE_PROTEIN,
)
from model.data.feature_spec import FEATURES, META, check_features
from model.data.msa import ALPHABETS, POLYMER_TYPES, ChainAlignment, MsaInput, assemble_msa, chain_alignment
from model.data.reference_frame import place_reference_spaces
from model.data.structure import Structure
from model.data.tokens import tokenize

FEATURIZER_VERSION = "3"
# Chains this short get no MSA rows of their own and no templates (Protenix: length <= 4).
MIN_ALIGNED_CHAIN_LENGTH = 5
TEMPLATE_FEATURES = tuple(name for name, spec in FEATURES.items() if spec[0] == "template")
# one-letter codes of standard nucleotides (the a3m query alphabet); anything else reads as X
_NUCLEOTIDE_LETTER = {code: one for table in (ONE_TO_CCD_RNA, ONE_TO_CCD_DNA) for one, code in table.items()}


class FeaturizeError(ValueError):
    """A structure that cannot be featurized (message names the structure and the reason)."""


class Featurized(NamedTuple):
    """`features` per `feature_spec.FEATURES`, `meta` per `feature_spec.META`, and the store
    attributes the featurizer knows (`msa_paired_rows`, `featurizer_version`, `ref_pos_seed`)."""

    features: dict[str, np.ndarray]
    meta: dict[str, np.ndarray]
    attrs: dict[str, Any]


def atom_name_chars(names: np.ndarray) -> np.ndarray:
    """AF3 `ref_atom_name_chars`: 4 characters per name, space-padded, each ord(c) - 32.
    [N_atom] str -> [N_atom, 4] int32"""
    padded = np.char.ljust(np.asarray(names, dtype=f"<U{ATOM_NAME_CHARS}"), ATOM_NAME_CHARS)
    codes = np.frombuffer(padded.astype(f"S{ATOM_NAME_CHARS}").tobytes(), dtype=np.uint8)
    return np.clip(codes.reshape(-1, ATOM_NAME_CHARS).astype(np.int32) - 32, 0, 63)


def atomic_numbers(elements: np.ndarray) -> np.ndarray:
    """Atomic number per upper-case element symbol (0 for unknown). [N_atom] -> [N_atom] int32"""
    table = {e: gemmi.Element(e).atomic_number for e in set(elements.tolist())}
    return np.array([table[e] for e in elements.tolist()], dtype=np.int32)


def reference_features(structure: Structure, ccd: Any, seed: int) -> dict[str, np.ndarray]:
    """`ref_pos` [N_atom, 3] and `ref_mask` [N_atom]: each residue's atoms placed by name on the
    conformer of its component (atoms the component lacks are masked), each residue's space then
    centred, shifted and rotated at random (generator seeded by `seed`); the rest of the reference
    group (element, charge, name characters, space uid)."""
    n_atom = structure.num_atoms
    pos = np.zeros((n_atom, 3), dtype=np.float32)
    mask = np.zeros(n_atom, dtype=bool)
    conformers: dict[str, tuple[dict[str, int], np.ndarray, np.ndarray]] = {}
    placement: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}  # residue layout -> conformer rows
    for res, code in enumerate(structure.res_name.tolist()):
        if code not in conformers:
            component = structure.components.get(code) or _component(ccd, code, structure)
            coords, ok = reference_conformer(component)
            names = [component.atom_names[i] for i in heavy_atom_indices(component)]
            conformers[code] = ({n: i for i, n in enumerate(names)}, coords, ok)
        index, coords, ok = conformers[code]
        start, end = int(structure.res_atom_start[res]), int(structure.res_atom_end[res])
        layout = (code, tuple(structure.atom_name[start:end].tolist()))
        if layout not in placement:
            placement[layout] = np.array([index.get(n, -1) for n in layout[1]], dtype=np.int64)
        rows = placement[layout]
        found = rows >= 0
        pos[start:end][found] = coords[rows[found]]
        mask[start:end][found] = ok[rows[found]]
    uid = structure.atom_residue.astype(np.int32)
    return {
        "ref_pos": place_reference_spaces(pos, uid, np.random.default_rng(seed)),
        "ref_mask": mask,
        "ref_element": atomic_numbers(structure.atom_element),
        "ref_charge": structure.atom_charge.astype(np.float32),
        "ref_atom_name_chars": atom_name_chars(structure.atom_name),
        "ref_space_uid": uid,
    }


def _component(ccd: Any, code: str, structure: Structure) -> Component:
    try:
        return ccd[code]
    except KeyError as err:
        raise FeaturizeError(f"{structure.name or 'structure'}: residue {code!r} is not in the CCD") from err


def chain_sequence(structure: Structure, chain: int) -> str:
    """One-letter sequence of a polymer chain as an a3m query would spell it (X for non-standard)."""
    names = structure.res_name[structure.chain_res_start[chain] : structure.chain_res_end[chain]].tolist()
    if structure.chain_type[chain] == "protein":
        return "".join(THREE_TO_ONE_PROTEIN.get(n, "X") for n in names)
    return "".join(_NUCLEOTIDE_LETTER.get(n, "X") for n in names)


def _chain_columns(structure: Structure, token_residue: np.ndarray, asym_id: np.ndarray, chain: int):
    """Token indices of a chain and each token's 0-based residue position in the chain."""
    tokens = np.flatnonzero(asym_id == chain)
    return tokens, token_residue[tokens] - int(structure.chain_res_start[chain])


def _chain_length(structure: Structure, chain: int) -> int:
    return int(structure.chain_res_end[chain] - structure.chain_res_start[chain])


def msa_query(structure: Structure, restype: np.ndarray, token_residue: np.ndarray) -> np.ndarray:
    """MSA row 0 [N_token]: a polymer token reads its residue's letter in the job sequence, the
    others their `restype`. They differ only at a modified residue whose letter is not its class
    (BP5 written as A: ALA here, UNK as restype), as in Protenix, whose row 0 is the sequence. An
    unknown letter (X, N: what the inline `MK(SEP)T` syntax writes) says nothing and keeps the class."""
    query = np.array(restype, dtype=np.int32)
    if structure.res_sequence_letter is None:
        return query
    letters = structure.res_sequence_letter[token_residue]
    kinds = structure.chain_type[structure.res_chain[token_residue]]
    for kind in POLYMER_TYPES:
        tokens = np.flatnonzero((kinds == kind) & (letters != ""))
        if len(tokens):
            codes = np.frombuffer("".join(letters[tokens]).encode("ascii", "replace"), dtype=np.uint8)
            letter_class = ALPHABETS[kind][codes]
            known = letter_class != ALPHABETS[kind][ord("X")]
            query[tokens[known]] = letter_class[known]
    return query


def msa_features(
    structure: Structure,
    restype: np.ndarray,
    token_residue: np.ndarray,
    asym_id: np.ndarray,
    msas: dict[str, MsaInput] | None,
) -> tuple[dict[str, np.ndarray], int]:
    """`msa`, `deletion_matrix`, `profile`, `deletion_mean` and the number of paired rows (query
    included), laid out as `msa.assemble_msa` describes. Polymer chains with an entry in `msas` and
    at least `MIN_ALIGNED_CHAIN_LENGTH` residues bring their alignment; the complex pairs when it
    holds more than one distinct protein chain sequence."""
    alignments: list[ChainAlignment] = []
    unknown = sorted(set(msas or ()) - set(structure.chain_name.tolist()))
    if unknown:
        raise FeaturizeError(f"{structure.name}: MSAs given for unknown chains {unknown}")
    protein_sequences = set()
    for chain, name in enumerate(structure.chain_name.tolist()):
        kind = str(structure.chain_type[chain])
        tokens, positions = _chain_columns(structure, token_residue, asym_id, chain)
        if kind == "protein":
            # one class per residue (an atomised residue's tokens share its parent's class), so a
            # modified copy of a chain is the same sequence, as in Protenix's canonical sequences
            _, first = np.unique(positions, return_index=True)
            protein_sequences.add(restype[tokens][first].tobytes())
        if not msas or name not in msas or kind not in POLYMER_TYPES:
            continue
        if _chain_length(structure, chain) < MIN_ALIGNED_CHAIN_LENGTH:
            continue
        sequence = chain_sequence(structure, chain)
        alignments.append(
            chain_alignment(msas[name], kind, sequence, tokens, positions, f"{structure.name}/{name}")
        )
    protein_token = structure.chain_type[asym_id] == "protein"
    query = msa_query(structure, restype, token_residue)
    complex_msa = assemble_msa(query, asym_id, protein_token, alignments, pair=len(protein_sequences) > 1)
    out = {
        "msa": complex_msa.msa,
        "deletion_matrix": complex_msa.deletion_matrix,
        "profile": complex_msa.profile,
        "deletion_mean": complex_msa.deletion_mean,
    }
    return out, complex_msa.n_paired


def template_features(
    structure: Structure,
    token_residue: np.ndarray,
    asym_id: np.ndarray,
    templates: dict[str, dict[str, np.ndarray]] | None,
) -> dict[str, np.ndarray]:
    """Always `MAX_TEMPLATES` slots (AF3's maximum), laid out as Protenix does: per-chain template
    arrays [K_c, L_c, ...] (L_c = chain residues, template-group names) fill the chain's token
    columns of slots [0, K_c); a protein chain of at least `MIN_ALIGNED_CHAIN_LENGTH` residues
    without templates, and every other chain, has one all-gap template in slot 0; the remaining
    slots are padding with restype 0. Every padding and gap column is masked."""
    n_token = len(asym_id)
    chains = {name: i for i, name in enumerate(structure.chain_name.tolist())}
    templates = templates or {}
    for name in templates:
        if name not in chains:
            raise FeaturizeError(f"{structure.name}: templates given for unknown chain {name!r}")
    out = {}
    for feature in TEMPLATE_FEATURES:
        dims = FEATURES[feature][1]
        out[feature] = np.zeros((MAX_TEMPLATES, n_token, *dims[2:]), dtype=FEATURES[feature][2])
    for chain, name in enumerate(structure.chain_name.tolist()):
        tokens, positions = _chain_columns(structure, token_residue, asym_id, chain)
        length = _chain_length(structure, chain)
        usable = structure.chain_type[chain] == "protein" and length >= MIN_ALIGNED_CHAIN_LENGTH
        arrays = templates.get(name) if usable else None
        if not arrays or not len(arrays.get("template_restype", ())):
            out["template_restype"][0, tokens] = GAP
            continue
        for feature in TEMPLATE_FEATURES:
            if feature not in arrays:
                raise FeaturizeError(f"{structure.name}: chain {name} templates lack {feature!r}")
            value = np.asarray(arrays[feature])
            trailing = tuple(FEATURES[feature][1][2:])
            if value.ndim < 2 or value.shape[1] != length or value.shape[2:] != trailing:
                raise FeaturizeError(
                    f"{structure.name}: chain {name} {feature} has shape {value.shape}, "
                    f"expected [K, {length}, *{trailing}]"
                )
            k = min(len(value), MAX_TEMPLATES)
            out[feature][:k, tokens] = value[:k][:, positions]
    return out


def featurize(
    structure: Structure,
    ccd: Any,
    msas: dict[str, MsaInput] | None = None,
    templates: dict[str, dict[str, np.ndarray]] | None = None,
    seed: int = 0,
    with_truth: bool = False,
) -> Featurized:
    """All features of one structure (prediction target or training entry).

    `msas` and `templates` are keyed by chain name (`structure.chain_name`, label_asym_id).
    With `with_truth`, `atom_pos` (0 where unresolved) and `atom_resolved` are added.
    """
    tok = tokenize(structure, ccd)
    n_atom = structure.num_atoms
    if len(tok.atom_to_token) != n_atom:
        raise FeaturizeError(f"{structure.name}: tokenizer covers {len(tok.atom_to_token)} of {n_atom} atoms")
    features: dict[str, np.ndarray] = {}
    for name in (
        "residue_index",
        "token_index",
        "asym_id",
        "entity_id",
        "sym_id",
        "restype",
        "mol_type",
        "token_center_atom",
        "token_rep_atom",
        "token_bonds",
        "atom_to_token",
        "atom_to_tokatom_idx",
    ):
        features[name] = np.asarray(getattr(tok, name)).astype(FEATURES[name][2], copy=False)
    token_residue = structure.atom_residue[features["token_center_atom"]].astype(np.int64)
    features.update(reference_features(structure, ccd, seed))
    msa, n_paired = msa_features(structure, features["restype"], token_residue, features["asym_id"], msas)
    features.update(msa)
    features.update(template_features(structure, token_residue, features["asym_id"], templates))
    if with_truth:
        resolved = structure.atom_resolved.astype(bool) & np.isfinite(structure.atom_coords).all(axis=1)
        features["atom_pos"] = np.where(resolved[:, None], structure.atom_coords, 0).astype(np.float32)
        features["atom_resolved"] = resolved
    check_features(features, require_truth=with_truth)
    link = ~np.isin(structure.bond_type.astype(str), ("ccd", "polymer"))
    meta = {
        "token_res_name": np.asarray(tok.token_res_name, dtype=np.str_),
        "atom_name": structure.atom_name.astype(np.str_),
        "atom_element": structure.atom_element.astype(np.str_),
        "chain_name": structure.chain_name.astype(np.str_),
        "chain_type": structure.chain_type.astype(np.str_),
        "chain_entity_id": structure.chain_entity_id.astype(np.str_),
        "atom_bonds": structure.bonds.astype(np.int32).reshape(-1, 2),
        "atom_bond_is_link": link,
    }
    assert set(meta) == set(META)
    attrs = {"msa_paired_rows": n_paired, "featurizer_version": FEATURIZER_VERSION, "ref_pos_seed": seed}
    return Featurized(features, meta, attrs)
