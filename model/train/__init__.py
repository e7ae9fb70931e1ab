"""Training: losses, permutation, loop, EMA, LR schedule, checkpoints, stages."""
