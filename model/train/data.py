"""Training data: the feature store's training entries, AF3 filters and sampling weights, crops,
and a DataLoader whose order depends only on (seed, stage, example slot). Imports torch, numpy, h5py.

The pipeline (AF3 supplement §2.5):
1. `build_index(paths)` reads each file's attributes and token/truth arrays once and lists its
   chains and interfaces (chain pairs with resolved heavy atoms closer than 5 Å).
2. `apply_filters` drops entries by resolution, release date and chain count (§2.5.4).
3. `sampling_weights` gives each chain and interface its §2.5.1 weight from the cluster sizes of
   `model.train.clusters` (sequence clusters made on the CPU side before training).
4. `TrainDataset[slot]` draws one chain/interface by weight with a generator seeded by
   (seed, stage, slot), crops around it at `train_crop_size` (`model.data.crop`), gives each
   reference space a fresh random placement from that generator (AF3 Table 5 `ref_pos`,
   `model.data.reference_frame`) and derives the loss-only arrays (`aux`): frames, bonded-ligand
   atom pairs, symmetric-atom swaps.
Slot k of optimizer step t is k = t * global_batch + rank * grad_accum + micro, so the data order
is the same for any split of the global batch over processes, and a resumed run continues exactly.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from model.data import crop as crops
from model.data.constants import FRAME_ATOMS, MOL_LIGAND, MOL_PROTEIN, RESTYPES, THREE_TO_ONE_PROTEIN
from model.data.reference_frame import place_reference_spaces
from model.data.store import load_features, load_meta, read_attrs

INTERFACE_ATOM_CUTOFF = 5.0  # Å between resolved heavy atoms of two chains (AF3 §2.5.1)
# Chemically equivalent atoms that may swap in the ground truth (AF3 §4.2, atom permutation).
SYMMETRIC_ATOMS: dict[str, tuple[tuple[tuple[str, str], ...], ...]] = {
    "ASP": ((("OD1", "OD2"),),),
    "GLU": ((("OE1", "OE2"),),),
    "PHE": ((("CD1", "CD2"), ("CE1", "CE2")),),
    "TYR": ((("CD1", "CD2"), ("CE1", "CE2")),),
    "ARG": ((("NH1", "NH2"),),),
}
COLLINEAR_COS = math.cos(math.radians(25.0))  # ligand frames closer to a line than 25° are invalid


class TrainDataError(ValueError):
    """A training entry or index that cannot be used."""


@dataclass
class Chain:
    asym_id: int
    entity_id: int
    mol_class: str  # "protein", "nucleic" or "ligand" (AF3 §2.5.1 n_prot / n_nuc / n_ligand)
    sequence: str  # restype letters (polymers) or CCD codes joined by "." (ligands)
    cluster: str = ""


@dataclass
class Entry:
    path: str
    target_id: str
    n_token: int
    resolution: float | None
    release_date: str | None
    chains: list[Chain] = field(default_factory=list)
    interfaces: list[tuple[int, int]] = field(default_factory=list)  # asym_id pairs


def _mol_class(mol_type: int) -> str:
    return "ligand" if mol_type == MOL_LIGAND else ("protein" if mol_type == MOL_PROTEIN else "nucleic")


def _letter(restype: int) -> str:
    name = RESTYPES[restype]
    return THREE_TO_ONE_PROTEIN.get(name, "X" if name == "UNK" else name[-1])


def _chain_sequence(restype: np.ndarray, res_names: np.ndarray | None, mol_class: str) -> str:
    if mol_class == "ligand" and res_names is not None:
        return ".".join(dict.fromkeys(res_names.tolist()))
    return "".join(_letter(int(r)) for r in restype)


def index_entry(path: str | Path) -> Entry:
    """One training file's chains (with ≥ 1 resolved atom), interfaces and filter attributes."""
    path = Path(path)
    attrs = read_attrs(path)
    feats = load_features(path, groups=("token", "atom", "truth"))
    if "atom_pos" not in feats:
        raise TrainDataError(f"{path.name}: field atom_pos: no ground truth (not a training entry)")
    meta = load_meta(path)
    asym = feats["asym_id"].numpy()
    entity = feats["entity_id"].numpy()
    mol_type = feats["mol_type"].numpy()
    restype = feats["restype"].numpy()
    pos = feats["atom_pos"].numpy()
    resolved = feats["atom_resolved"].numpy() & np.isfinite(pos).all(-1)
    atom_asym = asym[feats["atom_to_token"].numpy()]
    names = meta.get("token_res_name")
    chains = []
    for a in np.unique(asym):
        tok = asym == a
        if not resolved[atom_asym == a].any():
            continue
        cls = _mol_class(int(np.bincount(mol_type[tok]).argmax()))
        seq = _chain_sequence(restype[tok], names[tok] if names is not None else None, cls)
        chains.append(Chain(int(a), int(entity[tok][0]), cls, seq))
    interfaces = []
    for i, ci in enumerate(chains):
        xi = pos[(atom_asym == ci.asym_id) & resolved]
        for cj in chains[i + 1 :]:
            xj = pos[(atom_asym == cj.asym_id) & resolved]
            if _min_distance(xi, xj) < INTERFACE_ATOM_CUTOFF:
                interfaces.append((ci.asym_id, cj.asym_id))
    resolution = attrs.get("resolution")
    resolution = float(resolution) if resolution not in (None, "") else None
    release = attrs.get("release_date") or None
    target_id = str(attrs.get("target_id", path.stem))
    return Entry(str(path), target_id, len(asym), resolution, release, chains, interfaces)


