"""Writers: mmCIF round trip through gemmi, AF3 JSON keys, ranking, best model, PAE plot, SDF.

The layout here is read straight from PDB files with gemmi (independent of the featurizer), the
coordinates are the experimental ones, so what comes back can be compared with the source file.
"""

from __future__ import annotations

import csv
import json

import gemmi
import numpy as np
import pytest
from conftest import MMCIF_DIR

from model.infer.writer import TargetLayout, mmcif_text, write_target

POLYMER = {gemmi.PolymerType.PeptideL: "protein", gemmi.PolymerType.Rna: "rna", gemmi.PolymerType.Dna: "dna"}


def read_source(pdb_id: str) -> gemmi.Structure:
    st = gemmi.read_structure(str(next(MMCIF_DIR.glob(f"{pdb_id}.cif*"))))
    st.setup_entities()
    st.remove_waters()
    st.remove_hydrogens()
    st.remove_alternative_conformations()
    return st


def layout_from_gemmi(st: gemmi.Structure) -> tuple[TargetLayout, np.ndarray]:
    """Tokens per AF3 §2.6 (one per standard residue, one per atom otherwise), atoms, chains, links."""
    res_name, res_idx, asym, a2t, names, elements, xyz = [], [], [], [], [], [], []
    chain_name, chain_type, chain_ent = [], [], []
    where: dict[tuple[str, int, str, str], int] = {}
    for sub in st[0].subchains():
        ent = st.get_entity_of(sub)
        if ent.entity_type == gemmi.EntityType.Polymer:
            ctype = POLYMER.get(ent.polymer_type, "protein")
        else:
            ctype = "branched" if ent.entity_type == gemmi.EntityType.Branched else "ligand"
        c = len(chain_name)
        chain_name.append(sub.subchain_id())
        chain_type.append(ctype)
        chain_ent.append(ent.name)
        for n, r in enumerate(sub):
            idx = r.label_seq if r.label_seq is not None else n + 1
            per_atom = ctype not in POLYMER.values()
            if not per_atom:
                res_name.append(r.name), res_idx.append(idx), asym.append(c)
            for a in r:
                if per_atom:
                    res_name.append(r.name), res_idx.append(idx), asym.append(c)
                where[(r.subchain, r.seqid.num, r.name, a.name)] = len(names)
                a2t.append(len(res_name) - 1)
                names.append(a.name)
                elements.append(a.element.name.upper())
                xyz.append(a.pos.tolist())
    bonds, is_link = [], []
    for con in st.connections:
        if con.type != gemmi.ConnectionType.Covale:
            continue
        cra = [st[0].find_cra(p) for p in (con.partner1, con.partner2)]
        keys = [(c.residue.subchain, c.residue.seqid.num, c.residue.name, c.atom.name) for c in cra if c.atom]
        if len(keys) == 2 and all(k in where for k in keys):
            bonds.append([where[keys[0]], where[keys[1]]])
            is_link.append(True)
    xyz = np.asarray(xyz, np.float32)
    for c, ctype in enumerate(chain_type):  # ligand bonds by distance (the test's own chemistry)
        if ctype == "ligand":
            idx = [i for i in range(len(names)) if asym[a2t[i]] == c]
            for ii, i in enumerate(idx):
                for j in idx[ii + 1 :]:
                    if np.linalg.norm(xyz[i] - xyz[j]) < 1.9:
                        bonds.append([i, j])
                        is_link.append(False)
    feats = {"residue_index": np.array(res_idx), "asym_id": np.array(asym), "atom_to_token": np.array(a2t)}
    meta = {
        "token_res_name": np.array(res_name),
        "atom_name": np.array(names),
        "atom_element": np.array(elements),
        "chain_name": np.array(chain_name),
        "chain_type": np.array(chain_type),
        "chain_entity_id": np.array(chain_ent),
        "atom_bonds": np.array(bonds, np.int32).reshape(-1, 2),
        "atom_bond_is_link": np.array(is_link, bool),
    }
    return TargetLayout.from_features(feats, meta), xyz


