"""The HDF5 feature store: one file per prediction target or training entry.

Layout: one HDF5 group per feature group of `feature_spec.FEATURES` (token, atom, msa, template,
truth) plus `meta` (the writers' strings, `feature_spec.META`). Provenance lives in file attributes:
`target_id`, `content_hash` (sha256 of the inputs), `code_version`, `featurizer_version`,
`ccd_release`, `n_token`, `n_atom`, `msa_paired_rows`, `data_sha256` (sha256 of every stored
dataset) and, written last, `complete=True`.

Files are written to a temp name in the same folder and renamed, so a reader never sees half a
file; `is_valid` still checks the flag, the hash, every chunk's Fletcher-32 checksum and the data
digest (which also covers the small unchunked datasets) so that a truncated or corrupt file is
rebuilt, never used. Large arrays are stored in narrower integer types
(`msa` as uint8, ...), `token_bonds` as its bonded pairs, big arrays gzip-compressed in row blocks;
loading gives the contract's dtypes and shapes back.

Imports only numpy, h5py and torch: GPU nodes load features without the chemistry stack.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

import h5py
import numpy as np
import torch

import model
from model.data.feature_spec import FEATURES, GROUPS, META, check_features
from model.fileio import atomic_path

META_GROUP = "meta"
# Narrower on-disk dtypes, smallest first: the first that holds every value exactly is used,
# else the contract dtype. Loading casts back.
DISK_DTYPES: dict[str, tuple[type, ...]] = {
    "msa": (np.uint8,),
    "deletion_matrix": (np.uint8, np.uint16),
    "template_restype": (np.uint8,),
    "ref_element": (np.uint8,),
    "ref_atom_name_chars": (np.uint8,),
    "atom_to_tokatom_idx": (np.uint8,),
}
# Stored as [nnz, ndim + 1] int32 rows (index..., value) when mostly zero: dense token_bonds is GBs
# for a capsid, and a deletion matrix is ~98% zeros that gzip still has to inflate.
SPARSE = ("token_bonds", "deletion_matrix")
COMPRESS_MIN_BYTES = 64 * 1024  # smaller arrays stay uncompressed: decompression costs more than it saves
CHUNK_BYTES = 2**20  # row-blocked chunks of about 1 MiB decompress fastest for [M, T] arrays
GZIP_LEVEL = 4
# Read on every training step and the bulk of a deep entry: inflating a 16,384-row uint8 MSA costs
# ~60 ms, reading it raw ~25 ms (bench/featurize.py: 768-token crop 105 -> 42 ms), for ~2.6x its disk.
RAW_ON_DISK = ("msa",)
REQUIRED_ATTRS = (
    "target_id", "content_hash", "code_version", "featurizer_version", "ccd_release", "data_sha256",
)  # fmt: skip


class FeatureStoreError(ValueError):
    """A feature file that cannot be written or read as asked."""


def content_hash(parts: Iterable[bytes | str]) -> str:
    """sha256 hex digest over `parts` (each length-prefixed, so ("ab", "c") != ("a", "bc"))."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else bytes(part)
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def input_key(value, file_key: Callable[[Path], str] | None = None) -> str:
    """A canonical text of parsed inputs (dataclasses such as `model.data.inputs.Target`, tuples,
    dicts, scalars) for cache keys: each file path becomes `file_key(path)` (default: the sha256 of its
    bytes) and fields left out of equality (a target's source file, dialect) are left out, so that a
    moved project folder keeps its keys."""
    file_key = file_key or _file_content_key
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = (f for f in dataclasses.fields(value) if f.compare)
        inner = ", ".join(f"{f.name}={input_key(getattr(value, f.name), file_key)}" for f in fields)
        return f"{type(value).__name__}({inner})"
    if isinstance(value, Path):
        return file_key(value)
    if isinstance(value, tuple | list):
        return "(" + ", ".join(input_key(v, file_key) for v in value) + ")"
    if isinstance(value, dict):
        items = sorted((repr(k), input_key(v, file_key)) for k, v in value.items())
        return "{" + ", ".join(f"{k}: {v}" for k, v in items) + "}"
    return repr(value)