def _min_distance(a: np.ndarray, b: np.ndarray, block: int = 2048) -> float:
    """Smallest distance between point sets a [N, 3] and b [M, 3], in row blocks."""
    if len(a) == 0 or len(b) == 0:
        return math.inf
    # cheap reject: bounding boxes further apart than the cutoff cannot touch
    gap = np.maximum(0.0, np.maximum(a.min(0) - b.max(0), b.min(0) - a.max(0)))
    if np.linalg.norm(gap) >= INTERFACE_ATOM_CUTOFF:
        return math.inf
    best = math.inf
    for lo in range(0, len(a), block):
        d = np.linalg.norm(a[lo : lo + block, None, :] - b[None, :, :], axis=-1)
        best = min(best, float(d.min()))
    return best


def build_index(paths: list[str | Path]) -> list[Entry]:
    """Index every file (sorted by path, so the index is independent of listing order)."""
    return [index_entry(p) for p in sorted(map(str, paths))]


def save_index(entries: list[Entry], path: str | Path) -> None:
    from model.fileio import write_json

    write_json(path, {"entries": [asdict(e) for e in entries]}, indent=2, sort_keys=True)


def load_index(path: str | Path) -> list[Entry]:
    with open(path) as f:
        doc = json.load(f)
    out = []
    for e in doc["entries"]:
        chains = [Chain(**c) for c in e.pop("chains")]
        interfaces = [tuple(p) for p in e.pop("interfaces")]
        out.append(Entry(**e, chains=chains, interfaces=interfaces))
    return out


def feature_files(spec: str | Path | list) -> list[Path]:
    """The training files named by `spec`: a folder (its *.h5), a file listing paths (one a line),
    one .h5 file, or a list of any of these."""
    if isinstance(spec, list | tuple):
        return sorted({p for s in spec for p in feature_files(s)})
    p = Path(spec)
    if p.is_dir():
        files = sorted(p.glob("*.h5"))
    elif p.suffix == ".h5":
        files = [p]
    elif p.is_file():
        files = [Path(line.strip()) for line in p.read_text().splitlines() if line.strip()]
    else:
        raise TrainDataError(f"features {spec}: not a folder, .h5 file or list file")
    if not files:
        raise TrainDataError(f"features {spec}: no .h5 files")
    return files


def apply_filters(entries: list[Entry], filters: dict) -> tuple[list[Entry], list[tuple[str, str]]]:
    """AF3 §2.5.4 filters. Missing attributes pass (NMR has no resolution). Returns (kept, dropped
    as (target_id, reason))."""
    kept, dropped = [], []
    for e in entries:
        reason = None
        if e.resolution is not None and e.resolution > float(filters["max_resolution"]):
            reason = f"resolution {e.resolution} > {filters['max_resolution']}"
        elif e.release_date and str(e.release_date) > str(filters["release_date_cutoff"]):
            reason = f"release_date {e.release_date} after {filters['release_date_cutoff']}"
        elif len(e.chains) > int(filters["max_chains"]):
            reason = f"{len(e.chains)} chains > {filters['max_chains']}"
        elif not e.chains:
            reason = "no resolved chain"
        (dropped.append((e.target_id, reason)) if reason else kept.append(e))
    return kept, dropped


