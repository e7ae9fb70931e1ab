"""Attention with pair bias and the diffusion transformer.

Implements AF3 Algorithm 24 (AttentionPairBias, plain or AdaLN-conditioned), Algorithm 25
(ConditionedTransitionBlock) and Algorithm 23 (DiffusionTransformer). The same classes serve the
token-level diffusion transformer (full attention over tokens) and the atom transformer (sequence-local
windows, AF3 Algorithm 7), which differ only in the shape of the pair bias they receive.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from model.nn.primitives import AdaptiveLayerNorm, Attention, chunked, layer_norm, linear, maybe_checkpoint


class AttentionPairBias(nn.Module):
    """AF3 Algorithm 24.

    With `c_s` set, a is AdaLN-conditioned on s and gated by sigmoid(Linear(s)) (adaLN-Zero, bias
    init -2); without, a plain LayerNorm (pairformer). `cross_kv` gives keys/values their own AdaLN
    (the atom transformer, as Protenix's `layernorm_kv`).

    Shapes: a `[*, N, c_a]`, s `[N, c_s]`; bias from `pair_bias(z)`: `[H, N, N]` (full) or
    `[n_blk, H, n_q, n_k]` (local) -> `[*, N, c_a]`.
    """

    def __init__(
        self,
        c_a: int,
        c_z: int,
        n_heads: int,
        c_s: int | None = None,
        ln_z_bias: bool = True,
        cross_kv: bool = False,
    ) -> None:
        super().__init__()
        self.has_s = c_s is not None
        self.cross_kv = cross_kv
        if self.has_s:
            self.layernorm_a = AdaptiveLayerNorm(c_a, c_s)
            if cross_kv:
                self.layernorm_kv = AdaptiveLayerNorm(c_a, c_s)
        else:
            self.layernorm_a = layer_norm(c_a)
        self.attention = Attention(c_a, c_a, c_a // n_heads, n_heads, q_bias=True, zero_out=not self.has_s)
        self.layernorm_z = layer_norm(c_z, bias=ln_z_bias)
        self.linear_nobias_z = linear(c_z, n_heads)
        if self.has_s:
            self.linear_a_last = linear(c_s, c_a, bias=True, init="final")
            nn.init.constant_(self.linear_a_last.bias, -2.0)  # adaLN-Zero: gate starts near closed

    def pair_bias(self, z: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
        """`[*, Q, K, c_z]` -> `[*, H, Q, K]` (independent of a, so precomputable per denoising call),
        `chunk_size` rows of Q at a time (inference memory: the normalized z is never whole)."""
        bias = chunked(lambda rows: self.linear_nobias_z(self.layernorm_z(rows)), chunk_size, -3, z)
        # Contiguous once here (cached by `prepare`), not at every denoising step inside SDPA.
        return bias.movedim(-1, -3).contiguous()

    def forward(
        self,
        a: torch.Tensor,
        bias: torch.Tensor,
        s: torch.Tensor | None = None,
        gather: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """`gather` = (query padding length, key index [n_blk, n_k]) switches to local attention."""
        q_in = self.layernorm_a(a, s) if self.has_s else self.layernorm_a(a)
        # Keys/values take their AdaLN of the query-normalised a, as Protenix does (its weights expect it).
        kv_in = self.layernorm_kv(q_in, s) if self.cross_kv else q_in
        if gather is None:
            out = self.attention(q_in, kv_in, bias)
        else:
            out = local_attention(self.attention, q_in, kv_in, bias, *gather)
        if self.has_s:
            out = torch.sigmoid(self.linear_a_last(s)) * out
        return out


def local_attention(
    attention: Attention,
    q_in: torch.Tensor,
    kv_in: torch.Tensor,
    bias: torch.Tensor,
    n_pad: torch.Tensor,
    key_index: torch.Tensor,
) -> torch.Tensor:
    """Sequence-local attention (AF3 Algorithm 7): 32-atom query blocks against 128-atom key windows.

    q_in, kv_in `[*, A, c]`; bias `[n_blk, H, n_q, n_k]` (masked keys already -inf-like);
    key_index `[n_blk, n_k]` -> `[*, A, c]`. Peak memory is O(A · n_k), never O(A²).
    """
    n_atom = q_in.shape[-2]
    n_blk, _ = key_index.shape
    q_blk = F.pad(q_in, (0, 0, 0, int(n_pad))).unflatten(-2, (n_blk, -1))  # [*, n_blk, n_q, c]
    kv_blk = kv_in[..., key_index, :]  # [*, n_blk, n_k, c]
    out = attention(q_blk, kv_blk, bias)
    return out.flatten(-3, -2)[..., :n_atom, :]


class ConditionedTransitionBlock(nn.Module):
    """AF3 Algorithm 25: SwiGLU transition with AdaLN input and adaLN-Zero output gating.

    Shapes: a `[*, N, c_a]`, s `[N, c_s]` -> `[*, N, c_a]`.
    """

    def __init__(self, c_a: int, c_s: int, n: int = 2) -> None:
        super().__init__()
        self.adaln = AdaptiveLayerNorm(c_a, c_s)
        self.linear_nobias_a1 = linear(c_a, n * c_a, init="relu")
        self.linear_nobias_a2 = linear(c_a, n * c_a, init="relu")
        self.linear_nobias_b = linear(n * c_a, c_a)
        self.linear_s = linear(c_s, c_a, bias=True, init="final")
        nn.init.constant_(self.linear_s.bias, -2.0)

    def forward(self, a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        a = self.adaln(a, s)
        b = F.silu(self.linear_nobias_a1(a)) * self.linear_nobias_a2(a)
        return torch.sigmoid(self.linear_s(s)) * self.linear_nobias_b(b)


class DiffusionTransformerBlock(nn.Module):
    """One step of AF3 Algorithm 23 (attention with pair bias, then conditioned transition)."""

    def __init__(self, c_a: int, c_s: int, c_z: int, n_heads: int, cross_kv: bool = False) -> None:
        super().__init__()
        self.attention_pair_bias = AttentionPairBias(
            c_a, c_z, n_heads, c_s=c_s, ln_z_bias=False, cross_kv=cross_kv
        )
        self.conditioned_transition_block = ConditionedTransitionBlock(c_a, c_s)

    def forward(
        self,
        a: torch.Tensor,
        s: torch.Tensor,
        bias: torch.Tensor,
        gather: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        # Residual around both sub-blocks (Alg 23 line 3 as written drops the attention residual).
        a = a + self.attention_pair_bias(a, bias, s, gather)
        return a + self.conditioned_transition_block(a, s)


class DiffusionTransformer(nn.Module):
    """AF3 Algorithm 23: a stack of DiffusionTransformerBlocks sharing s and the pair representation.

    Shapes: a `[*, N, c_a]`, s `[N, c_s]`, biases one per block from `pair_biases(z)` -> `[*, N, c_a]`.
    """

    def __init__(
        self,
        c_a: int,
        c_s: int,
        c_z: int,
        n_blocks: int,
        n_heads: int,
        cross_kv: bool = False,
        checkpoint_blocks: bool = False,
    ) -> None:
        super().__init__()
        self.checkpoint_blocks = checkpoint_blocks
        self.blocks = nn.ModuleList(
            DiffusionTransformerBlock(c_a, c_s, c_z, n_heads, cross_kv) for _ in range(n_blocks)
        )

    def pair_biases(self, z: torch.Tensor, chunk_size: int | None = None) -> list[torch.Tensor]:
        """The per-block attention biases from z `[*, Q, K, c_z]` -> each `[*, H, Q, K]`."""
        return [blk.attention_pair_bias.pair_bias(z, chunk_size) for blk in self.blocks]

    def forward(
        self,
        a: torch.Tensor,
        s: torch.Tensor,
        biases: Iterable[torch.Tensor],
        gather: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """`biases`: one per block, in order (a generator makes each only when its block runs)."""
        for blk, bias in zip(self.blocks, biases, strict=True):
            a = maybe_checkpoint(self.checkpoint_blocks, blk, a, s, bias, gather)
        return a
