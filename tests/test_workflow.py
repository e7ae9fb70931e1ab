"""The Snakemake workflow: config and table validation, shards, GPU slots, plans, lint, summary."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import gemmi
import pytest
import yaml
from test_infer_checkpoint import flip_weight_bytes, protenix_release
from test_workflow_helpers import REPO, make_workdir, planned_jobs, snakemake

sys.path.insert(0, str(REPO / "scripts"))
from make_shards import assign_shards, estimate_tokens, plan_shards  # noqa: E402
from summarize import check, summarize  # noqa: E402

EXAMPLES = REPO / "config" / "examples" / "targets.csv"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return make_workdir(tmp_path_factory.mktemp("wf"))


# --------------------------------------------------------------------------- shards
def test_shards_longest_first_into_lightest():
    # by hand: a->s0 (100), b->s1 (90), c->s1 (140), d->s0 (140), e->s0 (tie, lower index; 150)
    tokens = {"a": 100, "b": 90, "c": 50, "d": 40, "e": 10}
    assert assign_shards(tokens, 2, 4096) == [["a", "d", "e"], ["b", "c"]]
    # never more shards than targets; every target exactly once
    shards = assign_shards(tokens, 9, 4096)
    assert len(shards) == 5 and sorted(t for s in shards for t in s) == sorted(tokens)


def test_shards_from_tokens_per_shard_are_balanced_and_stable():
    tokens = {f"t{i:03d}": 50 + (i * 37) % 400 for i in range(200)}
    shards = assign_shards(tokens, 0, 5000)
    total = sum(tokens.values())
    assert len(shards) == -(-total // 5000)
    loads = [sum(tokens[t] for t in s) for s in shards]
    # LPT bound: the heaviest shard exceeds the lightest by at most one target
    assert max(loads) - min(loads) <= max(tokens.values())
    assert assign_shards(dict(reversed(tokens.items())), 0, 5000) == shards


def test_shards_never_mix_seed_sets():
    tokens = {"a": 100, "b": 100, "c": 100}
    seeds = {"a": (1,), "b": (1,), "c": (2, 3)}
    assert plan_shards(tokens, seeds, 0, 4096) == {
        "shard-000": ((1,), ["a", "b"]),
        "shard-001": ((2, 3), ["c"]),
    }
    # 3 shards shared by tokens: 2 for seeds (1,), 1 for (2, 3)
    assert plan_shards(tokens, seeds, 3, 4096) == {
        "shard-000": ((1,), ["a"]), "shard-001": ((1,), ["b"]), "shard-002": ((2, 3), ["c"])
    }  # fmt: skip


def test_a_targets_own_seeds_reach_its_prediction_job(workdir, tmp_path):
    table = tmp_path / "seeds.csv"
    table.write_text("target_id,chains,seeds\nplain,protein:MKTAYIAK,\nseeded,protein:MKTAYIAR,7 8\n")
    out = snakemake(workdir, "--dry-run", "predict", "--config", f"inputs={table}", "checkpoint=none").stdout
    commands = [line for line in out.splitlines() if "scripts/predict.py" in line]
    assert len(commands) == 2
    seeds_by_shard = sorted(re.search(r"--seeds ([\d ]+?) --samples", c).group(1) for c in commands)
    assert seeds_by_shard == ["1", "7 8"]


def test_token_estimate_counts_ligand_heavy_atoms(tmp_path):
    from model.data.ccd import load_ccd
    from model.data.inputs import load_targets

    # ATP's heavy atoms straight from its CCD definition file
    block = gemmi.cif.read(str(REPO.parent / "shared/data/ccd/pdbe_ccd_samples/ATP.cif")).sole_block()
    atp_heavy = sum(1 for e in block.find_values("_chem_comp_atom.type_symbol") if e not in ("H", "D"))
    csv_path = tmp_path / "t.csv"
    csv_path.write_text("target_id,chains\nx,protein:MKTAYx2;ligand:ATP;ion:MG;ligand:smiles=CC(=O)O\n")
    targets, errors = load_targets(csv_path)
    assert not errors
    assert estimate_tokens(targets[0], load_ccd()) == 2 * 5 + atp_heavy + 1 + 4


# --------------------------------------------------------------------------- GPU slots
def _slot_job(tmp_path: Path, name: str, hold_s: float, env: dict) -> subprocess.Popen:
    out = tmp_path / f"{name}.txt"
    cmd = f'echo "$CUDA_VISIBLE_DEVICES $(date +%s.%N)" > {out}; sleep {hold_s}'
    return subprocess.Popen(
        [sys.executable, str(REPO / "scripts/gpu_slot.py"), "--gpus", "1", "--", "bash", "-c", cmd], env=env
    )


def test_gpu_slots_give_each_local_job_its_own_card(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES")}
    env |= {"FOLDLINE_GPUS": "2", "FOLDLINE_GPU_LOCK_DIR": str(tmp_path / "locks")}
    start = time.time()
    jobs = [_slot_job(tmp_path, n, 2.0, env) for n in ("a", "b")]
    time.sleep(0.5)
    jobs.append(_slot_job(tmp_path, "c", 0.0, env))  # both cards busy: must wait ~1.5 s
    assert [j.wait(timeout=30) for j in jobs] == [0, 0, 0]
    seen = {n: (tmp_path / f"{n}.txt").read_text().split() for n in "abc"}
    assert {seen["a"][0], seen["b"][0]} == {"0", "1"}
    assert float(seen["c"][1]) - start >= 1.8


def test_gpu_slot_under_slurm_and_without_cards(tmp_path):
    base = {k: v for k, v in os.environ.items() if k not in ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES")}
    cmd = [
        sys.executable,
        str(REPO / "scripts/gpu_slot.py"),
        "--",
        "bash",
        "-c",
        "echo -n ${CUDA_VISIBLE_DEVICES-unset}",
    ]
    slurm = subprocess.run(
        cmd, env=base | {"SLURM_JOB_ID": "7", "CUDA_VISIBLE_DEVICES": "3"}, capture_output=True, text=True
    )
    assert slurm.stdout == "3"
    none = subprocess.run(cmd, env=base | {"FOLDLINE_GPUS": "0"}, capture_output=True, text=True)
    assert none.returncode == 0 and none.stdout == "" and "FOLDLINE_GPUS=0 is a count" in none.stderr
    card0_env = base | {"FOLDLINE_GPUS": "0,", "FOLDLINE_GPU_LOCK_DIR": str(tmp_path)}
    card0 = subprocess.run(cmd, env=card0_env, capture_output=True, text=True)
    assert card0.returncode == 0 and card0.stdout == "0"
    too_many = subprocess.run(
        [*cmd[:2], "--gpus", "3", *cmd[2:]], env=base | {"FOLDLINE_GPUS": "2"}, capture_output=True, text=True
    )
    assert too_many.returncode == 2 and "asks for 3 GPUs but this machine has 2" in too_many.stderr


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("override", "expected"),
    [("preset=huge", "preset"), ("samples=zero", "samples"), ("colour=blue", "colour")],
)
def test_bad_config_stops_before_any_job(workdir, override, expected):
    proc = snakemake(workdir, "--dry-run", "predict", "--config", override, check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "Error validating config" in out and expected in out
    assert "Job stats" not in out


def test_misspelt_column_stops_but_bad_row_only_drops_its_target(workdir, tmp_path):
    bad_column = tmp_path / "bad_column.csv"
    bad_column.write_text("target_id,chain\nx,protein:MKT\n")
    proc = snakemake(workdir, "--dry-run", "predict", "--config", f"inputs={bad_column}", check=False)
    assert proc.returncode != 0 and "chain" in proc.stderr + proc.stdout

    mixed = tmp_path / "mixed.csv"
    mixed.write_text("target_id,chains\ngood,protein:MKTAYIAK\nbad,protein:MKJT\n")
    args = ("predict", "--config", f"inputs={mixed}", "checkpoint=none")
    assert [r for r, _ in planned_jobs(workdir, *args)].count("build_features") == 1
    assert _featurized(workdir, *args) == {"good"}


def _featurized(workdir, *args: str) -> set[str]:
    """The targets that the planned build_features jobs would featurize (their --shard JSON)."""
    out = snakemake(workdir, "--dry-run", "--printshellcmds", *args).stdout
    shards = re.findall(r"scripts/build_features\.py .*--shard '(\{.*?\})'", out)
    return {target for shard in shards for target in json.loads(shard)}


def test_train_stage3_plan_chains_the_four_stages(workdir):
    dot = snakemake(workdir, "--dag", "dot", "--", "train_stage3").stdout
    label = {n: l for n, l in re.findall(r'(\d+)\[label = "train_stage\\nstage: (\d)"', dot)}
    edges = {(label[a], label[b]) for a, b in re.findall(r"(\d+) -> (\d+)", dot) if a in label and b in label}
    assert edges == {("0", "1"), ("1", "2"), ("2", "3")}


def test_init_checkpoint_starts_its_stage_and_skips_the_earlier_ones(workdir, tmp_path):
    weights = tmp_path / "released.pt"
    weights.write_bytes(b"weights")
    extra = tmp_path / "finetune.yaml"
    extra.write_text(f"training:\n  init_checkpoint: {weights}\n  init_stage: 1\n")
    out = snakemake(
        workdir, "--dry-run", "--printshellcmds", "--configfile", "config/config.yaml", str(extra), "--",
        "train_stage3",
    ).stdout  # fmt: skip
    commands = {
        int(m.group(1)): line for line in out.splitlines() if (m := re.search(r"train.py --stage (\d)", line))
    }
    assert sorted(commands) == [1, 2, 3]
    assert f"--init-checkpoint {weights}" in commands[1]
    assert "--init-checkpoint results/train/stage2/checkpoint.pt" in commands[3]


def test_predict_plan_searches_each_unique_sequence_once(workdir):
    jobs = planned_jobs(workdir, "predict")
    rules = [r for r, _ in jobs]
    # trp_cage and trp_cage_atp share one protein sequence; the DNA target needs no search
    assert rules.count("search_protein") == 1 and "search_rna" not in rules
    # the three targets fit one shard (tokens_per_shard): one featurization and one prediction job
    assert rules.count("build_features") == rules.count("predict_shard") == 1
    assert rules.count("train_stage") == 4
    assert _featurized(workdir, "predict") == {"trp_cage", "trp_cage_atp", "dickerson_dodecamer"}
    with_ckpt = [r for r, _ in planned_jobs(workdir, "predict", "--config", "checkpoint=none")]
    assert "train_stage" not in with_ckpt


@pytest.mark.parametrize("script", ["prepare_databases.py", "search_batch.py"])
def test_a_rerun_upstream_job_still_plans_everything_downstream(tmp_path, script):
    """A newer rule script (an update, or a fresh clone's checkout order) reruns that rule; the plan must
    still hold every job after it. With `ancient` inputs Snakemake planned the rerun job alone and
    exited 0: a fresh clone's `make demo` prepared the databases and predicted nothing."""
    work = make_workdir(tmp_path / "wf", {"checkpoint": "none"})
    if script == "search_batch.py":  # the batches exist; the shard tables do not
        for rule, wildcards in planned_jobs(work, "predict"):
            if rule == "search_protein":
                batch = work / "results/msa/protein/batches" / f"{wildcards.removeprefix('batch=')}.tsv"
                batch.parent.mkdir(parents=True, exist_ok=True)
                batch.write_text("")
    later = time.time() + 5
    os.utime(work / "scripts" / script, (later, later))
    rules = [r for r, _ in planned_jobs(work, "predict")]
    assert {"search_protein", "build_features", "predict_shard", "summarize", "predict"} <= set(rules), rules


# --------------------------------------------------------------------------- lint, format, envs
def test_snakemake_lint_is_clean(workdir):
    proc = snakemake(workdir, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr


def test_rules_are_snakefmt_formatted():
    files = [REPO / "Snakefile", *sorted((REPO / "workflow/rules").glob("*.smk"))]
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "snakefmt"), "--check", *map(str, files)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_conda_envs_match_pyproject_pins():
    pins = dict(
        re.match(r"([A-Za-z0-9_.-]+)==(.+)", d).groups()
        for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    )
    for env_file in sorted((REPO / "envs").glob("*.yaml")):
        env = yaml.safe_load(env_file.read_text())
        pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
        assert pip, env_file
        for line in pip:
            name, version = line.split("==")
            assert pins.get(name) == version, f"{env_file.name}: {line} vs pyproject {pins.get(name)}"


# --------------------------------------------------------------------------- summary
def _fake_prediction(results: Path, target: str, scores: list[tuple[int, int, float]]) -> None:
    folder = results / "predictions" / target
    for seed, sample, score in scores:
        sub = folder / f"seed-{seed}_sample-{sample}"
        sub.mkdir(parents=True)
        (sub / "summary_confidences.json").write_text(
            json.dumps({"ptm": score / 2, "iptm": None, "has_clash": 0.0, "ranking_score": score})
        )
    rows = "".join(f"{s},{k},{r}\n" for s, k, r in scores)
    (folder / "ranking_scores.csv").write_text("seed,sample,ranking_score\n" + rows)


def test_summary_lists_every_target_and_every_failure(tmp_path):
    results = tmp_path / "results"
    (results / "features" / "shards").mkdir(parents=True)
    (results / "failed").mkdir()
    statuses = [results / "features" / "shards" / f"shard-00{i}.tsv" for i in (0, 1)]
    statuses[0].write_text("".join(f"{t}\tok\t{results}/features/{t}.h5\n" for t in ("ok1", "pred_fail")))
    statuses[1].write_text("feat_fail\tfailed\ttarget feat_fail: conformer: RDKit gave up\n")
    (results / "failed" / "pred_fail.txt").write_text("CUDA out of memory\n")
    _fake_prediction(results, "ok1", [(1, 0, 0.4), (1, 1, 0.9), (2, 0, 0.7)])
    inputs = tmp_path / "targets.csv"
    inputs.write_text("target_id,chains\n")
    out = [tmp_path / n for n in ("summary.tsv", "failures.tsv", "provenance.json")]
    failures = summarize(
        ["ok1", "pred_fail", "feat_fail"],
        {"bad": "target bad: entity 0 (protein): sequence: unknown residue letter 'J' at 3"},
        results,
        {"ok1": 20},
        statuses,
        {"inputs": str(inputs)},
        inputs,
        *out,
    )
    with out[0].open() as fh:
        rows = {r["target_id"]: r for r in csv.DictReader(fh, delimiter="\t")}
    assert set(rows) == {"ok1", "pred_fail", "feat_fail", "bad"}
    assert rows["ok1"]["status"] == "ok" and rows["ok1"]["ranking_score"] == "0.9000"
    assert rows["ok1"]["ptm"] == "0.4500" and rows["ok1"]["iptm"] == ""
    assert {t: rows[t]["stage"] for t in ("pred_fail", "feat_fail", "bad")} == {
        "pred_fail": "predict",
        "feat_fail": "features",
        "bad": "input",
    }
    assert sorted(f["target_id"] for f in failures) == ["bad", "feat_fail", "pred_fail"]
    assert (results / "failed" / "bad.txt").read_text().startswith("target bad: entity 0")
    ok_file = tmp_path / "predict.ok"
    assert check(out[1], ok_file) == 1 and not ok_file.exists()


def test_shard_featurization_pairs_heteromers_and_keeps_unchanged_members(shared_data, tmp_path):
    """build_features.py --shard, as the build_features rule runs it: a heteromer marked "pair" gets
    the species-paired rows of its chains' searched .paired.a3m files, the same chains unmarked get
    none; a rerun keeps every h5 whose content hash is unchanged."""
    from model.data import store
    from model.data.msa import parse_a3m

    searched = tmp_path / "results" / "msa" / "protein"
    searched.mkdir(parents=True)
    chains, sequences = {}, []
    for chain, entry in (("A", "5zyh_1"), ("B", "7zzx_1")):
        source = shared_data / "msa" / entry
        shutil.copy(source / "non_pairing.a3m", searched / f"{entry}.a3m")
        shutil.copy(source / "pairing.a3m", searched / f"{entry}.paired.a3m")  # UniProt rows
        chains[chain] = str(searched / f"{entry}.a3m")
        sequences.append(parse_a3m((source / "non_pairing.a3m").read_text())[0][1])
    table = tmp_path / "targets.csv"
    dimer = ";".join(f"protein:{s}" for s in sequences)
    table.write_text(f"target_id,chains\npaired,{dimer}\nunpaired,{dimer}\n")
    shard = {"paired": {"chains": chains, "pair": True}, "unpaired": {"chains": chains, "pair": False}}
    out, status = tmp_path / "features", tmp_path / "shard-000.tsv"
    args = [
        sys.executable, str(REPO / "scripts" / "build_features.py"), "--inputs", str(table),
        "--shard", json.dumps(shard), "--out-dir", str(out), "--failed-dir", str(tmp_path / "failed"),
        "--status", str(status),
    ]  # fmt: skip
    first = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    assert status.read_text() == f"paired\tok\t{out}/paired.h5\nunpaired\tok\t{out}/unpaired.h5\n"
    paired_rows = store.read_attrs(out / "paired.h5")["msa_paired_rows"]
    assert paired_rows > 10 and store.read_attrs(out / "unpaired.h5")["msa_paired_rows"] <= 1
    again = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert [line.split("\t")[1] for line in again.stdout.splitlines()] == ["cached", "cached"]


def test_allowed_roots_reach_the_target_parser_and_build_features(workdir, tmp_path):
    (tmp_path / "jobs").mkdir()
    (tmp_path / "table").mkdir()
    job = {"name": "outside", "modelSeeds": [1], "dialect": "alphafold3", "version": 2,
           "sequences": [{"protein": {"id": "A", "sequence": "MKTAYIAKQR"}}]}  # fmt: skip
    (tmp_path / "jobs" / "outside.json").write_text(json.dumps(job))
    table = tmp_path / "table" / "targets.csv"
    table.write_text("target_id,json\noutside,../jobs/outside.json\n")
    # outside the CSV's folder: rejected unless its folder is an allowed root
    assert _featurized(workdir, "predict", "--config", f"inputs={table}", "checkpoint=none") == set()
    roots = f"allowed_roots=[{tmp_path / 'jobs'}]"
    args = ("predict", "--config", f"inputs={table}", "checkpoint=none", roots)
    assert _featurized(workdir, *args) == {"outside"}
    out = snakemake(workdir, "--dry-run", "--printshellcmds", *args).stdout
    assert f"--allowed-root '{tmp_path / 'table'}' --allowed-root '{tmp_path / 'jobs'}'" in out


def test_multi_gpu_training_runs_torchrun_inside_one_job(workdir, tmp_path):
    extra = tmp_path / "two_gpus.yaml"
    extra.write_text("training:\n  gpus: 2\n")
    out = snakemake(
        workdir, "--dry-run", "--configfile", "config/config.yaml", str(extra), "--", "train_stage0"
    ).stdout
    (command,) = [line for line in out.splitlines() if "scripts/train.py" in line]
    assert re.search(
        r"gpu_slot\.py --gpus 2 -- torchrun --standalone --nproc_per_node 2 \S*scripts/train\.py --stage 0",
        command,
    )
    assert re.search(r"resources: .*gpu=2", out)


# --------------------------------------------------------------------------- released weights
def _released_tiny_weights(path: Path) -> Path:
    """A Foldline tiny network's random weights in a released Protenix checkpoint's layout."""
    import torch

    from model.nn.network import Foldline, load_preset

    torch.manual_seed(0)
    torch.save(protenix_release(Foldline(load_preset("tiny")).state_dict()), path)
    return path


def _summary(workdir: Path) -> dict[str, dict]:
    with (workdir / "results" / "summary.tsv").open() as fh:
        return {r["target_id"]: r for r in csv.DictReader(fh, delimiter="\t")}


@pytest.mark.slow
def test_fine_tuning_stage1_from_released_weights(tmp_path):
    weights = _released_tiny_weights(tmp_path / "protenix_weights.pt")
    workdir = make_workdir(tmp_path / "wf", {"training": {"init_checkpoint": str(weights), "init_stage": 1}})
    snakemake(workdir, "train_stage1", "--cores", "2", timeout=900)
    results = workdir / "results" / "train"
    assert not (results / "stage0").exists()  # stage 1 starts from the given weights
    prov = json.loads((results / "stage1" / "provenance.json").read_text())
    assert prov["parent_checkpoint"]["path"] == str(weights)
    assert prov["parent_checkpoint"]["network"].startswith("preset tiny")


@pytest.mark.slow
def test_released_weights_predict_and_a_bad_checkpoint_fails_every_target(tmp_path):
    """`checkpoint:` a released-format file predicts; the same file truncated, then with flipped bytes,
    fails every target of the shard with a one-line reason in summary.tsv, failures.tsv and
    results/failed/ (no stale result survives), and torch's weights_only=False advice never shows."""
    weights = _released_tiny_weights(tmp_path / "weights.pt")
    good = weights.read_bytes()
    table = tmp_path / "targets.csv"
    table.write_text("target_id,chains\nduplex,dna:CGCGAATTCGCG\nhairpin,dna:GCGAAAGC\n")
    config = {
        "inputs": str(table),
        "checkpoint": str(weights),
        "shards": 1,
        "samples": 1,
        "steps": 2,
        "cycles": 1,
    }
    workdir = make_workdir(tmp_path / "wf", config)
    snakemake(workdir, "predict", "--cores", "2", timeout=900)
    assert {t: r["status"] for t, r in _summary(workdir).items()} == {"duplex": "ok", "hairpin": "ok"}
    prov = json.loads((workdir / "results/predictions/duplex/provenance.json").read_text())
    assert prov["preset"] == "tiny" and prov["network_source"].startswith("preset tiny")

    for damage, content in (
        ("truncated", good[: len(good) // 2]),
        ("checksum mismatch", flip_weight_bytes(good)),
    ):
        weights.write_bytes(content)
        run = snakemake(workdir, "predict", "--cores", "2", timeout=900, check=False)
        assert run.returncode != 0
        rows = _summary(workdir)
        assert {t: (r["status"], r["stage"]) for t, r in rows.items()} == {
            "duplex": ("failed", "predict"), "hairpin": ("failed", "predict")
        }  # fmt: skip
        for target, row in rows.items():
            assert str(weights) in row["reason"] and damage in row["reason"], row["reason"]
            failed = (workdir / "results" / "failed" / f"{target}.txt").read_text()
            assert failed.count("\n") == 1 and damage in failed
        failures = (workdir / "results" / "failures.tsv").read_text()
        assert failures.count("\n") == 3 and damage in failures
        logs = "".join(p.read_text() for p in (workdir / "logs").rglob("*.log"))
        assert "weights_only=False" not in logs + run.stdout + run.stderr


# --------------------------------------------------------------------------- one configuration, any folder
def test_workflow_runs_from_another_directory_into_its_results_folder(tmp_path):
    """`snakemake -s …/Snakefile --directory DIR` from a third folder: the defaults and the bundled
    databases, examples and scripts are found from the workflow folder, outputs land in DIR/{results}."""
    copy = make_workdir(tmp_path / "workflow", {"checkpoint": "none"})
    run, elsewhere = tmp_path / "scratch" / "run", tmp_path / "elsewhere"
    elsewhere.mkdir()
    snakemake(elsewhere, "-s", str(copy / "Snakefile"), "--directory", str(run), "predict",
              "--config", "results=out", "--cores", "2", timeout=900)  # fmt: skip
    with open(run / "out" / "summary.tsv") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert sorted(r["target_id"] for r in rows) == ["dickerson_dodecamer", "trp_cage", "trp_cage_atp"]
    assert (run / "out" / "predictions" / "trp_cage_atp" / "trp_cage_atp_model.cif").is_file()
    assert not any((folder / "results").exists() for folder in (run, copy, elsewhere))


def _script_options(command: str, script: str) -> list[list[str]]:
    """The options (each with its values) a planned shell command passes to scripts/{script}."""
    import shlex

    words = shlex.split(command.split(f"scripts/{script}", 1)[1].split(" > ", 1)[0].replace("$feats", "x.h5"))
    options: list[list[str]] = []
    for word in words:
        if word.startswith("--"):
            options.append([word])
        else:
            options[-1].append(word)
    return options


@pytest.mark.parametrize(
    ("script", "optional"),
    [("predict.py", {"--reuse-unchanged", "--done"}), ("train.py", {"--init-checkpoint", "--set"})],
)
def test_scripts_require_every_option_their_rule_passes(workdir, script, optional):
    """Scripts hold no defaults of their own for what the rules pass from the config: leaving out any
    such option is an error, so config/config.yaml is the only place a default can come from."""
    import importlib.util

    out = snakemake(workdir, "--dry-run", "--printshellcmds", "predict").stdout
    command = next(line for line in out.splitlines() if f"scripts/{script}" in line)
    options = _script_options(command, script)
    spec = importlib.util.spec_from_file_location(f"rule_script_{script[:-3]}", REPO / "scripts" / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.parse_args([word for option in options for word in option])
    required = [option for option in options if option[0] not in optional]
    assert len(required) >= 7
    for left_out in required:
        argv = [word for option in options if option is not left_out for word in option]
        with pytest.raises(SystemExit):
            module.parse_args(argv)


def _schema_paths(schema: dict, prefix: str = "") -> list[str]:
    paths = []
    for key, sub in schema.get("properties", {}).items():
        paths.append(prefix + key)
        paths += _schema_paths(sub, f"{prefix}{key}.")
    return paths


def test_config_yaml_is_the_one_source_of_defaults():
    """The schema holds types only; config/config.yaml holds a value for every key it knows."""
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert "default:" not in (REPO / "workflow" / "schemas" / "config.schema.yaml").read_text()
    missing = []
    for path in _schema_paths(schema):
        node = config
        for key in path.split("."):
            if not isinstance(node, dict) or key not in node:
                missing.append(path)
                break
            node = node[key]
    assert missing == []


def test_a_preset_file_is_accepted_by_the_schema(workdir):
    preset = str(REPO / "config" / "presets" / "tiny.yaml")
    snakemake(workdir, "--dry-run", "predict", "--config", f"preset={preset}", "checkpoint=none")
    bad = snakemake(workdir, "--dry-run", "predict", "--config", "preset=no_such_preset", check=False)
    assert bad.returncode != 0 and "preset" in bad.stdout + bad.stderr
