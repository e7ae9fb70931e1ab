# Foldline: targets -> MSA/template search -> features -> prediction, and the four training stages.
#   snakemake predict --config inputs=targets.csv     predict every target of a targets.csv
#   snakemake --profile slurm train_stage3            train stage0 -> stage1 -> stage2 -> stage3
#   snakemake evaluate --config references=DIR        score the predictions against references
# Configuration: config/config.yaml (documented in config/README.md); HPC guide: docs/workflow.md.

from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


# The defaults, found from any working directory (--directory); --configfile files are laid over them.
configfile: Path(workflow.basedir) / "config" / "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/training_plan.smk"


rule all:
    """Default target: predictions for every target (training first when no checkpoint is given)."""
    input:
        f"{RESULTS}/predict.ok",


rule predict:
    """Predict every target; fails after writing the tables while any target has failed.
    `snakemake predict --report report.html` then gathers the report pages (workflow/rules/report.smk).
    """
    input:
        f"{RESULTS}/summary.tsv",
        f"{RESULTS}/failures.tsv",
        lambda w: REPORT_PAGES,
        f"{RESULTS}/predict.ok",


rule evaluate:
    """Score every prediction against its reference structure (config references; docs/outputs.md)."""
    input:
        f"{RESULTS}/evaluation.tsv",


rule features:
    """Features of every prediction target and training entry; fails after writing
    results/features/summary.tsv and failures.tsv while any target has failed."""
    input:
        expand(f"{RESULTS}/features/shards/{{shard}}.tsv", shard=sorted(SHARDS)),
        [f"{RESULTS}/features/train/training_set.txt"] if TRAINING_ENTRIES else [],
        f"{RESULTS}/features/summary.tsv",
        f"{RESULTS}/features.ok",


rule msa:
    """Every MSA search the targets need (with the templates of protein sequences)."""
    input:
        sorted({search_batch_file(key) for key in MSA_QUERIES}),


localrules:
    all,
    predict,
    evaluate,
    features,
    msa,


include: "workflow/rules/manifest.smk"
include: "workflow/rules/databases.smk"
include: "workflow/rules/search.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
