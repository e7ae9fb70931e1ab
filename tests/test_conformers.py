"""Reference conformers: seeded RDKit ETKDGv3, stereo kept, CCD fallbacks (model.data.conformers)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import gemmi
import numpy as np
import pytest
from conftest import SHARED_DATA
from rdkit import Chem
from rdkit.Chem import rdCIPLabeler

from model.data import conformers
from model.data.ccd import load_ccd
from model.data.conformers import component_from_smiles, heavy_atom_indices, reference_conformer


@pytest.fixture(scope="module")
def ccd():
    return load_ccd()


def cip_labels_from_coords(mol: Chem.Mol, coords: np.ndarray) -> dict[int, str]:
    """CIP label per atom index, perceived only from 3D coordinates (all input stereo erased)."""
    mol = Chem.RWMol(mol)
    for atom in mol.GetAtoms():
        atom.SetChiralTag(Chem.ChiralType.CHI_UNSPECIFIED)
    mol.RemoveAllConformers()
    conformer = Chem.Conformer(mol.GetNumAtoms())
    for i, xyz in enumerate(coords.astype(float)):
        conformer.SetAtomPosition(i, xyz.tolist())
    conformer.Set3D(True)
    mol.AddConformer(conformer)
    Chem.AssignStereochemistryFrom3D(mol)
    rdCIPLabeler.AssignCIPLabels(mol)
    return {a.GetIdx(): a.GetProp("_CIPCode") for a in mol.GetAtoms() if a.HasProp("_CIPCode")}


@pytest.mark.parametrize("smiles", ["C[C@@H](C(=O)O)N", "C[C@H](C(=O)O)N", "O=C(O)[C@@H]1CCCN1"])
def test_chiral_smiles_keeps_its_configuration(smiles: str) -> None:
    expected = dict(Chem.FindMolChiralCenters(Chem.MolFromSmiles(smiles), useLegacyImplementation=False))
    assert expected  # every case has a stereocentre
    component = component_from_smiles(smiles, "l01")
    for seed in (0, 1, 2):
        coords, mask = reference_conformer(component, seed)
        assert mask.all() and coords.shape == (len(component.atom_names), 3)
        assert cip_labels_from_coords(Chem.MolFromSmiles(smiles), coords) == expected


def test_l_and_d_alanine_conformers_are_mirror_images() -> None:
    l_coords, _ = reference_conformer(component_from_smiles("C[C@@H](C(=O)O)N", "l01"), 0)
    d_coords, _ = reference_conformer(component_from_smiles("C[C@H](C(=O)O)N", "l01"), 0)
    mol = Chem.MolFromSmiles("CC(C(=O)O)N")
    assert cip_labels_from_coords(mol, l_coords) == {1: "S"}
    assert cip_labels_from_coords(mol, d_coords) == {1: "R"}


def _ccd_file_stereo(code: str) -> dict[str, str]:
    """R/S per atom name, read straight from the PDBe CCD definition file."""
    block = gemmi.cif.read(str(SHARED_DATA / f"ccd/pdbe_ccd_samples/{code}.cif")).sole_block()
    table = block.find("_chem_comp_atom.", ["atom_id", "pdbx_stereo_config"])
    return {gemmi.cif.as_string(r[0]): r[1] for r in table if r[1] in ("R", "S")}


@pytest.mark.parametrize("code", ["ATP", "NAG", "NAD", "GLC"])
def test_ccd_chiral_centres_are_kept(code: str, ccd) -> None:
    component = ccd[code]
    expected = _ccd_file_stereo(code)
    assert expected
    mol, heavy = conformers.mol_from_component(component)
    heavy_mol = Chem.RemoveHs(mol, sanitize=False)
    names = [component.atom_names[i] for i in heavy_atom_indices(component)]
    for seed in (0, 11):
        coords, mask = reference_conformer(component, seed)
        assert mask.all()
        labels = cip_labels_from_coords(heavy_mol, coords)
        got = {names[i]: label for i, label in labels.items() if names[i] in expected}
        assert got == expected, (code, seed)


def test_conformer_is_deterministic_per_seed_and_plausible(ccd) -> None:
    component = ccd["ATP"]
    a, _ = reference_conformer(component, 3)
    conformers._cache.clear()  # recompute, not just the cached copy
    b, _ = reference_conformer(component, 3)
    c, _ = reference_conformer(component, 4)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c, atol=1e-2)
    # a fresh conformer, not the ideal coordinates copied
    assert not np.allclose(a, component.ideal_coords[heavy_atom_indices(component)], atol=1e-2)
    index = {int(k): n for n, k in enumerate(heavy_atom_indices(component))}
    lengths = [
        np.linalg.norm(a[index[int(i)]] - a[index[int(j)]])
        for i, j in component.bonds
        if i in index and j in index
    ]
    assert 1.1 < min(lengths) and max(lengths) < 1.9  # heavy-atom bonds: C-C, C-N, C-O, P-O


def test_returned_arrays_are_copies(ccd) -> None:
    coords, mask = reference_conformer(ccd["ALA"], 0)
    coords[:] = 99.0
    mask[:] = False
    again, again_mask = reference_conformer(ccd["ALA"], 0)
    assert again_mask.all() and not (again == 99.0).any()


def test_fallback_to_ideal_then_model_coordinates(ccd, monkeypatch) -> None:
    monkeypatch.setattr(conformers, "_embed", lambda *args, **kwargs: False)  # force RDKit failure
    component = ccd["GTP"]
    heavy = heavy_atom_indices(component)
    coords, mask = reference_conformer(component, 5)
    np.testing.assert_allclose(coords, component.ideal_coords[heavy])
    assert mask.all()
    no_ideal = replace(component, ideal_coords=np.full_like(component.ideal_coords, np.nan))
    coords, mask = reference_conformer(no_ideal, 5)
    np.testing.assert_allclose(coords, component.model_coords[heavy])
    nothing = replace(no_ideal, model_coords=np.full_like(component.model_coords, np.nan))
    coords, mask = reference_conformer(nothing, 5)
    assert not mask.any() and (coords == 0).all()


def test_single_atom_ion(ccd) -> None:
    coords, mask = reference_conformer(ccd["MG"], 0)
    assert coords.shape == (1, 3) and mask.all()


def test_component_from_smiles_names_atoms_per_element() -> None:
    component = component_from_smiles("OC(=O)c1ccccc1Cl", "l02")
    assert component.atom_names == ("O1", "C1", "O2", "C2", "C3", "C4", "C5", "C6", "C7", "CL1")
    assert component.elements == ("O", "C", "O", "C", "C", "C", "C", "C", "C", "CL")
    aromatic = component.bond_aromatic.sum()
    assert aromatic == 6 and set(component.bond_orders[component.bond_aromatic].tolist()) == {1, 2}
    with pytest.raises(ValueError, match="RDKit cannot parse SMILES"):
        component_from_smiles("C1CC(", "l03")


def test_every_shared_ccd_component_embeds_and_keeps_its_chirality(ccd) -> None:
    """All components of the shared data's CCD subset: a full conformer (ETKDG, or for B1Z with 109
    heavy atoms the CCD ideal coordinates) whose R/S labels match the CCD's pdbx_stereo_config."""
    doc = gemmi.cif.read(str(SHARED_DATA / "ccd/components_subset.cif"))
    wrong = {}
    for block in doc:
        table = block.find("_chem_comp_atom.", ["atom_id", "type_symbol", "pdbx_stereo_config"])
        heavy_rows = [r for r in table if r[1] not in ("H", "D")]
        component = ccd[block.name]
        coords, mask = reference_conformer(component, 0)
        assert mask.all() and np.isfinite(coords).all(), block.name
        # RDKit (rightly) sees no stereocentre at an invertible amine N, which the CCD may label
        expected = {i: r[2] for i, r in enumerate(heavy_rows) if r[2] in ("R", "S") and r[1] != "N"}
        if expected:
            heavy_mol = Chem.RemoveHs(conformers.mol_from_component(component)[0], sanitize=False)
            labels = cip_labels_from_coords(heavy_mol, coords)
            if any(labels.get(i) != label for i, label in expected.items()):
                wrong[block.name] = (expected, labels)
    assert wrong == {}


