"""mmCIF parsing and writing on every shared PDB entry, against values read straight from the files.

Expectations are derived here from the raw mmCIF tables (gemmi.cif, not gemmi's structure
model) and the CCD text file `ccd/components_subset.cif`, independently of model.data.structure.
"""

from __future__ import annotations

import functools
import gzip
import re
from collections import defaultdict
from dataclasses import dataclass

import gemmi
import numpy as np
import pytest
from conftest import MMCIF_DIR, SHARED_DATA, shared_entries

from model.data.ccd import load_ccd
from model.data.structure import Structure, parse_mmcif, write_mmcif

ENTRIES = shared_entries()
STANDARD = {
    "protein": {
        *"ALA ARG ASN ASP CYS GLN GLU GLY HIS ILE LEU LYS MET PHE PRO SER THR TRP TYR VAL UNK".split()
    },
    "rna": {"A", "G", "C", "U", "N"},
    "dna": {"DA", "DG", "DC", "DT", "DN"},
}
LINKS = {"protein": ("C", "N"), "rna": ("O3'", "P"), "dna": ("O3'", "P")}


def entry_path(entry: str):
    return next(MMCIF_DIR.glob(f"{entry}.cif*"))


@functools.cache
def ccd():
    return load_ccd()


@functools.cache
def parsed(entry: str, assembly: str | None = None) -> Structure:
    return parse_mmcif(entry_path(entry), ccd(), assembly=assembly)


# --- independent expectations ---------------------------------------------------------------------


@functools.cache
def ccd_text() -> dict[str, dict]:
    """code -> heavy atom names (CCD order), leaving flags, heavy-atom bonds, from the CCD text file."""
    out = {}
    for block in gemmi.cif.read(str(SHARED_DATA / "ccd" / "components_subset.cif")):
        atoms = block.find("_chem_comp_atom.", ["atom_id", "type_symbol", "pdbx_leaving_atom_flag"])
        heavy = [(gemmi.cif.as_string(r[0]), r[2] == "Y") for r in atoms if r[1].upper() not in ("H", "D")]
        names = {n for n, _ in heavy}
        bonds = block.find("_chem_comp_bond.", ["atom_id_1", "atom_id_2"])
        pairs = [(gemmi.cif.as_string(r[0]), gemmi.cif.as_string(r[1])) for r in bonds]
        out[block.name] = {
            "heavy": [n for n, _ in heavy],
            "leaving": {n for n, leave in heavy if leave},
            "bonds": [(a, b) for a, b in pairs if a in names and b in names],
            "type": gemmi.cif.as_string(block.find_value("_chem_comp.type")).upper(),
        }
    return out


def _s(v: str) -> str:
    return gemmi.cif.as_string(v)


@dataclass
class Expected:
    chains: list[str]  # label_asym_id in file order
    chain_type: dict[str, str]  # "polymer:<poly type>", "non-polymer", "branched"
    residues: dict[str, list[str]]  # chain -> residue names
    atoms: dict[str, list[list[tuple[str, bool]]]]  # chain -> per residue [(atom name, resolved)]
    coords: dict[tuple, list[tuple[float, float, float]]]  # (chain, residue key, atom) -> alternatives
    res_keys: dict[str, list]  # chain -> residue keys
    bonds: set[frozenset]  # {(chain, residue number in chain, atom), ...}
    polymer_links: set[frozenset]  # the backbone links among `bonds`


