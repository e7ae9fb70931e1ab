# Evaluation: every predicted target against its reference structure (config `references`: a
# folder of {target}.cif files or a target_id,reference table, else the targets table's `reference`
# column; model/eval/references.py) ->
# results/evaluation/{target}.json -> results/evaluation.tsv. Metrics: docs/outputs.md.
from model.eval.references import reference_table

REFERENCES = {
    target: str(path)
    for target, path in (
        reference_table(config["references"] or config["inputs"])
        if config["references"] or str(config["inputs"]).lower().endswith(".csv")
        else {}
    ).items()
}
# The done flag of the prediction shard that holds each target.
SHARD_DONE = {
    target: f"{RESULTS}/shards/{shard}.done"
    for shard, members in SHARDS.items()
    for target in members
}


localrules:
    evaluation_table,


rule evaluate_target:
    """Score every sample of one target against its reference (one JSON; errors are one line)."""
    input:
        done=lambda w: SHARD_DONE[w.target],
        # no reference is an error row in the table, not a failed job
        reference=lambda w: REFERENCES.get(w.target, []),
    output:
        f"{RESULTS}/evaluation/{{target}}.json",
    log:
        f"{LOGS}/evaluate/{{target}}.log",
    wildcard_constraints:
        target=TARGET_ID,
    conda:
        "../../envs/model.yaml"
    threads: 1
    params:
        predictions=lambda w: f"{RESULTS}/predictions/{w.target}",
    shell:
        "python $FOLDLINE_WORKFLOW/scripts/evaluate.py target --target {wildcards.target}"
        " --predictions {params.predictions} --reference '{input.reference}' --out {output}"
        " > {log} 2>&1"


rule evaluation_table:
    """One row per target and sample (results/evaluation.tsv)."""
    input:
        expand(f"{RESULTS}/evaluation/{{target}}.json", target=sorted(TARGETS)),
    output:
        report(
            f"{RESULTS}/evaluation.tsv",
            caption="../report/evaluation.rst",
            category="Evaluation",
        ),
    log:
        f"{LOGS}/evaluate/table.log",
    conda:
        "../../envs/model.yaml"
    shell:
        "python $FOLDLINE_WORKFLOW/scripts/evaluate.py table --out {output} {input} > {log} 2>&1"
