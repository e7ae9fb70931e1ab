# Training data: the manifest of the training entries, their searches, and their features in shards.
#
#   training_manifest      checkpoint; reads every mmCIF of training.entries (files, folders, a wwPDB
#                          mirror `mmCIF/ab/1abc.cif.gz`), reruns when any of them is added, removed or
#                          changes (param: a digest of their stat), input the include/exclude lists; output
#                          results/train/manifest.tsv: one row per entry read from its header (release
#                          date, resolution, method, chains, residues, polymer sequences) with the AF3
#                          §2.5.4 filters applied (model.train.manifest). Unchanged files keep their rows.
#   search_protein/_rna    batches `train-{xx}` (search.smk): the unique protein and RNA sequences of the
#                          kept entries, keyed by model.search.store.msa_key exactly as prediction keys
#                          them, so a sequence in both is one store entry, searched once.
#   training_searches      results/msa/training_searches.tsv once every training batch is done
#   build_training_shard   wildcards tshard (train-NNNN: an entry's shard is a hash of its id, so adding
#                          or editing an entry touches one shard); output
#                          results/features/train/shards/{tshard}.tsv (entry<TAB>ok<TAB>h5 or
#                          entry<TAB>failed<TAB>reason); the h5 are results/features/train/{entry}.h5,
#                          kept when their content hash is unchanged (an edited entry refeaturizes alone).
#                          A new training sequence reruns every shard (they wait for training_searches),
#                          whose unchanged entries are kept by their content hash.
#
# With training.msa_dir (Protenix/OpenFold layout `{entry}_{entity}/*.a3m`) nothing is searched: the
# shards read those alignments, without templates. The plan the rules read: training_plan.smk.


localrules:
    training_manifest,
    training_searches,


wildcard_constraints:
    tshard=r"train-\d{4}",


checkpoint training_manifest:
    """Read every training entry's header once; apply the AF3 §2.5.4 filters (a readable TSV)."""
    input:
        lists=TRAINING_LISTS,
        stages=config["training"]["stages"],
    output:
        f"{RESULTS}/train/manifest.tsv",
    log:
        f"{LOGS}/train/manifest.log",
    conda:
        "../../envs/model.yaml"
    threads: 2
    params:
        entries=" ".join(f"'{item}'" for item in config["training"]["entries"]),
        digest=lambda w: training_entries_digest(),
        include=config["training"]["include"],
        exclude=config["training"]["exclude"],
    shell:
        "python $FOLDLINE_WORKFLOW/scripts/training_manifest.py --entries {params.entries} --stages {input.stages}"
        " --include '{params.include}' --exclude '{params.exclude}' --workers {threads}"
        " --out {output} > {log} 2>&1"


rule training_searches:
    """Every training search batch done (the shards wait for this one file, not ~500 records each)."""
    input:
        training_batch_files,
    output:
        f"{RESULTS}/msa/training_searches.tsv",
    log:
        f"{LOGS}/search/training_searches.log",
    conda:
        "../../envs/model.yaml"
    shell:
        "cat {input} /dev/null > {output} 2> {log}"


rule build_training_shard:
    """Featurize one shard of training entries with ground truth, MSAs and templates (AF3 §2.4, §2.8)."""
    input:
        f"{RESULTS}/msa/training_searches.tsv",
        lambda w: training_manifest_input(),
    output:
        status=f"{RESULTS}/features/train/shards/{{tshard}}.tsv",
    log:
        f"{LOGS}/features/train/{{tshard}}.log",
    conda:
        "../../envs/model.yaml"
    threads: 1
    params:
        members=training_shard_members,
        results=lambda w: RESULTS,
        ccd=config["ccd"],
        seed=config["feature_seed"],
        msa_dir=config["training"]["msa_dir"],
        featurize_seconds=config["limits"]["featurize_seconds"],
    script:
        "../../scripts/build_training_shard.py"
