# Configuration, targets table and the helpers every other rule file uses.
# Everything here runs when Snakemake parses the workflow, so that the whole DAG (searches, features,
# shards, training chain) is known before any job starts and a bad config stops the run at once.

import os
import sys
from pathlib import Path
from types import SimpleNamespace

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

REPO = Path(workflow.basedir).resolve()
# Rule scripts import the library as `model` (the repository root) and the workflow's own helpers.
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO))
# `python` in a rule is the interpreter running Snakemake (e.g. the project's .venv) unless a conda
# environment (--sdm conda) puts its own first. Rules name their scripts $FOLDLINE_WORKFLOW/scripts/…,
# so that any working directory (--directory) works.
os.environ.update(
    FOLDLINE_WORKFLOW=str(REPO),
    PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p
    ),
    PATH=os.pathsep.join(
        (str(Path(sys.executable).parent), os.environ.get("PATH", ""))
    ),
)

from make_shards import plan_shards, read_target_table  # noqa: E402

validate(config, "../schemas/config.schema.yaml")


def _bundled_paths_from_workflow() -> None:
    """Paths still equal to the bundled defaults of config/config.yaml (databases, examples, training
    data, stages) name files of the workflow folder, found from any working directory; every other
    relative path is the user's, relative to the working directory (--directory)."""
    import yaml

    bundled = yaml.safe_load((REPO / "config" / "config.yaml").read_text())

    def from_workflow(value, default):
        if value == default and not Path(value).is_absolute():
            return os.path.relpath(REPO / value)
        return value

    config["inputs"] = from_workflow(config["inputs"], bundled["inputs"])
    training, bundled_training = config["training"], bundled["training"]
    training["stages"] = from_workflow(training["stages"], bundled_training["stages"])
    training["entries"] = [
        from_workflow(e, e) if e in bundled_training["entries"] else e
        for e in training["entries"]
    ]
    for molecule in ("protein", "rna", "templates"):
        paths = config["databases"][molecule]
        for name, default in bundled["databases"][molecule].items():
            paths[name] = from_workflow(paths[name], default)


_bundled_paths_from_workflow()

RESULTS = config["results"]
LOGS = "logs"
GPU_PARTITION = config.get("cluster", {}).get("gpu_partition", "gpu")
TARGET_ID = r"[A-Za-z0-9_\-][A-Za-z0-9._\-]*"


wildcard_constraints:
    entry=TARGET_ID,
    shard=r"shard-\d+",
    stage=r"[0-3]",


# --------------------------------------------------------------------------- targets
def _ccd():
    """The CCD the targets are checked against (cached by model.data.ccd)."""
    from model.data.ccd import load_ccd

    return load_ccd(config["ccd"] or None)


def _read_targets(csv_path: Path):
    """Parse and size every target (scripts/make_shards.py read_target_table): a bad target, whatever
    is wrong with it, becomes its one-line note; only an unusable table stops the run.

    Only the syntax of each target is checked here (load_targets parses only): building every
    target's structure to check its chemistry costs ~6 ms a target, and Snakemake parses the workflow
    again in every cluster job. A chemistry error (unknown CCD code, bond to a missing atom) fails that target in
    build_features instead, with the same one-line message.
    """
    from model.data.inputs import TargetError

    try:
        table = read_target_table(
            csv_path,
            [csv_path.parent, *config.get("allowed_roots", [])],
            _ccd(),
            config["limits"],
        )
    except TargetError as error:
        raise WorkflowError(f"config inputs: {error}") from None
    except Exception as error:  # an unreadable table is one line, not a stack
        raise WorkflowError(
            f"config inputs: {csv_path}: {type(error).__name__}: {error}"
        ) from None
    return table


TABLE = _read_targets(Path(config["inputs"]))
TARGETS, INVALID_TARGETS, TARGET_TOKENS = TABLE.targets, TABLE.invalid, TABLE.tokens
# The same roots for build_features (which defaults to the CSV's folder alone).
ALLOWED_ROOT_ARGS = " ".join(
    f"--allowed-root '{root}'"
    for root in (
        [Path(config["inputs"]).parent, *config["allowed_roots"]]
        if config["allowed_roots"]
        else []
    )
)


