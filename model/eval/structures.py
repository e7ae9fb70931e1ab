"""Chains of a model and a reference structure, matched by sequence (gemmi), with the best chain
permutation for homomers; the matched atoms every metric of `model.eval` is computed on.

A chain here is a label_asym_id (gemmi subchain): a polymer chain, or one ligand or ion. Polymer
chains match when their sequences align (gemmi's global alignment) with identity >= 0.8 over the
shorter sequence; ligands and ions match when their residue names are equal. Among chains that
match several others (homomers, repeated ligands), the permutation with the highest lDDT of the
representative atoms (Cα, C1', every ligand atom) is kept (AF3 supplement §4.2 resolves chain
symmetry of the ground truth in the same spirit, by an RMSD criterion).
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from pathlib import Path

import gemmi
import numpy as np
import torch

from model.eval.lddt import lddt

POLYMER_KINDS = {
    gemmi.PolymerType.PeptideL: "protein",
    gemmi.PolymerType.PeptideD: "protein",
    gemmi.PolymerType.Dna: "dna",
    gemmi.PolymerType.Rna: "rna",
    gemmi.PolymerType.DnaRnaHybrid: "dna",
}
NUCLEIC = ("dna", "rna")
MIN_IDENTITY = 0.8
# Beyond this many candidate permutations, chains keep their order of appearance.
MAX_PERMUTATIONS = 5040
REPRESENTATIVE = {"protein": "CA", "dna": "C1'", "rna": "C1'"}


class MatchError(ValueError):
    """The model's chains cannot be matched to the reference."""


@dataclass
class Chain:
    """One chain of a structure: residues in order, heavy atoms by name."""

    name: str
    kind: str  # protein | dna | rna | ligand | ion
    res_names: list[str]
    res_atoms: list[dict[str, np.ndarray]]  # atom name -> [3]

    @functools.cached_property
    def sequence(self) -> str:
        """One letter per residue for polymers ('X' where unknown); residue names for the rest."""
        if self.kind in ("protein", *NUCLEIC):
            return "".join(_one_letter(n) for n in self.res_names)
        return "_".join(self.res_names)


@functools.cache
def _one_letter(res_name: str) -> str:
    info = gemmi.find_tabulated_residue(res_name)
    letter = info.one_letter_code.upper() if info is not None else " "
    return letter if letter.strip() else "X"


def read_chains(path: str | Path, model_index: int = 0) -> list[Chain]:
    """Chains of one model (0 = the first) of an mmCIF/PDB file: hydrogens, waters and all but the
    first alternative conformation removed."""
    st = gemmi.read_structure(str(path))
    st.setup_entities()
    st.remove_hydrogens()
    st.remove_waters()
    st.remove_alternative_conformations()
    if model_index >= len(st):
        raise MatchError(f"{path}: no model {model_index + 1} (the file has {len(st)})")
    chains = []
    for span in st[model_index].subchains():
        entity = st.get_entity_of(span)
        names, atoms = [], []
        for res in span:
            names.append(res.name)
            atoms.append({a.name: np.array(a.pos.tolist(), dtype=np.float64) for a in res})
        if not names:
            continue
        if entity is not None and entity.entity_type == gemmi.EntityType.Polymer:
            kind = POLYMER_KINDS.get(entity.polymer_type, "protein")
        elif len(names) == 1 and len(atoms[0]) == 1:
            kind = "ion"
        else:
            kind = "ligand"
        chains.append(Chain(span.subchain_id(), kind, names, atoms))
    return chains


@dataclass
class ChainPair:
    """A model chain matched to a reference chain, residue by residue."""

    model: Chain
    ref: Chain
    residues: list[tuple[int, int]]  # (model residue, reference residue)


def _residue_pairs(model: Chain, ref: Chain) -> list[tuple[int, int]] | None:
    """Aligned residue pairs, or None when the chains do not match."""
    if model.kind != ref.kind:
        return None
    if model.kind not in ("protein", *NUCLEIC):
        if model.res_names != ref.res_names:
            return None
        return [(i, i) for i in range(len(model.res_names))]
    if model.sequence == ref.sequence:
        return [(i, i) for i in range(len(model.res_names))]
    aln = gemmi.align_string_sequences(list(model.sequence), list(ref.sequence), [])
    gapped_model, gapped_ref = aln.add_gaps(model.sequence, 1), aln.add_gaps(ref.sequence, 2)
    pairs, i, j = [], 0, 0
    for a, b in zip(gapped_model, gapped_ref, strict=True):
        if a != "-" and b != "-":
            if a == b:
                pairs.append((i, j))
        i += a != "-"
        j += b != "-"
    if len(pairs) < MIN_IDENTITY * min(len(model.sequence), len(ref.sequence)):
        return None
    return pairs


