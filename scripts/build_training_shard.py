"""The `build_training_shard` rule's script: featurize one shard of training entries, with ground truth,
searched MSAs and templates (model.train.manifest has the entries; workflow/rules/manifest.smk the plan).

params.members: {entry: {"mmcif": path, "release_date": ISO date, "entities": {entity: "{molecule}/{sha}"}}}
Per entry, each polymer chain gets its entity's store entries (model.search.store): the unpaired MSA
`results/msa/{molecule}/{sha}.a3m`, for proteins the UniProt hits `.paired.a3m` (the featurizer pairs
them by species when the entry has two or more protein sequences, as at inference) and templates
released at least 60 days before the entry (AF3 §2.4), never the entry itself:
`results/templates/protein/{sha}.before-{release_date}.npz`, searched here from the stored MSA by the
template search the prediction batches run (scripts/search_templates.run_batch; once per sequence and
date, kept in the store). With params.msa_dir the MSAs come from that Protenix/OpenFold layout
(`{entry}_{entity}/non_pairing.a3m`, `pairing.a3m`) instead, and no templates.

An entry whose content hash (mmCIF, MSAs, templates, featurizer) is unchanged keeps its h5 ("cached"),
so a rerun of the shard featurizes only its edited entries. The status table, one row per member
(`entry<TAB>ok<TAB>h5` or `entry<TAB>failed<TAB>reason`), is written last.
"""

import logging
from pathlib import Path

import build_features  # first: it makes the repository's `model` importable
import search_templates

from model.data.msa import MsaInput
from model.fileio import error_line, write_text_atomic
from model.search.entries import read_entry
from model.search.store import msa_path, paired_msa_path


def template_store_path(results: Path, sha: str, release_date: str) -> Path:
    """Templates of store entry `protein/{sha}` for a training entry released on `release_date`."""
    return results / "templates" / "protein" / f"{sha}.before-{release_date}.npz"


def _chain_inputs(entity_inputs: dict):
    """The Job.structure_inputs of an entry: each polymer chain gets its entity's MSA and templates."""

    def per_chain(structure) -> tuple[dict, dict]:
        msas, templates = {}, {}
        for name, entity in zip(
            structure.chain_name.tolist(), structure.chain_entity_id.tolist(), strict=True
        ):
            if entity in entity_inputs:
                msas[name], chain_templates = entity_inputs[entity]
                if chain_templates is not None:
                    templates[name] = chain_templates
        return msas, templates

    return per_chain


def run_shard(
    members: dict,
    results: Path,
    status: Path,
    ccd: str,
    seed: int,
    databases: dict,
    search: dict,
    msa_dir: str = "",
    featurize_seconds: float = 0,
    threads: int = 1,
) -> list[tuple[str, str, str]]:
    """Featurize every member into results/features/train/{entry}.h5; write and return the status rows."""
    out_dir, failed_dir = results / "features" / "train", results / "failed" / "train"
    args = ["--mmcif", *(spec["mmcif"] for spec in members.values()), "--out-dir", str(out_dir),
            "--failed-dir", str(failed_dir), "--seed", str(seed), "--ccd", ccd]  # fmt: skip
    jobs, _ = build_features.make_jobs(
        build_features.parse_args(args + (["--msa-dir", msa_dir] if msa_dir else []))
    )
    if not msa_dir:
        template_jobs = {}
        for spec in members.values():
            for key in spec["entities"].values():
                molecule, sha = key.split("/")
                if molecule == "protein":
                    out = template_store_path(results, sha, spec["release_date"])
                    template_jobs[out] = (msa_path(results, molecule, sha), out, spec["release_date"])
        if template_jobs:
            search_templates.run_batch(
                list(template_jobs.values()),
                Path(databases["templates"]["seqres"]),
                Path(databases["templates"]["mmcif_dir"]),
                search["template_max_date"],
                int(search["max_templates"]),
                threads,
            )
        for job in jobs:
            spec = members[job.name]
            entity_inputs = {}
            try:
                for entity, key in sorted(spec["entities"].items()):
                    molecule, sha = key.split("/")
                    a3m = msa_path(results, molecule, sha)
                    unpaired = read_entry(a3m)
                    paired = read_entry(paired_msa_path(a3m)) if molecule == "protein" else ""
                    templates = None
                    job.hash_parts += [f"entity:{entity}", unpaired, paired]
                    if molecule == "protein":
                        npz = template_store_path(results, sha, spec["release_date"])
                        templates = build_features._load_templates(npz)
                        job.hash_parts.append(npz.read_bytes())
                    entity_inputs[entity] = (MsaInput.from_text(unpaired, paired), templates)
            except (OSError, ValueError) as err:
                job.error = f"target {job.name}: MSA/template input: {error_line(err)}"
            job.structure_inputs = _chain_inputs(entity_inputs)
    from model.data.ccd import load_ccd

    loaded_ccd = load_ccd(ccd or None)
    rows = []
    for job in jobs:
        build_args = (job, loaded_ccd, seed, failed_dir, "1", True)
        if featurize_seconds:
            outcome, detail = build_features.build_with_time_limit(*build_args, featurize_seconds)
        else:
            outcome, detail = build_features.build(*build_args)
        logging.info("%s\t%s\t%s", job.name, outcome, detail)
        rows.append((job.name, "failed" if outcome == "failed" else "ok", detail))
    write_text_atomic(status, "".join(f"{name}\t{outcome}\t{detail}\n" for name, outcome, detail in rows))
    return rows


if "snakemake" in globals():
    sm = globals()["snakemake"]
    logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
    run_shard(
        sm.params.members,
        Path(sm.params.results),
        Path(sm.output.status),
        sm.params.ccd,
        int(sm.params.seed),
        sm.config["databases"],
        sm.config["search"],
        sm.params.msa_dir,
        float(sm.params.featurize_seconds),
        sm.threads,
    )
