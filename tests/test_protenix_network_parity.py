"""Foldline's network against Protenix 2.0.0's, run as an oracle in its own environment (`make oracle`).

Both networks hold the same random weights (Protenix's, no zero-initialised layer, loaded into Foldline
with `load_state_dict(strict=True)`) at small sizes (`SMALL_PRESET` in tests/oracle/protenix_network.py),
run in FP32 on CPU and see every MSA row. Two kinds of input:

- identical inputs: synthetic features (model/nn/synthetic.py, with MSA rows and templates) and the
  features Foldline's featurizer (scripts/build_features.py) makes of the shared inputs, converted to
  Protenix's format by tests/oracle/convert.py. Checked module by module (Protenix's captured inputs of
  its input embedder, template embedder, MSA module and first pairformer block through Foldline's
  module), as a whole trunk, and for one denoising step, the confidence head and the distogram from
  Protenix's trunk;
- each tool's own featurizer on the same Protenix JSON job (Protenix's: tests/oracle/protenix_features.py),
  Foldline given Protenix's reference-conformer positions (its random rotation): the trunk, and one
  denoising step, the confidence head and the distogram from each tool's own trunk.

Relative error is ‖a − b‖ / ‖b‖ over the whole tensor. Myoglobin + HEM (197 tokens, 837 MSA rows) is slow;
the full-size (`base`) run is tests/test_nn_protenix_parity.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import SHARED_DATA
from oracle import protenix_features, require_oracle
from oracle.convert import to_protenix_features
from oracle.protenix_network import SMALL_PRESET, protenix_args, run_oracle
from test_workflow_helpers import load_script

from model.data import store
from model.nn.config import load_preset, preset_names
from model.nn.network import Foldline, TrunkOutput
from model.nn.synthetic import synthetic_features

IDENTICAL_TOL = 1e-5  # same features into both networks: FP32 rounding only (measured <= 1e-6)
OWN_FEATURES_TOL = 1e-4  # issue #13's bar for each tool's own featurizer
CONFIDENCE = ("plddt_logits", "pae_logits", "pde_logits", "resolved_logits")
MYOGLOBIN = (
    "MVLSEGEWQLVLHVWAKVEADVAGHGQDILIRLFKSHPETLEKFDRFKHLKTEAEMKASEDLKKAGVTVLTALGAILKKKGHHEAELKPLAQSHATKH"
    "KIPIKYLEFISEAIIHVLHSRHPGNFGADAQGAMNKALELFRKDIAAKYKELGYQG"
)  # 102m
MYOGLOBIN_MSA = SHARED_DATA / "msa" / "102m_1"  # its real MSA (837 rows once featurized)


def _chain(kind: str, sequence: str, **extra) -> dict:
    return {kind: {"sequence": sequence, "count": 1, **extra}}


def _modified(kind: str, sequence: str, code: str, position: int) -> dict:
    keys = ("ptmType", "ptmPosition") if kind == "proteinChain" else ("modificationType", "basePosition")
    return _chain(kind, sequence, modifications=[dict(zip(keys, (f"CCD_{code}", position), strict=True))])


# The shared inputs, as Protenix JSON jobs both featurizers read: {name: (sequences, recycling cycles)}.
INPUTS: dict[str, tuple[list, int]] = {
    "trp_cage": ([_chain("proteinChain", "NLYIQWLKDGGPSSGRPPPS")], 2),
    "dna_duplex": ([_chain("dnaSequence", "CGCGAATTCGCG", count=2)], 1),
    "hydroxyproline": ([_modified("proteinChain", "GPPGPPGP", "HYP", 3)], 1),
    "selenomethionine": ([_modified("proteinChain", "MQIFVKTLTGK", "MSE", 1)], 1),
    "rna": ([_chain("rnaSequence", "GGCGCUUAGCGCC")], 1),
    "rna_psu": ([_modified("rnaSequence", "GGAUCCA", "PSU", 4)], 1),
    "myoglobin_hem": (
        [
            _chain(
                "proteinChain",
                MYOGLOBIN,
                msa={"precomputed_msa_dir": str(MYOGLOBIN_MSA), "pairing_db": "uniref100"},
            ),
            {"ligand": {"ligand": "CCD_HEM", "count": 1}},
        ],
        1,
    ),
}
SLOW_INPUTS = {"myoglobin_hem"}


@dataclass
class Case:
    """One input through both networks: Foldline's features and Protenix's outputs on the same input."""

    feats: dict[str, torch.Tensor]
    out: dict[str, torch.Tensor]
    atom_names: np.ndarray | None = None  # Foldline's atom order (meta), for own-featurizer cases
    protenix_atom_names: np.ndarray | None = None


def rel(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours.float() - theirs).norm() / theirs.norm())


def module_errors(net: Foldline, feats: dict, out: dict) -> dict[str, float]:
    """Foldline's input embedder, template embedder, MSA module and first pairformer block on Protenix's
    captured inputs (last recycling cycle), against Protenix's outputs."""
    errors = {"input_embedder": rel(net.input_embedder(feats), out["input_embedder.out"])}
    if "template_embedder.out" in out:
        update = net.template_embedder(feats, out["template_embedder.in.z"])
        errors["template_embedder"] = rel(update, out["template_embedder.out"])
    z = net.msa_module(feats, out["msa_module.in.z"], out["msa_module.in.s_inputs"])
    errors["msa_module"] = rel(z, out["msa_module.out"])
    s, z = net.pairformer_stack.blocks[0](out["pairformer_block0.in.s"], out["pairformer_block0.in.z"])
    errors["pairformer_block.s"] = rel(s, out["pairformer_block0.out.s"])
    errors["pairformer_block.z"] = rel(z, out["pairformer_block0.out.z"])
    return errors


