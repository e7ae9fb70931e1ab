"""The diffusion module (the denoiser D(x; σ) of EDM, wrapped around the network).

Implements AF3 Algorithm 20 (DiffusionModule) and Algorithm 21 (DiffusionConditioning) with the
Algorithm 22 Fourier noise embedding, the Algorithm 5/6 atom attention encoder/decoder and the
Algorithm 23 diffusion transformer (AdaLN Algorithm 26, conditioned transitions Algorithm 25).

Everything that does not depend on the noise level (pair conditioning, the atom single/pair
conditioning, every attention bias) is computed once by `prepare`; `denoise` then costs only the
per-step work for S samples at once. The step has static shapes, no host synchronisation and no
data-dependent control flow, so with `cuda_graph` on (config `diffusion.cuda_graph`) inference replays
it as a CUDA graph captured once per conditioning and batch shape (`GraphedDenoiser`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from model.nn.atom_attention import AtomAttentionDecoder, AtomAttentionEncoder, AtomConditioning
from model.nn.config import ModelConfig
from model.nn.embedders import FourierEmbedding, RelativePositionEncoding
from model.nn.primitives import Transition, chunked, layer_norm, linear, precision
from model.nn.transformer import DiffusionTransformer


@dataclass
class DiffusionConditioningCache:
    """Noise-independent inputs of `DiffusionModule.denoise` (from `prepare`)."""

    feats: dict[str, torch.Tensor]
    s_base: torch.Tensor  # [T, c_s] single conditioning before the noise embedding
    z: torch.Tensor | None  # [T, T, c_z] conditioned pair, kept only where token_biases is None
    token_biases: list[torch.Tensor] | None  # per diffusion transformer block [H, T, T]; None = per step
    atom: AtomConditioning
    decoder_biases: list[torch.Tensor]
    dtype: torch.dtype
    chunk_size: int | None = None  # pair rows at a time where a step recomputes the token biases
    graphs: dict[tuple[int, ...], GraphedDenoiser] = field(default_factory=dict)  # by x_noisy shape


log = logging.getLogger(__name__)


@contextlib.contextmanager
def tf32_matmuls(enabled: bool) -> Iterator[None]:
    """CUDA FP32 matmuls on TF32 tensor cores inside the block (process-wide setting, restored after)."""
    if not enabled:
        yield
        return
    matmul = torch.backends.cuda.matmul
    before = matmul.fp32_precision
    matmul.fp32_precision = "tf32"
    try:
        yield
    finally:
        matmul.fp32_precision = before


class GraphedDenoiser:
    """One denoiser call captured as a CUDA graph for a fixed x_noisy shape; later calls copy their
    inputs into the captured buffers and replay it.

    The first call runs the step eagerly on a side stream (lazy cuBLAS and allocator initialisation
    must not happen during capture) and returns that result, then captures the step. A failed capture
    logs once and leaves this shape eager. Lives in the conditioning cache whose tensors the graph
    reads, and holds no reference to it (`step` takes it per call), so both are freed together.
    """

    def __init__(
        self, step: Callable[[torch.Tensor, torch.Tensor, DiffusionConditioningCache], torch.Tensor]
    ) -> None:
        self.step = step
        self.graph: torch.cuda.CUDAGraph | None = None
        self.failed = False
        self.x = self.sigma = self.out = None

    def __call__(
        self, x_noisy: torch.Tensor, sigma: torch.Tensor, cond: DiffusionConditioningCache
    ) -> torch.Tensor:
        if self.graph is not None:
            self.x.copy_(x_noisy)
            self.sigma.copy_(sigma)
            self.graph.replay()
            return self.out.clone()  # the next replay overwrites self.out
        if self.failed:
            return self.step(x_noisy, sigma, cond)
        device = x_noisy.device
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            warm = self.step(x_noisy, sigma, cond)
        torch.cuda.current_stream(device).wait_stream(side)
        self.x, self.sigma = x_noisy.clone(), sigma.clone()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self.out = self.step(self.x, self.sigma, cond)
        except RuntimeError as err:
            log.warning("CUDA graph capture of the denoiser failed (%s); it runs eagerly", err)
            self.failed = True
            self.x = self.sigma = self.out = None
            return warm
        self.graph = graph
        return warm


class DiffusionConditioning(nn.Module):
    """AF3 Algorithm 21, split into the noise-independent part and the noise embedding."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c_s, c_z, c_f = cfg.c_s, cfg.c_z, cfg.diffusion.c_fourier
        self.sigma_data = cfg.sigma_data
        self.relpe = RelativePositionEncoding(cfg.r_max, cfg.s_max, c_z)
        self.layernorm_z = layer_norm(2 * c_z, bias=False)
        self.linear_no_bias_z = linear(2 * c_z, c_z)
        self.transition_z1 = Transition(c_z, 2)
        self.transition_z2 = Transition(c_z, 2)
        self.layernorm_s = layer_norm(c_s + cfg.c_s_inputs, bias=False)
        self.linear_no_bias_s = linear(c_s + cfg.c_s_inputs, c_s)
        self.fourier_embedding = FourierEmbedding(c_f)
        self.layernorm_n = layer_norm(c_f, bias=False)
        self.linear_no_bias_n = linear(c_f, c_s)
        self.transition_s1 = Transition(c_s, 2)
        self.transition_s2 = Transition(c_s, 2)

    def pair(
        self, feats: dict[str, torch.Tensor], z_trunk: torch.Tensor, chunk_size: int | None = None
    ) -> torch.Tensor:
        """Lines 1-5: `[T, T, c_z]`, `chunk_size` rows at a time (inference memory: the concatenated
        [T, T, 2·c_z] pair is never whole; without autograd the residual updates go in place)."""

        def project(z_rows: torch.Tensor, relpe_rows: torch.Tensor) -> torch.Tensor:
            return self.linear_no_bias_z(self.layernorm_z(torch.cat([z_rows, relpe_rows], dim=-1)))

        z = chunked(project, chunk_size, 0, z_trunk, self.relpe(feats).to(z_trunk.dtype))
        add = torch.add if torch.is_grad_enabled() else torch.Tensor.add_
        z = add(z, self.transition_z1(z, chunk_size))
        return add(z, self.transition_z2(z, chunk_size))

    def single_base(self, s_trunk: torch.Tensor, s_inputs: torch.Tensor) -> torch.Tensor:
        """Lines 6-7: `[T, c_s]`."""
        return self.linear_no_bias_s(self.layernorm_s(torch.cat([s_trunk, s_inputs], dim=-1)))

    def single(self, s_base: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Lines 8-13: s_base `[T, c_s]`, σ `[S]` -> `[S, T, c_s]`."""
        n = self.fourier_embedding(0.25 * torch.log(sigma / self.sigma_data))
        s = s_base[None] + self.linear_no_bias_n(self.layernorm_n(n))[:, None, :]
        s = s + self.transition_s1(s)
        return s + self.transition_s2(s)


class DiffusionModule(nn.Module):
    """AF3 Algorithm 20.

    `prepare(feats, trunk)` once, then `denoise(x_noisy [S, A, 3], sigma [S], cond) -> [S, A, 3]`.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.diffusion
        self.sigma_data = cfg.sigma_data
        self.bias_cache_max_tokens = d.bias_cache_max_tokens
        self.cuda_graph = d.cuda_graph
        self.tf32 = d.tf32
        self.diffusion_conditioning = DiffusionConditioning(cfg)
        self.atom_attention_encoder = AtomAttentionEncoder(
            cfg.c_atom,
            cfg.c_atompair,
            d.c_token,
            d.atom_encoder.n_blocks,
            d.atom_encoder.n_heads,
            cfg.n_queries,
            cfg.n_keys,
            c_s=cfg.c_s,
            c_z=cfg.c_z,
            checkpoint_blocks=cfg.checkpoint_blocks,
        )
        self.layernorm_s = layer_norm(cfg.c_s, bias=False)
        self.linear_no_bias_s = linear(cfg.c_s, d.c_token)
        self.diffusion_transformer = DiffusionTransformer(
            d.c_token,
            cfg.c_s,
            cfg.c_z,
            d.transformer.n_blocks,
            d.transformer.n_heads,
            checkpoint_blocks=cfg.checkpoint_blocks,
        )
        self.layernorm_a = layer_norm(d.c_token, bias=False)
        self.atom_attention_decoder = AtomAttentionDecoder(
            cfg.c_atom,
            cfg.c_atompair,
            d.c_token,
            d.atom_decoder.n_blocks,
            d.atom_decoder.n_heads,
            checkpoint_blocks=cfg.checkpoint_blocks,
        )

    def prepare(
        self,
        feats: dict[str, torch.Tensor],
        trunk: object,
        dtype: torch.dtype = torch.float32,
        chunk_size: int | None = None,
    ) -> DiffusionConditioningCache:
        """The noise-independent conditioning from a `TrunkOutput` (s_inputs, s, z)."""
        with precision(trunk.z.device, dtype):
            s_inputs, s_trunk, z_trunk = trunk.s_inputs.float(), trunk.s.float(), trunk.z.float()
            cond = self.diffusion_conditioning
            z = cond.pair(feats, z_trunk, chunk_size)
            atom = self.atom_attention_encoder.condition(feats, s_trunk, z, chunk_size)
            token_biases = None
            if z.shape[0] <= self.bias_cache_max_tokens:
                token_biases = self.diffusion_transformer.pair_biases(z, chunk_size)
            return DiffusionConditioningCache(
                feats=feats,
                s_base=cond.single_base(s_trunk, s_inputs),
                z=z if token_biases is None else None,  # the biases are all a step needs of it
                token_biases=token_biases,
                atom=atom,
                decoder_biases=self.atom_attention_decoder.atom_transformer.pair_biases(atom.p, atom.windows),
                dtype=dtype,
                chunk_size=chunk_size,
            )

    def denoise(
        self, x_noisy: torch.Tensor, sigma: torch.Tensor, cond: DiffusionConditioningCache
    ) -> torch.Tensor:
        """D(x_noisy; σ): `[S, A, 3]`, `[S]` -> denoised positions `[S, A, 3]` (float32).

        With `tf32` on (CUDA, FP32 conditioning), the step's matmuls run on TF32 tensor cores.
        With `cuda_graph` on, on CUDA and without gradients, the step is replayed from a CUDA graph
        captured on the first call of each x_noisy shape (kept in `cond`, so it lives as long as the
        conditioning it reads); a failed capture logs once and leaves that shape eager.
        """
        x_noisy, sigma = x_noisy.float(), sigma.float().to(x_noisy.device)
        if not (self.cuda_graph and x_noisy.is_cuda and not torch.is_grad_enabled()):
            return self._denoise(x_noisy, sigma, cond)
        key = tuple(x_noisy.shape)
        if key not in cond.graphs:
            cond.graphs[key] = GraphedDenoiser(self._denoise)
        return cond.graphs[key](x_noisy, sigma, cond)

    def _denoise(
        self, x_noisy: torch.Tensor, sigma: torch.Tensor, cond: DiffusionConditioningCache
    ) -> torch.Tensor:
        """AF3 Algorithm 20 for S samples at once; x_noisy `[S, A, 3]` and sigma `[S]` float32."""
        sd = self.sigma_data
        tf32 = self.tf32 and x_noisy.is_cuda and cond.dtype == torch.float32
        with precision(x_noisy.device, cond.dtype), tf32_matmuls(tf32):
            s = self.diffusion_conditioning.single(cond.s_base, sigma)  # [S, T, c_s]
            r_noisy = x_noisy / torch.sqrt(sigma**2 + sd**2)[:, None, None]
            a, q_skip = self.atom_attention_encoder(cond.feats, cond.atom, r_noisy)
            a = a + self.linear_no_bias_s(self.layernorm_s(s))
            biases = cond.token_biases
            if biases is None:  # made block by block: one [H, T, T] bias alive at a time
                blocks = self.diffusion_transformer.blocks
                biases = (blk.attention_pair_bias.pair_bias(cond.z, cond.chunk_size) for blk in blocks)
            a = self.diffusion_transformer(a, s, biases)
            a = self.layernorm_a(a)
            r_update = self.atom_attention_decoder(cond.feats, a, q_skip, cond.atom, cond.decoder_biases)
        r_update = r_update.float()
        scale_skip = sd**2 / (sd**2 + sigma**2)
        scale_out = sd * sigma / torch.sqrt(sd**2 + sigma**2)
        return scale_skip[:, None, None] * x_noisy + scale_out[:, None, None] * r_update