# --------------------------------------------------------------------------- MSA search keys
def _msa_queries(targets):
    """One search per unique (molecule, sequence, databases, settings): "{molecule}/{sha}" keys.

    msa_key is called once per unique sequence: a screen repeats sequences, and every run (every
    cluster job too) parses the workflow again.
    """
    from model.search.store import msa_key

    queries, per_target, known, with_templates = {}, {}, {}, set()
    for target_id, target in targets.items():
        keys = {}
        for entity in target.entities:
            molecule = entity.kind
            user_msa = (
                entity.unpaired_msa is not None or entity.unpaired_msa_path is not None
            )
            if molecule not in ("protein", "rna") or user_msa:
                continue
            key = known.get((molecule, entity.sequence))
            if key is None:
                sha = msa_key(
                    entity.sequence, molecule, config["databases"], config["search"]
                )
                key = known[(molecule, entity.sequence)] = f"{molecule}/{sha}"
                queries[key] = entity.sequence
            # AF3: `templates` given ([] too) = no template search; Protenix `templatesPath`
            # gives the hits of one
            given = entity.templates is not None or entity.templates_path is not None
            if molecule == "protein" and not given:
                with_templates.add(key)
            for chain_id in entity.chain_ids:
                keys[chain_id] = key
        per_target[target_id] = keys
    return queries, per_target, with_templates


# "{molecule}/{sha}" -> sequence, target -> {chain: key}, and the protein keys whose search makes
# templates (some chain of them leaves AF3's `templates` unset)
MSA_QUERIES, TARGET_MSA_KEYS, TEMPLATE_SEARCH_KEYS = _msa_queries(TARGETS)


def _search_batches(queries):
    """The searches grouped by molecule and the first two hex digits of their key: at most 256 search
    jobs per molecule however large the screen (each reads every database once for its whole batch,
    model.search.store.search_msas). A batch's members depend only on the keys, so a new sequence
    joins one batch and reruns only that batch, where the entries already in the store are skipped.
    """
    batches = {}
    for key, sequence in sorted(queries.items()):
        molecule, sha = key.split("/")
        batches.setdefault(molecule, {}).setdefault(_batch_of(sha), {})[sha] = sequence
    return batches


def _batch_of(sha: str) -> str:
    """The search batch of a store key: its first two hex digits."""
    return sha[:2]


# molecule -> batch ("00".."ff") -> {sha: sequence}
SEARCH_BATCHES = _search_batches(MSA_QUERIES)


def template_search_shas(batch: str) -> list[str]:
    """The members of a protein search batch whose template search is wanted: all of a
    training batch (its entries' templates come from the store), those in
    TEMPLATE_SEARCH_KEYS of a prediction batch."""
    members = search_members("protein", batch)
    if batch.startswith("train-"):
        return sorted(members)
    return sorted(sha for sha in members if f"protein/{sha}" in TEMPLATE_SEARCH_KEYS)


def search_batch_file(key: str) -> str:
    """The record of the search batch that fills store entry "{molecule}/{sha}"."""
    from model.search.entries import batch_record_path

    molecule, sha = key.split("/")
    return str(batch_record_path(RESULTS, molecule, sha))


def _search_sidecars(molecule: str) -> list:
    """What a molecule's searches need first: the sidecars of its databases (protein: of the template
    database too). Plain inputs, not ancient: with a sidecar marked ancient, a rerun of
    prepare_database (e.g. its script is newer) made Snakemake 9.27 plan that job alone and stop, so a
    fresh clone's first `predict` did nothing else. A re-prepared database reruns the batches, which
    search nothing: the store key names every database by identity, and stored entries are skipped.
    """
    from model.search.databases import sidecar_path
    from model.search.store import molecule_databases

    paths = list(molecule_databases(molecule, config["databases"]).values())
    if molecule == "protein":
        paths.append(config["databases"]["templates"]["seqres"])
    return [str(sidecar_path(p)) for p in paths]


