#!/usr/bin/env python
"""Inference benchmark: time and peak GPU memory of one full prediction (trunk, diffusion sampler,
confidence head, confidence metrics) on synthetic targets, against the Protenix anchors in SEED.md.

  .venv/bin/python bench/predict.py                      # base preset, 512 and 1024 tokens, 10/200/5
  .venv/bin/python bench/predict.py --tokens 2048 --preset base --cycles 10 --steps 200 --samples 5
  .venv/bin/python bench/predict.py --preset tiny --tokens 64 --cycles 1 --steps 5 --device cpu  # smoke

Random weights (no checkpoint): time and memory do not depend on the weights' values. Imports only
torch, numpy and h5py (the benchmark GPU lacks gemmi/rdkit/biotite). Prints one JSON line per
target and a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from model.data.constants import CHAIN_TYPES, MOL_TYPE_NAMES, RESTYPES  # noqa: E402
from model.device import resolve_device  # noqa: E402
from model.infer.predict import PredictSettings, predict_features  # noqa: E402

# Element symbols by atomic number, enough for synthetic targets (others print as "X").
ELEMENTS = {1: "H", 6: "C", 7: "N", 8: "O", 9: "F", 15: "P", 16: "S", 17: "CL", 34: "SE"}


def meta_from_features(feats: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The writer/scoring strings the synthetic features imply (what the featurizer stores as meta)."""
    chars = feats["ref_atom_name_chars"].cpu().numpy()
    names = ["".join(chr(int(c) + 32) for c in row).strip() for row in chars]
    elements = [ELEMENTS.get(int(z), "X") for z in feats["ref_element"].cpu().numpy()]
    restype = feats["restype"].cpu().numpy()
    asym = feats["asym_id"].cpu().numpy()
    mol_type = feats["mol_type"].cpu().numpy()
    n_chain = int(asym.max()) + 1
    chain_type = [
        MOL_TYPE_NAMES[int(mol_type[asym == c][0])] if (asym == c).any() else "protein"
        for c in range(n_chain)
    ]
    assert set(chain_type) <= set(CHAIN_TYPES)
    return {
        "token_res_name": np.array([RESTYPES[int(r)] for r in restype]),
        "atom_name": np.array(names),
        "atom_element": np.array(elements),
        "chain_name": np.array([f"C{c}" for c in range(n_chain)]),
        "chain_type": np.array(chain_type),
    }


def run(args: argparse.Namespace) -> list[dict]:
    from model.nn.network import Foldline, load_preset
    from model.nn.synthetic import synthetic_features

    device = resolve_device(args.device)
    torch.manual_seed(0)
    with torch.device(device):  # initialise on the GPU: 368 M parameters initialise slowly on CPU
        net = Foldline(load_preset(args.preset)).eval()
    n_param = sum(p.numel() for p in net.parameters())
    settings = PredictSettings(
        n_cycle=args.cycles, n_step=args.steps, n_sample=args.samples, seeds=(1,), precision=args.precision
    )
    rows = []
    for n_token in args.tokens:
        feats = synthetic_features(n_token, seed=0)
        meta = meta_from_features(feats)
        n_atom = int(feats["atom_to_token"].shape[0])
        if args.warmup:  # CUDA context, kernels and allocator warm; not timed
            warm = PredictSettings(
                n_cycle=1, n_step=2, n_sample=args.samples, seeds=(0,), precision=args.precision
            )
            predict_features(net, feats, meta, warm, device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        seeds, plan = predict_features(net, feats, meta, settings, device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        total = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        row = {
            "preset": args.preset,
            "n_param_M": round(n_param / 1e6, 2),
            "n_token": n_token,
            "n_atom": n_atom,
            "cycles": args.cycles,
            "steps": args.steps,
            "samples": args.samples,
            "seconds": round(total, 2),
            "stage_seconds": {k: round(v, 2) for k, v in seeds[0].seconds.items()},
            "peak_gib": round(peak, 2) if peak is not None else None,
            "precision": plan.as_dict(),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__,
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
        del feats, seeds
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="base")
    p.add_argument("--tokens", nargs="+", type=int, default=[512, 1024])
    p.add_argument("--cycles", type=int, default=10)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--samples", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--no-warmup", dest="warmup", action="store_false")
    p.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    rows = run(args)
    print(
        "\n| N_token | N_atom | cycles/steps/samples | time (s) | trunk / diffusion / confidence (s) |",
        end="",
    )
    print(" peak (GiB) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        st = r["stage_seconds"]
        print(
            f"| {r['n_token']} | {r['n_atom']} | {r['cycles']}/{r['steps']}/{r['samples']} | "
            f"{r['seconds']} | {st['trunk']} / {st['diffusion']} / {st['confidence']} | {r['peak_gib']} |"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