def exact_clusters(entries: list[Entry]) -> None:
    """Fallback clustering by identical sequence (when no cluster table is given); in place."""
    for e in entries:
        for c in e.chains:
            c.cluster = c.cluster or f"{c.mol_class}:{c.sequence}"


def sampling_weights(entries: list[Entry], cfg: dict) -> tuple[list[tuple[int, tuple[int, ...]]], np.ndarray]:
    """Every chain and interface with its AF3 §2.5.1 weight.

    chain: w = beta_chain / N_clust * (a_prot n_prot + a_nuc n_nuc + a_lig n_lig);
    interface: w = beta_interface / N_clust(pair of clusters) * (sum over both chains).
    Returns (units as (entry index, (asym,) or (asym_i, asym_j)), probabilities [N_unit]).
    """
    alpha = {"protein": cfg["alpha_prot"], "nucleic": cfg["alpha_nuc"], "ligand": cfg["alpha_ligand"]}
    chain_count: dict[str, int] = {}
    pair_count: dict[tuple[str, str], int] = {}
    for e in entries:
        by_asym = {c.asym_id: c for c in e.chains}
        for c in e.chains:
            chain_count[c.cluster] = chain_count.get(c.cluster, 0) + 1
        for i, j in e.interfaces:
            key = tuple(sorted((by_asym[i].cluster, by_asym[j].cluster)))
            pair_count[key] = pair_count.get(key, 0) + 1
    units, weights = [], []
    for k, e in enumerate(entries):
        by_asym = {c.asym_id: c for c in e.chains}
        for c in e.chains:
            units.append((k, (c.asym_id,)))
            weights.append(cfg["beta_chain"] / chain_count[c.cluster] * alpha[c.mol_class])
        for i, j in e.interfaces:
            ci, cj = by_asym[i], by_asym[j]
            key = tuple(sorted((ci.cluster, cj.cluster)))
            n_mol = alpha[ci.mol_class] + alpha[cj.mol_class]
            weights.append(cfg["beta_interface"] / pair_count[key] * n_mol)
            units.append((k, (i, j)))
    w = np.asarray(weights, dtype=np.float64)
    if len(w) == 0 or w.sum() <= 0:
        raise TrainDataError("training set: no chain or interface to sample (empty after filters?)")
    return units, w / w.sum()


def atom_names(ref_atom_name_chars: np.ndarray) -> np.ndarray:
    """Decode `ref_atom_name_chars` [A, 4] (ord(c) - 32) into names [A] (str)."""
    chars = np.asarray(ref_atom_name_chars, dtype=np.int64) + 32
    return np.array(["".join(map(chr, row)).strip() for row in chars])


