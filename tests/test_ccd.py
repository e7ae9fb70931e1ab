"""The CCD: biotite's complete BinaryCIF dictionary, checked against CCD text files read with gemmi."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import gemmi
import numpy as np
import pytest
from conftest import REPO, SHARED_DATA

from model.data.ccd import UnknownComponentError, load_ccd, polymer_class

SUBSET = SHARED_DATA / "ccd" / "components_subset.cif"
SAMPLES = SHARED_DATA / "ccd" / "pdbe_ccd_samples"
ORDERS = {"SING": 1, "DOUB": 2, "TRIP": 3}


def _col(block, tag: str) -> list[str]:
    return [gemmi.cif.as_string(v) for v in block.find_values(tag)]


def _num(values: list[str]) -> np.ndarray:
    return np.array([np.nan if v in ("", "?", ".") else float(v) for v in values], dtype=np.float32)


def _check_against_text(comp, block) -> None:
    """Every field of `comp` equals the text CCD block's values."""
    assert comp.code == gemmi.cif.as_string(block.find_value("_chem_comp.id"))
    assert comp.name == gemmi.cif.as_string(block.find_value("_chem_comp.name"))
    assert comp.type == gemmi.cif.as_string(block.find_value("_chem_comp.type")).upper()
    names = _col(block, "_chem_comp_atom.atom_id")
    assert list(comp.atom_names) == names
    assert list(comp.elements) == [e.upper() for e in _col(block, "_chem_comp_atom.type_symbol")]
    assert list(comp.charges) == [
        int(v) if v not in ("", "?") else 0 for v in _col(block, "_chem_comp_atom.charge")
    ]
    assert list(comp.leaving_atom) == [
        v == "Y" for v in _col(block, "_chem_comp_atom.pdbx_leaving_atom_flag")
    ]
    assert list(comp.stereo) == _col(block, "_chem_comp_atom.pdbx_stereo_config")
    for axis, k in (("x", 0), ("y", 1), ("z", 2)):
        ideal = _num(_col(block, f"_chem_comp_atom.pdbx_model_Cartn_{axis}_ideal"))
        model = _num(_col(block, f"_chem_comp_atom.model_Cartn_{axis}"))
        np.testing.assert_allclose(comp.ideal_coords[:, k], ideal, atol=1e-3)
        np.testing.assert_allclose(comp.model_coords[:, k], model, atol=1e-3)
    pairs = list(
        zip(_col(block, "_chem_comp_bond.atom_id_1"), _col(block, "_chem_comp_bond.atom_id_2"), strict=True)
    )
    assert [(comp.atom_names[i], comp.atom_names[j]) for i, j in comp.bonds] == pairs
    assert list(comp.bond_orders) == [ORDERS[v] for v in _col(block, "_chem_comp_bond.value_order")]
    assert list(comp.bond_aromatic) == [v == "Y" for v in _col(block, "_chem_comp_bond.pdbx_aromatic_flag")]


def test_full_ccd_is_complete():
    ccd = load_ccd()
    assert ccd.release == "biotite-1.6.0"
    assert len(ccd.codes()) == 49196  # README: biotite 1.6.0 ships 49,196 components


def test_builtin_matches_text_subset():
    # The subset was converted from the same biotite file, so every field must agree.
    ccd = load_ccd()
    doc = gemmi.cif.read(str(SUBSET))
    assert len(doc) == 102
    for block in doc:
        _check_against_text(ccd[block.name], block)


@pytest.mark.parametrize("code", ["ATP", "HEM", "NA", "SO4", "GOL"])
def test_user_file_in_full_ccd_format(code):
    path = SAMPLES / f"{code}.cif"
    user = load_ccd(path)
    _check_against_text(user[code], gemmi.cif.read(str(path)).sole_block())
    assert user.release.startswith("biotite-1.6.0+user:")


def test_known_chemistry():
    ccd = load_ccd()
    assert ccd["NA"].charges.tolist() == [1] and ccd["NA"].num_heavy_atoms == 1
    mse = ccd["MSE"]
    assert "SE" in mse.elements and mse.polymer_class == "protein"
    assert {n for n, leave in zip(mse.atom_names, mse.leaving_atom, strict=True) if leave} == {
        "OXT",
        "H2",
        "HXT",
    }
    assert ccd["A1AA6"].type == "NON-POLYMER"  # 5-character code
    assert ccd["HEM"].num_heavy_atoms == 43
    assert [polymer_class(ccd[c].type) for c in ("ALA", "DA", "U", "NAG", "HOH")] == [
        "protein",
        "dna",
        "rna",
        None,
        None,
    ]


def test_user_override_and_extension(tmp_path):
    doc = gemmi.cif.read(str(SUBSET))
    ala = doc["ALA"]
    ala.set_pair("_chem_comp.name", gemmi.cif.quote("ALANINE (USER)"))
    new = doc.add_copied_block(doc["HEM"])
    new.name = "ZZQ1"
    new.set_pair("_chem_comp.id", "ZZQ1")
    out = tmp_path / "components.cif"
    doc.write_file(str(out))
    user, builtin = load_ccd(out), load_ccd()
    assert user["ALA"].name == "ALANINE (USER)" and builtin["ALA"].name == "ALANINE"
    assert "ZZQ1" in user and "ZZQ1" not in builtin
    assert user["ZZQ1"].atom_names == builtin["HEM"].atom_names
    assert user["ATP"].num_heavy_atoms == builtin["ATP"].num_heavy_atoms  # falls through to the full CCD
    assert user.release == "biotite-1.6.0+user:" + hashlib.sha256(out.read_bytes()).hexdigest()[:16]


def test_unknown_code_error_names_it():
    ccd = load_ccd()
    with pytest.raises(UnknownComponentError, match="'QQQQZ'") as info:
        ccd["QQQQZ"]
    assert isinstance(info.value, KeyError) and info.value.code == "QQQQZ"
    assert "QQQQZ" not in ccd and ccd.get("QQQQZ") is None


def test_cached():
    assert load_ccd() is load_ccd() is load_ccd("")
    ccd = load_ccd()
    assert ccd["ATP"] is ccd["ATP"]
    with pytest.raises(FileNotFoundError, match="no-such.cif"):
        load_ccd("/nonexistent/no-such.cif")


def test_first_lookup_is_fast():
    # Fresh interpreter: import, open the 63 MB BinaryCIF and decode one component.
    code = (
        "import time; t = time.perf_counter(); from model.data.ccd import load_ccd; "
        "load_ccd()['ATP']; print(time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert float(out.stdout) < 10.0  # ~0.8 s on an idle core; generous for a loaded CI machine
