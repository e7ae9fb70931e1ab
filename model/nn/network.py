"""Foldline: the whole AlphaFold 3 network.

Implements AF3 Algorithm 1 (MainInferenceLoop: input embedding, recycling, template embedder, MSA
module, pairformer) as `run_trunk`; the diffusion module (Algorithm 20) is `net.diffusion`
(`prepare` once, `denoise` per step; the sampler, Algorithm 18, lives in model.nn.sampler), the
confidence head (Algorithm 31) is `net.confidence` and the distogram head `net.distogram`.

Precision: the trunk runs under BF16 autocast by default on CUDA (FP32 on CPU), but only the
pair-sized work inside the template, MSA and pairformer blocks is BF16: the input embedder, the
per-cycle embeddings, the single track and every residual stream stay FP32 (docs/network.md,
"Precision"). The diffusion module and the confidence head take a `dtype` per call (FP32 by
default) so the inference precision rule (SEED.md) can pick per target. Submodule and parameter
names follow the released Protenix base v1.0.0 layout (docs/network.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from model.nn.config import ModelConfig, load_preset
from model.nn.diffusion import DiffusionModule
from model.nn.embedders import InputFeatureEmbedder, RelativePositionEncoding
from model.nn.heads import ConfidenceHead, DistogramHead
from model.nn.msa import MSAModule
from model.nn.pairformer import PairformerStack
from model.nn.primitives import layer_norm, linear, precision
from model.nn.template import TemplateEmbedder

__all__ = ["Foldline", "TrunkOutput", "load_preset"]


@dataclass
class TrunkOutput:
    """Trunk representations (float32): s_inputs `[T, c_s_inputs]`, s `[T, c_s]`, z `[T, T, c_z]`."""

    s_inputs: torch.Tensor
    s: torch.Tensor
    z: torch.Tensor


class Foldline(nn.Module):
    """The AF3 network. `Foldline(load_preset("tiny"))`; features are torch tensors per
    model/data/feature_spec.py without a batch dimension."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c_s, c_z = cfg.c_s, cfg.c_z
        self.input_embedder = InputFeatureEmbedder(cfg)
        self.relative_position_encoding = RelativePositionEncoding(cfg.r_max, cfg.s_max, c_z)
        self.template_embedder = TemplateEmbedder(cfg)
        self.msa_module = MSAModule(cfg)
        self.pairformer_stack = PairformerStack(
            c_z, c_s, cfg.pairformer.n_blocks, cfg, dropout_p=cfg.pairformer.dropout
        )
        self.diffusion_module = DiffusionModule(cfg)
        self.distogram_head = DistogramHead(c_z, cfg.distogram_bins)
        self.confidence_head = ConfidenceHead(cfg)
        self.linear_no_bias_sinit = linear(cfg.c_s_inputs, c_s)
        self.linear_no_bias_zinit1 = linear(c_s, c_z)
        self.linear_no_bias_zinit2 = linear(c_s, c_z)
        self.linear_no_bias_token_bond = linear(1, c_z)
        self.linear_no_bias_z_cycle = linear(c_z, c_z)
        self.linear_no_bias_s = linear(c_s, c_s)
        self.layernorm_z_cycle = layer_norm(c_z)
        self.layernorm_s = layer_norm(c_s)

    @property
    def diffusion(self) -> DiffusionModule:
        """The denoiser: `prepare(feats, trunk, dtype)` then `denoise(x_noisy, sigma, cond)`."""
        return self.diffusion_module

    def run_trunk(
        self,
        feats: dict[str, torch.Tensor],
        n_cycle: int | None = None,
        dtype: torch.dtype | None = None,
        chunk_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> TrunkOutput:
        """AF3 Algorithm 1 lines 1-14. Gradients flow through the last cycle only (AF3 §3.8).

        dtype None = BF16 autocast on CUDA, FP32 elsewhere. `generator` drives dropout (training) and
        the per-recycle MSA row subsample (training; at inference unless `cfg.msa.sample_at_inference`
        is off); without it inference sees every MSA row (up to `cfg.msa.sample_max_rows`).
        """
        n_cycle = self.cfg.n_cycle if n_cycle is None else n_cycle
        if n_cycle < 1:
            raise ValueError(f"run_trunk: n_cycle must be >= 1, got {n_cycle}")
        device = feats["restype"].device
        if dtype is None:
            dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        # FP32 here: the embeddings run once per call and feed z_init, so their rounding would reach every
        # block; residual streams stay FP32 too and only block internals run in BF16.
        with precision(device, torch.float32):
            s_inputs = self.input_embedder(feats)
            s_init = self.linear_no_bias_sinit(s_inputs)
            z_init = self.linear_no_bias_zinit1(s_init)[:, None] + self.linear_no_bias_zinit2(s_init)[None]
            z_init = z_init + self.relative_position_encoding(feats)
            z_init = z_init + self.linear_no_bias_token_bond(feats["token_bonds"].float()[..., None])
        s, z = torch.zeros_like(s_init), torch.zeros_like(z_init)
        with precision(device, dtype):
            for cycle in range(n_cycle):
                with torch.set_grad_enabled(torch.is_grad_enabled() and cycle == n_cycle - 1):
                    s, z = self._cycle(
                        feats, s_inputs, s_init, z_init, s.detach(), z.detach(), chunk_size, generator
                    )
        return TrunkOutput(s_inputs.float(), s.float(), z.float())

    def _cycle(
        self,
        feats: dict[str, torch.Tensor],
        s_inputs: torch.Tensor,
        s_init: torch.Tensor,
        z_init: torch.Tensor,
        s: torch.Tensor,
        z: torch.Tensor,
        chunk_size: int | None,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with precision(z.device, torch.float32):  # once per cycle, like the embeddings
            z = z_init + self.linear_no_bias_z_cycle(self.layernorm_z_cycle(z))
            s = s_init + self.linear_no_bias_s(self.layernorm_s(s))
        z = z + self.template_embedder(feats, z, chunk_size, generator)
        z = self.msa_module(feats, z, s_inputs, chunk_size, generator)
        return self.pairformer_stack(s, z, chunk_size, generator)

    def distogram(self, z: torch.Tensor) -> torch.Tensor:
        """Distogram logits `[T, T, 64]` from the trunk pair z `[T, T, c_z]` (FP32)."""
        with precision(z.device, torch.float32):
            return self.distogram_head(z.float())

    def confidence(
        self,
        feats: dict[str, torch.Tensor],
        trunk: TrunkOutput,
        x_pred: torch.Tensor,
        dtype: torch.dtype = torch.float32,
        chunk_size: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """AF3 Algorithm 31 on predicted positions x_pred `[S, A, 3]`: plddt_logits `[S, A, 50]`,
        pae_logits `[S, T, T, 64]`, pde_logits `[S, T, T, 64]`, resolved_logits `[S, A, 2]`."""
        return self.confidence_head(feats, trunk.s_inputs, trunk.s, trunk.z, x_pred, chunk_size, dtype)