def test_ligand_file_component_gets_hydrogens_and_keeps_its_stereo() -> None:
    """An SDF ligand (L-proline, heavy atoms only in the component): RDKit adds the hydrogens back
    for embedding, and the file's 3D stereo survives into the conformer."""
    sdf = Path(__file__).parent / "data" / "inputs" / "proline.sdf"
    component = conformers.component_from_file(sdf, "l01")
    file_mol = Chem.MolFromMolFile(str(sdf))
    Chem.AssignStereochemistryFrom3D(file_mol)
    expected = dict(Chem.FindMolChiralCenters(file_mol, useLegacyImplementation=False))
    assert expected == {3: "S"}  # L-proline's alpha carbon
    mol, _ = conformers.mol_from_component(component)
    assert mol.GetNumAtoms() == file_mol.GetNumAtoms() + 9  # C5H9NO2
    coords, mask = reference_conformer(component, 0)
    assert mask.all()
    assert cip_labels_from_coords(Chem.RemoveHs(mol), coords) == expected


def test_conformer_is_identical_in_a_fresh_process(ccd, repo_root: Path) -> None:
    """Reruns give the same reference features: a new interpreter (other hash seed) embeds the same."""
    import hashlib
    import os
    import subprocess
    import sys

    code = (
        "import hashlib; from model.data.ccd import load_ccd; from model.data.conformers import "
        "reference_conformer, component_from_smiles as s; "
        "a = reference_conformer(load_ccd()['NAG'], 7)[0]; "
        "b = reference_conformer(s('C[C@@H](C(=O)O)N', 'l01'), 7)[0]; "
        "print(hashlib.sha256(a.tobytes() + b.tobytes()).hexdigest())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=repo_root, env=env, capture_output=True, text=True, check=True
    )
    here = (
        reference_conformer(ccd["NAG"], 7)[0].tobytes()
        + reference_conformer(component_from_smiles("C[C@@H](C(=O)O)N", "l01"), 7)[0].tobytes()
    )
    assert out.stdout.strip() == hashlib.sha256(here).hexdigest()


def test_default_conformer_is_rdkits_unseeded_first_embedding(ccd) -> None:
    """One conformer per CCD code, whatever the featurizer's seed: the one RDKit's default ETKDGv3
    (no seed set) embeds first in a fresh process, as Protenix's CCD conformers are drawn."""
    import subprocess
    import sys

    component = ccd["ATP"]
    coords, mask = reference_conformer(component)
    mol, heavy = conformers.mol_from_component(component)
    script = (
        "import sys, numpy as np\n"
        "from rdkit import Chem\nfrom rdkit.Chem import rdDistGeom\n"
        "mol = Chem.Mol(sys.stdin.buffer.read())\n"
        "assert rdDistGeom.EmbedMolecule(mol, rdDistGeom.ETKDGv3()) == 0\n"
        "sys.stdout.buffer.write(mol.GetConformer().GetPositions().astype(np.float32).tobytes())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], input=mol.ToBinary(), capture_output=True, check=True
    )
    unseeded = np.frombuffer(out.stdout, dtype=np.float32).reshape(-1, 3)[heavy]
    assert mask.all()
    np.testing.assert_allclose(coords, unseeded, atol=1e-5)
