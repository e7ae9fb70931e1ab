"""Crops (AF3 §2.7): each mode, sizes, whole units, determinism, consistency of every feature."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.data import crop
from model.data.feature_spec import FEATURES, check_features


def build_example(
    n_a: int = 60, n_b: int = 60, ligand_atoms: int = 12, atomised: bool = True, seed: int = 0
) -> dict:
    """A 3-chain complex + ion laid out in space with known geometry.

    Chain 0: protein along x (3.8 Å steps) with a 5-token atomised residue in the middle; chain 1:
    a parallel protein strand 10 Å away in y (so every residue is at an interface); chain 2: one
    ligand of `ligand_atoms` tokens near the middle of chain 0; chain 3: one ion far away.
    Every per-token value is made unique so crops can be traced back to the original tokens.
    """
    rng = np.random.default_rng(seed)
    tokens = []  # (asym, unit, centre xyz, atoms)
    unit = 0
    for i in range(n_a):
        if atomised and i == n_a // 2:
            for j in range(5):  # atomised modified residue: 5 tokens, one unit
                tokens.append((0, unit, (3.8 * i + 0.5 * j, 0.0, 0.0), 1))
        else:
            tokens.append((0, unit, (3.8 * i, 0.0, 0.0), 4))
        unit += 1
    for i in range(n_b):
        tokens.append((1, unit, (3.8 * i, 10.0, 0.0), 4))
        unit += 1
    for j in range(ligand_atoms):
        tokens.append((2, unit, (3.8 * n_a / 2 + 0.7 * j, -5.0, 0.0), 1))
    unit += 1
    tokens.append((3, unit, (500.0, 500.0, 500.0), 1))
    n_tok = len(tokens)
    atoms_per = np.array([t[3] for t in tokens])
    atom_to_token = np.repeat(np.arange(n_tok), atoms_per).astype(np.int32)
    first_atom = np.r_[0, np.cumsum(atoms_per)[:-1]].astype(np.int32)
    n_atom = len(atom_to_token)
    centres = np.array([t[2] for t in tokens], dtype=np.float32)
    atom_pos = centres[atom_to_token] + rng.normal(scale=0.5, size=(n_atom, 3)).astype(np.float32)
    atom_pos[first_atom] = centres  # the centre atom sits exactly at the token centre
    resolved = np.ones(n_atom, dtype=bool)
    resolved[first_atom[[3, n_tok - 2]]] = False  # two tokens with unresolved centre atoms
    n_msa, n_templ = 7, 2
    t_idx = np.arange(n_tok)
    feats = {
        "residue_index": t_idx.astype(np.int32) + 1,
        "token_index": t_idx.astype(np.int32),
        "asym_id": np.array([t[0] for t in tokens], dtype=np.int32),
        "entity_id": np.array([t[0] for t in tokens], dtype=np.int32),
        "sym_id": np.zeros(n_tok, dtype=np.int32),
        "restype": (t_idx % 20).astype(np.int32),
        "mol_type": np.array([0 if t[0] < 2 else 3 for t in tokens], dtype=np.int32),
        "token_center_atom": first_atom,
        "token_rep_atom": (first_atom + (atoms_per > 1)).astype(np.int32),
        "token_bonds": rng.random((n_tok, n_tok)) < 0.05,
        "atom_to_token": atom_to_token,
        "atom_to_tokatom_idx": (np.arange(n_atom) - first_atom[atom_to_token]).astype(np.int32),
        "ref_pos": rng.normal(size=(n_atom, 3)).astype(np.float32),
        "ref_mask": np.ones(n_atom, dtype=bool),
        "ref_element": np.full(n_atom, 6, dtype=np.int32),
        "ref_charge": np.zeros(n_atom, dtype=np.float32),
        "ref_atom_name_chars": rng.integers(0, 64, (n_atom, 4)).astype(np.int32),
        "ref_space_uid": np.array([t[1] for t in tokens], dtype=np.int32)[atom_to_token],
        "msa": ((t_idx[None, :] + np.arange(n_msa)[:, None]) % 31).astype(np.int32),
        "deletion_matrix": np.tile(t_idx.astype(np.float32), (n_msa, 1)),
        "profile": rng.random((n_tok, 32)).astype(np.float32),
        "deletion_mean": t_idx.astype(np.float32) / 10,
        "template_restype": np.tile(t_idx % 32, (n_templ, 1)).astype(np.int32),
        "template_pseudo_beta": rng.normal(size=(n_templ, n_tok, 3)).astype(np.float32),
        "template_pseudo_beta_mask": rng.random((n_templ, n_tok)) < 0.5,
        "template_backbone": rng.normal(size=(n_templ, n_tok, 3, 3)).astype(np.float32),
        "template_backbone_mask": rng.random((n_templ, n_tok)) < 0.5,
        "atom_pos": atom_pos,
        "atom_resolved": resolved,
    }
    check_features(feats, require_truth=True)
    return feats


@pytest.fixture(scope="module")
def example() -> dict:
    return build_example()


def units_of(feats: dict) -> np.ndarray:
    return feats["ref_space_uid"][feats["token_center_atom"]]


def assert_consistent(orig: dict, cropped: dict, token_idx: np.ndarray) -> None:
    """Every feature of the crop equals the original at the kept tokens/atoms (derived here)."""
    check_features(cropped, require_truth=True)
    np.testing.assert_array_equal(cropped["token_index"], orig["token_index"][token_idx])
    atoms = np.flatnonzero(np.isin(orig["atom_to_token"], token_idx))
    for name, (_g, dims, _d) in FEATURES.items():
        if name in ("atom_to_token", "token_center_atom", "token_rep_atom"):
            continue
        expected = orig[name]
        for axis, dim in enumerate(dims):
            if dim in ("T", "A"):
                expected = np.take(expected, token_idx if dim == "T" else atoms, axis=axis)
        np.testing.assert_array_equal(cropped[name], expected, err_msg=name)
    # pointers now index the cropped arrays and still name the same original atoms/tokens
    np.testing.assert_array_equal(atoms[cropped["token_center_atom"]], orig["token_center_atom"][token_idx])
    np.testing.assert_array_equal(atoms[cropped["token_rep_atom"]], orig["token_rep_atom"][token_idx])
    np.testing.assert_array_equal(token_idx[cropped["atom_to_token"]], orig["atom_to_token"][atoms])


def assert_whole_units(orig: dict, token_idx: np.ndarray) -> None:
    uid = units_of(orig)
    kept = np.isin(uid, uid[token_idx])
    assert np.array_equal(np.flatnonzero(kept), np.sort(token_idx)), "a unit was split"


def nearest_sets(orig: dict, k: int, refs: np.ndarray) -> list[set[int]]:
    """The k tokens nearest to each reference token by resolved centre-atom distance (brute force)."""
    centre = orig["token_center_atom"]
    pos = orig["atom_pos"][centre].astype(np.float64)
    ok = orig["atom_resolved"][centre]
    out = []
    for r in refs:
        d = np.where(ok, np.linalg.norm(pos - pos[r], axis=1), np.inf) + np.arange(len(pos)) * 1e-3
        out.append(set(np.argsort(d, kind="stable")[:k].tolist()))
    return out


@pytest.mark.parametrize("mode", crop.CROP_MODES)
@pytest.mark.parametrize("crop_size", [16, 40, 97])
def test_each_mode_sizes_units_and_consistency(example: dict, mode: str, crop_size: int) -> None:
    n_tok = len(example["asym_id"])
    largest_unit = np.bincount(units_of(example)).max()
    for seed in range(6):
        choice = crop.choose_crop(example, crop_size, seed=seed, mode=mode)
        idx = choice.token_idx
        assert choice.mode == mode
        assert crop_size - largest_unit < len(idx) <= crop_size < n_tok
        assert np.all(np.diff(idx) > 0)
        assert_whole_units(example, idx)
        assert_consistent(example, crop.apply_crop(example, idx), idx)


def test_spatial_keeps_the_nearest_tokens() -> None:
    feats = build_example(ligand_atoms=1, atomised=False)  # single-token units: no unit is ever skipped
    k = 30
    centre_ok = np.flatnonzero(feats["atom_resolved"][feats["token_center_atom"]])
    candidates = nearest_sets(feats, k, centre_ok)
    for seed in range(10):
        kept = set(crop.choose_crop(feats, k, seed=seed, mode="spatial").token_idx.tolist())
        assert kept in candidates


def test_spatial_interface_reference_is_at_an_interface() -> None:
    feats = build_example(ligand_atoms=1, atomised=False)
    # move chain 1 away except its first 5 residues: interfaces are those, chain 0's start and the ligand
    centre = feats["token_center_atom"]
    far = np.flatnonzero(feats["asym_id"] == 1)[5:]
    move = np.isin(feats["atom_to_token"], far)
    feats["atom_pos"][move] += np.array([0, 1000, 0], dtype=np.float32)
    pos = feats["atom_pos"][centre]
    ok = feats["atom_resolved"][centre]
    asym = feats["asym_id"]
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    expected = np.flatnonzero(((d < 15) & (asym[:, None] != asym[None]) & ok[:, None] & ok[None]).any(1))
    np.testing.assert_array_equal(crop.interface_tokens(feats), expected)
    for seed in range(5):
        kept = crop.choose_crop(feats, 20, seed=seed, mode="spatial_interface").token_idx
        assert set(kept.tolist()) in nearest_sets(feats, 20, expected)


def test_contiguous_windows_are_contiguous_per_chain(example: dict) -> None:
    for seed in range(8):
        idx = crop.choose_crop(example, 50, seed=seed, mode="contiguous").token_idx
        for chain in np.unique(example["asym_id"][idx]):
            in_chain = idx[example["asym_id"][idx] == chain]
            assert np.all(np.diff(in_chain) == 1), f"chain {chain} has a gap: {in_chain}"


def test_ligand_bigger_than_crop_is_dropped_not_split() -> None:
    feats = build_example(n_a=4, n_b=4, ligand_atoms=30)
    for mode in crop.CROP_MODES:
        for seed in range(5):
            idx = crop.choose_crop(feats, 20, seed=seed, mode=mode).token_idx
            assert not np.any(feats["asym_id"][idx] == 2)
            assert_whole_units(feats, idx)


def test_deterministic_for_a_seed_and_varies_across_seeds(example: dict) -> None:
    a = crop.crop_features(example, 40, seed=123)
    b = crop.crop_features(example, 40, seed=123)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    gen = [torch.Generator().manual_seed(5) for _ in range(2)]
    first, second = (crop.choose_crop(example, 40, seed=g).token_idx for g in gen)
    assert np.array_equal(first, second)
    distinct = {tuple(crop.choose_crop(example, 40, seed=s).token_idx.tolist()) for s in range(10)}
    assert len(distinct) > 5


def test_mode_weights_are_followed(example: dict) -> None:
    modes = [crop.choose_crop(example, 40, seed=s).mode for s in range(300)]
    freq = {m: modes.count(m) / len(modes) for m in crop.CROP_MODES}
    assert abs(freq["contiguous"] - 0.2) < 0.08 and abs(freq["spatial"] - 0.4) < 0.1
    only = crop.CROP_WEIGHTS["protein_monomer_distillation"]
    assert all(crop.choose_crop(example, 40, s, weights=only).mode != "spatial_interface" for s in range(50))


def test_without_truth_falls_back_to_contiguous(example: dict) -> None:
    no_truth = {k: v for k, v in example.items() if k not in ("atom_pos", "atom_resolved")}
    choice = crop.choose_crop(no_truth, 30, seed=0, mode="spatial")
    assert choice.mode == "contiguous"
    check_features(crop.apply_crop(no_truth, choice.token_idx))


def test_small_example_is_returned_whole(example: dict) -> None:
    n_tok = len(example["asym_id"])
    choice = crop.choose_crop(example, n_tok + 5, seed=0)
    assert choice.mode == "none" and np.array_equal(choice.token_idx, np.arange(n_tok))


def test_torch_tensors_crop_like_numpy(example: dict) -> None:
    tensors = {k: torch.from_numpy(v) for k, v in example.items()}
    t = crop.crop_features(tensors, 40, seed=9)
    n = crop.crop_features(example, 40, seed=9)
    for name in n:
        assert isinstance(t[name], torch.Tensor)
        np.testing.assert_array_equal(t[name].numpy(), n[name], err_msg=name)
        assert t[name].dtype == tensors[name].dtype


def test_bad_arguments(example: dict) -> None:
    with pytest.raises(ValueError, match="crop_size"):
        crop.choose_crop(example, 0)
    with pytest.raises(ValueError, match="mode"):
        crop.choose_crop(example, 10, mode="random")
    with pytest.raises(ValueError, match="not in feature_spec"):
        crop.apply_crop({**example, "extra": np.zeros(3)}, np.arange(3))


@pytest.fixture(scope="module")
def real_2q2k() -> dict:
    """Features of 2q2k (ParR dimer copies + DNA strands, assembly 1) with ground truth."""
    from conftest import MMCIF_DIR

    from model.data.ccd import load_ccd
    from model.data.features import featurize
    from model.data.structure import parse_mmcif

    ccd = load_ccd()
    return featurize(parse_mmcif(MMCIF_DIR / "2q2k.cif.gz", ccd), ccd, seed=0, with_truth=True).features


@pytest.mark.parametrize("mode", crop.CROP_MODES)
def test_real_entry_crops(real_2q2k: dict, mode: str) -> None:
    feats = real_2q2k
    assert len(feats["asym_id"]) > 128
    for seed in range(3):
        choice = crop.choose_crop(feats, 128, seed=seed, mode=mode)
        assert choice.mode == mode and 100 < len(choice.token_idx) <= 128
        assert_whole_units(feats, choice.token_idx)
        assert_consistent(feats, crop.apply_crop(feats, choice.token_idx), choice.token_idx)
    if mode == "spatial_interface":
        # a protein-DNA complex: the interface crop holds tokens of more than one chain
        idx = crop.choose_crop(feats, 128, seed=0, mode=mode).token_idx
        assert len(np.unique(feats["asym_id"][idx])) >= 2


def test_crop_of_stored_tensors(real_2q2k: dict, tmp_path) -> None:
    """The training path: store -> load_features (torch) -> crop_features."""
    from model.data import store

    attrs = {"target_id": "2q2k", "content_hash": "x", "featurizer_version": "1", "ccd_release": "t"}
    path = store.write_features(tmp_path / "2q2k.h5", real_2q2k, {}, attrs)
    tensors = store.load_features(path)
    cropped = crop.crop_features(tensors, 96, seed=4)
    expected = crop.crop_features(real_2q2k, 96, seed=4)
    for name, value in expected.items():
        np.testing.assert_array_equal(cropped[name].numpy(), value, err_msg=name)


@pytest.mark.parametrize("sparse_bonds", [True, False])
def test_load_crop_matches_crop_of_loaded(tmp_path, sparse_bonds: bool) -> None:
    """Cropping while loading gives what loading then cropping gives, sparse or dense bonds."""
    from model.data import store

    feats = build_example()
    if sparse_bonds:
        feats["token_bonds"] = np.zeros_like(feats["token_bonds"])
        feats["token_bonds"][[10, 11, 80, 81], [11, 10, 81, 80]] = True
    attrs = {"target_id": "x", "content_hash": "x", "featurizer_version": "1", "ccd_release": "t"}
    path = store.write_features(tmp_path / "x.h5", feats, {}, attrs)
    for seed in range(4):
        got, choice = crop.load_crop(path, 40, seed=seed)
        expected = crop.crop_features(store.load_features(path), 40, seed=seed)
        assert choice.mode in crop.CROP_MODES
        assert got.keys() == expected.keys()
        for name, value in expected.items():
            assert got[name].dtype == value.dtype, name
            np.testing.assert_array_equal(got[name].numpy(), value.numpy(), err_msg=name)
    partial, _ = crop.load_crop(path, 40, seed=0, max_msa_rows=3)
    assert partial["msa"].shape[0] == 3
