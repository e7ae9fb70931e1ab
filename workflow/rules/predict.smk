# Prediction: shards of targets balanced by token count (scripts/make_shards.py, decided at parse
# time) -> the shard's features (build_features in features.smk) -> one GPU job per shard
# (scripts/predict.py) -> results/predictions/{target}/... (DESIGN.md) -> results/summary.tsv and
# results/failures.tsv; the run fails while any target has failed.


localrules:
    shard_plan,
    summarize,
    check_failures,


rule shard_plan:
    """The shard of every target and its token count, for the record."""
    output:
        f"{RESULTS}/shards/plan.tsv",
    log:
        f"{LOGS}/predict/shard_plan.log",
    conda:
        "../../envs/model.yaml"
    params:
        plan=SHARD_PLAN,
        tokens=TARGET_TOKENS,
    script:
        "../../scripts/make_shards.py"


rule predict_shard:
    """Predict every featurized target of one shard on one GPU (CPU where there is none)."""
    input:
        status=f"{RESULTS}/features/shards/{{shard}}.tsv",
        checkpoint=checkpoint_input,
    output:
        done=f"{RESULTS}/shards/{{shard}}.done",
    log:
        f"{LOGS}/predict/{{shard}}.log",
    conda:
        "../../envs/model.yaml"
    threads: 2
    resources:
        gpu=1,
        slurm_partition=GPU_PARTITION,
    params:
        checkpoint=checkpoint_file(),
        preset=config["preset"],
        seeds=shard_seeds,
        samples=config["samples"],
        steps=config["steps"],
        cycles=config["cycles"],
        trunk_per_seed=(
            "--trunk-per-seed" if config["trunk_per_seed"] else "--no-trunk-per-seed"
        ),
        device=config["device"],
        precision=config["precision"],
        pred_dir=lambda w: f"{RESULTS}/predictions",
        failed_dir=lambda w: f"{RESULTS}/failed",
    shell:
        # only targets whose features were built; a target whose features, weights and settings are
        # unchanged keeps its prediction (--reuse-unchanged), so editing one target re-predicts only it
        "feats=$(awk -F '\\t' '$2 == \"ok\" {{print $3}}' {input.status}); "
        'if [ -z "$feats" ]; then touch {output.done}; exit 0; fi; '
        "python $FOLDLINE_WORKFLOW/scripts/gpu_slot.py --gpus {resources.gpu} -- "
        "python $FOLDLINE_WORKFLOW/scripts/predict.py --features $feats --checkpoint {params.checkpoint}"
        " --preset {params.preset} --out-dir {params.pred_dir} --failed-dir {params.failed_dir}"
        " --seeds {params.seeds} --samples {params.samples} --steps {params.steps}"
        " --cycles {params.cycles} {params.trunk_per_seed} --device {params.device} --precision {params.precision}"
        " --reuse-unchanged --done {output.done} > {log} 2>&1"


rule summarize:
    """One row per target (invalid, failed or predicted) and the table of failures."""
    input:
        shards=expand(f"{RESULTS}/shards/{{shard}}.done", shard=sorted(SHARDS)),
        status=expand(f"{RESULTS}/features/shards/{{shard}}.tsv", shard=sorted(SHARDS)),
        plan=f"{RESULTS}/shards/plan.tsv",
    output:
        summary=report(
            f"{RESULTS}/summary.tsv",
            caption="../report/summary.rst",
            category="Prediction",
        ),
        failures=report(
            f"{RESULTS}/failures.tsv",
            caption="../report/failures.rst",
            category="Prediction",
        ),
        provenance=f"{RESULTS}/provenance.json",
    log:
        f"{LOGS}/predict/summarize.log",
    conda:
        "../../envs/model.yaml"
    params:
        targets=sorted(TARGETS),
        invalid=INVALID_TARGETS,
        tokens=TARGET_TOKENS,
        results=lambda w: RESULTS,
        config=config,
    script:
        "../../scripts/summarize.py"


rule check_failures:
    """Fail the run (after the tables exist) while any target has failed."""
    input:
        f"{RESULTS}/failures.tsv",
    output:
        f"{RESULTS}/predict.ok",
    log:
        f"{LOGS}/predict/check_failures.log",
    conda:
        "../../envs/model.yaml"
    shell:
        "python $FOLDLINE_WORKFLOW/scripts/summarize.py --check {input} --ok {output} 2>&1 | tee {log} >&2"
