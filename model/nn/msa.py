"""The MSA module.

Implements AF3 Algorithm 8 (MsaModule), Algorithm 9 (OuterProductMean) and Algorithm 10
(MSAPairWeightedAveraging), with Algorithm 11 transitions and the Algorithm 12-15 pair stack.
The compact MSA features are one-hot encoded and has_deletion / deletion_value = 2/π·arctan(d/3)
derived here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from model.data.constants import NUM_RESTYPES
from model.nn.config import ModelConfig
from model.nn.pairformer import PairStack
from model.nn.primitives import (
    Transition,
    chunked,
    dropout,
    layer_norm,
    linear,
    maybe_checkpoint,
    precision,
)


class OuterProductMean(nn.Module):
    """AF3 Algorithm 9. Shapes: m `[S, N, c_m]` -> update `[N, N, c_z]`."""

    def __init__(self, c_m: int, c_z: int, c_hidden: int) -> None:
        super().__init__()
        self.layer_norm = layer_norm(c_m)
        self.linear_1 = linear(c_m, c_hidden)
        self.linear_2 = linear(c_m, c_hidden)
        self.linear_out = linear(c_hidden * c_hidden, c_z, bias=True, init="final")

    def forward(self, m: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
        m = self.layer_norm(m)
        a, b = self.linear_1(m), self.linear_2(m)
        n_seq = m.shape[0]

        def rows(a_rows: torch.Tensor) -> torch.Tensor:
            # Project the sum, then divide (bias included) by N_seq + 1e-3: the AF2/OpenFold/Protenix
            # form of "Linear(mean)", kept so released weights give the same numbers.
            o = torch.einsum("sic,sjd->ijcd", a_rows, b)
            return self.linear_out(o.flatten(-2)) / (n_seq + 1e-3)

        if chunk_size is None:
            return rows(a)
        return torch.cat([rows(a[:, i : i + chunk_size]) for i in range(0, a.shape[1], chunk_size)], dim=0)


class MSAPairWeightedAveraging(nn.Module):
    """AF3 Algorithm 10. Shapes: m `[S, N, c_m]`, z `[N, N, c_z]` -> update `[S, N, c_m]`."""

    def __init__(self, c_m: int, c_z: int, n_heads: int, c_hidden: int) -> None:
        super().__init__()
        self.n_heads, self.c_hidden = n_heads, c_hidden
        self.layernorm_m = layer_norm(c_m)
        self.linear_no_bias_mv = linear(c_m, n_heads * c_hidden)
        self.layernorm_z = layer_norm(c_z)
        self.linear_no_bias_z = linear(c_z, n_heads)
        self.linear_no_bias_mg = linear(c_m, n_heads * c_hidden, init="gating")
        self.linear_no_bias_out = linear(n_heads * c_hidden, c_m, init="final")

    def forward(self, m: torch.Tensor, z: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
        m = self.layernorm_m(m)
        # Softmax in FP32 (CUDA autocast does so too; CPU autocast would keep BF16).
        w = torch.softmax(self.linear_no_bias_z(self.layernorm_z(z)), dim=1, dtype=torch.float32)  # over j

        def rows(m_rows: torch.Tensor) -> torch.Tensor:
            v = self.linear_no_bias_mv(m_rows).unflatten(-1, (self.n_heads, self.c_hidden))  # [s, j, H, c]
            o = torch.einsum("ijh,sjhc->sihc", w.to(v.dtype), v).flatten(-2)
            return self.linear_no_bias_out(torch.sigmoid(self.linear_no_bias_mg(m_rows)) * o)

        return chunked(rows, chunk_size, 0, m)


class MSAStack(nn.Module):
    """The MSA-track half of one AF3 Algorithm 8 block (lines 6-8)."""

    def __init__(self, c_m: int, c_z: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.dropout_p = cfg.msa.msa_dropout
        self.msa_pair_weighted_averaging = MSAPairWeightedAveraging(
            c_m, c_z, cfg.msa.pwa_heads, cfg.msa.pwa_hidden
        )
        self.transition_m = Transition(c_m, 4)

    def forward(
        self,
        m: torch.Tensor,
        z: torch.Tensor,
        chunk_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        update = self.msa_pair_weighted_averaging(m, z, chunk_size)
        m = m + dropout(update, self.dropout_p, self.training, generator, shared_dim=-3)
        return m + self.transition_m(m, chunk_size)


class MSABlock(nn.Module):
    """One block of AF3 Algorithm 8; the last block skips the MSA track (its output is unused)."""

    def __init__(self, cfg: ModelConfig, is_last: bool) -> None:
        super().__init__()
        c_m, c_z = cfg.msa.c_m, cfg.c_z
        self.outer_product_mean_msa = OuterProductMean(c_m, c_z, cfg.msa.opm_hidden)
        self.msa_stack = None if is_last else MSAStack(c_m, c_z, cfg)
        self.pair_stack = PairStack(c_z, cfg, transition_n=4, dropout_p=cfg.msa.pair_dropout)

    def forward(
        self,
        m: torch.Tensor,
        z: torch.Tensor,
        chunk_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        z = z + self.outer_product_mean_msa(m, chunk_size)
        if self.msa_stack is not None:
            m = self.msa_stack(m, z, chunk_size, generator)
        return m, self.pair_stack(z, chunk_size, generator)


class MSAModule(nn.Module):
    """AF3 Algorithm 8, on a random subset of the MSA rows drawn afresh every call (recycle) when
    training, and at inference when `generator` is given and `cfg.msa.sample_at_inference` is on.

    Shapes: feats msa `[M, N]`, deletion_matrix `[M, N]`; z `[N, N, c_z]`, s_inputs `[N, c_s_inputs]`
    -> z `[N, N, c_z]`. With no MSA rows, z is returned unchanged.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.checkpoint_blocks = cfg.checkpoint_blocks
        self.sample_min_rows, self.sample_max_rows = cfg.msa.sample_min_rows, cfg.msa.sample_max_rows
        self.sample_at_inference = cfg.msa.sample_at_inference
        self.linear_no_bias_m = linear(NUM_RESTYPES + 2, cfg.msa.c_m)
        self.linear_no_bias_s = linear(cfg.c_s_inputs, cfg.msa.c_m)
        self.blocks = nn.ModuleList(
            MSABlock(cfg, is_last=i + 1 == cfg.msa.n_blocks) for i in range(cfg.msa.n_blocks)
        )

    def sample_rows(
        self, n_rows: int, device: torch.device, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Indices of a random subset of MSA rows (AF3 §3.3: a fresh subsample every cycle): a size
        uniform in [min(sample_min_rows, n_rows), n_rows], a random order, at most sample_max_rows."""
        gen_device = generator.device if generator is not None else device
        low = min(self.sample_min_rows, n_rows)
        size = int(torch.randint(low, n_rows + 1, (1,), generator=generator, device=gen_device))
        order = torch.randperm(n_rows, generator=generator, device=gen_device)
        return order[: min(size, self.sample_max_rows)].to(device)

    def forward(
        self,
        feats: dict[str, torch.Tensor],
        z: torch.Tensor,
        s_inputs: torch.Tensor,
        chunk_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        msa, deletions = feats["msa"], feats["deletion_matrix"].float()
        n_rows = msa.shape[0]
        if n_rows == 0 or len(self.blocks) == 0:
            return z
        # At inference the subsample needs the caller's seeded generator (predict passes one per seed);
        # a call without one, or with sample_at_inference off, sees the first sample_max_rows rows.
        if self.training or (generator is not None and self.sample_at_inference):
            rows = self.sample_rows(n_rows, msa.device, generator)
            msa, deletions = msa[rows], deletions[rows]
        elif n_rows > self.sample_max_rows:
            msa, deletions = msa[: self.sample_max_rows], deletions[: self.sample_max_rows]
        m = torch.cat(
            [
                F.one_hot(msa.long(), NUM_RESTYPES).float(),
                (deletions > 0).float()[..., None],
                (2.0 / math.pi * torch.arctan(deletions / 3.0))[..., None],
            ],
            dim=-1,
        )
        with precision(z.device, torch.float32):  # once per cycle, FP32 like the trunk's embeddings
            m = self.linear_no_bias_m(m) + self.linear_no_bias_s(s_inputs)
        for blk in self.blocks:
            m, z = maybe_checkpoint(
                self.checkpoint_blocks, blk, m, z, chunk_size, generator, generator=generator
            )
        return z
