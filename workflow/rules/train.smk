# Training: the feature store of the training entries -> stage0 -> stage1 -> stage2 -> stage3, each
# stage starting from the previous stage's final checkpoint (config/stages.yaml holds the recipe), or
# stage training.init_stage from training.init_checkpoint (fine-tuning given weights).
# A stage with training.gpus > 1 runs torchrun (DDP) inside its one job. results/train/stage{k}/
# also holds last.pt (resume: a rerun of an interrupted stage continues from it), metrics.csv,
# provenance.json and TensorBoard events; only the final checkpoint.pt is a declared output, so that
# Snakemake never deletes the resume state before a rerun.


localrules:
    training_set,
    train_stage0,
    train_stage1,
    train_stage2,
    train_stage3,


rule training_set:
    """The list of training feature files that were built (one path a line), from the shards' tables."""
    input:
        training_shard_tables,
    output:
        f"{RESULTS}/features/train/training_set.txt",
    log:
        f"{LOGS}/train/training_set.log",
    conda:
        "../../envs/model.yaml"
    shell:
        "awk -F '\\t' '$2 == \"ok\" {{print $3}}' {input} > {output} 2> {log}"


rule train_stage:
    """Train one stage on the GPU(s) given by training.gpus."""
    input:
        features=f"{RESULTS}/features/train/training_set.txt",
        stages=config["training"]["stages"],
        parent=parent_checkpoint,
    output:
        checkpoint=f"{RESULTS}/train/stage{{stage}}/checkpoint.pt",
    log:
        f"{LOGS}/train/stage{{stage}}.log",
    conda:
        "../../envs/model.yaml"
    threads: 4
    resources:
        **TRAIN_NODE_RESOURCES,
        gpu=config["training"]["gpus"] * config["training"]["nodes"],
        slurm_partition=GPU_PARTITION,
    params:
        preset=config["preset"],
        steps=config["training"]["steps"],
        init=lambda w, input: (
            f"--init-checkpoint {input.parent}" if input.parent else ""
        ),
        overrides=" ".join(f"--set '{kv}'" for kv in config["training"].get("set", [])),
        seed=config["training"]["seed"],
        device=config["device"],
        launcher=train_launcher(),
        out_dir=lambda w, output: str(Path(output.checkpoint).parent),
    shell:
        "python $FOLDLINE_WORKFLOW/scripts/gpu_slot.py --gpus {resources.gpu} -- "
        "{params.launcher} $FOLDLINE_WORKFLOW/scripts/train.py --stage {wildcards.stage} --stages {input.stages}"
        " --preset {params.preset} --features {input.features} {params.init}"
        " --out-dir {params.out_dir} --steps {params.steps} {params.overrides}"
        " --seed {params.seed} --device {params.device} > {log} 2>&1"


rule train_stage0:
    """Target: stage 0 trained."""
    input:
        f"{RESULTS}/train/stage0/checkpoint.pt",


rule train_stage1:
    """Target: stage 1 trained (and the stages before it)."""
    input:
        f"{RESULTS}/train/stage1/checkpoint.pt",


rule train_stage2:
    """Target: stage 2 trained (and the stages before it)."""
    input:
        f"{RESULTS}/train/stage2/checkpoint.pt",


rule train_stage3:
    """Target: stage 3 trained (and the stages before it)."""
    input:
        f"{RESULTS}/train/stage3/checkpoint.pt",
