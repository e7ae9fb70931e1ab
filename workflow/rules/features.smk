# Features: one HDF5 per prediction target (results/features/{target}.h5), built one shard at a time
# (the shards of predict.smk), by scripts/build_features.py. Training entries: manifest.smk.
#
#   build_features            wildcards shard (shard-NNN of SHARD_PLAN in common.smk)
#                             input  the search batches (search.smk) of the members' sequences
#                                    and the members' JSON job files; the script
#                                    reads each member's store entries: {sha}.a3m, templates npz, and
#                                    for heteromers the .paired.a3m rows, paired by species here
#                                    (AF3 §2.3); which entry serves which chain is the --shard JSON
#                             output results/features/shards/{shard}.tsv: target<TAB>ok<TAB>{h5} or
#                                    target<TAB>failed<TAB>{reason}, one row per member
#
# One job per shard, not per target: a 10,000-target screen is ~500 featurization jobs instead of
# 10,000 tiny ones (SLURM queue waits, and ~1 ms of Snakemake planning per job). The h5 files are
# not declared outputs, so a rerun of a shard (one member edited) keeps every unchanged member's h5
# (build_features.py checks its content hash: "cached" in the log) and featurizes only the edited one.
# A target that cannot be featurized is data, not a crash: the script writes results/failed/{t}.txt
# and a "failed" row instead of the h5, and goes on with the shard's other targets. Each target is
# featurized in its own worker process within limits.featurize_seconds, so a slow one fails alone.
#   summarize_features, check_features   `snakemake features`: results/features/summary.tsv and
#                             failures.tsv, then a non-zero exit while any target failed (as predict)


rule build_features:
    """Featurize the targets of one shard (AF3 §2.8 features per model/data/feature_spec.py)."""
    input:
        shard_feature_inputs,
    output:
        status=f"{RESULTS}/features/shards/{{shard}}.tsv",
    log:
        f"{LOGS}/features/{{shard}}.log",
    conda:
        "../../envs/model.yaml"
    threads: 1
    params:
        inputs=config["inputs"],
        roots=ALLOWED_ROOT_ARGS,
        ccd=config["ccd"],
        seed=config["feature_seed"],
        shard=shard_manifest,
        fingerprint=shard_fingerprint,
        out_dir=lambda w: f"{RESULTS}/features",
        failed_dir=lambda w: f"{RESULTS}/failed",
        template_dir=lambda w: f"{RESULTS}/templates",
        # what turns a job's templatesPath hits into templates, as the template search does
        template_hits=(
            f"--template-mmcif-dir '{config['databases']['templates']['mmcif_dir']}'"
            f" --template-max-date {config['search']['template_max_date']}"
            f" --max-templates {config['search']['max_templates']}"
        ),
        limits=" ".join(
            f"--{key} {config['limits'][name]}"
            for key, name in (
                ("max-file-mb", "input_file_mb"),
                ("json-depth", "json_depth"),
                ("featurize-seconds", "featurize_seconds"),
            )
        ),
    shell:
        "python $FOLDLINE_WORKFLOW/scripts/build_features.py --inputs {params.inputs} {params.roots}"
        " --shard {params.shard:q} --template-dir {params.template_dir} {params.template_hits}"
        " --ccd '{params.ccd}'"
        " --out-dir {params.out_dir} --failed-dir {params.failed_dir} --seed {params.seed}"
        " {params.limits} --status {output.status} > {log} 2>&1"


localrules:
    summarize_features,
    check_features,


rule summarize_features:
    """`snakemake features`: one row per target (invalid, failed or featurized) and the failures."""
    input:
        status=expand(f"{RESULTS}/features/shards/{{shard}}.tsv", shard=sorted(SHARDS)),
    output:
        summary=f"{RESULTS}/features/summary.tsv",
        failures=f"{RESULTS}/features/failures.tsv",
    log:
        f"{LOGS}/features/summarize.log",
    conda:
        "../../envs/model.yaml"
    params:
        targets=sorted(TARGETS),
        invalid=INVALID_TARGETS,
        tokens=TARGET_TOKENS,
        results=lambda w: RESULTS,
        config=config,
        until="features",
    script:
        "../../scripts/summarize.py"


rule check_features:
    """Fail `snakemake features` (after its tables exist) while any target has failed."""
    input:
        f"{RESULTS}/features/failures.tsv",
    output:
        f"{RESULTS}/features.ok",
    log:
        f"{LOGS}/features/check_failures.log",
    conda:
        "../../envs/model.yaml"
    shell:
        "python $FOLDLINE_WORKFLOW/scripts/summarize.py --check {input} --ok {output} 2>&1 | tee {log} >&2"