def token_frames(feats: dict[str, np.ndarray], names: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PAE frames (AF3 §4.3.2, Algorithm 29): atom triplets (a, b, c) with b the origin, per token.

    Polymer residues: N-CA-C (protein) or C1'-C3'-C4' (nucleic acids). Single-atom tokens (ligands,
    ions, atomised residues): the atom with its two nearest resolved single-atom tokens of the
    same chain, invalid if fewer or nearly collinear. Returns (frame_atoms [T, 3], frame_mask [T]).
    """
    atom_to_token = feats["atom_to_token"]
    n_token = len(feats["asym_id"])
    center = feats["token_center_atom"]
    pos = feats["atom_pos"]
    resolved = feats["atom_resolved"] & np.isfinite(pos).all(-1)
    frames = np.repeat(center[:, None], 3, axis=1).astype(np.int64)
    mask = np.zeros(n_token, dtype=bool)
    counts = np.bincount(atom_to_token, minlength=n_token)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    single = counts == 1
    for t in np.flatnonzero(~single):
        wanted = FRAME_ATOMS.get(int(feats["mol_type"][t]))
        if wanted is None:
            continue
        local = {names[i]: i for i in range(starts[t], starts[t] + counts[t])}
        if all(n in local for n in wanted):
            frames[t] = [local[n] for n in wanted]
            mask[t] = bool(resolved[frames[t]].all())
    asym = feats["asym_id"]
    for a in np.unique(asym[single]):
        toks = np.flatnonzero(single & (asym == a) & resolved[center])
        if len(toks) < 3:
            continue
        xyz = pos[center[toks]]
        d = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
        np.fill_diagonal(d, np.inf)
        near = np.argsort(d, axis=1, kind="stable")[:, :2]
        for row, t in enumerate(toks):
            i, j = near[row]
            u, v = xyz[i] - xyz[row], xyz[j] - xyz[row]
            cos = abs(float(u @ v)) / max(float(np.linalg.norm(u) * np.linalg.norm(v)), 1e-8)
            frames[t] = [center[toks[i]], center[t], center[toks[j]]]
            mask[t] = cos < COLLINEAR_COS
    return frames, mask


def symmetric_swaps(feats: dict[str, np.ndarray], names: np.ndarray) -> np.ndarray:
    """Swappable atom pairs of symmetric residues [P, 3] = (group, atom_i, atom_j); a group swaps
    all its pairs together (e.g. PHE CD1/CD2 with CE1/CE2)."""
    rows = []
    atom_to_token = feats["atom_to_token"]
    counts = np.bincount(atom_to_token, minlength=len(feats["asym_id"]))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    group = 0
    for t, r in enumerate(feats["restype"]):
        groups = SYMMETRIC_ATOMS.get(RESTYPES[int(r)]) if feats["mol_type"][t] == MOL_PROTEIN else None
        if not groups:
            continue
        local = {names[i]: i for i in range(starts[t], starts[t] + counts[t])}
        for pairs in groups:
            if all(a in local and b in local for a, b in pairs):
                rows.extend((group, local[a], local[b]) for a, b in pairs)
                group += 1
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


def ligand_bond_pairs(
    feats: dict[str, np.ndarray],
    atom_bonds: np.ndarray | None,
    is_link: np.ndarray | None,
    atom_idx: np.ndarray,
) -> np.ndarray:
    """Bonded-ligand atom pairs for the bond loss (AF3 eq. 5): inter-residue covalent bonds
    (`atom_bond_is_link`, e.g. a glycan or a covalent ligand to its residue) with at least one atom
    in a ligand token, both atoms inside the crop. `atom_bonds` [B, 2] are the uncropped file's atom
    indices, `atom_idx` the kept original atoms. Returns [P, 2] crop atom indices."""
    if atom_bonds is None or is_link is None or len(atom_bonds) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    links = np.asarray(atom_bonds, dtype=np.int64)[np.asarray(is_link, dtype=bool)]
    new = np.full(int(max(atom_idx.max(initial=0), links.max(initial=0))) + 1, -1, dtype=np.int64)
    new[atom_idx] = np.arange(len(atom_idx))
    pairs = new[links].reshape(-1, 2)
    pairs = pairs[(pairs >= 0).all(1)]
    lig = feats["mol_type"][feats["atom_to_token"][pairs]] == MOL_LIGAND
    return pairs[lig.any(1)]


def slot_rng(seed: int, stage_index: int, slot: int) -> np.random.Generator:
    """The generator of one example slot: the same for any process layout and after a resume."""
    return np.random.default_rng([int(seed), int(stage_index), int(slot)])


def load_example(
    entry: Entry, crop_size: int, rng: np.random.Generator, unit: tuple[int, ...] | None
) -> dict:
    """One entry cropped to `crop_size` tokens: contiguous, or spatial around the sampled chain or
    interface `unit` (AF3 §2.7, mode by Table 4's weights), each reference space of the crop placed
    anew from `rng` (centred, shifted, rotated), plus the loss-only `aux` arrays.

    Returns {"feats": contract features (torch), "aux": frame_atoms [T, 3], frame_mask [T],
    bond_pairs [P, 2], swap_pairs [Q, 3], "target_id"}.
    """
    feats = {k: v.numpy() for k, v in load_features(entry.path).items()}
    meta = load_meta(entry.path)
    feats["atom_pos"] = np.nan_to_num(feats["atom_pos"], nan=0.0)
    mode = crops.CROP_MODES[int(rng.choice(3, p=np.asarray(crops.CROP_WEIGHTS["weighted_pdb"])))]
    n_token = len(feats["asym_id"])
    if n_token <= crop_size:
        token_idx = np.arange(n_token)
    elif mode == "contiguous" or unit is None:
        token_idx = crops.contiguous_crop(feats, crop_size, rng)
    else:
        resolved_centre = feats["atom_resolved"][feats["token_center_atom"]]
        in_unit = np.isin(feats["asym_id"], unit) & resolved_centre
        if len(unit) == 2 and mode == "spatial_interface":
            iface = crops.interface_tokens(feats)
            candidates = np.intersect1d(iface, np.flatnonzero(in_unit))
        else:
            candidates = np.flatnonzero(in_unit)
        if len(candidates) == 0:
            candidates = None
        token_idx = crops.spatial_crop(feats, crop_size, rng, candidates)
    atom_idx = np.flatnonzero(np.isin(feats["atom_to_token"], token_idx))
    cropped = crops.apply_crop(feats, token_idx)
    cropped["ref_pos"] = place_reference_spaces(cropped["ref_pos"], cropped["ref_space_uid"], rng)
    names = atom_names(cropped["ref_atom_name_chars"])
    frames, frame_mask = token_frames(cropped, names)
    aux = {
        "frame_atoms": frames,
        "frame_mask": frame_mask,
        "bond_pairs": ligand_bond_pairs(
            cropped, meta.get("atom_bonds"), meta.get("atom_bond_is_link"), atom_idx
        ),
        "swap_pairs": symmetric_swaps(cropped, names),
    }
    return {
        "feats": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in cropped.items()},
        "aux": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in aux.items()},
        "target_id": entry.target_id,
    }


class TrainDataset(torch.utils.data.Dataset):
    """Map-style dataset over example slots (an unbounded index): slot -> one cropped example.

    Returns {"feats": contract features as torch tensors, "aux": loss-only arrays, "target_id"}.
    """

    def __init__(self, entries: list[Entry], cfg: dict, crop_size: int | None = None):
        if not entries:
            raise TrainDataError("training set: no entries")
        self.entries = entries
        self.cfg = cfg
        self.crop_size = int(crop_size or cfg["train_crop_size"])
        self.units, self.probs = sampling_weights(entries, cfg["sampling"])

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, slot: int) -> dict:
        rng = slot_rng(self.cfg["seed"], self.cfg["stage_index"], slot)
        k, unit = self.units[int(rng.choice(len(self.units), p=self.probs))]
        out = load_example(self.entries[k], self.crop_size, rng, unit)
        out["slot"] = int(slot)
        return out


class SlotSampler(torch.utils.data.Sampler):
    """Example slots of one rank from optimizer step `start_step` on, without end.

    Step t, rank r, micro-step m -> slot (t * world + r) * accum + m, i.e. the global batch of
    step t is the slots [t * G, (t + 1) * G) with G = world * accum, whatever the split."""

    def __init__(self, start_step: int, rank: int, world: int, accum: int):
        self.start_step, self.rank, self.world, self.accum = start_step, rank, world, accum

    def __iter__(self):
        step = self.start_step
        while True:
            base = (step * self.world + self.rank) * self.accum
            yield from range(base, base + self.accum)
            step += 1


def make_loader(
    dataset: TrainDataset, start_step: int, rank: int, world: int, accum: int, num_workers: int, prefetch: int
) -> torch.utils.data.DataLoader:
    """Background workers (persistent, prefetching) so loading and cropping overlap the GPU step."""
    kwargs = {}
    if num_workers > 0:
        kwargs = {"persistent_workers": True, "prefetch_factor": max(1, prefetch)}
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        sampler=SlotSampler(start_step, rank, world, accum),
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        **kwargs,
    )


def validation_example(entry: Entry, cfg: dict) -> dict:
    """A held-out entry cropped deterministically (spatial crop around a fixed seed) for validation."""
    rng = np.random.default_rng([int(cfg["seed"]), 999_999])
    return load_example(entry, int(cfg["train_crop_size"]), rng, None)


def read_cluster_table(path: str | Path, entries: list[Entry]) -> None:
    """Set `Chain.cluster` from a TSV (target_id, asym_id, cluster) written by model.train.clusters."""
    table: dict[tuple[str, int], str] = {}
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            target, asym, cluster = line.rstrip("\n").split("\t")[:3]
            table[(target, int(asym))] = cluster
    for e in entries:
        for c in e.chains:
            c.cluster = table.get((e.target_id, c.asym_id), "")
    exact_clusters(entries)  # chains absent from the table get their own sequence cluster
