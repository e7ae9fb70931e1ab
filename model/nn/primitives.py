"""Building blocks shared by every network module (AF3 supplement §3.1 conventions).

Implements AF3 Algorithm 11 (Transition), Algorithm 26 (AdaptiveLayerNorm), the gated multi-head
attention used by Algorithms 7, 10, 14, 15 and 24, seeded dropout (rowwise/columnwise, §3.6) and the
chunking and activation-checkpointing helpers. Parameter names follow the released Protenix layout
(`linear_no_bias_a`, `layernorm1`, `mha.linear_q`, ...) so checkpoints map key-for-key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention.flex_attention import flex_attention
from torch.utils.checkpoint import checkpoint

log = logging.getLogger(__name__)

# attend(q, k, v, bias): q `[*, H, Q, c]`, k/v `[*, H, K, c]`, bias broadcastable to `[*, H, Q, K]`.
AttendFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def linear(c_in: int, c_out: int, bias: bool = False, init: str = "default") -> nn.Linear:
    """`LinearNoBias` of the paper by default, initialised as AF2/AF3 do (AF2 suppl. §1.11.4).

    init: "default" LeCun normal; "relu" He normal (before SiLU/ReLU); "final" zeros, for the last
    projection of a residual update so every block starts as the identity; "gating" zero weights and
    bias 1 (sigmoid gates start open; no-bias gates start at 0.5).
    """
    layer = nn.Linear(c_in, c_out, bias=bias)
    with torch.no_grad():
        if init in ("final", "gating"):
            layer.weight.zero_()
        elif init in ("default", "relu"):
            std = (1.0 if init == "default" else 2.0) / c_in
            nn.init.trunc_normal_(
                layer.weight, std=std**0.5 / 0.8796, a=-2 * std**0.5 / 0.8796, b=2 * std**0.5 / 0.8796
            )
        else:
            raise ValueError(f"linear: unknown init {init!r}")
        if bias:
            layer.bias.fill_(1.0 if init == "gating" else 0.0)
    return layer


class LayerNorm(nn.LayerNorm):
    """LayerNorm with FP32 statistics whatever the input dtype; under autocast it returns the autocast dtype.

    Normalisation is precision-sensitive and stays FP32 under mixed precision, as AF3 and Protenix
    keep it (weights FP32 too: rounding them to BF16 instead, OpenFold's way, costs 0.05-0.1 points of
    z's error). Every consumer of a LayerNorm inside an autocast region is a matmul that would cast its
    input to BF16 anyway, so the result is cast once here instead of once per consumer (five
    projections read each triangle-update LayerNorm). Outside autocast the result has the weights'
    dtype, as nn.LayerNorm's.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        device = x.device.type
        if self.weight is not None and x.dtype != self.weight.dtype:
            x = x.to(self.weight.dtype)  # CUDA's kernel wants one dtype (a BF16 matmul output here)
        with torch.autocast(device, enabled=False):
            y = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        if torch.is_autocast_enabled(device):
            y = y.to(torch.get_autocast_dtype(device))
        return y


def layer_norm(c: int, bias: bool = True, affine: bool = True) -> LayerNorm:
    return LayerNorm(c, elementwise_affine=affine, bias=bias if affine else False)


def dropout(
    x: torch.Tensor,
    p: float,
    training: bool,
    generator: torch.Generator | None = None,
    shared_dim: int | None = None,
) -> torch.Tensor:
    """Inverted dropout with an explicit generator; `shared_dim` shares the mask along one axis.

    AF3 §3.6: the pair stack uses rowwise dropout (mask shared over dim -3) for everything but the
    ending-node triangle attention, which is columnwise (shared over dim -2).
    """
    if not training or p == 0.0:
        return x
    shape = list(x.shape)
    if shared_dim is not None:
        shape[shared_dim] = 1
    keep = torch.rand(shape, generator=generator, device=x.device, dtype=torch.float32) >= p
    return x * keep.to(x.dtype) / (1.0 - p)


def chunked(
    fn: Callable[..., torch.Tensor], chunk_size: int | None, dim: int, *args: torch.Tensor, **kwargs
) -> torch.Tensor:
    """`fn(*args, **kwargs)` evaluated over slices of `args` along `dim`, the results joined along `dim`.

    Only `args` are sliced; `kwargs` go to every call whole. Exact for functions that are
    independent along `dim` and keep its length (inference memory control; None = one call). Each
    slice's result is written into the preallocated output, so the peak is the output plus one
    slice's work, not the output twice (as concatenating a list of results would be).
    """
    n = args[0].shape[dim]
    if chunk_size is None or chunk_size >= n:
        return fn(*args, **kwargs)
    out = None
    for i in range(0, n, chunk_size):
        length = min(chunk_size, n - i)
        part = fn(*(a.narrow(dim, i, length) for a in args), **kwargs)
        if out is None:
            shape = list(part.shape)
            shape[dim] = n
            out = part.new_empty(shape)
        out.narrow(dim, i, length).copy_(part)
    return out


def maybe_checkpoint(
    enabled: bool, fn: Callable[..., object], *args: object, generator: torch.Generator | None = None
) -> object:
    """Activation checkpointing of one block when enabled and gradients are being recorded.

    The recomputation replays the dropout masks: `generator` is rewound to its state at the first
    forward for the replay and put back afterwards, so checkpointed == plain, gradients included.
    """
    if not (enabled and torch.is_grad_enabled()):
        return fn(*args)
    if generator is None:
        return checkpoint(fn, *args, use_reentrant=False)
    start = generator.get_state()
    calls = [0]

    def replayable(*a: object) -> object:
        calls[0] += 1
        if calls[0] == 1:
            return fn(*a)
        after = generator.get_state()
        generator.set_state(start)
        try:
            return fn(*a)
        finally:
            generator.set_state(after)

    return checkpoint(replayable, *args, use_reentrant=False)


class Transition(nn.Module):
    """AF3 Algorithm 11: SwiGLU transition, x -> [*, c] with hidden n·c.

    Shapes: x `[*, c]` -> `[*, c]`.
    """

    def __init__(self, c: int, n: int) -> None:
        super().__init__()
        self.layernorm1 = layer_norm(c)
        self.linear_no_bias_a = linear(c, n * c, init="relu")
        self.linear_no_bias_b = linear(c, n * c, init="relu")
        self.linear_no_bias = linear(n * c, c, init="final")

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layernorm1(x)
        return self.linear_no_bias(F.silu(self.linear_no_bias_a(x)) * self.linear_no_bias_b(x))

    def forward(self, x: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
        if x.dim() < 2:
            return self._forward(x)
        return chunked(self._forward, chunk_size, 0, x)


class AdaptiveLayerNorm(nn.Module):
    """AF3 Algorithm 26: a = sigmoid(Linear(s)) · LayerNorm(a) + LinearNoBias(s).

    Shapes: a `[*, N, c_a]`, s `[N, c_s]` (broadcast over leading dims) -> `[*, N, c_a]`.
    """

    def __init__(self, c_a: int, c_s: int) -> None:
        super().__init__()
        self.layernorm_a = layer_norm(c_a, affine=False)
        self.layernorm_s = layer_norm(c_s, bias=False)
        self.linear_s = linear(c_s, c_a, bias=True, init="final")
        self.linear_nobias_s = linear(c_s, c_a, init="final")

    def forward(self, a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        s = self.layernorm_s(s)
        return torch.sigmoid(self.linear_s(s)) * self.layernorm_a(a) + self.linear_nobias_s(s)


class Attention(nn.Module):
    """Gated multi-head attention with an additive bias, through scaled_dot_product_attention.

    The inner step of AF3 Algorithms 7, 14, 15 and 24. Shapes: q_x `[*, Q, c_q]`, kv_x `[*, K, c_kv]`,
    bias broadcastable to `[*, H, Q, K]` -> `[*, Q, c_q]`.
    """

    def __init__(
        self, c_q: int, c_kv: int, c_hidden: int, n_heads: int, q_bias: bool = False, zero_out: bool = True
    ) -> None:
        super().__init__()
        self.n_heads, self.c_hidden = n_heads, c_hidden
        self.linear_q = linear(c_q, n_heads * c_hidden, bias=q_bias)
        self.linear_k = linear(c_kv, n_heads * c_hidden)
        self.linear_v = linear(c_kv, n_heads * c_hidden)
        # zero_out=False where an adaLN-Zero gate already starts the update near zero (Alg 24 line 13).
        self.linear_o = linear(n_heads * c_hidden, c_q, init="final" if zero_out else "default")
        self.linear_g = linear(c_q, n_heads * c_hidden, init="gating")

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.n_heads, self.c_hidden)).transpose(-2, -3)  # [*, H, N, c]

    def forward(
        self,
        q_x: torch.Tensor,
        kv_x: torch.Tensor,
        bias: torch.Tensor | None,
        attend: AttendFn | None = None,
    ) -> torch.Tensor:
        """`attend` computes softmax(q·kᵀ/√c + bias)·v; None = `sdpa_attention`."""
        q = self._heads(self.linear_q(q_x))
        k, v = self._heads(self.linear_k(kv_x)), self._heads(self.linear_v(kv_x))
        o = (attend or sdpa_attention)(q, k, v, bias)
        o = o.transpose(-2, -3).flatten(-2)  # [*, Q, H*c]
        return self.linear_o(torch.sigmoid(self.linear_g(q_x)) * o)


def sdpa_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """softmax(q·kᵀ/√c + bias)·v through scaled_dot_product_attention (the reference kernel)."""
    if bias is not None:
        # SDPA's fused kernels need the mask's last dim contiguous; a permuted pair bias
        # ([H, Q, K] from [Q, K, H]) otherwise falls back to the slow math path.
        bias = bias.to(q.dtype)
        if bias.stride(-1) != 1:
            bias = bias.contiguous()
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


def bucket_length(n: int) -> int:
    """The compiled size that n is padded to: a multiple of max(64, 2^(⌈log2 n⌉ - 4)).

    8 sizes up to 512 (padding under 64), then 8 per octave (padding under 12.5 %), so a shard of
    targets of every size compiles a bounded set of kernels: 40 sizes up to 8,192.
    """
    if n <= 64:
        return 64
    step = max(64, 1 << ((n - 1).bit_length() - 4))
    return -(-n // step) * step


def bucket_batch(b: int) -> int:
    """The compiled batch size b is padded to: the next power of two below 64 (pair-stack chunk sizes
    are powers of two, so chunks pad only their remainder), `bucket_length` above."""
    return 1 << (b - 1).bit_length() if b < 64 else bucket_length(b)


def _flex_with_bias(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    def add_bias(
        score: torch.Tensor, b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor
    ) -> torch.Tensor:
        return score + bias[h, q_idx, kv_idx]

    return flex_attention(q, k, v, score_mod=add_bias)


class _FlexKernel:
    """`_flex_with_bias` compiled with static shapes, built on first use; off for the process after
    its first failure (no Triton, an unsupported card), when SDPA takes over."""

    # Sizes × dtypes × grad modes stay well below this (bucket_length gives 40 sizes up to 8,192).
    RECOMPILE_LIMIT = 256

    def __init__(self) -> None:
        self.compiled: Callable[..., torch.Tensor] | None = None
        self.failed = False

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        if self.compiled is None:
            import torch._dynamo.config as dynamo_config

            name = "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"
            setattr(dynamo_config, name, max(getattr(dynamo_config, name), self.RECOMPILE_LIMIT))
            self.compiled = torch.compile(_flex_with_bias, dynamic=False, fullgraph=True)
        return self.compiled(q, k, v, bias)


FLEX_KERNEL = _FlexKernel()
FLEX_MIN_HEAD_DIM = 16  # Triton's matrix instructions need K >= 16; smaller heads (tiny preset) use SDPA


def flex_attention_with_bias(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, compiled: bool | None = None
) -> torch.Tensor:
    """softmax(q·kᵀ/√c + bias)·v through FlexAttention, the bias added per tile (no [B, H, Q, K] mask).

    q, k, v `[B, H, N, c]`, bias `[H, N, N]` (shared over the batch, as the triangle attentions'
    bias is over rows) -> `[B, H, N, c]`. B and N are padded to `bucket_batch`/`bucket_length`; padded
    keys get a -inf bias, padded rows and queries are dropped. `compiled` (default: on CUDA) runs the
    kernel compiled for the padded shape; a compilation or kernel failure logs once and falls back to
    `sdpa_attention` for the rest of the process, as heads narrower than FLEX_MIN_HEAD_DIM always do.
    Eager FlexAttention (CPU) has no backward.
    """
    compiled = q.is_cuda if compiled is None else compiled
    if compiled and (FLEX_KERNEL.failed or q.shape[-1] < FLEX_MIN_HEAD_DIM):
        return sdpa_attention(q, k, v, bias)
    b, _, n, _ = q.shape
    b_pad, n_pad = (bucket_batch(b), bucket_length(n)) if compiled else (b, n)
    # FP32 whatever q's dtype: the kernel adds it to FP32 scores, and its gradient, a sum over the B rows
    # that share it, accumulates in the bias's dtype. It is 1/c_z of the pair's size.
    bias = bias.float()
    if n_pad != n:
        bias = F.pad(F.pad(bias, (0, n_pad - n), value=float("-inf")), (0, 0, 0, n_pad - n))
    bias = bias.contiguous()  # a strided [H, Q, K] view made the kernel 4x slower
    if (b_pad, n_pad) != (b, n):
        q, k, v = (F.pad(x, (0, 0, 0, n_pad - n, 0, 0, 0, b_pad - b)) for x in (q, k, v))
    if not compiled:
        out = _flex_with_bias(q, k, v, bias)
    else:
        try:
            # q, k and v share one dtype and the bias is meant FP32: nothing for autocast to cast.
            with torch.autocast(q.device.type, enabled=False):
                out = FLEX_KERNEL(q, k, v, bias)
        except Exception as err:  # noqa: BLE001 (any compiler or kernel error means: use SDPA)
            FLEX_KERNEL.failed = True
            log.warning("FlexAttention unavailable (%s: %s); using SDPA", type(err).__name__, err)
            return sdpa_attention(q[:b, :, :n], k[:b, :, :n], v[:b, :, :n], bias[:, :n, :n])
    return out[:b, :, :n]


def precision(device: torch.device | str, dtype: torch.dtype | None) -> torch.autocast:
    """Autocast context: BF16 mixed precision for `torch.bfloat16`, strict FP32 otherwise.

    FP32 explicitly disables any autocast the caller opened, so a module can be pinned to FP32 per
    call (the inference precision rule for the sampler and confidence head, SEED.md).
    """
    device_type = torch.device(device).type
    if dtype == torch.bfloat16:
        return torch.autocast(device_type, dtype=torch.bfloat16)
    if dtype not in (None, torch.float32):
        raise ValueError(f"precision: dtype must be torch.float32 or torch.bfloat16, got {dtype}")
    return torch.autocast(device_type, enabled=False)
