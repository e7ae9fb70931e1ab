"""AF3 §2.6 tokenization of every shared entry, against token lists derived from the raw files."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from conftest import shared_entries
from test_structure import STANDARD, ccd, expected, parsed

from model.data.constants import MOL_DNA, MOL_LIGAND, MOL_PROTEIN, MOL_RNA, RESTYPE_INDEX, UNKNOWN_PROTEIN
from model.data.tokens import Tokens, tokenize

ENTRIES = shared_entries()
POLYMER_KIND = {"peptide": "protein", "deoxy": "dna", "ribo": "rna"}


@functools.cache
def tokens(entry: str, assembly: str | None = None) -> Tokens:
    return tokenize(parsed(entry, assembly), ccd())


def _chain_kind(chain_type: str) -> str | None:
    """ "polymer:polypeptide(L)" -> "protein"; non-polymers -> None."""
    if not chain_type.startswith("polymer"):
        return None
    return next(kind for mark, kind in POLYMER_KIND.items() if mark in chain_type)


@functools.cache
def expected_tokens(entry: str) -> tuple[list[tuple], dict[tuple, tuple]]:
    """Token identities in order, and atom identity -> token identity, from the raw file.

    A standard residue of a polymer chain is one token (chain, residue); anything else is one
    token per heavy atom (chain, residue, atom).
    """
    exp = expected(entry)
    order, atom_token = [], {}
    for chain in exp.chains:
        kind = _chain_kind(exp.chain_type[chain])
        for i, (name, atoms) in enumerate(zip(exp.residues[chain], exp.atoms[chain], strict=True)):
            if kind is not None and any(name in std for std in STANDARD.values()):
                order.append((chain, i))
                atom_token.update({(chain, i, a): (chain, i) for a, _ in atoms})
            else:
                for a, _ in atoms:
                    order.append((chain, i, a))
                    atom_token[(chain, i, a)] = (chain, i, a)
    return order, atom_token


@pytest.mark.parametrize("entry", ENTRIES)
def test_tokens_match_file(entry):
    s, t = parsed(entry), tokens(entry)
    order, atom_token = expected_tokens(entry)
    assert t.num_tokens == len(order)
    res_in_chain = np.arange(s.num_residues) - s.chain_res_start[s.res_chain]

    def ident(a: int) -> tuple:
        r = s.atom_residue[a]
        return (str(s.chain_name[s.res_chain[r]]), int(res_in_chain[r]), str(s.atom_name[a]))

    got = []
    for k in range(t.num_tokens):
        a = t.token_atom_start[k]
        chain, i, name = ident(a)
        got.append((chain, i, name) if t.token_is_atomized[k] else (chain, i))
    assert got == order
    # Every atom maps to its token; tokens own contiguous atom slices in structure order.
    assert len(t.atom_to_token) == s.num_atoms
    assert [order[t.atom_to_token[a]] for a in range(s.num_atoms)] == [
        atom_token[ident(a)] for a in range(s.num_atoms)
    ]
    assert (np.diff(t.atom_to_token) >= 0).all()
    # Token bonds: every non-backbone bond touching an atomised token (AF3 token_bonds).
    exp = expected(entry)
    want = set()
    for bond in exp.bonds - exp.polymer_links:
        a, b = (atom_token[x] for x in bond)
        if a != b and (len(a) == 3 or len(b) == 3):
            want.add(frozenset([a, b]))
    assert {frozenset([order[i], order[j]]) for i, j in t.bond_pairs} == want
    assert len(t.bond_pairs) == len(want)


@pytest.mark.parametrize("entry", ENTRIES)
def test_token_features(entry):
    s, t = parsed(entry), tokens(entry)
    std = ~t.token_is_atomized
    names = t.token_res_name
    center_names = s.atom_name[t.token_center_atom]
    rep_names = s.atom_name[t.token_rep_atom]
    # Atomised tokens: the atom is its own centre and representative; ligand restype unknown
    # protein (modified polymer residues: test_modified_residue_atoms_take_their_parent_restype).
    assert (t.token_center_atom[~std] == t.token_atom_start[~std]).all()
    assert (t.token_rep_atom[~std] == t.token_atom_start[~std]).all()
    assert (t.restype[~std & (t.mol_type == MOL_LIGAND)] == UNKNOWN_PROTEIN).all()
    for k in np.flatnonzero(std):
        assert t.restype[k] == RESTYPE_INDEX[names[k]]
        assert t.token_atom_start[k] <= t.token_center_atom[k] < t.token_atom_end[k]
        if names[k] in STANDARD["protein"]:
            assert t.mol_type[k] == MOL_PROTEIN and center_names[k] == "CA"
            if names[k] != "UNK":
                assert rep_names[k] == ("CA" if names[k] == "GLY" else "CB")
        else:
            assert t.mol_type[k] == (MOL_RNA if names[k] in STANDARD["rna"] else MOL_DNA)
            assert center_names[k] == "C1'"
            if names[k] not in ("N", "DN"):
                assert rep_names[k] == ("C4" if names[k] in {"A", "G", "DA", "DG"} else "C2")
    # Ids: chain index, entity and copy number; residue_index is label_seq_id (1 for ligands).
    chain = s.res_chain[t.token_residue]
    assert (t.asym_id == chain).all()
    assert (t.residue_index == s.res_seq_id[t.token_residue]).all()
    ligand_chain = np.isin(s.chain_type[chain], ["ligand", "ion", "branched"])
    assert (t.mol_type[ligand_chain] == MOL_LIGAND).all()
    assert (t.token_index == np.arange(t.num_tokens)).all()


def test_dense_token_bonds_symmetric():
    t = tokens("1igy")
    dense = t.token_bonds
    assert dense.shape == (t.num_tokens, t.num_tokens)
    assert (dense == dense.T).all() and not dense.diagonal().any()
    assert dense.sum() == 2 * len(t.bond_pairs) > 0


def test_glycan_to_asparagine_token_bond():
    s, t = parsed("1igy"), tokens("1igy")
    sugar = np.flatnonzero(s.chain_type == "branched")
    linked = False
    for i, j in t.bond_pairs:
        ci, cj = t.asym_id[i], t.asym_id[j]
        if (ci in sugar) != (cj in sugar):
            k = j if ci in sugar else i
            linked |= t.token_res_name[k] == "ASN" and not t.token_is_atomized[k]
    assert linked


def test_cyclic_peptide_closure_is_not_a_token_bond():
    # 2lwu: standard residues only; the head-to-tail covalent link joins two standard tokens.
    s, t = parsed("2lwu"), tokens("2lwu")
    assert (s.bond_type == "covale").any()
    assert len(t.bond_pairs) == 0 and not t.token_is_atomized.any()


def test_modified_residues_atomised():
    s, t = parsed("1as5"), tokens("1as5")
    hyp = t.token_res_name == "HYP"
    per_residue = np.bincount(t.token_residue[hyp], minlength=s.num_residues)
    heavy = s.res_atom_end - s.res_atom_start
    assert hyp.any() and (per_residue[per_residue > 0] == heavy[per_residue > 0]).all()
    assert (t.mol_type[hyp] == MOL_PROTEIN).all()  # a modified residue keeps its chain's type


def test_sym_id_counts_copies_of_an_entity():
    t = tokens("1a7g", "1")
    s = parsed("1a7g", "1")
    for name in ("A", "A-2"):
        c = list(s.chain_name).index(name)
        sel = t.asym_id == c
        assert len(set(t.sym_id[sel])) == 1
        assert t.sym_id[sel][0] == (0 if name == "A" else 1)
    a, a2 = list(s.chain_name).index("A"), list(s.chain_name).index("A-2")
    assert set(t.entity_id[t.asym_id == a]) == set(t.entity_id[t.asym_id == a2])


def test_large_assembly_tokenizes_quickly():
    import time

    s = parsed("1f2n", "1")
    t0 = time.perf_counter()
    t = tokenize(s, ccd())
    assert time.perf_counter() - t0 < 10
    assert t.num_tokens == 60 * tokens("1f2n").num_tokens


# Parents of the modified residues in the shared entries, from their chemistry: e.g. pseudouridine
# is a uridine, 5-iodo-deoxyuridine a uridine in DNA (no DNA class: DN), an amide cap (NH2, CCD
# non-polymer) and GTP (a CCD non-polymer at an RNA 5' end) are no residue class (UNK).
PARENTS = {
    "1ehz": {"PSU": "U", "5MC": "C", "5MU": "U", "H2U": "U", "1MA": "A", "2MG": "G", "7MG": "G",
             "M2G": "G", "OMC": "C", "OMG": "G", "YYG": "G"},
    "1as5": {"HYP": "PRO", "NH2": "UNK"},
    "2q2k": {"5IU": "DN"},
    "4gxy": {"CCC": "C", "GTP": "UNK"},
    "1a8o": {},  # its MSE residues are read as MET (AF3 §2.1): standard tokens, none atomised
}  # fmt: skip


@pytest.mark.parametrize("entry", sorted(PARENTS))
def test_modified_residue_atoms_take_their_parent_restype(entry):
    t = tokens(entry)
    found = {}
    for i in np.flatnonzero(t.token_is_atomized & (t.mol_type != MOL_LIGAND)):
        found.setdefault(str(t.token_res_name[i]), set()).add(int(t.restype[i]))
    assert found == {code: {RESTYPE_INDEX[parent]} for code, parent in PARENTS[entry].items()}
    # ligands, ions and glycans stay the unknown amino acid
    assert (t.restype[t.mol_type == MOL_LIGAND] == UNKNOWN_PROTEIN).all()


@pytest.mark.parametrize("entry", ["1ehz", "1bna", "1ubq"])
def test_atom_to_tokatom_idx_is_the_standard_atom_list_position(entry):
    """Nucleotide lists start OP3, P, OP1, OP2, O5'; amino acids N, CA, C, O, CB (CCD order), so an
    atom's index does not depend on which atoms its residue has (most nucleotides lack OP3)."""
    s, t = parsed(entry), tokens(entry)
    standard_atom = ~t.token_is_atomized[t.atom_to_token]
    names = s.atom_name
    expected_index = {
        "OP3": 0,
        "P": 1,
        "OP1": 2,
        "OP2": 3,
        "O5'": 4,
        "N": 0,
        "CA": 1,
        "C": 2,
        "O": 3,
        "CB": 4,
    }
    for name, index in expected_index.items():
        sel = standard_atom & (names == name)
        assert (t.atom_to_tokatom_idx[sel] == index).all(), name
    if entry != "1ubq":
        # nucleotides after the 5' end have P but no OP3 (position among present atoms: 0), P keeps 1
        assert (standard_atom & (names == "P")).sum() > (standard_atom & (names == "OP3")).sum() + 1
    assert (t.atom_to_tokatom_idx[~standard_atom] == 0).all()
