"""Protenix 2.0.0's inference featurizer as an oracle: a Protenix input JSON in, feature dicts out.

Runs in the oracle environment (built by `make oracle`), never in Foldline's:

    .venv-oracle/bin/python tests/oracle/protenix_features.py INPUT.json OUT_DIR [--seed S] [--all-msa-rows]
        [--use-rna-msa]

For every job of INPUT.json (a Protenix input: a list of {"name", "sequences", ...}; MSA files named by
`unpairedMsaPath` / `pairedMsaPath` / `msa.precomputed_msa_dir`) it writes `OUT_DIR/{name}.npz`:

- every entry of the `input_feature_dict` that Protenix's inference data loader gives the network
  (`protenix.data.inference.infer_dataloader.InferenceDataset`, the path of `runner/inference.py`), under
  its Protenix name, as a numpy array (`restype` one-hot [N_token, 32], `msa` [N_msa, N_token],
  `ref_pos` [N_atom, 3] after Protenix's per-`ref_space_uid` centring and random rotation/shift, ...);
- `atom_array.{annotation}` for each numeric or string annotation of Protenix's atom array, in Protenix's
  atom order (`atom_name`, `res_name`, `res_id`, `chain_id`, `element`, `mol_type`, ...), so callers can
  align atoms to their own order; `atom_array.ref_pos` is the reference conformer before centring and
  augmentation, `atom_array.coord` the atom coordinates Protenix holds (zeros at inference).

Options: `--seed` seeds Python, numpy and torch exactly as `runner/inference.py` does before featurizing
(default 101, Protenix's default seed); `--all-msa-rows` lifts the featurizer's cap of 16,384 MSA rows;
`--use-rna-msa` reads the RNA chains' MSAs, which Protenix's inference ignores by default. Other settings
are Protenix's inference defaults for `protenix_base_default_v1.0.0` (use_msa, no templates, paired MSA
rows also used as unpaired). A job that fails exits non-zero with its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path

import protenix_env

protenix_env.prepare()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from configs.configs_base import configs as configs_base  # noqa: E402
from configs.configs_data import data_configs  # noqa: E402
from configs.configs_inference import inference_configs  # noqa: E402
from configs.configs_model_type import model_configs  # noqa: E402
from protenix.config.config import parse_configs  # noqa: E402
from protenix.data.inference.infer_dataloader import InferenceDataset  # noqa: E402
from protenix.data.msa import msa_featurizer  # noqa: E402
from protenix.utils.seed import seed_everything  # noqa: E402

MODEL_NAME = "protenix_base_default_v1.0.0"


def _deep_update(base: dict, update: Mapping) -> dict:
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), Mapping):
            _deep_update(base[key], value)
        else:
            base[key] = value
    return base


def inference_configs_for(input_json: Path, dump_dir: Path, use_rna_msa: bool = False):
    """Protenix's inference configs, composed as `runner/inference.py` composes them."""
    merged = _deep_update(
        {**configs_base, "data": data_configs, **inference_configs}, model_configs[MODEL_NAME]
    )
    args = f"--model_name {MODEL_NAME} --input_json_path {input_json} --dump_dir {dump_dir}"
    args += f" --use_rna_msa {use_rna_msa}"
    return parse_configs(configs=merged, arg_str=args, fill_required_with_null=True)


def _as_numpy(value) -> np.ndarray | None:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufU":
        return value
    return None


def featurize(
    input_json: Path, out_dir: Path, seed: int, all_msa_rows: bool, use_rna_msa: bool = False
) -> list[Path]:
    """Write `{out_dir}/{job name}.npz` for every job of `input_json`; returns the files written."""
    if all_msa_rows:  # FeatureAssemblyLine(max_msa_size=16384, max_paired_per_species=600)
        msa_featurizer.FeatureAssemblyLine.__init__.__defaults__ = (sys.maxsize, 600)
    out_dir.mkdir(parents=True, exist_ok=True)
    dataset = InferenceDataset(configs=inference_configs_for(input_json, out_dir, use_rna_msa))
    written = []
    seed_everything(seed=seed, deterministic=False)
    for index in range(len(dataset)):
        data, atom_array, error = dataset[index]
        if error:
            raise RuntimeError(f"Protenix failed on job {data['sample_name']!r}: {error}")
        arrays = {}
        for name, value in data["input_feature_dict"].items():
            array = _as_numpy(value)
            if array is not None:
                arrays[name] = array
        for name in atom_array.get_annotation_categories():
            array = _as_numpy(np.asarray(atom_array.get_annotation(name)))
            if array is not None:
                arrays[f"atom_array.{name}"] = array
        arrays["atom_array.coord"] = np.asarray(atom_array.coord)
        out = out_dir / f"{data['sample_name']}.npz"
        tmp = out.with_name(f".{out.name}.tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(out)
        written.append(out)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input_json", type=Path, help="Protenix input JSON (a list of jobs)")
    parser.add_argument("out_dir", type=Path, help="folder for {job name}.npz")
    parser.add_argument("--seed", type=int, default=101, help="seed set before featurizing (default 101)")
    parser.add_argument("--all-msa-rows", action="store_true", help="keep every MSA row (no 16,384 cap)")
    parser.add_argument("--use-rna-msa", action="store_true", help="read RNA chains' MSAs (default: ignored)")
    args = parser.parse_args(argv)
    json.loads(args.input_json.read_text())  # a malformed file fails here, with its own message
    paths = featurize(args.input_json.resolve(), args.out_dir, args.seed, args.all_msa_rows, args.use_rna_msa)
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