SEARCH_SIDECARS = {
    molecule: _search_sidecars(molecule) for molecule in ("protein", "rna")
}


# --------------------------------------------------------------------------- shards
# A target's own seeds (CSV `seeds` column, AF3 modelSeeds) or the config's.
TARGET_SEEDS = {
    t: target.seeds or tuple(config["seeds"]) for t, target in TARGETS.items()
}
SHARD_PLAN = plan_shards(
    TARGET_TOKENS, TARGET_SEEDS, config["shards"], config["tokens_per_shard"]
)
SHARDS = {name: members for name, (_, members) in SHARD_PLAN.items()}


# --------------------------------------------------------------------------- stale records
def _changed_since(record: Path, path: Path) -> bool:
    """A file written before `record` that is now missing or newer than it."""
    try:
        return path.stat().st_mtime_ns > record.stat().st_mtime_ns
    except FileNotFoundError:
        return True


# What a run ends with, after a shard's features table: `predict` (predict.smk) and `features`.
PREDICT_TABLES = [
    Path(RESULTS, n)
    for n in ("summary.tsv", "failures.tsv", "provenance.json", "predict.ok")
]
FEATURE_TABLES = [
    Path(RESULTS, n)
    for n in ("features/summary.tsv", "features/failures.tsv", "features.ok")
]


def _stale_records() -> list:
    """([records], reason) of finished work whose files changed since it finished: a search batch
    with a store file (model.search.store.entry_files) missing or newer than its checksum; a shard
    whose search batch record is missing (stale here, or removed by a reader that found a corrupt
    store file) or with a feature file missing or newer than its features table. The readers verify
    the bytes themselves (checksums); this catches, by a few stat calls, what the next run would not
    read again. Snakemake 9 reruns no job for a missing input while the job's own output exists, so
    a record removed takes every existing record after it along (a shard's .done, the run's tables).
    """
    from model.search.entries import batch_record_path, checksum_path
    from model.search.store import entry_files, template_path

    stale, gone = [], set()
    for molecule, batches in SEARCH_BATCHES.items():
        for shas in batches.values():
            record = batch_record_path(RESULTS, molecule, next(iter(shas)))
            changed = [
                path
                for sha in shas
                if record.is_file()
                for path in entry_files(RESULTS, molecule, sha)
                if _changed_since(checksum_path(path), path)
                and (
                    path != template_path(RESULTS, molecule, sha)
                    or f"{molecule}/{sha}" in TEMPLATE_SEARCH_KEYS
                )
            ]
            if changed:
                stale.append(
                    ([record], f"store file {changed[0]} is missing or changed")
                )
                gone.add(str(record))
    for shard in SHARDS:
        status = Path(f"{RESULTS}/features/shards/{shard}.tsv")
        done = Path(f"{RESULTS}/shards/{shard}.done")
        reason = None
        if status.is_file():
            inputs = shard_feature_inputs(SimpleNamespace(shard=shard))
            missing = [f for f in inputs if f in gone or not Path(f).exists()]
            rows = [line.split("\t") for line in status.read_text().splitlines()]
            changed = [
                r[2]
                for r in rows
                if r[1:2] == ["ok"] and _changed_since(status, Path(r[2]))
            ]
            if missing:
                reason = f"its input {missing[0]} is missing"
            elif changed:
                reason = f"feature file {changed[0]} is missing or changed"
        for chain in ([status, done, *PREDICT_TABLES], [status, *FEATURE_TABLES]):
            first = (
                0
                if reason
                else next((i for i, f in enumerate(chain) if not f.is_file()), None)
            )
            later = (
                [f for f in chain[first or 0 :] if f.is_file()]
                if first is not None
                else []
            )
            if later:
                stale.append((later, reason or f"{chain[first]} is missing"))
    return stale


def _remove_stale_records() -> None:
    """Remove stale records, so that this run redoes their work (unchanged parts stay cached)."""
    if not workflow.is_main_process:
        return
    for records, reason in _stale_records():
        if any(record.is_file() for record in records):
            print(
                f"{records[0]}: {reason}: removed with what follows it", file=sys.stderr
            )
        for record in records:
            record.unlink(missing_ok=True)