@dataclass
class MatchedAtoms:
    """Atoms present in both structures, in model chain order. [A] arrays unless noted."""

    pairs: list[ChainPair]
    model_xyz: np.ndarray  # [A, 3]
    ref_xyz: np.ndarray  # [A, 3]
    chain: np.ndarray  # index into `pairs`
    residue: np.ndarray  # running residue index over all pairs
    atom_name: np.ndarray

    @property
    def chain_kind(self) -> list[str]:
        return [p.model.kind for p in self.pairs]

    def is_nucleotide(self) -> np.ndarray:
        return np.isin(np.asarray(self.chain_kind)[self.chain], NUCLEIC)


def matched_atoms(pairs: list[ChainPair]) -> MatchedAtoms:
    """Every heavy atom whose chain, residue and name match in both structures."""
    mx, rx, chain, residue, names = [], [], [], [], []
    n_res = 0
    for c, pair in enumerate(pairs):
        for i, j in pair.residues:
            ref_atoms = pair.ref.res_atoms[j]
            for name, xyz in pair.model.res_atoms[i].items():
                if name in ref_atoms:
                    mx.append(xyz)
                    rx.append(ref_atoms[name])
                    chain.append(c)
                    residue.append(n_res)
                    names.append(name)
            n_res += 1
    return MatchedAtoms(
        pairs,
        np.asarray(mx, dtype=np.float64).reshape(-1, 3),
        np.asarray(rx, dtype=np.float64).reshape(-1, 3),
        np.asarray(chain, dtype=np.int64),
        np.asarray(residue, dtype=np.int64),
        np.asarray(names, dtype=str),
    )


def _representative_lddt(pairs: list[ChainPair]) -> float:
    """lDDT over Cα / C1' / ligand atoms: cheap, superposition-free score of a chain assignment."""
    mx, rx = [], []
    for pair in pairs:
        rep = REPRESENTATIVE.get(pair.model.kind)
        for i, j in pair.residues:
            for name, xyz in pair.model.res_atoms[i].items():
                if (rep is None or name == rep) and name in pair.ref.res_atoms[j]:
                    mx.append(xyz)
                    rx.append(pair.ref.res_atoms[j][name])
    if not mx:
        return 0.0
    x_pred = torch.as_tensor(np.asarray(mx), dtype=torch.float32)
    x_true = torch.as_tensor(np.asarray(rx), dtype=torch.float32)
    return float(lddt(x_pred, x_true, torch.ones(len(mx), dtype=torch.bool)))


def map_chains(model: list[Chain], ref: list[Chain]) -> list[ChainPair]:
    """Match model chains to reference chains (see module docstring).

    Model chains without a reference partner (e.g. a ligand the experiment did not resolve) are
    left out. Raises MatchError when no polymer chain matches.
    """
    candidates: dict[int, dict[int, list[tuple[int, int]]]] = {}
    for m, mc in enumerate(model):
        for r, rc in enumerate(ref):
            residues = _residue_pairs(mc, rc)
            if residues:
                candidates.setdefault(m, {})[r] = residues
    if not any(model[m].kind in ("protein", *NUCLEIC) for m in candidates):
        model_seqs = ", ".join(f"{c.name}:{c.kind}" for c in model)
        ref_seqs = ", ".join(f"{c.name}:{c.kind}" for c in ref)
        raise MatchError(f"no polymer chain of the model ({model_seqs}) matches the reference ({ref_seqs})")
    # Groups of model chains that compete for the same reference chains.
    groups: dict[tuple[int, ...], list[int]] = {}
    for m in sorted(candidates):
        groups.setdefault(tuple(sorted(candidates[m])), []).append(m)
    choices = []
    for refs, members in groups.items():
        k = min(len(refs), len(members))
        choices.append([(members[:k], perm) for perm in itertools.permutations(refs, k)])
    n_total = int(np.prod([len(c) for c in choices]))
    if n_total > MAX_PERMUTATIONS:
        choices = [c[:1] for c in choices]
    best: tuple[float, list[ChainPair]] | None = None
    used_order = sorted(candidates)
    for combo in itertools.product(*choices):
        assign = {m: r for members, perm in combo for m, r in zip(members, perm, strict=True)}
        if len(set(assign.values())) < len(assign):
            continue  # two groups claimed the same reference chain
        pairs = [
            ChainPair(model[m], ref[assign[m]], candidates[m][assign[m]]) for m in used_order if m in assign
        ]
        score = _representative_lddt(pairs)
        if best is None or score > best[0] + 1e-9:
            best = (score, pairs)
    if best is None:
        raise MatchError("no consistent assignment of model chains to reference chains")
    return best[1]