def _file_content_key(path: Path) -> str:
    if not path.is_file():
        return f"missing:{path.name}"
    with open(path, "rb") as f:
        return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()


@functools.cache
def source_digest(*subpackages: str) -> str:
    """sha256 over the source files (*.py, by relative path) of these subpackages of `model`: a cache
    key that changes with the code that made a file, with no version constant to bump by hand."""
    root = Path(model.__file__).resolve().parent
    files = sorted(f for sub in subpackages for f in (root / sub).rglob("*.py"))
    return content_hash(part for f in files for part in (f.relative_to(root).as_posix(), f.read_bytes()))


@functools.cache
def code_version() -> str:
    """`model.__version__`, plus `+g<commit>` when the package sits in a git checkout."""
    root = Path(model.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{model.__version__}+g{commit}" if commit else model.__version__


def _sparse(array: np.ndarray) -> np.ndarray | None:
    """[nnz, ndim + 1] int32 (indices, value) if that is exact and at most a quarter of the size."""
    flat = np.flatnonzero(array)  # 1-D nonzero is several times faster than argwhere on a 2-D array
    index = np.stack(np.unravel_index(flat, array.shape), axis=1)
    values = array.reshape(-1)[flat]
    if len(index) * (array.ndim + 1) * 4 > array.size // 4:
        return None
    if array.dtype.kind == "f" and not np.array_equal(values, np.round(values)):
        return None
    if len(values) and np.abs(values).max() > np.iinfo(np.int32).max:
        return None
    return np.concatenate([index, values[:, None]], axis=1).astype(np.int32)


def _to_disk(name: str, array: np.ndarray) -> tuple[np.ndarray, bool]:
    """(stored array, is_sparse): sparse where listed and worth it, else the narrowest listed
    dtype that holds every value exactly, else the contract dtype."""
    array = np.asarray(array)
    if name in SPARSE and array.size:
        sparse = _sparse(array)
        if sparse is not None:
            return sparse, True
    return _narrow(name, array), False


def _narrow(name: str, array: np.ndarray) -> np.ndarray:
    for disk in map(np.dtype, DISK_DTYPES.get(name, ())):
        if array.size == 0:
            return array.astype(disk)
        info = np.iinfo(disk)
        if array.min() >= info.min and array.max() <= info.max:
            narrow = array.astype(disk)
            if array.dtype.kind != "f" or np.array_equal(narrow, array):
                return narrow
    return array.astype(FEATURES[name][2])


def _from_disk(name: str, dataset: h5py.Dataset, max_rows: int | None = None) -> np.ndarray:
    """A stored feature in its contract dtype (dense again if stored sparse), first `max_rows` rows."""
    contract = np.dtype(FEATURES[name][2])
    if "dense_shape" in dataset.attrs:
        shape = tuple(int(n) for n in dataset.attrs["dense_shape"])
        if max_rows is not None:
            shape = (min(shape[0], max_rows), *shape[1:])
        entries = dataset[()]
        entries = entries[entries[:, 0] < shape[0]]
        dense = np.zeros(shape, dtype=contract)
        dense[tuple(entries[:, :-1].T)] = entries[:, -1]
        return dense
    array = dataset[()] if max_rows is None else dataset[:max_rows]
    return array if array.dtype == contract else array.astype(contract)


def _dataset_kwargs(array: np.ndarray, compress: bool = True) -> dict:
    """Chunked (row blocks) with a Fletcher-32 checksum always; gzip only where the array is big."""
    if array.ndim == 0 or 0 in array.shape:
        return {}  # HDF5 cannot chunk empty or scalar datasets; nothing to protect either
    row_bytes = max(1, array[:1].nbytes)
    rows = int(min(len(array), max(1, CHUNK_BYTES // row_bytes)))
    kwargs: dict = {"fletcher32": True, "chunks": (rows, *array.shape[1:])}
    if compress and array.nbytes >= COMPRESS_MIN_BYTES:
        kwargs.update(compression="gzip", compression_opts=GZIP_LEVEL, shuffle=array.itemsize > 1)
    return kwargs


def _write_meta(group: h5py.Group, meta: dict[str, np.ndarray]) -> None:
    for name, value in meta.items():
        if name not in META:
            raise FeatureStoreError(f"meta {name!r}: not in feature_spec.META")
        array = np.asarray(value)
        if META[name][1] is np.str_:
            group.create_dataset(name, data=array.astype(object), dtype=h5py.string_dtype("utf-8"))
        else:
            array = array.astype(META[name][1]).reshape(-1, *array.shape[1:])
            group.create_dataset(name, data=array, **_dataset_kwargs(array))


def write_features(
    path: str | Path,
    features: dict[str, np.ndarray],
    meta: dict[str, np.ndarray] | None = None,
    attrs: dict | None = None,
    compress: bool = True,
) -> Path:
    """Write one example atomically (temp file in the same folder, then `os.replace`).

    `features` must satisfy `feature_spec.check_features`; `attrs` should carry `target_id`,
    `content_hash`, `featurizer_version`, `ccd_release` and `msa_paired_rows`; `code_version`,
    `n_token` and `n_atom` are filled in here. `compress=False` skips gzip: a 768-token crop with
    16,384 MSA rows then loads ~4x faster for ~2.5x the bytes (a cache of training crops, say).
    Returns the final path.
    """
    path = Path(path)
    sizes = check_features(features)
    unknown = sorted(set(features) - set(FEATURES))
    if unknown:
        raise FeatureStoreError(f"{path.name}: unknown features {unknown} (not in feature_spec.FEATURES)")
    attrs = {
        "code_version": code_version(),
        "msa_paired_rows": 0,
        **(attrs or {}),
        "n_token": sizes["T"],
        "n_atom": sizes["A"],
    }
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for group in GROUPS:
            f.create_group(group)
        for name, value in features.items():
            value = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            array, sparse = _to_disk(name, value)
            kwargs = _dataset_kwargs(array, compress and name not in RAW_ON_DISK)
            dataset = f[FEATURES[name][0]].create_dataset(name, data=array, **kwargs)
            if sparse:
                dataset.attrs["dense_shape"] = value.shape
        _write_meta(f.create_group(META_GROUP), meta or {})
        for key, value in attrs.items():
            f.attrs[key] = "" if value is None else value
        f.flush()
        f.attrs["data_sha256"] = _data_digest(f)
        f.attrs["complete"] = True  # last: a file without it was interrupted
    return path


def _data_digest(f: h5py.File) -> str:
    """sha256 over every dataset of the feature groups and meta as stored (names, dtypes, shapes,
    bytes; strings as UTF-8), in sorted order. Reading verifies every chunk's Fletcher-32 checksum."""
    digest = hashlib.sha256()
    for group in sorted(set(f) & {*GROUPS, META_GROUP}):
        for name in sorted(f[group]):
            dataset = f[group][name]
            if h5py.check_string_dtype(dataset.dtype) is not None:
                data = "\0".join(np.asarray(dataset.asstr()[()], dtype=object).reshape(-1)).encode()
            else:
                data = np.ascontiguousarray(dataset[()]).tobytes()
            digest.update(f"{group}/{name} {dataset.dtype.str} {dataset.shape}\n".encode())
            digest.update(len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()


def _as_tensor(array: np.ndarray, device: str | torch.device | None) -> torch.Tensor:
    tensor = torch.from_numpy(array)
    return tensor if device is None else tensor.to(device, non_blocking=True)


def load_features(
    path: str | Path,
    device: str | torch.device | None = None,
    groups: Iterable[str] = GROUPS,
    max_msa_rows: int | None = None,
    exclude: Iterable[str] = (),
) -> dict[str, torch.Tensor]:
    """All features of `groups` as torch tensors in the contract dtypes (truth only if stored).

    `max_msa_rows` keeps only the first rows of `msa` / `deletion_matrix` (the query and paired
    rows come first; `profile` and `deletion_mean` still describe the full MSA) and reads only those.
    `exclude` names features not to load (e.g. `token_bonds`, [T, T] dense: GBs for a capsid; see
    `load_token_bonds` for a subset). A file that cannot be read and fails `is_valid` is removed (the
    workflow's next run sees it missing and featurizes its target again) and FeatureStoreError says so.
    """
    exclude = set(exclude)
    out: dict[str, torch.Tensor] = {}
    try:
        with h5py.File(path, "r") as f:
            for group in groups:
                if group not in f:
                    continue
                for name, dataset in f[group].items():
                    if name in exclude:
                        continue
                    rows = max_msa_rows if FEATURES[name][1][0] == "M" else None
                    out[name] = _as_tensor(_from_disk(name, dataset, rows), device)
    except OSError as err:
        reason = f"{Path(path).name}: cannot read feature file ({err})"
        if Path(path).is_file() and not is_valid(path):  # corrupt, not just unreachable: a cache to rebuild
            Path(path).unlink()
            reason += "; removed, the next run builds it again"
        raise FeatureStoreError(reason) from err
    return out


def load_token_bonds(path: str | Path, token_idx: np.ndarray) -> np.ndarray:
    """`token_bonds` restricted to the sorted tokens `token_idx`, [N, N] bool, without building
    the full [T, T] matrix when it is stored sparse."""
    token_idx = np.asarray(token_idx, dtype=np.int64)
    with h5py.File(path, "r") as f:
        dataset = f["token/token_bonds"]
        if "dense_shape" not in dataset.attrs:
            return dataset[()][np.ix_(token_idx, token_idx)]
        pairs = dataset[()]
        new = np.full(int(dataset.attrs["dense_shape"][0]), -1, dtype=np.int64)
        new[token_idx] = np.arange(len(token_idx))
        i, j = new[pairs[:, 0]], new[pairs[:, 1]]
        keep = (i >= 0) & (j >= 0)
        out = np.zeros((len(token_idx), len(token_idx)), dtype=bool)
        out[i[keep], j[keep]] = True
        return out


def load_meta(path: str | Path) -> dict[str, np.ndarray]:
    """The writers' meta arrays (`feature_spec.META`); strings come back as numpy str arrays."""
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        for name, dataset in f.get(META_GROUP, {}).items():
            if h5py.check_string_dtype(dataset.dtype) is not None:
                out[name] = np.asarray(dataset.asstr()[()], dtype=np.str_)
            else:
                out[name] = dataset[()]
    return out


def _plain(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_attrs(path: str | Path) -> dict:
    """File attributes as plain Python values (str, int, bool)."""
    with h5py.File(path, "r") as f:
        return {key: _plain(value) for key, value in f.attrs.items()}


def is_valid(path: str | Path, expected_hash: str | None = None) -> bool:
    """True only for a complete, readable file (with `content_hash == expected_hash` if given).

    Reads every dataset, so Fletcher-32 checksums catch corrupt chunks and the data digest any other
    changed byte of the data; also checks the stored token and atom counts against the arrays.
    Never raises for a bad file.
    """
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            attrs = f.attrs
            if not bool(attrs.get("complete", False)) or any(key not in attrs for key in REQUIRED_ATTRS):
                return False
            if expected_hash is not None and _plain(attrs["content_hash"]) != expected_hash:
                return False
            if _data_digest(f) != _plain(attrs["data_sha256"]):
                return False
            shapes = {}  # zero-memory stand-ins with the contract shape and dtype
            for group in (*GROUPS, META_GROUP):
                if group not in f:
                    return False
                for name, dataset in f[group].items():
                    if group != META_GROUP:
                        shape = tuple(dataset.attrs.get("dense_shape", dataset.shape))
                        shapes[name] = np.broadcast_to(np.zeros((), FEATURES[name][2]), shape)
            sizes = check_features(shapes)
            return sizes["T"] == int(attrs["n_token"]) and sizes["A"] == int(attrs["n_atom"])
    except (OSError, ValueError, KeyError, RuntimeError):
        return False
