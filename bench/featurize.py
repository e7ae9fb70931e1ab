"""Featurization throughput over the shared mmCIF entries and load time of a cached 768-token crop.

    .venv/bin/python bench/featurize.py [--mmcif-dir ../shared/data/mmcif] [--crop 768] [--repeats 20]

Per entry: parse (gemmi) + featurize (tokens, RDKit conformers, ground truth) + HDF5 write, on one
core (7zzx with its real MSA). Then the largest entry is cropped to `--crop` tokens (spatial crop)
and given an MSA of `--msa-rows` rows resampled from 7zzx's real MSA, stored, and loaded
`--repeats` times from the page cache with `store.load_features` (torch, one thread); the median
and best wall times and the median CPU time (process_time: what a busy shared machine inflates
least) are reported; finally `crop.load_crop` from the largest entries' files. Prints markdown.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.data import crop, store  # noqa: E402
from model.data.ccd import load_ccd  # noqa: E402
from model.data.features import featurize  # noqa: E402
from model.data.msa import MsaInput  # noqa: E402
from model.data.structure import parse_mmcif  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def crop_with_msa(
    features: dict, crop_size: int, msa: tuple[np.ndarray, np.ndarray], rows: int, seed: int
) -> dict:
    """Crop to `crop_size` tokens (spatial) and give the crop a `rows`-deep MSA made of real rows:
    column blocks of the real MSA `msa` (msa, deletions), each block cycling through the real rows
    from its own start, side by side until the crop's width. Real gap/insertion patterns and row
    order keep compression realistic."""
    cropped = crop.crop_features(features, crop_size, seed=seed, mode="spatial")
    rng = np.random.default_rng(seed)
    n_token = len(cropped["restype"])
    real_msa, real_del = msa
    blocks_msa, blocks_del, width = [], [], 0
    while width < n_token:
        # rows in the file's (e-value) order from a random start, as in a real deep MSA
        start = int(rng.integers(1, len(real_msa)))
        pick = np.r_[0, 1 + (start + np.arange(rows - 1)) % (len(real_msa) - 1)]
        blocks_msa.append(real_msa[pick])
        blocks_del.append(real_del[pick])
        width += real_msa.shape[1]
    cropped["msa"] = np.concatenate(blocks_msa, axis=1)[:, :n_token]
    cropped["deletion_matrix"] = np.concatenate(blocks_del, axis=1)[:, :n_token]
    return cropped


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mmcif-dir", default=str(SHARED / "mmcif"))
    parser.add_argument("--crop", type=int, default=768)
    parser.add_argument("--msa-rows", type=int, nargs="+", default=[1, 4096, 16384])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ccd = load_ccd()
    files = sorted(Path(args.mmcif_dir).glob("*.cif*"))
    rows, largest = [], None
    with tempfile.TemporaryDirectory() as tmp:
        start_all = time.perf_counter()
        for path in files:
            entry = path.name.split(".")[0]
            t0 = time.perf_counter()
            structure = parse_mmcif(path, ccd)
            t1 = time.perf_counter()
            msas = None
            if entry == "7zzx":
                folder = SHARED / "msa" / "7zzx_1"
                chain = str(structure.chain_name[0])
                msas = {chain: MsaInput.from_files(folder / "non_pairing.a3m", folder / "pairing.a3m")}
            result = featurize(structure, ccd, msas, seed=0, with_truth=True)
            t2 = time.perf_counter()
            attrs = {**result.attrs, "target_id": entry, "content_hash": "bench", "ccd_release": ccd.release}
            store.write_features(Path(tmp) / f"{entry}.h5", result.features, result.meta, attrs)
            t3 = time.perf_counter()
            n_token = len(result.features["restype"])
            rows.append((entry, n_token, len(result.features["atom_to_token"]), t1 - t0, t2 - t1, t3 - t2))
            if largest is None or n_token > len(largest["restype"]):
                largest = result.features
            if entry == "7zzx":
                real_msa = (result.features["msa"], result.features["deletion_matrix"])
        total = time.perf_counter() - start_all
        cpu = platform.processor() or platform.machine()
        print(f"## Featurization ({len(files)} shared mmCIF entries, {cpu}, {os.cpu_count()} cores)\n")
        print("| entry | tokens | atoms | parse s | featurize s | write s |")
        print("|---|---|---|---|---|---|")
        for entry, n_tok, n_atom, a, b, c in sorted(rows, key=lambda r: -(r[3] + r[4] + r[5]))[:10]:
            print(f"| {entry} | {n_tok} | {n_atom} | {a:.3f} | {b:.3f} | {c:.3f} |")
        print(f"\n**{len(files)} entries in {total:.1f} s: {len(files) / total:.2f} entries/s** "
              f"(slowest 10 shown; first entry includes RDKit/CCD warm-up)\n")  # fmt: skip

        print(f"## Load time of a cached {args.crop}-token crop (store.load_features, 1 thread)\n")
        print("| MSA rows | gzip | tokens | atoms | file MiB | median ms | best ms | median CPU ms |")
        print("|---|---|---|---|---|---|---|---|")
        for msa_rows, compress in [(n, True) for n in args.msa_rows] + [(max(args.msa_rows), False)]:
            cropped = crop_with_msa(largest, args.crop, real_msa, msa_rows, seed=0)
            path = Path(tmp) / f"crop_{msa_rows}_{compress}.h5"
            attrs = {"target_id": "crop", "content_hash": "bench", "featurizer_version": "1"}
            store.write_features(path, cropped, {}, {**attrs, "ccd_release": ccd.release}, compress=compress)
            store.load_features(path)  # page cache warm, as for a cached file
            times, cpu_times = [], []
            for _ in range(args.repeats):
                t0, c0 = time.perf_counter(), time.process_time()
                store.load_features(path)
                times.append(time.perf_counter() - t0)
                cpu_times.append(time.process_time() - c0)
            size = path.stat().st_size / 2**20
            n_tok, n_atom = len(cropped["restype"]), len(cropped["atom_to_token"])
            wall, best, cpu = (statistics.median(times), min(times), statistics.median(cpu_times))
            gz = "yes" if compress else "no"
            print(f"| {msa_rows} | {gz} | {n_tok} | {n_atom} | {size:.1f} | {wall * 1e3:.1f} | "
                  f"{best * 1e3:.1f} | {cpu * 1e3:.1f} |")  # fmt: skip

        print(f"\n## Crop while loading an entry's file (crop.load_crop, {args.crop} tokens, 1 thread)\n")
        print("| entry | tokens | file MiB | median ms | median CPU ms |")
        print("|---|---|---|---|---|")
        by_size = sorted(rows, key=lambda r: -r[1])
        for entry, n_tok, *_ in [by_size[0], by_size[len(by_size) // 8]]:
            path = Path(tmp) / f"{entry}.h5"
            times, cpu_times = [], []
            for seed in range(min(args.repeats, 5)):
                t0, c0 = time.perf_counter(), time.process_time()
                crop.load_crop(path, args.crop, seed=seed)
                times.append(time.perf_counter() - t0)
                cpu_times.append(time.process_time() - c0)
            size = path.stat().st_size / 2**20
            print(f"| {entry} | {n_tok} | {size:.1f} | {statistics.median(times) * 1e3:.0f} | "
                  f"{statistics.median(cpu_times) * 1e3:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
