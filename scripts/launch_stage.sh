#!/usr/bin/env bash
# Launch one training stage on NODES nodes with GPUS processes each (training.nodes, training.gpus):
#   launch_stage.sh NODES GPUS scripts/train.py --stage K ...
# Inside a SLURM allocation (the profile asks for NODES tasks, one a node) srun starts one torchrun
# agent per task; the agents meet by c10d rendezvous on the allocation's first node and run GPUS
# workers each (DDP: global batch NODES x GPUS x grad_accum_steps). Outside SLURM the NODES x GPUS
# processes run on this machine under torchrun --standalone, so the global batch is the same.
set -euo pipefail
nodes=$1 gpus=$2
shift 2
if [[ -n "${SLURM_JOB_ID:-}" ]]; then
    # the job step's environment may lack SLURM_JOB_NODELIST (the executor plugin clears SLURM_*)
    nodelist=$(squeue --noheader --jobs "$SLURM_JOB_ID" --format %N)
    head=$(scontrol show hostnames "$nodelist" | head -n 1)
    exec srun --ntasks "$nodes" --kill-on-bad-exit=1 \
        torchrun --nnodes "$nodes" --nproc_per_node "$gpus" --rdzv_backend c10d \
        --rdzv_endpoint "$head:${FOLDLINE_RDZV_PORT:-29500}" --rdzv_id "$SLURM_JOB_ID" "$@"
fi
exec torchrun --standalone --nproc_per_node $((nodes * gpus)) "$@"