@functools.cache
def expected(entry: str) -> Expected:
    block = gemmi.cif.read(str(entry_path(entry))).sole_block()
    ent_type = {r[0]: _s(r[1]) for r in block.find("_entity.", ["id", "type"])}
    poly_type = {r[0]: _s(r[1]) for r in block.find("_entity_poly.", ["entity_id", "type"])}
    seq = defaultdict(list)
    for r in block.find("_entity_poly_seq.", ["entity_id", "num", "mon_id"]):
        seq[r[0]].append((int(r[1]), r[2]))
    tab = block.find(
        "_atom_site.",
        ["type_symbol", "label_atom_id", "label_comp_id", "label_asym_id", "label_entity_id",
         "label_seq_id", "auth_seq_id", "pdbx_PDB_ins_code", "occupancy", "Cartn_x", "Cartn_y", "Cartn_z",
         "pdbx_PDB_model_num"],
    )  # fmt: skip
    first_model = tab[0][12]
    chains: list[str] = []
    chain_entity: dict[str, str] = {}
    # (chain, key) -> comp -> {atom: [(occ, xyz)]}
    found: dict[tuple, dict[str, dict[str, list]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    order: dict[str, list] = defaultdict(list)
    for r in tab:
        if r[12] != first_model or r[2] in ("HOH", "DOD") or r[0].upper() in ("H", "D"):
            continue
        chain, entity = r[3], r[4]
        if ent_type.get(entity) == "water":
            continue
        if chain not in chain_entity:
            chains.append(chain)
            chain_entity[chain] = entity
        polymer = ent_type[entity] == "polymer"
        key = ("L", int(r[5])) if polymer else ("A", r[6] + (r[7] if r[7] not in ("?", ".") else ""))
        if key not in order[chain]:
            order[chain].append(key)
        xyz = (float(r[9]), float(r[10]), float(r[11]))
        found[(chain, key)][_s(r[2])][_s(r[1])].append((float(r[8]), xyz))

    texts = ccd_text()
    exp = Expected(chains, {}, {}, {}, {}, {}, set(), set())
    for chain in chains:
        entity = chain_entity[chain]
        etype = ent_type[entity]
        if etype == "polymer":
            ptype = poly_type[entity]
            exp.chain_type[chain] = f"polymer:{ptype}"
            keys = [("L", n) for n in sorted({n for n, _ in seq[entity]})]
            first_mon = {}
            for n, mon in seq[entity]:
                first_mon.setdefault(n, mon)
        else:
            exp.chain_type[chain] = etype
            keys = order[chain]
        names, atoms, rkeys = [], [], []
        for key in keys:
            comps = found.get((chain, key), {})
            if comps:
                # Microheterogeneity: the residue whose atoms carry the highest occupancy.
                comp = max(comps, key=lambda c: max(o for alts in comps[c].values() for o, _ in alts))
                present = comps[comp]
            else:
                comp, present = first_mon[key[1]], {}
            if comp == "MSE" and "peptide" in exp.chain_type[chain]:  # AF3 §2.1: read as MET, SE as SD
                comp, present = "MET", {("SD" if n == "SE" else n): alts for n, alts in present.items()}
            text = texts[comp]
            res_atoms = [(n, n in present) for n in text["heavy"] if n in present or n not in text["leaving"]]
            if not res_atoms:
                continue
            for n, ok in res_atoms:
                if ok:
                    exp.coords[(chain, len(names), n)] = [xyz for _, xyz in present[n]]
            names.append(comp)
            atoms.append(res_atoms)
            rkeys.append(key)
        exp.residues[chain], exp.atoms[chain], exp.res_keys[chain] = names, atoms, rkeys
        # Bonds: CCD (intra-residue) and polymer links between consecutive positions.
        for i, comp in enumerate(names):
            have = {n for n, _ in atoms[i]}
            for a, b in texts[comp]["bonds"]:
                if a in have and b in have:
                    exp.bonds.add(frozenset([(chain, i, a), (chain, i, b)]))
        if etype == "polymer":
            kind = "protein" if "peptide" in ptype else ("dna" if "deoxy" in ptype else "rna")
            left, right = LINKS[kind]
            for i in range(len(names) - 1):
                if left in {n for n, _ in atoms[i]} and right in {n for n, _ in atoms[i + 1]}:
                    exp.polymer_links.add(frozenset([(chain, i, left), (chain, i + 1, right)]))
                    exp.bonds.add(frozenset([(chain, i, left), (chain, i + 1, right)]))
    # struct_conn covalent links to the same copy (symmetry 1_555).
    partner = ["label_asym_id", "label_seq_id", "auth_seq_id", "label_atom_id", "label_comp_id"]
    conn = block.find(
        "_struct_conn.",
        ["conn_type_id", *[f"ptnr1_{t}" for t in partner], *[f"ptnr2_{t}" for t in partner],
         "?ptnr1_symmetry", "?ptnr2_symmetry", "?pdbx_ptnr1_PDB_ins_code", "?pdbx_ptnr2_PDB_ins_code"],
    )  # fmt: skip
    for r in conn:
        if r[0].lower() not in ("covale", "disulf", "covale_base", "covale_phosphate", "covale_sugar"):
            continue
        if any(conn.has_column(k) and r[k] not in ("1_555", "?", ".") for k in (11, 12)):
            continue  # a link to a symmetry mate
        ends = []
        for first, icode in ((1, 13), (6, 14)):
            chain, seq_id, auth, atom, comp = (r[first + k] for k in range(5))
            if seq_id not in (".", "?"):
                key = ("L", int(seq_id))
            else:
                ins = r[icode] if conn.has_column(icode) and r[icode] not in ("?", ".") else ""
                key = ("A", auth + ins)
            if chain not in exp.res_keys or key not in exp.res_keys[chain]:
                break
            i = exp.res_keys[chain].index(key)
            # The link may name the other residue of a microheterogeneity pair.
            if exp.residues[chain][i] != _s(comp) or _s(atom) not in {n for n, _ in exp.atoms[chain][i]}:
                break
            ends.append((chain, i, _s(atom)))
        if len(ends) == 2 and ends[0] != ends[1]:
            exp.bonds.add(frozenset(ends))
    return exp


def structure_bonds(s: Structure) -> set[frozenset]:
    res_in_chain = np.arange(s.num_residues) - s.chain_res_start[s.res_chain]

    def ident(a: int) -> tuple:
        r = s.atom_residue[a]
        return (str(s.chain_name[s.res_chain[r]]), int(res_in_chain[r]), str(s.atom_name[a]))

    return {frozenset([ident(a), ident(b)]) for a, b in s.bonds}


# --- every entry ---------------------------------------------------------------------------------


def test_shared_entries_present():
    assert len(ENTRIES) == 54


@pytest.mark.parametrize("entry", ENTRIES)
def test_counts_match_file(entry):
    s, exp = parsed(entry), expected(entry)
    assert list(s.chain_name) == exp.chains
    for c, chain in enumerate(exp.chains):
        r0, r1 = s.chain_res_start[c], s.chain_res_end[c]
        assert list(s.res_name[r0:r1]) == exp.residues[chain], chain
        for i, res_atoms in enumerate(exp.atoms[chain]):
            r = r0 + i
            a0, a1 = s.res_atom_start[r], s.res_atom_end[r]
            assert list(s.atom_name[a0:a1]) == [n for n, _ in res_atoms], (chain, i)
            assert list(s.atom_resolved[a0:a1]) == [ok for _, ok in res_atoms], (chain, i)
    n_atoms = sum(len(a) for atoms in exp.atoms.values() for a in atoms)
    assert s.num_atoms == n_atoms
    assert s.num_residues == sum(len(v) for v in exp.residues.values())
    # Unresolved atoms have no coordinates; resolved ones are the file's (one of its altlocs).
    assert np.isnan(s.atom_coords[~s.atom_resolved]).all()
    assert not np.isnan(s.atom_coords[s.atom_resolved]).any()
    res_in_chain = np.arange(s.num_residues) - s.chain_res_start[s.res_chain]
    for a in np.flatnonzero(s.atom_resolved):
        r = s.atom_residue[a]
        alternatives = exp.coords[
            (str(s.chain_name[s.res_chain[r]]), int(res_in_chain[r]), str(s.atom_name[a]))
        ]
        assert np.abs(np.array(alternatives) - s.atom_coords[a]).max(axis=1).min() < 1e-3
    assert structure_bonds(s) == exp.bonds
    assert len(s.bonds) == len(exp.bonds)  # no duplicates


@pytest.mark.parametrize("entry", ENTRIES)
def test_chain_types_match_entities(entry):
    s, exp = parsed(entry), expected(entry)
    for c, chain in enumerate(exp.chains):
        kind, got = exp.chain_type[chain], str(s.chain_type[c])
        if kind == "branched":
            assert got == "branched"
        elif kind == "non-polymer":
            single_atom = len(exp.atoms[chain]) == 1 and len(exp.atoms[chain][0]) == 1
            assert got == ("ion" if single_atom else "ligand")
        elif "peptide" in kind:
            assert got == "protein"
        elif "deoxy" in kind:
            assert got == "dna"
        else:
            assert got == "rna"


@pytest.mark.parametrize("entry", ENTRIES)
def test_round_trip(entry, tmp_path):
    s = parsed(entry)
    out = tmp_path / f"{entry}.cif"
    write_mmcif(s, out)
    t = parse_mmcif(out, ccd(), assembly=None)
    for name in ("atom_name", "atom_element", "atom_charge", "atom_resolved", "atom_residue", "res_name",
                 "res_seq_id", "res_auth_seq_id", "res_chain", "res_is_standard", "chain_name",
                 "chain_auth_name", "chain_entity_id", "chain_type", "bond_type"):  # fmt: skip
        assert np.array_equal(getattr(s, name), getattr(t, name)), name
    np.testing.assert_allclose(t.atom_coords, s.atom_coords, atol=1e-3)
    np.testing.assert_allclose(t.atom_occupancy, s.atom_occupancy, atol=1e-2)
    assert structure_bonds(s) == structure_bonds(t)
    assert (t.release_date, t.resolution, t.method) == (s.release_date, s.resolution, s.method)


def test_parse_all_is_fast():
    import time

    ccd()["ALA"]
    t0 = time.perf_counter()
    for entry in ENTRIES:
        parse_mmcif(entry_path(entry), ccd(), assembly="1")
    assert time.perf_counter() - t0 < 30


# --- specific behaviour ------------------------------------------------------------------------------


def _model_coords(entry: str, model: str) -> dict[tuple[str, str, str], tuple[float, float, float]]:
    block = gemmi.cif.read(str(entry_path(entry))).sole_block()
    tab = block.find(
        "_atom_site.", ["label_asym_id", "label_seq_id", "label_atom_id", "Cartn_x", "Cartn_y", "Cartn_z",
                        "pdbx_PDB_model_num", "type_symbol"]
    )  # fmt: skip
    return {
        (r[0], r[1], _s(r[2])): (float(r[3]), float(r[4]), float(r[5]))
        for r in tab
        if r[6] == model and r[7] not in ("H", "D")
    }


def test_nmr_first_model_only():
    s = parsed("1l2y")
    m1, m2 = _model_coords("1l2y", "1"), _model_coords("1l2y", "2")
    assert s.atom_resolved.sum() == len(m1)
    for a in range(s.num_atoms):
        key = (str(s.chain_name[s.res_chain[s.atom_residue[a]]]), str(s.res_seq_id[s.atom_residue[a]]),
               str(s.atom_name[a]))  # fmt: skip
        np.testing.assert_allclose(s.atom_coords[a], m1[key], atol=1e-3)
    assert any(np.abs(np.array(m1[k]) - np.array(m2[k])).max() > 0.01 for k in m1)


def test_altloc_highest_occupancy():
    # 3o5r has alternative locations; every chosen atom has the highest occupancy its altlocs offer.
    block = gemmi.cif.read(str(entry_path("3o5r"))).sole_block()
    tab = block.find(
        "_atom_site.", ["label_asym_id", "label_seq_id", "auth_seq_id", "label_atom_id", "label_alt_id",
                        "occupancy", "Cartn_x", "Cartn_y", "Cartn_z"]
    )  # fmt: skip
    alts = defaultdict(list)
    for r in tab:
        if r[4] not in (".", "?"):
            alts[(r[0], r[1] if r[1] != "." else r[2], _s(r[3]))].append(
                (float(r[5]), (float(r[6]), float(r[7]), float(r[8])))
            )
    s = parsed("3o5r")
    checked = 0
    for a in np.flatnonzero(s.atom_resolved):
        r = s.atom_residue[a]
        seq = str(s.res_seq_id[r]) if s.chain_type[s.res_chain[r]] == "protein" else str(s.res_auth_seq_id[r])
        options = alts.get((str(s.chain_name[s.res_chain[r]]), seq, str(s.atom_name[a])))
        if not options or len({o for o, _ in options}) < 2:
            continue
        best = max(o for o, _ in options)
        got = [o for o, xyz in options if np.abs(np.array(xyz) - s.atom_coords[a]).max() < 1e-3]
        assert got and max(got) == best
        checked += 1
    assert checked > 0


def test_unresolved_residues_are_masked():
    s, exp = parsed("2beg"), expected("2beg")
    # 2beg's first residues are not in the model: present, fully unresolved, names from entity_poly_seq.
    first = s.res_atom_start[0], s.res_atom_end[0]
    assert not s.atom_resolved[first[0] : first[1]].any()
    assert s.res_name[0] == exp.residues["A"][0]
    assert s.num_atoms > s.atom_resolved.sum()


@pytest.mark.parametrize(
    ("entry", "code", "polymer"),
    [("1as5", "HYP", True), ("7gsa", "A1AA6", False), ("2q2k", "5IU", True)],
)
def test_modified_and_long_codes(entry, code, polymer):
    s = parsed(entry)
    res = np.flatnonzero(s.res_name == code)
    assert len(res) > 0
    assert not s.res_is_standard[res].any()
    types = {str(t) for t in s.chain_type[s.res_chain[res]]}
    assert types <= ({"protein", "dna", "rna"} if polymer else {"ligand"})
    heavy = ccd_text()[code]
    for r in res:
        names = list(s.atom_name[s.res_atom_start[r] : s.res_atom_end[r]])
        assert set(names) <= set(heavy["heavy"])
        assert set(heavy["heavy"]) - set(heavy["leaving"]) <= set(names)
        assert names == [n for n in heavy["heavy"] if n in names]  # CCD order


@pytest.mark.parametrize("entry", ["1a8o", "4zey", "5i55"])
def test_selenomethionine_is_read_as_methionine(entry):
    """AF3 supplement §2.1: every MSE of a protein chain becomes a standard MET (one token), its SE
    atom the SD of MET with element S, at the file's SE position."""
    s = parsed(entry)
    block = gemmi.cif.read(str(entry_path(entry))).sole_block()
    table = block.find(
        "_atom_site.",
        ["label_comp_id", "label_atom_id", "Cartn_x", "Cartn_y", "Cartn_z", "label_asym_id", "label_seq_id"],
    )
    site = {(r[0], r[1]): [] for r in table}
    for r in table:
        site[(r[0], r[1])].append([float(r[k]) for k in (2, 3, 4)])
    selenium, sulphur = np.array(site[("MSE", "SE")]), np.array(site.get(("MET", "SD"), np.zeros((0, 3))))
    mse_residues = {(r[5], r[6]) for r in table if r[0] == "MSE"}
    assert len(selenium) > 0 and not (s.res_name == "MSE").any()
    sd = np.flatnonzero((s.atom_name == "SD") & (s.res_name[s.atom_residue] == "MET") & s.atom_resolved)
    assert set(s.atom_element[sd]) == {"S"} and s.res_is_standard[s.atom_residue[sd]].all()
    # every SD sits at a file SE (of an MSE) or SD (of a MET); one per MSE residue at an SE
    from_se = np.abs(s.atom_coords[sd][:, None] - selenium[None]).max(-1).min(-1) < 1e-3
    from_sd = (
        np.abs(s.atom_coords[sd][:, None] - np.reshape(sulphur, (-1, 3))[None]).max(-1).min(-1, initial=1.0)
    )
    assert (from_se | (from_sd < 1e-3)).all() and from_se.sum() == len(mse_residues)


@pytest.mark.parametrize("entry", ["1c4q", "1igy", "1ncb", "4zxb", "1gya", "2d0f"])
def test_glycans_branched_and_linked(entry):
    s = parsed(entry)
    branched = np.flatnonzero(s.chain_type == "branched")
    assert len(branched) > 0
    sugar_atoms = np.isin(s.atom_chain, branched)
    links = [i for i, (a, b) in enumerate(s.bonds) if sugar_atoms[a] != sugar_atoms[b] or
             (sugar_atoms[a] and s.atom_residue[a] != s.atom_residue[b])]  # fmt: skip
    assert links and all(s.bond_type[i] not in ("ccd", "polymer") for i in links)


def _assembly_chain_count(entry: str, assembly: str) -> int:
    """Chains of an assembly from pdbx_struct_assembly_gen: operators × present label_asym_ids."""
    block = gemmi.cif.read(str(entry_path(entry))).sole_block()
    present = set(expected(entry).chains)
    total = 0
    for r in block.find("_pdbx_struct_assembly_gen.", ["assembly_id", "oper_expression", "asym_id_list"]):
        if _s(r[0]) != assembly:
            continue
        n_ops = 1
        for group in re.findall(r"\(([^)]*)\)", _s(r[1])) or [_s(r[1])]:
            count = 0
            for part in group.split(","):
                lo, _, hi = part.partition("-")
                count += int(hi) - int(lo) + 1 if hi else 1
            n_ops *= count
        total += n_ops * len([a for a in _s(r[2]).split(",") if a in present])
    return total


@pytest.mark.parametrize("entry", ["1a7g", "1f2n", "3u8v", "4zxb", "5i55", "1a9n", "5kc1"])
def test_assembly_chain_counts(entry):
    s = parsed(entry, "1")
    assert s.num_chains == _assembly_chain_count(entry, "1")
    assert len(set(s.chain_name)) == s.num_chains  # copies get distinct names
    asu = parsed(entry)
    atoms = {str(n): asu.res_atom_end[asu.chain_res_end[c] - 1] - asu.res_atom_start[asu.chain_res_start[c]]
             for c, n in enumerate(asu.chain_name)}  # fmt: skip
    assert s.num_atoms == sum(atoms[str(n).split("-")[0]] for n in s.chain_name)


def test_assembly_copy_is_transformed():
    # 1a7g assembly 1 = the asymmetric unit and its image under operator 2 of pdbx_struct_oper_list.
    block = gemmi.cif.read(str(entry_path("1a7g"))).sole_block()
    ops = {}
    matrix = [f"matrix[{i}][{j}]" for i in (1, 2, 3) for j in (1, 2, 3)]
    tab = block.find("_pdbx_struct_oper_list.", ["id", *matrix, "vector[1]", "vector[2]", "vector[3]"])
    for r in tab:
        ops[_s(r[0])] = (
            np.array([float(v) for v in list(r)[1:10]]).reshape(3, 3),
            np.array([float(v) for v in list(r)[10:13]]),
        )
    asu, asm = parsed("1a7g"), parsed("1a7g", "1")
    rot, vec = ops["2"]
    n = asu.num_atoms
    assert asm.num_atoms == 2 * n
    first, second = asm.atom_coords[:n], asm.atom_coords[n:]
    ok = asu.atom_resolved
    np.testing.assert_allclose(first[ok], asu.atom_coords[ok], atol=1e-4)
    np.testing.assert_allclose(second[ok], asu.atom_coords[ok] @ rot.T + vec, atol=1e-3)
    assert list(asm.chain_name[asu.num_chains :]) == [f"{c}-2" for c in asu.chain_name]


@pytest.mark.parametrize("entry", ["102m", "1a8o", "3zee", "1l2y", "2beg", "1c4q"])
def test_header(entry):
    block = gemmi.cif.read(str(entry_path(entry))).sole_block()
    s = parsed(entry)
    hist = block.find("_pdbx_audit_revision_history.", ["ordinal", "revision_date"])
    rev = block.find("_database_PDB_rev.", ["num", "date"])
    if len(hist):
        assert s.release_date == next(r[1] for r in hist if r[0] == "1")
    elif len(rev):
        assert s.release_date == next(r[1] for r in rev if r[0] == "1")
    else:
        assert s.release_date is None
    res = block.find_value("_refine.ls_d_res_high") or block.find_value("_em_3d_reconstruction.resolution")
    if res in (None, "?", "."):
        assert s.resolution is None
    else:
        assert s.resolution == pytest.approx(float(res))
    assert s.method == _s(block.find_value("_exptl.method"))


def test_dates_of_old_and_new_formats():
    assert parsed("1a8o").release_date == "1998-10-14"  # _database_PDB_rev only (read from the file)
    assert parsed("3zee").method == "ELECTRON MICROSCOPY"
    assert parsed("1l2y").resolution is None


def test_unknown_ccd_code_names_it(tmp_path):
    text = gzip.decompress(entry_path("1ubq").read_bytes()).decode()
    bad = tmp_path / "bad.cif"
    bad.write_text(text.replace(" MET ", " QQQQZ "))
    with pytest.raises(ValueError, match="QQQQZ"):
        parse_mmcif(bad, ccd(), assembly=None)


def test_missing_assembly_is_an_error():
    with pytest.raises(ValueError, match="assembly '7'"):
        parse_mmcif(entry_path("1ubq"), ccd(), assembly="7")


def test_write_gzip_and_atomic(tmp_path):
    s = parsed("1ubq")
    out = tmp_path / "x.cif.gz"
    write_mmcif(s, out)
    assert [p.name for p in tmp_path.iterdir()] == ["x.cif.gz"]
    assert parse_mmcif(out, ccd(), assembly=None).num_atoms == s.num_atoms


@pytest.mark.parametrize("name", ["5y2e", "6s61", "6ydw", "7rye"])
def test_reduced_template_mmcif(name):
    # AlphaFold 3's reduced mmCIFs carry a revision date without an ordinal.
    path = SHARED_DATA / "template_db" / "pdb_mmcif" / f"{name}.cif.gz"
    block = gemmi.cif.read(str(path)).sole_block()
    s = parse_mmcif(path, ccd())
    assert s.release_date == min(
        _s(v) for v in block.find_values("_pdbx_audit_revision_history.revision_date")
    )
    assert s.num_chains >= 1 and s.atom_resolved.sum() > 0


def test_no_water_or_hydrogen():
    for entry in ("1l2y", "1gya", "102m", "1ehz"):  # NMR with hydrogens, crystal entries with waters
        s = parsed(entry)
        assert not np.isin(s.atom_element, ["H", "D"]).any()
        assert not np.isin(s.res_name, ["HOH", "DOD"]).any()


def test_select_chains_keeps_links():
    s = parsed("1igy")
    sugar = int(np.flatnonzero(s.chain_type == "branched")[0])
    chains = [int(c) for c in np.unique(s.atom_chain[s.bonds[s.bond_type == "covale"].ravel()])]
    assert sugar in chains and len(chains) >= 2
    sub = s.select_chains(chains)
    assert list(sub.chain_name) == [s.chain_name[c] for c in chains]
    cross = sub.atom_chain[sub.bonds[:, 0]] != sub.atom_chain[sub.bonds[:, 1]]
    assert cross.any()
    twice = s.select_chains([sugar, sugar], names=["X", "Y"])
    assert list(twice.chain_name) == ["X", "Y"]
    assert twice.num_atoms == 2 * (s.atom_chain == sugar).sum()
    assert not (twice.atom_chain[twice.bonds[:, 0]] != twice.atom_chain[twice.bonds[:, 1]]).any()


def test_unreadable_file_is_a_one_line_error(tmp_path):
    junk = tmp_path / "junk.cif"
    junk.write_text("not a cif\n")
    for path in (junk, tmp_path / "missing.cif"):
        with pytest.raises(ValueError, match=rf"^{path.stem}: mmCIF .*cannot read") as info:
            parse_mmcif(path, ccd())
        assert "\n" not in str(info.value)
