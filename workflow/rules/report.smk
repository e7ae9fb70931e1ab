# The pages of `snakemake predict --report report.html` (model/eval/report.py): one self-contained
# HTML page per target (PAE, pLDDT, ranking table, 3-D view, and the evaluation once `evaluate` has
# run) and the curves of every training stage this workflow ran. Captions: workflow/report/*.rst.
import hashlib


localrules:
    report_target,
    report_training,


def evaluation_of(wildcards) -> str:
    """The target's evaluation JSON once `evaluate` has written it, else "". A parameter, not an
    input: `predict` must not plan (and rerun without references) the evaluation jobs.
    """
    path = Path(f"{RESULTS}/evaluation/{wildcards.target}.json")
    return str(path) if path.is_file() else ""


def evaluation_digest(wildcards) -> str:
    """sha256 of the evaluation JSON: a changed parameter rebuilds the page when the metrics change."""
    path = evaluation_of(wildcards)
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else ""


def report_pages() -> list[str]:
    """Every page `predict` builds for the report."""
    pages = [f"{RESULTS}/report/{t}.html" for t in sorted(TARGETS)]
    if checkpoint_file() == f"{RESULTS}/train/stage3/checkpoint.pt":
        pages += [f"{RESULTS}/report/training/stage{k}.png" for k in range(4)]
    return pages


rule report_target:
    """The report page of one target."""
    input:
        done=target_shard_done,
        viewer="workflow/report/3Dmol-min.js",
    output:
        report(
            f"{RESULTS}/report/{{target}}.html",
            caption="../report/target.rst",
            category="Targets",
            labels={"target": "{target}"},
        ),
    log:
        f"{LOGS}/report/{{target}}.log",
    wildcard_constraints:
        target=TARGET_ID,
    conda:
        "../../envs/model.yaml"
    params:
        predictions=lambda w: f"{RESULTS}/predictions/{w.target}",
        failed=lambda w: f"{RESULTS}/failed/{w.target}.txt",
        evaluation=evaluation_of,
        evaluation_digest=evaluation_digest,
    shell:
        "python scripts/report.py target --target {wildcards.target} --predictions {params.predictions}"
        " --viewer {input.viewer} --evaluation '{params.evaluation}' --failed {params.failed}"
        " --out {output} > {log} 2>&1"


rule report_training:
    """Loss terms, learning rate and validation curves of one training stage."""
    input:
        f"{RESULTS}/train/stage{{stage}}/checkpoint.pt",
    output:
        report(
            f"{RESULTS}/report/training/stage{{stage}}.png",
            caption="../report/training.rst",
            category="Training",
            labels={"stage": "{stage}"},
        ),
    log:
        f"{LOGS}/report/training_stage{{stage}}.log",
    conda:
        "../../envs/model.yaml"
    params:
        metrics=lambda w, input: str(Path(input[0]).parent / "metrics.csv"),
    shell:
        "python scripts/report.py training --metrics {params.metrics} --stage {wildcards.stage}"
        " --out {output} > {log} 2>&1"
