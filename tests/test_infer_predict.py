"""End to end on CPU with the tiny preset: real PDB entries -> features -> scripts/predict.py.

Checks every output file, that each model.cif re-reads with gemmi with exactly the input's chains,
polymer sequences (from the source file's _entity_poly_seq) and ligand atoms/elements, confidence
shapes and ranges, that seeds differ and a rerun is identical, and that a bad target fails alone.
"""

from __future__ import annotations

import csv
import importlib.util
import json

import gemmi
import numpy as np
import pytest
from conftest import MMCIF_DIR, REPO

# protein; RNA; protein + ligands; DNA + depsipeptide + ion + ligands with covalent links
ENTRIES = ["1l2y", "1rna", "5i55", "1pfe"]
SEEDS = [1, 2]
SAMPLES = 2


def _predict_main():
    spec = importlib.util.spec_from_file_location("predict_script", REPO / "scripts" / "predict.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from model.data import store
    from model.data.ccd import load_ccd
    from model.data.features import featurize
    from model.data.structure import parse_mmcif

    root = tmp_path_factory.mktemp("predict")
    ccd = load_ccd()
    paths, structures = [], {}
    for pid in ENTRIES:
        st = parse_mmcif(next(MMCIF_DIR.glob(f"{pid}.cif*")), ccd, assembly=None)
        fz = featurize(st, ccd, None, None, seed=0)
        attrs = {"target_id": pid, "content_hash": pid, "ccd_release": ccd.release, **fz.attrs}
        paths.append(str(store.write_features(root / "features" / f"{pid}.h5", fz.features, fz.meta, attrs)))
        structures[pid] = st
    bad = root / "features" / "broken.h5"
    bad.write_bytes(b"not an hdf5 file")
    main = _predict_main()
    common = ["--checkpoint", "none", "--preset", "tiny", "--samples", str(SAMPLES), "--steps", "2",
              "--cycles", "1", "--device", "cpu", "--precision", "auto", "--trunk-per-seed"]  # fmt: skip
    argv = ["--features", *paths[:2], str(bad), *paths[2:], "--out-dir", str(root / "pred"),
            "--failed-dir", str(root / "failed"), "--seeds", *map(str, SEEDS), "--done", str(root / "done"),
            *common]  # fmt: skip
    rc = main(argv)
    rerun = ["--features", paths[0], "--out-dir", str(root / "rerun"), "--failed-dir", str(root / "failed2"),
             "--seeds", "1", *common]  # fmt: skip
    rc_rerun = main(rerun)
    return {"root": root, "rc": rc, "rc_rerun": rc_rerun, "structures": structures, "paths": paths,
            "common": common}  # fmt: skip


def source(pid: str) -> gemmi.Structure:
    st = gemmi.read_structure(str(next(MMCIF_DIR.glob(f"{pid}.cif*"))))
    st.setup_entities()
    st.remove_waters()
    return st


def test_shard_runs_and_bad_target_fails_alone(run):
    root = run["root"]
    assert run["rc"] == 0 and (root / "done").is_file()
    failed = sorted(p.name for p in (root / "failed").iterdir())
    assert failed == ["broken.txt"]
    note = (root / "failed" / "broken.txt").read_text()  # one line naming the target first, as every stage's
    assert note.startswith("target broken: ") and note.count("\n") == 1
    assert sorted(p.name for p in (root / "pred").iterdir()) == sorted(ENTRIES)


@pytest.mark.parametrize("pid", ENTRIES)
def test_every_file_is_written(run, pid):
    folder = run["root"] / "pred" / pid
    for name in (f"{pid}_model.cif", f"{pid}_confidences.json", f"{pid}_summary_confidences.json",
                 "ranking_scores.csv", "pae.png", "provenance.json"):  # fmt: skip
        assert (folder / name).is_file(), name
    for seed in SEEDS:
        for k in range(SAMPLES):
            for name in ("model.cif", "confidences.json", "summary_confidences.json"):
                assert (folder / f"seed-{seed}_sample-{k}" / name).is_file()
    assert not list(folder.rglob("*.tmp"))
    prov = json.loads((folder / "provenance.json").read_text())
    assert prov["checkpoint"] is None and prov["settings"]["seeds"] == SEEDS and prov["code_version"]
    rows = list(csv.DictReader((folder / "ranking_scores.csv").open()))
    assert len(rows) == len(SEEDS) * SAMPLES
    best = prov["best"]
    score = {(int(r["seed"]), int(r["sample"])): float(r["ranking_score"]) for r in rows}
    assert score[best["seed"], best["sample"]] == max(score.values())  # ties possible with random weights
    best_cif = (folder / f"seed-{best['seed']}_sample-{best['sample']}" / "model.cif").read_text()
    assert (folder / f"{pid}_model.cif").read_text() == best_cif


@pytest.mark.parametrize("pid", ENTRIES)
def test_model_cif_matches_the_input(run, pid):
    src = source(pid)
    st = run["structures"][pid]
    for seed in SEEDS:
        path = run["root"] / "pred" / pid / f"seed-{seed}_sample-0" / "model.cif"
        out = gemmi.read_structure(str(path))
        out.setup_entities()
        # chains: exactly the source's non-water label_asym_ids, in the input structure's order
        got_chains = [s.subchain_id() for s in out[0].subchains()]
        assert sorted(got_chains) == sorted(s.subchain_id() for s in src[0].subchains())
        assert got_chains == list(st.chain_name)
        for ent in src.entities:
            if ent.entity_type == gemmi.EntityType.Polymer:
                seq = [m.split(",")[0] for m in ent.full_sequence]  # first of microheterogeneity
                if ent.polymer_type == gemmi.PolymerType.PeptideL:  # MSE is read as MET (AF3 §2.1)
                    seq = ["MET" if name == "MSE" else name for name in seq]
                for sub in ent.subchains:
                    assert [r.name for r in out[0].get_subchain(sub)] == seq, (pid, sub)
            elif ent.entity_type != gemmi.EntityType.Water:
                for sub in ent.subchains:
                    src_atoms = {(a.name, a.element.name) for r in src[0].get_subchain(sub) for a in r}
                    src_atoms = {x for x in src_atoms if x[1] not in ("H", "D")}
                    got = {(a.name, a.element.name) for r in out[0].get_subchain(sub) for a in r}
                    assert src_atoms <= got, (pid, sub, src_atoms - got)  # every observed ligand atom
                    chain = list(st.chain_name).index(sub)
                    lo, hi = (
                        st.res_atom_start[st.chain_res_start[chain]],
                        st.res_atom_end[st.chain_res_end[chain] - 1],
                    )
                    assert sorted(n for n, _ in got) == sorted(st.atom_name[lo:hi]), (pid, sub)
        # bonds inside CCD ligands carry the CCD's orders (no unknown '?')
        orders = gemmi.cif.read(str(path)).sole_block().find_values("_chem_comp_bond.value_order")
        assert set(orders) <= {"SING", "DOUB", "TRIP"}
        b = np.array([cra.atom.b_iso for cra in out[0].all()])
        conf = json.loads(path.with_name("confidences.json").read_text())
        assert np.allclose(b, conf["atom_plddts"], atol=0.011)
        assert len(b) == st.num_atoms


@pytest.mark.parametrize("pid", ENTRIES)
def test_confidence_shapes_and_ranges(run, pid):
    st = run["structures"][pid]
    sub = run["root"] / "pred" / pid / "seed-1_sample-0"
    conf = json.loads((sub / "confidences.json").read_text())
    n_token = len(conf["token_chain_ids"])
    assert len(conf["atom_plddts"]) == len(conf["atom_chain_ids"]) == st.num_atoms
    for key in ("pae", "pde", "contact_probs"):
        assert np.array(conf[key]).shape == (n_token, n_token)
    assert 0 <= min(conf["atom_plddts"]) and max(conf["atom_plddts"]) <= 100
    assert np.array(conf["pae"]).min() >= 0 and np.array(conf["pae"]).max() <= 32
    assert 0 <= np.array(conf["contact_probs"]).min() and np.array(conf["contact_probs"]).max() <= 1
    assert set(conf["token_chain_ids"]) == set(st.chain_name)
    summary = json.loads((sub / "summary_confidences.json").read_text())
    n_chain = len(st.chain_name)
    assert np.array(summary["chain_pair_iptm"]).shape == (n_chain, n_chain)
    assert len(summary["chain_ptm"]) == n_chain and 0 <= summary["ptm"] <= 1
    assert (summary["iptm"] is None) == (n_chain == 1)
    assert summary["has_clash"] in (0.0, 1.0) and 0 <= summary["fraction_disordered"] <= 1


def test_seeds_differ_and_reruns_are_identical(run):
    root = run["root"]
    a = (root / "pred" / "1l2y" / "seed-1_sample-0" / "model.cif").read_text()
    b = (root / "pred" / "1l2y" / "seed-2_sample-0" / "model.cif").read_text()
    assert a != b
    assert run["rc_rerun"] == 0
    assert (root / "rerun" / "1l2y" / "seed-1_sample-0" / "model.cif").read_text() == a


def test_unchanged_targets_keep_their_prediction(run, capsys):
    """--reuse-unchanged (the workflow's shard jobs) predicts only what changed since the last run."""
    root, main = run["root"], _predict_main()
    out = root / "reuse"
    argv = ["--features", *run["paths"][:2], "--out-dir", str(out), "--failed-dir", str(root / "failed3"),
            "--seeds", "1", *run["common"], "--reuse-unchanged"]  # fmt: skip
    assert main(argv) == 0
    first = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(argv) == 0
    assert "0 predicted, 2 unchanged, 0 failed" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == first

    (out / "1rna" / "provenance.json").unlink()  # as if a killed job left 1rna unfinished
    assert main(argv) == 0
    assert "1 predicted, 1 unchanged, 0 failed" in capsys.readouterr().out
    fewer = [*argv, "--samples", "1"]  # a changed setting re-predicts, and old sample folders go
    assert main(fewer) == 0
    assert "2 predicted, 0 unchanged" in capsys.readouterr().out
    assert not (out / "1l2y" / "seed-1_sample-1").exists() and (out / "1l2y" / "seed-1_sample-0").is_dir()
    assert main(fewer) == 0
    assert "0 predicted, 2 unchanged" in capsys.readouterr().out


def _synthetic_target(n_token: int = 16):
    import torch

    from model.nn.network import Foldline, load_preset
    from model.nn.synthetic import synthetic_features

    torch.manual_seed(0)
    net = Foldline(load_preset("tiny")).eval()
    feats = synthetic_features(n_token, n_msa=8, n_templ=1, seed=0, with_truth=False)
    spec = importlib.util.spec_from_file_location("bench_predict", REPO / "bench" / "predict.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return net, feats, bench.meta_from_features(feats)


def test_sample_chunking_matches_the_batched_sampler():
    import torch

    from model.infer.predict import PredictSettings, predict_features

    net, feats, meta = _synthetic_target()
    cpu = torch.device("cpu")
    runs = [
        predict_features(net, feats, meta, PredictSettings(1, 3, 3, (5,), sample_chunk=chunk), cpu)
        for chunk in ("auto", 1)
    ]
    (batched, plan_a), (single, plan_b) = runs
    assert (plan_a.sample_chunk, plan_b.sample_chunk) == (3, 1)
    assert np.allclose(batched[0].coords, single[0].coords, atol=1e-3)


def test_bf16_regime_runs_end_to_end():
    import torch

    from model.infer.predict import PredictSettings, predict_features

    net, feats, meta = _synthetic_target()
    settings = PredictSettings(1, 2, 2, (1,), precision="bf16", trunk_precision="bf16", pair_chunk=4)
    out, plan = predict_features(net, feats, meta, settings, torch.device("cpu"))
    assert plan.sampler == plan.confidence == plan.trunk == torch.bfloat16 and plan.pair_chunk == 4
    conf = out[0].confidences
    assert out[0].coords.dtype == np.float32 and np.isfinite(out[0].coords).all()
    assert (
        np.isfinite(conf["pae"]).all() and ((0 <= conf["atom_plddts"]) & (conf["atom_plddts"] <= 100)).all()
    )


def _predict_counting_trunks(net, feats, meta, seeds, trunk_per_seed):
    """predict_features with `seeds`, and how many times it ran the trunk."""
    import torch

    from model.infer.predict import PredictSettings, predict_features

    runs = []
    trunk = net.run_trunk

    def counted(*args, **kwargs):
        runs.append(1)
        return trunk(*args, **kwargs)

    net.run_trunk = counted
    try:
        settings = PredictSettings(1, 2, 1, tuple(seeds), trunk_per_seed=trunk_per_seed)
        out, _ = predict_features(net, feats, meta, settings, torch.device("cpu"))
    finally:
        del net.run_trunk
    return out, len(runs)


def test_trunk_runs_once_per_target_when_it_does_not_vary_with_the_seed():
    """MSA rows not sampled at inference: the trunk is the same for every seed, so 3 seeds run it once
    and give what 3 separate single-seed predictions give."""
    net, feats, meta = _synthetic_target(8)
    net.cfg.msa.sample_at_inference = False
    shared, n_trunks = _predict_counting_trunks(net, feats, meta, (1, 2, 3), trunk_per_seed=True)
    assert n_trunks == 1
    (third_alone,), _ = _predict_counting_trunks(net, feats, meta, (3,), trunk_per_seed=True)
    assert np.array_equal(shared[2].coords, third_alone.coords)
    assert all(np.array_equal(shared[2].confidences[k], v) for k, v in third_alone.confidences.items())
    assert not np.array_equal(shared[0].coords, shared[1].coords)  # seeds still vary the diffusion


def test_trunk_per_seed_switch_with_msa_rows_sampled_per_seed():
    """MSA rows sampled per seed: the switch on runs the trunk per seed (3 runs, each seed as if
    alone); off, once with the first seed, whose prediction is unchanged, while the later seeds lose
    their own MSA sample."""
    from model.nn.synthetic import randomize_parameters

    net, feats, meta = _synthetic_target(8)
    randomize_parameters(net)  # a fresh MSA module is the identity: no row sample would show
    assert net.cfg.msa.sample_at_inference
    per_seed, n_per_seed = _predict_counting_trunks(net, feats, meta, (1, 2, 3), trunk_per_seed=True)
    shared, n_shared = _predict_counting_trunks(net, feats, meta, (1, 2, 3), trunk_per_seed=False)
    assert (n_per_seed, n_shared) == (3, 1)
    (second_alone,), _ = _predict_counting_trunks(net, feats, meta, (2,), trunk_per_seed=True)
    assert np.array_equal(per_seed[1].coords, second_alone.coords)
    assert np.array_equal(shared[0].coords, per_seed[0].coords)
    assert not np.array_equal(shared[1].coords, per_seed[1].coords)


def test_device_names_resolve_or_fail_at_start_up():
    import torch

    from model.device import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(RuntimeError, match="cuda:"):
        resolve_device(f"cuda:{visible}")  # one past the last card this process sees
    if visible:
        assert resolve_device(f"cuda:{visible - 1}") == torch.device("cuda", visible - 1)
