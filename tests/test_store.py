"""HDF5 feature store: round trip, provenance attributes, atomic writes, corrupt-file detection."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from model.data import store
from model.data.feature_spec import FEATURES, check_features


def random_features(n_token: int, n_atom_per_token: int, n_msa: int, n_templ: int, seed: int = 0) -> dict:
    """Contract-conforming random arrays (the store must not care what they mean)."""
    rng = np.random.default_rng(seed)
    sizes = {"T": n_token, "A": n_token * n_atom_per_token, "M": n_msa, "K": n_templ}
    out = {}
    for name, (_group, dims, dtype) in FEATURES.items():
        shape = tuple(sizes[d] if isinstance(d, str) else d for d in dims)
        if np.dtype(dtype).kind == "b":
            out[name] = rng.random(shape) < 0.3
        elif np.dtype(dtype).kind == "i":
            out[name] = rng.integers(0, 32, shape).astype(dtype)
        else:
            out[name] = rng.normal(size=shape).astype(dtype)
    out["deletion_matrix"] = rng.integers(0, 300, (n_msa, n_token)).astype(np.float32)
    out["ref_element"] = rng.integers(1, 118, sizes["A"]).astype(np.int32)
    out["atom_to_token"] = np.repeat(np.arange(n_token, dtype=np.int32), n_atom_per_token)
    return out


META = {
    "token_res_name": np.array(["ALA", "HEM", "A1AA6"]),
    "atom_name": np.array(["CA", "FE", "C1'"]),
    "chain_name": np.array(["A", "B"]),
    "atom_bonds": np.array([[0, 1], [1, 2]], dtype=np.int32),
    "atom_bond_is_link": np.array([False, True]),
}
ATTRS = {
    "target_id": "demo",
    "content_hash": "ab" * 32,
    "featurizer_version": "1",
    "ccd_release": "2026-01-16",
    "msa_paired_rows": 3,
}


@pytest.fixture()
def feats() -> dict:
    return random_features(n_token=40, n_atom_per_token=8, n_msa=50, n_templ=2)


def test_round_trip_values_dtypes_and_attrs(tmp_path: Path, feats: dict) -> None:
    path = store.write_features(tmp_path / "demo.h5", feats, META, ATTRS)
    loaded = store.load_features(path)
    assert set(loaded) == set(feats)
    check_features(loaded, require_truth=True)
    for name, array in feats.items():
        assert loaded[name].dtype == torch.from_numpy(np.zeros(1, FEATURES[name][2])).dtype, name
        np.testing.assert_array_equal(loaded[name].numpy(), array, err_msg=name)
    meta = store.load_meta(path)
    assert meta["token_res_name"].tolist() == ["ALA", "HEM", "A1AA6"]
    assert meta["atom_name"].tolist() == ["CA", "FE", "C1'"]
    np.testing.assert_array_equal(meta["atom_bonds"], META["atom_bonds"])
    attrs = store.read_attrs(path)
    assert attrs["n_token"] == 40 and attrs["n_atom"] == 320
    assert attrs["msa_paired_rows"] == 3 and attrs["complete"] is True
    assert attrs["target_id"] == "demo" and attrs["ccd_release"] == "2026-01-16"
    assert attrs["code_version"].startswith(store.model.__version__)
    # the big MSA is stored narrow and compressed
    with h5py.File(path) as f:
        assert f["msa/msa"].dtype == np.uint8 and f["msa/deletion_matrix"].dtype == np.uint16
        assert f["token/token_bonds"].fletcher32
    assert store.is_valid(path, expected_hash=ATTRS["content_hash"])


def test_empty_templates_and_no_truth(tmp_path: Path) -> None:
    feats = random_features(n_token=5, n_atom_per_token=3, n_msa=1, n_templ=0)
    for name in ("atom_pos", "atom_resolved"):
        del feats[name]
    path = store.write_features(tmp_path / "x.h5", feats, {}, ATTRS)
    loaded = store.load_features(path)
    assert loaded["template_backbone"].shape == (0, 5, 3, 3)
    assert "atom_pos" not in loaded
    assert store.is_valid(path)


def test_device_argument(tmp_path: Path, feats: dict) -> None:
    path = store.write_features(tmp_path / "d.h5", feats, META, ATTRS)
    assert store.load_features(path, device="cpu")["msa"].device.type == "cpu"


def test_values_that_do_not_fit_narrow_types_survive(tmp_path: Path, feats: dict) -> None:
    odd = dict(feats, deletion_matrix=feats["deletion_matrix"] * 1000 + 0.5)
    path = store.write_features(tmp_path / "odd.h5", odd, META, ATTRS)
    loaded = store.load_features(path)["deletion_matrix"].numpy()
    np.testing.assert_array_equal(loaded, odd["deletion_matrix"])
    small = dict(feats, deletion_matrix=np.minimum(feats["deletion_matrix"], 255))
    path = store.write_features(tmp_path / "small.h5", small, META, ATTRS)
    with h5py.File(path) as f:
        assert f["msa/deletion_matrix"].dtype == np.uint8


def test_mostly_zero_arrays_are_stored_sparse(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    sparse = random_features(n_token=40, n_atom_per_token=2, n_msa=1000, n_templ=1)
    sparse["token_bonds"] = np.zeros_like(sparse["token_bonds"])
    sparse["token_bonds"][[1, 2, 5], [2, 1, 9]] = True
    sparse["deletion_matrix"] = np.where(rng.random(sparse["msa"].shape) < 0.005, 7.0, 0.0).astype(np.float32)
    sparse["deletion_matrix"][0, 0] = 70000.0  # beyond uint16: the sparse form keeps it
    path = store.write_features(tmp_path / "sparse.h5", sparse, META, ATTRS)
    with h5py.File(path) as f:
        assert f["token/token_bonds"].shape == (3, 3)  # (i, j, value) rows
        assert f["msa/deletion_matrix"].shape == (int((sparse["deletion_matrix"] != 0).sum()), 3)
    loaded = store.load_features(path)
    for name in ("token_bonds", "deletion_matrix"):
        np.testing.assert_array_equal(loaded[name].numpy(), sparse[name], err_msg=name)
    assert loaded["deletion_matrix"].dtype == torch.float32 and loaded["token_bonds"].dtype == torch.bool
    assert store.is_valid(path)


def test_max_msa_rows_reads_the_first_rows(tmp_path: Path, feats: dict) -> None:
    feats = dict(feats, deletion_matrix=np.where(feats["deletion_matrix"] > 290, 4.0, 0.0).astype(np.float32))
    path = store.write_features(tmp_path / "rows.h5", feats, META, ATTRS)
    loaded = store.load_features(path, max_msa_rows=10)
    np.testing.assert_array_equal(loaded["msa"].numpy(), feats["msa"][:10])
    np.testing.assert_array_equal(loaded["deletion_matrix"].numpy(), feats["deletion_matrix"][:10])
    np.testing.assert_array_equal(loaded["profile"].numpy(), feats["profile"])  # full-MSA statistics


def test_rejects_bad_contract_and_leaves_nothing(tmp_path: Path, feats: dict) -> None:
    bad = dict(feats, restype=feats["restype"][:-1])
    with pytest.raises(ValueError, match="restype"):
        store.write_features(tmp_path / "bad.h5", bad, META, ATTRS)
    with pytest.raises(store.FeatureStoreError, match="extra"):
        store.write_features(tmp_path / "bad.h5", {**feats, "extra": np.zeros(3)}, META, ATTRS)
    assert list(tmp_path.iterdir()) == []  # neither the target nor a temp file


def test_hash_mismatch_and_missing_file(tmp_path: Path, feats: dict) -> None:
    path = store.write_features(tmp_path / "h.h5", feats, META, ATTRS)
    assert not store.is_valid(path, expected_hash="0" * 64)
    assert not store.is_valid(tmp_path / "absent.h5")


def test_truncated_file_is_invalid(tmp_path: Path, feats: dict) -> None:
    path = store.write_features(tmp_path / "t.h5", feats, META, ATTRS)
    data = path.read_bytes()
    for keep in (len(data) // 2, len(data) - 100, 512):
        path.write_bytes(data[:keep])
        assert not store.is_valid(path), keep
    with pytest.raises(store.FeatureStoreError, match="removed, the next run builds it again"):
        store.load_features(path)
    assert not path.exists()  # a corrupt cache entry goes, so that the workflow rebuilds it


def test_corrupt_chunk_is_invalid(tmp_path: Path, feats: dict) -> None:
    path = store.write_features(tmp_path / "c.h5", feats, META, ATTRS)
    with h5py.File(path) as f:
        offset = f["atom/ref_pos"].id.get_chunk_info(0).byte_offset
    data = bytearray(path.read_bytes())
    data[offset + 10] ^= 0xFF  # flip one byte inside the coordinates
    path.write_bytes(bytes(data))
    assert not store.is_valid(path)


def test_flipped_byte_outside_any_chunk_checksum_is_invalid(tmp_path: Path, feats: dict) -> None:
    """Strings (meta) live in HDF5's heap, which no Fletcher-32 checksum covers: the data digest does."""
    path = store.write_features(tmp_path / "s.h5", feats, META, ATTRS)
    data = bytearray(path.read_bytes())
    offset = data.index(b"A1AA6")
    data[offset] ^= 0x01  # "A1AA6" -> "@1AA6": still a readable string
    path.write_bytes(bytes(data))
    assert str(store.load_meta(path)["token_res_name"][2]) == "@1AA6"
    assert not store.is_valid(path)