def shard_seeds(wildcards) -> str:
    return " ".join(str(s) for s in SHARD_PLAN[wildcards.shard][0])


# --------------------------------------------------------------------------- training set
# TRAINING_ENTRIES and the training plan: manifest.smk.


def checkpoint_file() -> str:
    """The weights `predict` uses: the configured file or this workflow's own final stage."""
    return config["checkpoint"] or f"{RESULTS}/train/stage3/checkpoint.pt"


def checkpoint_input(wildcards) -> list[str]:
    """The checkpoint as a rule input (nothing for random weights)."""
    ckpt = checkpoint_file()
    return [] if ckpt == "none" else [ckpt]


# --------------------------------------------------------------------------- rule helpers
def _pairs(target_id: str) -> bool:
    """AF3 pairs MSAs by species only for heteromers: two or more different protein chains."""
    keys = TARGET_MSA_KEYS[target_id].values()
    return len({k for k in keys if k.startswith("protein/")}) >= 2


def shard_feature_inputs(wildcards) -> list:
    """What the featurization of a shard waits for besides the targets table: the search batches of
    its members' sequences, and the members' JSON job files (an edit reruns the shard).

    The batches are plain inputs, not ancient: with ancient records, a rerun of a batch made Snakemake
    9.27 plan the batch alone and stop, even for shards whose tables were missing. A new sequence in a
    batch therefore reruns the shards that read that batch, which cost little: featurization keeps
    every member of unchanged content hash and prediction every unchanged member (--reuse-unchanged).
    A changed member reruns its shard through the fingerprint param."""
    batches, sources = set(), set()
    for target_id in SHARDS[wildcards.shard]:
        batches.update(
            search_batch_file(k) for k in TARGET_MSA_KEYS[target_id].values()
        )
        source = TARGETS[target_id].source
        if source and Path(source).suffix == ".json":
            sources.add(str(source))
    return sorted(batches) + sorted(sources)


def shard_manifest(wildcards) -> str:
    """The shard's members as build_features.py --shard JSON: per target, which searched a3m serves
    which chain and whether to pair them by species."""
    import json

    return json.dumps(
        {
            t: {
                "chains": {
                    c: f"{RESULTS}/msa/{k}.a3m" for c, k in TARGET_MSA_KEYS[t].items()
                },
                "pair": _pairs(t),
            }
            for t in SHARDS[wildcards.shard]
        },
        sort_keys=True,
    )


def shard_fingerprint(wildcards) -> str:
    """A digest of the shard's parsed targets: a changed target reruns its shard's featurization
    (whose unchanged members are kept by their content hash), not every shard's. Files count by
    their path relative to the working directory (reading them all at every parse would cost too
    much), so a project folder moved as a whole keeps its fingerprints."""
    from model.data.store import content_hash, input_key

    return content_hash(
        input_key(TARGETS[t], os.path.relpath) for t in SHARDS[wildcards.shard]
    )


_remove_stale_records()


def parent_checkpoint(wildcards) -> list[str]:
    """The weights a stage starts from: training.init_checkpoint for stage training.init_stage (fine-
    tuning given weights), else the previous stage's checkpoint (none for stage 0)."""
    stage = int(wildcards.stage)
    init = config["training"].get("init_checkpoint", "")
    if init and stage == config["training"].get("init_stage", 1):
        return [init]
    return [] if stage == 0 else [f"{RESULTS}/train/stage{stage - 1}/checkpoint.pt"]


def train_launcher() -> str:
    """`python`, or torchrun with one process per GPU of the job (DDP) when training.gpus > 1; with
    training.nodes > 1 scripts/launch_stage.sh (srun + torchrun c10d rendezvous under SLURM).
    """
    nodes, gpus = config["training"]["nodes"], config["training"]["gpus"]
    if nodes > 1:
        return f"bash $FOLDLINE_WORKFLOW/scripts/launch_stage.sh {nodes} {gpus}"
    return "python" if gpus == 1 else f"torchrun --standalone --nproc_per_node {gpus}"