def fake_confidences(layout: TargetLayout, n_sample: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    t, a, c = len(layout.asym_id), len(layout.atom_name), len(layout.chain_name)
    return {
        "atom_plddts": rng.uniform(0, 100, (n_sample, a)).astype(np.float32),
        "pae": rng.uniform(0, 32, (n_sample, t, t)).astype(np.float32),
        "pde": rng.uniform(0, 32, (n_sample, t, t)).astype(np.float32),
        "contact_probs": rng.uniform(0, 1, (t, t)).astype(np.float32),
        "ptm": rng.uniform(0, 1, n_sample).astype(np.float32),
        "iptm": rng.uniform(0, 1, n_sample).astype(np.float32),
        "chain_ptm": rng.uniform(0, 1, (n_sample, c)).astype(np.float32),
        "chain_iptm": rng.uniform(0, 1, (n_sample, c)).astype(np.float32),
        "chain_pair_iptm": rng.uniform(0, 1, (n_sample, c, c)).astype(np.float32),
        "chain_pair_pae_min": rng.uniform(0, 32, (n_sample, c, c)).astype(np.float32),
        "has_clash": np.zeros(n_sample, bool),
        "fraction_disordered": rng.uniform(0, 1, n_sample).astype(np.float32),
        "ranking_score": rng.uniform(0, 1, n_sample).astype(np.float32),
    }


def chain_summary(st: gemmi.Structure) -> dict[str, tuple[list[str], list[tuple[str, str]]]]:
    """label_asym_id -> (residue names, sorted (atom name, element))."""
    out = {}
    for sub in st[0].subchains():
        atoms = sorted((a.name, a.element.name.upper()) for r in sub for a in r)
        out[sub.subchain_id()] = ([r.name for r in sub], atoms)
    return out


@pytest.mark.parametrize("pdb_id", ["1k6p", "1a9n", "5ugo", "1igy"])  # ligand, RNA, DNA, glycans
def test_mmcif_round_trip(pdb_id, tmp_path):
    src = read_source(pdb_id)
    layout, xyz = layout_from_gemmi(src)
    plddt = np.linspace(0, 100, len(xyz)).astype(np.float32)
    path = tmp_path / "model.cif"
    path.write_text(mmcif_text(layout, xyz, plddt, pdb_id))
    back = gemmi.read_structure(str(path))
    back.setup_entities()
    assert chain_summary(back) == chain_summary(src)
    got = np.array([a.pos.tolist() for r in back[0].all() for a in [r.atom]])
    assert np.abs(got - xyz).max() < 1e-3 + 5e-4
    b = np.array([r.atom.b_iso for r in back[0].all()])
    assert np.allclose(b, plddt, atol=0.01)
    # entity sequences of polymers survive (entity_poly_seq)
    for ent in src.entities:
        if ent.entity_type == gemmi.EntityType.Polymer:
            sub = ent.subchains[0]
            seq = [r.name for r in src[0].get_subchain(sub)]
            back_seq = [r.name for r in back[0].get_subchain(sub)]
            assert back_seq == seq
    block = gemmi.cif.read(str(path)).sole_block()
    n_links = int(layout.atom_bond_is_link.sum())
    assert n_links > 0 or pdb_id != "1igy"  # the glycan entry really exercises struct_conn
    assert len(block.find_values("_struct_conn.id")) == n_links
    if (~layout.atom_bond_is_link).any():
        assert len(block.find_values("_chem_comp_bond.comp_id")) > 0


def test_write_target_files_keys_and_best(tmp_path):
    src = read_source("1k6p")
    layout, xyz = layout_from_gemmi(src)
    samples = [
        (seed, np.stack([xyz + k for k in range(3)]), fake_confidences(layout, 3, seed)) for seed in (1, 2)
    ]
    folder = write_target(tmp_path, "t1", layout, samples, n_cycle=10, provenance={"seeds": [1, 2]})
    scores = {(s, k): float(conf["ranking_score"][k]) for s, _, conf in samples for k in range(3)}
    for seed, k in scores:
        sub = folder / f"seed-{seed}_sample-{k}"
        assert (sub / "model.cif").is_file()
        full = json.loads((sub / "confidences.json").read_text())
        keys = {
            "atom_chain_ids",
            "atom_plddts",
            "contact_probs",
            "pae",
            "pde",
            "token_chain_ids",
            "token_res_ids",
        }
        assert set(full) == keys
        t = len(layout.asym_id)
        assert len(full["atom_plddts"]) == len(xyz) and np.array(full["pae"]).shape == (t, t)
        summary = json.loads((sub / "summary_confidences.json").read_text())
        for key in ("ptm", "iptm", "chain_ptm", "chain_iptm", "chain_pair_iptm", "chain_pair_pae_min",
                    "fraction_disordered", "has_clash", "ranking_score", "num_recycles"):  # fmt: skip
            assert key in summary
        assert np.array(summary["chain_pair_iptm"]).shape == (len(layout.chain_name),) * 2
        assert (sub / f"ligand-{layout.chain_name[layout.chain_type == 'ligand'][0]}.sdf").is_file()
    rows = list(csv.DictReader((folder / "ranking_scores.csv").open()))
    assert len(rows) == 6 and {int(r["seed"]) for r in rows} == {1, 2}
    best = max(scores, key=scores.get)
    prov = json.loads((folder / "provenance.json").read_text())
    assert (prov["best"]["seed"], prov["best"]["sample"]) == best
    best_model = (folder / "t1_model.cif").read_text()
    assert best_model == (folder / f"seed-{best[0]}_sample-{best[1]}" / "model.cif").read_text()
    assert (folder / "pae.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(folder.rglob("*.tmp"))


def test_ligand_sdf_matches_the_ligand(tmp_path):
    chem = pytest.importorskip("rdkit.Chem")
    src = read_source("1k6p")
    layout, xyz = layout_from_gemmi(src)
    write_target(tmp_path, "t", layout, [(0, xyz[None], fake_confidences(layout, 1, 0))], 1, {})
    sdf = next((tmp_path / "t" / "seed-0_sample-0").glob("ligand-*.sdf"))
    mol = next(iter(chem.SDMolSupplier(str(sdf), sanitize=False, removeHs=False)))
    lig = [r for r in src[0].all() if r.residue.name == "XN3"]
    assert sorted(a.GetSymbol().upper() for a in mol.GetAtoms()) == sorted(
        r.atom.element.name.upper() for r in lig
    )
    assert np.allclose(mol.GetConformer().GetPositions(), [r.atom.pos.tolist() for r in lig], atol=1e-3)


def test_bond_orders_from_the_ccd_reach_cif_and_sdf(tmp_path):
    chem = pytest.importorskip("rdkit.Chem")
    from model.data.ccd import load_ccd
    from model.infer.writer import set_bond_orders

    ccd = load_ccd()
    src = read_source("1k6p")
    layout, xyz = layout_from_gemmi(src)
    set_bond_orders(layout, lambda code: ccd[code] if code in ccd else None)
    # expected straight from the CCD: double bonds of XN3 between atoms present in the entry
    comp = ccd["XN3"]
    atom_res = layout.token_res_name[layout.atom_to_token]
    present = {str(n) for n in layout.atom_name[atom_res == "XN3"]}
    expected = {
        frozenset((comp.atom_names[p], comp.atom_names[q]))
        for (p, q), order in zip(comp.bonds, comp.bond_orders, strict=True)
        if order == 2 and {comp.atom_names[p], comp.atom_names[q]} <= present
    }
    assert expected  # the test exercises double bonds
    block = gemmi.cif.read_string(mmcif_text(layout, xyz, np.zeros(len(xyz)), "t")).sole_block()
    table = block.find("_chem_comp_bond.", ["comp_id", "atom_id_1", "atom_id_2", "value_order"])
    doubles = {frozenset((gemmi.cif.as_string(r[1]), gemmi.cif.as_string(r[2]))) for r in table
               if r[0] == "XN3" and r[3] == "DOUB"}  # fmt: skip
    assert doubles == expected
    write_target(tmp_path, "t", layout, [(0, xyz[None], fake_confidences(layout, 1, 0))], 1, {})
    lig_chain = layout.chain_name[layout.atom_chain[np.nonzero(atom_res == "XN3")[0][0]]]
    mol = chem.MolFromMolFile(
        str(tmp_path / "t" / "seed-0_sample-0" / f"ligand-{lig_chain}.sdf"), sanitize=False
    )
    n_double = sum(b.GetBondType() == chem.BondType.DOUBLE for b in mol.GetBonds())
    assert n_double == len(expected)
