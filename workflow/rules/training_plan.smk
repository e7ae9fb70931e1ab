# Training entries and the training plan (the rules that use them: manifest.smk, train.smk, search.smk).
# TRAINING_ENTRIES is listed when the workflow is parsed; the plan (store keys, search batches, shards)
# is read from the manifest that the `training_manifest` checkpoint writes.

import functools
import hashlib


def _list_training_entries():
    """Entry id -> mmCIF path of training.entries; a missing item or a repeated id is a note."""
    from model.train.manifest import list_entries

    entries, notes = list_entries(config["training"]["entries"])
    for note in notes:
        print(f"config {note}", file=sys.stderr)
    return entries


TRAINING_ENTRIES = _list_training_entries()
# A stage on training.nodes > 1 nodes: the SLURM job runs its command itself (the plugin's `mpi` path:
# no srun around it) with one task a node, for scripts/launch_stage.sh's srun + torchrun.
TRAIN_NODE_RESOURCES = (
    {"nodes": config["training"]["nodes"], "tasks": config["training"]["nodes"], "mpi": "srun",
     "tasks_per_gpu": 0}  # fmt: skip
    if config["training"]["nodes"] > 1
    else {}
)
TRAINING_LISTS = [
    path
    for path in (config["training"]["include"], config["training"]["exclude"])
    if path
]


@functools.cache
def training_entries_digest() -> str:
    """The checkpoint's rerun trigger: any entry added, removed or edited changes it (stat only)."""
    from model.train.manifest import entries_digest

    return entries_digest(TRAINING_ENTRIES)


@functools.cache
def _training_plan(manifest: str, stamp: int) -> SimpleNamespace:
    """What the kept entries of the manifest need: per entry its entities' store keys, the training
    search batches (molecule -> "train-xx" -> {sha: sequence}) and the feature shards (name -> entries).
    A manifest row that cannot be read is a note; the entry is left out."""
    from model.search.store import msa_keyer
    from model.train.manifest import read_manifest

    rows, notes = read_manifest(manifest)
    for note in notes:
        print(f"training manifest: {note}", file=sys.stderr)
    search = not config["training"]["msa_dir"]
    n_shards = config["training"]["feature_shards"]
    keyers = {
        m: msa_keyer(m, config["databases"], config["search"])
        for m in ("protein", "rna")
    }
    keys, batches, shards, known = {}, {}, {}, {}
    for entry, row in rows.items():
        if row.status != "ok" or entry not in TRAINING_ENTRIES:
            continue
        keys[entry] = {}
        for entity, (molecule, sequence) in row.entities.items():
            if not search or molecule not in ("protein", "rna"):
                continue
            key = known.get((molecule, sequence))
            if key is None:
                sha = keyers[molecule](sequence)
                key = known[(molecule, sequence)] = f"{molecule}/{sha}"
                batch = f"train-{_batch_of(sha)}"
                batches.setdefault(molecule, {}).setdefault(batch, {})[sha] = sequence
            keys[entry][entity] = key
        digest = int(hashlib.sha256(entry.encode()).hexdigest()[:8], 16)
        shards.setdefault(f"train-{digest % n_shards:04d}", []).append(entry)
    return SimpleNamespace(rows=rows, keys=keys, batches=batches, shards=shards)


def training_plan() -> SimpleNamespace:
    """The plan of the manifest the checkpoint wrote (read once per manifest version)."""
    manifest = Path(checkpoints.training_manifest.get().output[0])
    return _training_plan(str(manifest), manifest.stat().st_mtime_ns)


def search_members(molecule: str, batch: str) -> dict:
    """{sha: sequence} of a search batch: a prediction batch "xx" or a training batch "train-xx"."""
    if batch.startswith("train-"):
        return training_plan().batches[molecule][batch]
    return SEARCH_BATCHES[molecule][batch]


def training_manifest_input() -> str:
    """The manifest as an input of the jobs whose parameters come from it (Snakemake requires it, and
    a cluster job reads it). Ancient: a rewritten manifest reruns only the jobs whose parameters
    changed (a batch's members, a shard's entries and their stamps), not all of them."""
    return ancient(checkpoints.training_manifest.get().output[0])


def search_inputs(molecule: str, batch: str) -> list:
    """A search batch's inputs: its databases' sidecars; a training batch also the manifest."""
    if batch.startswith("train-"):
        return [*SEARCH_SIDECARS[molecule], training_manifest_input()]
    return SEARCH_SIDECARS[molecule]


def training_batch_files(wildcards) -> list:
    """The records of every training search batch."""
    plan = training_plan()
    return [
        str(Path(RESULTS, "msa", molecule, "batches", f"{batch}.tsv"))
        for molecule, batches in sorted(plan.batches.items())
        for batch in sorted(batches)
    ]


def training_shard_members(wildcards) -> dict:
    """The shard's entries as build_training_shard.py reads them. The mmCIFs are not rule inputs (at
    PDB scale 220,000 of them cost Snakemake ~2 minutes to plan): an edit changes the file's stamp in
    the manifest, and so this parameter, which reruns the shard."""
    plan = training_plan()
    return {
        entry: {
            "mmcif": TRAINING_ENTRIES[entry],
            "release_date": plan.rows[entry].release_date,
            # an edited entry changes its stamp, and so this parameter: its shard reruns
            "stamp": plan.rows[entry].stamp,
            "entities": plan.keys[entry],
        }
        for entry in plan.shards[wildcards.tshard]
    }


def training_shard_tables(wildcards) -> list:
    return expand(
        f"{RESULTS}/features/train/shards/{{tshard}}.tsv",
        tshard=sorted(training_plan().shards),
    )