def trunk_errors(trunk: TrunkOutput, out: dict) -> dict[str, float]:
    return {name: rel(getattr(trunk, name), out[name]) for name in ("s_inputs", "s", "z")}


def head_errors(net: Foldline, feats: dict, trunk: TrunkOutput, out: dict) -> dict[str, float]:
    """One denoising step (Protenix's x_noisy at three noise levels), the confidence head (on Protenix's
    first denoised sample) and the distogram from `trunk`, against Protenix's from its own trunk."""
    x = net.diffusion.denoise(out["x_noisy"], out["sigma"], net.diffusion.prepare(feats, trunk))
    errors = {"denoised": rel(x, out["x_denoised"])}
    confidence = net.confidence(feats, trunk, out["x_confidence"])
    errors |= {name: rel(confidence[name], out[name]) for name in CONFIDENCE}
    errors["distogram"] = rel(net.distogram(trunk.z), out["distogram"])
    return errors


def assert_within(errors: dict[str, float], tol: float) -> None:
    report = ", ".join(f"{name} {err:.1e}" for name, err in errors.items())
    assert all(err <= tol for err in errors.values()), f"relative errors above {tol:g}: {report}"


def synthetic_with_template_gaps() -> dict[str, torch.Tensor]:
    """Synthetic features of 12 tokens in 2 chains (72 atoms, 5 MSA rows, 2 templates with gaps)."""
    feats = synthetic_features(12, atoms_per_token=6, n_msa=5, n_templ=2, seed=2)
    feats["template_pseudo_beta_mask"][0, :3] = False
    feats["template_backbone_mask"][1, 5:8] = False
    return feats


def foldline_features(jobs: Path, names: list[str], workdir: Path) -> tuple[dict, dict]:
    """Foldline's features of every job, through the script the workflow's rule runs, loaded as
    scripts/predict.py loads them; and each one's atom names (Foldline's atom order)."""
    script = load_script("build_features")
    argv = ["--inputs", str(jobs), "--out-dir", str(workdir), "--failed-dir", str(workdir / "failed")]
    assert script.main([*argv, "--allowed-root", str(SHARED_DATA)]) == 0
    feats = {name: store.load_features(workdir / f"{name}.h5", groups=("token", "atom", "msa", "template"))
             for name in names}  # fmt: skip
    return feats, {name: store.load_meta(workdir / f"{name}.h5")["atom_name"] for name in names}


def _n_cycle(name: str) -> int:
    return INPUTS[name][1] if name in INPUTS else 2  # the synthetic case recycles twice


