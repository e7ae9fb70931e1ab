"""The `search_protein` / `search_rna` rules' script: fill the content-addressed store
(model.search.store) for one batch of unique sequences of one molecule, then record the batch.

Per member (params.members: {sha: sequence}): results/msa/{molecule}/{sha}.a3m and .paired.a3m
(scripts/search_msa.py's batch mode: each database is read once for all members; entries already in
the store are skipped), then for the protein members of params.templates
results/templates/protein/{sha}.npz from that MSA (scripts/search_templates.py's batch mode:
pdb_seqres is read once; files already there are kept). The output, `sha<TAB>sequence` per member,
is written last, so it exists only when every member is in the store. `snakemake` object:
params.molecule, params.members, params.templates (proteins), params.results, output[0], threads,
log, config.
"""

import logging
from pathlib import Path

import search_msa  # first: it makes the repository's `model` importable
import search_templates

from model.fileio import write_text_atomic
from model.search.store import msa_path, template_path

sm = globals()["snakemake"]
logging.basicConfig(
    filename=sm.log[0] if sm.log else None, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s"
)
molecule, results = sm.params.molecule, Path(sm.params.results)
members = sorted(sm.params.members.items())
databases, settings = sm.config["databases"], sm.config["search"]
search_msa.run_batch(
    [(sequence, msa_path(results, molecule, sha)) for sha, sequence in members],
    molecule,
    databases,
    settings,
    sm.threads,
)
if molecule == "protein":
    wanted = set(sm.params.templates)  # the members some chain wants searched templates for
    search_templates.run_batch(
        [
            (msa_path(results, molecule, sha), template_path(results, molecule, sha), None)
            for sha, _ in members
            if sha in wanted
        ],
        Path(databases["templates"]["seqres"]),
        Path(databases["templates"]["mmcif_dir"]),
        settings["template_max_date"],
        int(settings["max_templates"]),
        sm.threads,
    )
write_text_atomic(sm.output[0], "".join(f"{sha}\t{sequence}\n" for sha, sequence in members))
