"""Inference: diffusion sampler, confidences, precision rule, writers."""