def test_incomplete_flag_is_invalid(tmp_path: Path, feats: dict) -> None:
    path = store.write_features(tmp_path / "i.h5", feats, META, ATTRS)
    with h5py.File(path, "a") as f:
        f.attrs["complete"] = False
    assert not store.is_valid(path)


def test_write_is_atomic_and_keeps_old_file_on_failure(tmp_path: Path, feats: dict, monkeypatch) -> None:
    path = store.write_features(tmp_path / "a.h5", feats, META, ATTRS)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "_write_meta", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        store.write_features(path, random_features(4, 2, 1, 0, seed=1), META, ATTRS)
    assert path.read_bytes() == before  # the old file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["a.h5"]  # and no temp file is left


def test_uncompressed_write_round_trips(tmp_path: Path, feats: dict) -> None:
    path = store.write_features(tmp_path / "raw.h5", feats, META, ATTRS, compress=False)
    with h5py.File(path) as f:
        assert f["msa/msa"].compression is None and f["msa/msa"].fletcher32
    loaded = store.load_features(path)
    for name, array in feats.items():
        np.testing.assert_array_equal(loaded[name].numpy(), array, err_msg=name)
    assert store.is_valid(path)


def test_content_hash_is_length_prefixed() -> None:
    assert store.content_hash(["ab", "c"]) != store.content_hash(["a", "bc"])
    assert store.content_hash([b"x"]) == store.content_hash(["x"])


def test_768_token_file_loads_fast(tmp_path: Path) -> None:
    """The issue's goal is ≤ 50 ms for a cached 768-token crop on one core; allow slack for shared CI."""
    feats = random_features(n_token=768, n_atom_per_token=8, n_msa=1024, n_templ=4)
    path = store.write_features(tmp_path / "big.h5", feats, META, ATTRS)
    torch.set_num_threads(1)
    store.load_features(path)  # warm the page cache, as a cached file is
    best = min(_timed(store.load_features, path) for _ in range(5))
    assert best < 0.25, f"load took {best * 1e3:.0f} ms"
    assert os.path.getsize(path) < 64 * 2**20


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def test_store_and_crop_import_without_chemistry_stack() -> None:
    """GPU nodes lack rdkit/gemmi/biotite/pyhmmer: store and crop must import without them."""
    code = (
        "import sys\n"
        "for name in ('rdkit', 'gemmi', 'biotite', 'pyhmmer', 'pandas'):\n"
        "    sys.modules[name] = None  # any import of these now fails\n"
        "import model.data.store, model.data.crop\n"
        "print('ok')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr
