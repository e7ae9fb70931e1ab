"""Triangle updates and the pairformer stack.

Implements AF3 Algorithm 12 (TriangleMultiplicationOutgoing), Algorithm 13 (TriangleMultiplicationIncoming),
Algorithm 14 (TriangleAttentionStartingNode), Algorithm 15 (TriangleAttentionEndingNode) and
Algorithm 17 (PairformerStack, with Algorithm 24 single attention and Algorithm 11 transitions).
Every pair op takes `chunk_size` (None = off): the result is identical, only peak memory changes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.nn.config import ModelConfig
from model.nn.primitives import (
    Attention,
    Transition,
    chunked,
    dropout,
    flex_attention_with_bias,
    layer_norm,
    linear,
    maybe_checkpoint,
    precision,
    sdpa_attention,
)
from model.nn.transformer import AttentionPairBias


class TriangleMultiplication(nn.Module):
    """AF3 Algorithm 12 (outgoing: Σ_k a_ik b_jk) and Algorithm 13 (incoming: Σ_k a_ki b_kj).

    Shapes: z `[N, N, c_z]` -> update `[N, N, c_z]`.
    """

    def __init__(self, c_z: int, c_hidden: int, outgoing: bool) -> None:
        super().__init__()
        self.outgoing = outgoing
        self.layer_norm_in = layer_norm(c_z)
        self.linear_a_p = linear(c_z, c_hidden)
        self.linear_a_g = linear(c_z, c_hidden, init="gating")
        self.linear_b_p = linear(c_z, c_hidden)
        self.linear_b_g = linear(c_z, c_hidden, init="gating")
        self.linear_g = linear(c_z, c_z, init="gating")
        self.layer_norm_out = layer_norm(c_hidden)
        self.linear_z = linear(c_hidden, c_z, init="final")

    def forward(self, z: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
        n = z.shape[0]
        if chunk_size is None or chunk_size >= n:
            z = self.layer_norm_in(z)
            a, b = self._gated_projections(z)
            return self._product_rows(a, b, z, slice(None))
        # By row blocks (inference memory): the LayerNorm, the four projections and the product are
        # formed block by block into preallocated tensors, so only a, b ([c, N, N] each) and the
        # output are ever whole; unchunked, the projections alone take [4·c, N·N].
        blocks = [slice(i, min(i + chunk_size, n)) for i in range(0, n, chunk_size)]
        a = b = out = None
        for rows in blocks:
            a_rows, b_rows = self._gated_projections(self.layer_norm_in(z[rows]))
            if a is None:
                a, b = a_rows.new_empty(a_rows.shape[0], n, n), b_rows.new_empty(b_rows.shape[0], n, n)
            a[:, rows], b[:, rows] = a_rows, b_rows
            del a_rows, b_rows
        for rows in blocks:
            update = self._product_rows(a, b, self.layer_norm_in(z[rows]), rows)
            if out is None:
                out = update.new_empty(n, n, update.shape[-1])
            out[rows] = update
        return out

    def _product_rows(
        self, a: torch.Tensor, b: torch.Tensor, z_rows: torch.Tensor, rows: slice
    ) -> torch.Tensor:
        """Rows `rows` of the update: the triangle product of a and b (`[c, N, N]`), normalized,
        projected and gated by the normalized z's same rows `[rows, N, c_z]` -> `[rows, N, c_z]`."""
        # Outgoing: x_ij = Σ_k a_ik b_jk = (a bᵀ)_ij; incoming: x_ij = Σ_k a_ki b_kj = (aᵀ b)_ij.
        lhs, rhs = (a, b.transpose(1, 2)) if self.outgoing else (a.transpose(1, 2), b)
        x = torch.matmul(lhs[:, rows], rhs)  # [c, rows, j]
        return torch.sigmoid(self.linear_g(z_rows)) * self._normalize_project(x)

    def _gated_projections(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """a and b of the algorithm, channels first (`[c, R, N]` each), from the normalized z `[R, N, c_z]`
        (R = N, or a block of rows).

        Channels first throughout: the four projections are one GEMM writing [4·c, R·N] directly, so
        the per-channel matmul reads contiguous [c, N, N] slabs and no pair-sized tensor is ever
        permuted (a permuted copy of the pair cost more than the matmul itself at 1,024 tokens). The
        projections die on return, before the product is formed (inference peak memory)."""
        projections = (self.linear_a_p, self.linear_a_g, self.linear_b_p, self.linear_b_g)
        weight = torch.cat([lin.weight for lin in projections])
        gated = torch.matmul(weight, z.flatten(0, 1).T).unflatten(1, z.shape[:2])
        a_p, a_g, b_p, b_g = gated.chunk(4)
        return torch.sigmoid(a_g) * a_p, torch.sigmoid(b_g) * b_p

    def _normalize_project(self, x: torch.Tensor) -> torch.Tensor:
        """linear_z(layer_norm_out(x)) for channel-first x `[c, i, j]` -> `[i, j, c_z]`.

        The LayerNorm statistics are taken over the leading channel axis in FP32, and its affine part
        is folded into linear_z (W(γ⊙y + β) = (W·diag γ) y + Wβ), so channels move last only
        inside the GEMM, as a transposed operand."""
        ln = self.layer_norm_out
        y = x.flatten(1).float()
        var, mean = torch.var_mean(y, dim=0, unbiased=False)
        y = (y - mean) * torch.rsqrt(var + ln.eps)
        out = F.linear(y.T, self.linear_z.weight * ln.weight, self.linear_z.weight @ ln.bias)
        return out.unflatten(0, x.shape[1:])


TRIANGLE_ATTENTION_KERNELS = ("auto", "flex", "sdpa")


class TriangleAttention(nn.Module):
    """AF3 Algorithm 14 (starting node) and Algorithm 15 (ending node, on the transposed pair).

    `kernel` (config `triangle.attention_kernel`): "auto" = FlexAttention compiled per size bucket on
    CUDA (`flex_attention_with_bias`), SDPA elsewhere; "flex" = FlexAttention on any device (eager, no
    backward, off CUDA); "sdpa" = scaled_dot_product_attention with the bias as a mask.

    Shapes: z `[N, N, c_z]` -> update `[N, N, c_z]`.
    """

    def __init__(self, c_z: int, c_hidden: int, n_heads: int, starting: bool, kernel: str = "auto") -> None:
        super().__init__()
        self.starting = starting
        self.kernel = kernel
        self.layer_norm = layer_norm(c_z)
        self.linear = linear(c_z, n_heads)
        self.mha = Attention(c_z, c_z, c_hidden, n_heads)

    @property
    def kernel(self) -> str:
        return self._kernel

    @kernel.setter
    def kernel(self, value: str) -> None:
        if value not in TRIANGLE_ATTENTION_KERNELS:
            raise ValueError(
                f"triangle attention kernel: expected one of {TRIANGLE_ATTENTION_KERNELS}, got {value!r}"
            )
        self._kernel = value

    def forward(self, z: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
        if not self.starting:
            z = z.transpose(0, 1)
        flex = self.kernel == "flex" or (self.kernel == "auto" and z.is_cuda)
        attend = flex_attention_with_bias if flex else sdpa_attention
        if chunk_size is None or chunk_size >= z.shape[0]:
            z = self.layer_norm(z)
            bias = self.linear(z).permute(2, 0, 1)  # [H, j, k], shared by every row i
            out = self.mha(z, z, bias, attend)
        else:
            # By row blocks (inference memory): the normalized pair, and for the ending node the
            # transposed pair's copy, are never whole; each block is normalized twice, once for the
            # bias (which every row needs whole) and once for its own attention.
            bias = chunked(lambda rows: self.linear(self.layer_norm(rows)), chunk_size, 0, z).permute(2, 0, 1)

            def attend_rows(rows: torch.Tensor) -> torch.Tensor:
                rows = self.layer_norm(rows)
                return self.mha(rows, rows, bias, attend)

            out = chunked(attend_rows, chunk_size, 0, z)
        return out if self.starting else out.transpose(0, 1)


def set_triangle_attention_kernel(module: nn.Module, kernel: str) -> None:
    """Switch every TriangleAttention inside `module` to `kernel` (see TriangleAttention)."""
    for m in module.modules():
        if isinstance(m, TriangleAttention):
            m.kernel = kernel


class PairStack(nn.Module):
    """The pair half of AF3 Algorithm 17 (also the pair stack of Algorithm 8 and Algorithm 16).

    Shapes: z `[N, N, c_z]` -> `[N, N, c_z]`.
    """

    def __init__(self, c_z: int, cfg: ModelConfig, transition_n: int, dropout_p: float) -> None:
        super().__init__()
        t = cfg.triangle
        self.dropout_p = dropout_p
        self.tri_mul_out = TriangleMultiplication(c_z, t.mul_hidden, outgoing=True)
        self.tri_mul_in = TriangleMultiplication(c_z, t.mul_hidden, outgoing=False)
        self.tri_att_start = TriangleAttention(c_z, t.att_hidden, t.att_heads, True, t.attention_kernel)
        self.tri_att_end = TriangleAttention(c_z, t.att_hidden, t.att_heads, False, t.attention_kernel)
        self.pair_transition = Transition(c_z, transition_n)

    def forward(
        self, z: torch.Tensor, chunk_size: int | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        p, tr = self.dropout_p, self.training
        z = z + dropout(self.tri_mul_out(z, chunk_size), p, tr, generator, shared_dim=-3)
        # z is this call's own tensor from here on: without autograd the other residual updates go in
        # place, so a second FP32 pair tensor never coexists with z (inference peak memory).
        add = torch.add if torch.is_grad_enabled() else torch.Tensor.add_
        z = add(z, dropout(self.tri_mul_in(z, chunk_size), p, tr, generator, shared_dim=-3))
        z = add(z, dropout(self.tri_att_start(z, chunk_size), p, tr, generator, shared_dim=-3))
        z = add(z, dropout(self.tri_att_end(z, chunk_size), p, tr, generator, shared_dim=-2))
        return add(z, self.pair_transition(z, chunk_size))


class PairformerBlock(PairStack):
    """One block of AF3 Algorithm 17. Shapes: s `[N, c_s]` (or None), z `[N, N, c_z]`."""

    def __init__(
        self, c_z: int, c_s: int | None, cfg: ModelConfig, transition_n: int = 4, dropout_p: float = 0.25
    ) -> None:
        super().__init__(c_z, cfg, transition_n, dropout_p)
        self.has_s = c_s is not None
        if self.has_s:
            self.attention_pair_bias = AttentionPairBias(c_s, c_z, cfg.pairformer.n_heads)
            self.single_transition = Transition(c_s, 4)

    def forward(
        self,
        s: torch.Tensor | None,
        z: torch.Tensor,
        chunk_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        z = super().forward(z, chunk_size, generator)
        if self.has_s:
            bias = self.attention_pair_bias.pair_bias(z, chunk_size)  # pair-sized: the trunk's dtype
            # The single track costs O(N·c_s²) against the pair stack's O(N²·c_z²): FP32 is ~free.
            with precision(z.device, torch.float32):
                s = s.float()
                s = s + self.attention_pair_bias(s, bias)
                s = s + self.single_transition(s, chunk_size)
        return s, z


class PairformerStack(nn.Module):
    """AF3 Algorithm 17. Shapes: s `[N, c_s]` (or None for the template embedder), z `[N, N, c_z]`."""

    def __init__(
        self,
        c_z: int,
        c_s: int | None,
        n_blocks: int,
        cfg: ModelConfig,
        transition_n: int = 4,
        dropout_p: float = 0.25,
    ) -> None:
        super().__init__()
        self.checkpoint_blocks = cfg.checkpoint_blocks
        self.blocks = nn.ModuleList(
            PairformerBlock(c_z, c_s, cfg, transition_n, dropout_p) for _ in range(n_blocks)
        )

    def forward(
        self,
        s: torch.Tensor | None,
        z: torch.Tensor,
        chunk_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        for blk in self.blocks:
            s, z = maybe_checkpoint(
                self.checkpoint_blocks, blk, s, z, chunk_size, generator, generator=generator
            )
        return s, z
