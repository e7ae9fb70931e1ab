# The pages of `snakemake predict --report report.html` (model/eval/report.py): one self-contained
# HTML page per target (PAE, pLDDT, ranking table, 3-D view, and the evaluation once `evaluate` has
# run) and the curves of every training stage this workflow ran. Captions: workflow/report/*.rst.
import hashlib


localrules:
    report_target,
    report_training,


# A page takes the evaluation as a parameter (path and digest), not an input: `predict` must not plan
# the evaluation jobs (without references they would rewrite every evaluation as an error), and a
# changed digest rebuilds the page once `evaluate` has run.
EVALUATION = f"{RESULTS}/evaluation/{{}}.json"
REPORT_PAGES = [f"{RESULTS}/report/{t}.html" for t in sorted(TARGETS)] + (
    [f"{RESULTS}/report/training/stage{k}.png" for k in range(4)]
    if checkpoint_file() == f"{RESULTS}/train/stage3/checkpoint.pt"
    else []
)


rule report_target:
    """The report page of one target."""
    input:
        done=lambda w: SHARD_DONE[w.target],
        viewer=REPO / "workflow" / "report" / "3Dmol-min.js",
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
        evaluation=lambda w: (
            EVALUATION.format(w.target)
            if Path(EVALUATION.format(w.target)).is_file()
            else ""
        ),
        evaluation_digest=lambda w: (
            hashlib.sha256(Path(EVALUATION.format(w.target)).read_bytes()).hexdigest()
            if Path(EVALUATION.format(w.target)).is_file()
            else ""
        ),
    shell:
        "python $FOLDLINE_WORKFLOW/scripts/report.py target --target {wildcards.target} --predictions {params.predictions}"
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
        "python $FOLDLINE_WORKFLOW/scripts/report.py training --metrics {params.metrics} --stage {wildcards.stage}"
        " --out {output} > {log} 2>&1"