class ParityRuns:
    """Both networks on a group of cases, run once per group (one oracle process each)."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.tmp_path_factory = tmp_path_factory
        self.preset = tmp_path_factory.mktemp("preset") / "small.yaml"
        self.preset.write_text(yaml.safe_dump(SMALL_PRESET))
        self.groups: dict[str, tuple[Foldline, dict[str, Case]]] = {}

    def group(self, slow: bool) -> tuple[Foldline, dict[str, Case]]:
        key = "slow" if slow else "default"
        if key not in self.groups:
            names = [name for name in INPUTS if (name in SLOW_INPUTS) == slow]
            self.groups[key] = self._run(
                names, with_synthetic=not slow, workdir=self.tmp_path_factory.mktemp(key)
            )
        return self.groups[key]

    def _run(self, names: list[str], with_synthetic: bool, workdir: Path) -> tuple[Foldline, dict[str, Case]]:
        jobs = workdir / "jobs.json"
        jobs.write_text(json.dumps([{"name": name, "sequences": INPUTS[name][0]} for name in names]))
        feats, atom_names = foldline_features(jobs, names, workdir / "foldline")
        own_dir = workdir / "protenix_features"
        own = protenix_features(jobs, own_dir, all_msa_rows=True)
        if with_synthetic:
            feats["synthetic"] = synthetic_with_template_gaps()
        oracle_cases = {}
        for name, f in feats.items():
            path = workdir / f"{name}.foldline.npz"
            np.savez(path, **{key: value.numpy() for key, value in to_protenix_features(f).items()})
            n_cycle = _n_cycle(name)
            oracle_cases[name] = (path, n_cycle)
            if name in INPUTS:
                oracle_cases[f"{name}.own"] = (own_dir / f"{name}.npz", n_cycle)
        state_dict, outputs = run_oracle(self.preset, oracle_cases, workdir / "oracle")
        net = Foldline(load_preset(self.preset)).eval()
        net.load_state_dict(torch.load(state_dict, weights_only=True), strict=True)
        cases = {}
        for name, out in outputs.items():
            out = {key: torch.from_numpy(value) for key, value in out.items()}
            if name.endswith(".own"):
                base = name.removesuffix(".own")
                f = dict(feats[base])
                if f["ref_pos"].shape == own[base]["ref_pos"].shape:
                    f["ref_pos"] = torch.from_numpy(own[base]["ref_pos"])  # Protenix's random rotations
                cases[name] = Case(f, out, atom_names[base], own[base]["atom_array.atom_name"])
            else:
                cases[name] = Case(feats[name], out)
        return net, cases


@pytest.fixture(scope="module")
def parity_runs(tmp_path_factory: pytest.TempPathFactory) -> ParityRuns:
    require_oracle()
    return ParityRuns(tmp_path_factory)


def _case(parity_runs: ParityRuns, name: str) -> tuple[Foldline, Case]:
    net, cases = parity_runs.group(slow=name.removesuffix(".own") in SLOW_INPUTS)
    return net, cases[name]


def _slow(name: str):
    return pytest.param(name, marks=pytest.mark.slow) if name in SLOW_INPUTS else name


IDENTICAL_CASES = ["synthetic", *map(_slow, INPUTS)]


def test_protenix_config_expresses_the_released_sizes_and_refuses_others(tmp_path: Path) -> None:
    released = [name for name in preset_names() if name == "base" or name.startswith("protenix_")]
    assert released
    for name in released:
        assert f"--n_blocks {load_preset(name).pairformer.n_blocks} " in protenix_args(load_preset(name))
    small = tmp_path / "small.yaml"
    small.write_text(yaml.safe_dump(SMALL_PRESET))
    assert "--c_z 16 " in protenix_args(load_preset(small))
    with pytest.raises(ValueError, match="Protenix 2.0.0 fixes"):  # tiny: 2 heads, triangle 16, ...
        protenix_args(load_preset("tiny"))


@pytest.mark.parametrize("name", IDENTICAL_CASES)
def test_modules_match_protenix_on_its_captured_inputs(parity_runs: ParityRuns, name: str) -> None:
    net, case = _case(parity_runs, name)
    with torch.no_grad():
        errors = module_errors(net, case.feats, case.out)
    assert "template_embedder" in errors or name != "synthetic"  # the synthetic case has templates
    assert_within(errors, IDENTICAL_TOL)


@pytest.mark.parametrize("name", IDENTICAL_CASES)
def test_trunk_matches_protenix_on_identical_features(parity_runs: ParityRuns, name: str) -> None:
    net, case = _case(parity_runs, name)
    with torch.no_grad():
        trunk = net.run_trunk(case.feats, n_cycle=_n_cycle(name), dtype=torch.float32)
        errors = trunk_errors(trunk, case.out)
        errors["distogram"] = rel(net.distogram(trunk.z), case.out["distogram"])
    assert_within(errors, IDENTICAL_TOL)


@pytest.mark.parametrize("name", IDENTICAL_CASES)
def test_denoising_step_confidence_and_distogram_match_protenix(parity_runs: ParityRuns, name: str) -> None:
    net, case = _case(parity_runs, name)
    out = case.out
    with torch.no_grad():
        errors = head_errors(net, case.feats, TrunkOutput(out["s_inputs"], out["s"], out["z"]), out)
    assert_within(errors, IDENTICAL_TOL)


@pytest.mark.parametrize("name", list(map(_slow, INPUTS)))
def test_each_tools_own_featurizer_gives_the_same_network_outputs(parity_runs: ParityRuns, name: str) -> None:
    net, case = _case(parity_runs, f"{name}.own")
    names, own_names = case.atom_names, case.protenix_atom_names
    assert names.shape == own_names.shape and (names == own_names).all(), (
        f"atom order differs: Foldline {len(names)} atoms, Protenix {len(own_names)}"
    )
    with torch.no_grad():
        trunk = net.run_trunk(case.feats, n_cycle=_n_cycle(name), dtype=torch.float32)
        errors = trunk_errors(trunk, case.out) | head_errors(net, case.feats, trunk, case.out)
    assert_within(errors, OWN_FEATURES_TOL)
