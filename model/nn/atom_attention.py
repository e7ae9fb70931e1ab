"""Atom attention encoder and decoder with sequence-local atom attention.

Implements AF3 Algorithm 5 (AtomAttentionEncoder), Algorithm 6 (AtomAttentionDecoder) and
Algorithm 7 (AtomTransformer: sequence-local attention, 32 queries against a 128-key window centred
on the query block). The atom-pair representation exists only inside those windows,
`[n_blk, 32, 128, c_atompair]`, so memory grows linearly with N_atom; no `[N_atom, N_atom]` tensor is
ever built. Atom conditioning (c_l, p_lm and the per-block attention biases) depends only on the
reference features and the trunk, so `AtomAttentionEncoder.condition` is computed once per denoising
trajectory and reused by every step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from model.data.constants import ATOM_NAME_VOCAB, NUM_ELEMENTS
from model.nn.primitives import chunked, layer_norm, linear
from model.nn.transformer import DiffusionTransformer

MASK_BIAS = -1e9  # additive bias for keys outside the window or the molecule


@dataclass
class AtomWindows:
    """Index tables of sequence-local attention for N_atom atoms.

    query_atom `[n_blk, n_q]`, key_atom `[n_blk, n_k]` (clamped into range), query_valid / key_valid
    (False on padding), n_pad = n_blk·n_q - N_atom.
    """

    n_pad: int
    query_atom: torch.Tensor
    key_atom: torch.Tensor
    query_valid: torch.Tensor
    key_valid: torch.Tensor


def atom_windows(n_atom: int, n_q: int, n_k: int, device: torch.device) -> AtomWindows:
    """AF3 Algorithm 7 windows: block b holds queries [n_q·b, n_q·(b+1)) and keys centred on them."""
    n_blk = max(1, -(-n_atom // n_q))
    query = torch.arange(n_blk * n_q, device=device).view(n_blk, n_q)
    start = torch.arange(n_blk, device=device) * n_q + n_q // 2 - n_k // 2
    key = start[:, None] + torch.arange(n_k, device=device)
    return AtomWindows(
        n_pad=n_blk * n_q - n_atom,
        query_atom=query.clamp(max=n_atom - 1),
        key_atom=key.clamp(0, n_atom - 1),
        query_valid=query < n_atom,
        key_valid=(key >= 0) & (key < n_atom),
    )


@dataclass
class AtomConditioning:
    """Noise-independent atom inputs: c `[A, c_atom]`, p `[n_blk, n_q, n_k, c_atompair]`, the
    attention bias of every atom transformer block `[n_blk, H, n_q, n_k]` and the windows."""

    c: torch.Tensor
    p: torch.Tensor
    biases: list[torch.Tensor]
    windows: AtomWindows


class AtomTransformer(nn.Module):
    """AF3 Algorithm 7. Shapes: q `[*, A, c_atom]`, c `[A, c_atom]` -> `[*, A, c_atom]`."""

    def __init__(
        self, c_atom: int, c_atompair: int, n_blocks: int, n_heads: int, checkpoint_blocks: bool = False
    ) -> None:
        super().__init__()
        self.diffusion_transformer = DiffusionTransformer(
            c_atom, c_atom, c_atompair, n_blocks, n_heads, cross_kv=True, checkpoint_blocks=checkpoint_blocks
        )

    def pair_biases(self, p: torch.Tensor, windows: AtomWindows) -> list[torch.Tensor]:
        mask = windows.query_valid[:, :, None] & windows.key_valid[:, None, :]  # [n_blk, n_q, n_k]
        mask_bias = torch.where(mask, 0.0, MASK_BIAS)[:, None]  # [n_blk, 1, n_q, n_k]
        return [b + mask_bias for b in self.diffusion_transformer.pair_biases(p)]

    def forward(
        self, q: torch.Tensor, c: torch.Tensor, biases: list[torch.Tensor], windows: AtomWindows
    ) -> torch.Tensor:
        return self.diffusion_transformer(q, c, biases, (windows.n_pad, windows.key_atom))


def aggregate_to_tokens(x: torch.Tensor, atom_to_token: torch.Tensor, n_token: int) -> torch.Tensor:
    """Mean over each token's atoms: `[*, A, c]` -> `[*, T, c]`.

    Counts by index_add, not bincount: bincount sizes its output from the data (a host sync on
    CUDA), which a CUDA graph of the denoiser cannot capture.
    """
    out = x.new_zeros(*x.shape[:-2], n_token, x.shape[-1]).index_add(-2, atom_to_token, x)
    ones = torch.ones_like(atom_to_token, dtype=x.dtype)
    counts = x.new_zeros(n_token).index_add(0, atom_to_token, ones).clamp(min=1)
    return out / counts[:, None]


class AtomAttentionEncoder(nn.Module):
    """AF3 Algorithm 5.

    `trunk_conditioned=False`: the input embedder's encoder (reference features only).
    `trunk_conditioned=True`: the diffusion module's, which adds s_trunk, z and the noisy positions.
    Shapes: r_noisy `[S, A, 3]` -> a `[S, T, c_token]` (or `[T, c_token]` without r), q_skip like r's
    leading dims + `[A, c_atom]`.
    """

    def __init__(
        self,
        c_atom: int,
        c_atompair: int,
        c_token: int,
        n_blocks: int,
        n_heads: int,
        n_queries: int,
        n_keys: int,
        c_s: int | None = None,
        c_z: int | None = None,
        checkpoint_blocks: bool = False,
    ) -> None:
        super().__init__()
        self.n_queries, self.n_keys = n_queries, n_keys
        self.trunk_conditioned = c_s is not None
        n_feat = 1 + NUM_ELEMENTS + 4 * ATOM_NAME_VOCAB  # ref_mask, element, name characters: 385
        self.linear_no_bias_ref_pos = linear(3, c_atom)
        self.linear_no_bias_ref_charge = linear(1, c_atom)
        self.linear_no_bias_f = linear(n_feat, c_atom)
        self.linear_no_bias_d = linear(3, c_atompair)
        self.linear_no_bias_invd = linear(1, c_atompair)
        self.linear_no_bias_v = linear(1, c_atompair)
        if self.trunk_conditioned:
            self.layernorm_s = layer_norm(c_s, bias=False)
            self.linear_no_bias_s = linear(c_s, c_atom)
            self.layernorm_z = layer_norm(c_z, bias=False)
            self.linear_no_bias_z = linear(c_z, c_atompair)
            self.linear_no_bias_r = linear(3, c_atom)
        self.linear_no_bias_cl = linear(c_atom, c_atompair)
        self.linear_no_bias_cm = linear(c_atom, c_atompair)
        self.small_mlp = nn.Sequential(
            nn.ReLU(),
            linear(c_atompair, c_atompair),
            nn.ReLU(),
            linear(c_atompair, c_atompair),
            nn.ReLU(),
            linear(c_atompair, c_atompair),
        )
        self.atom_transformer = AtomTransformer(c_atom, c_atompair, n_blocks, n_heads, checkpoint_blocks)
        self.linear_no_bias_q = linear(c_atom, c_token)

    def condition(
        self,
        feats: dict[str, torch.Tensor],
        s_trunk: torch.Tensor | None = None,
        z: torch.Tensor | None = None,
        chunk_size: int | None = None,
    ) -> AtomConditioning:
        """Alg 5 lines 1-13: the atom single c_l and the windowed atom pair p_lm (z projected
        `chunk_size` rows at a time: its normalized copy is never whole)."""
        ref_pos = feats["ref_pos"].float()
        n_atom = ref_pos.shape[0]
        f = torch.cat(
            [
                feats["ref_mask"].float()[:, None],
                # Column e-1 for atomic number e, unknown (0) in the last column: Protenix's layout.
                F.one_hot((feats["ref_element"].long() - 1) % NUM_ELEMENTS, NUM_ELEMENTS).float(),
                F.one_hot(feats["ref_atom_name_chars"].long(), ATOM_NAME_VOCAB).float().flatten(-2),
            ],
            dim=-1,
        )
        c = (
            self.linear_no_bias_ref_pos(ref_pos)
            + self.linear_no_bias_ref_charge(torch.arcsinh(feats["ref_charge"].float())[:, None])
            + self.linear_no_bias_f(f)
        ) * feats["ref_mask"].float()[:, None]  # atoms without a reference conformer carry nothing
        win = atom_windows(n_atom, self.n_queries, self.n_keys, ref_pos.device)
        qa, ka = win.query_atom, win.key_atom
        d = ref_pos[qa][:, :, None, :] - ref_pos[ka][:, None, :, :]  # [n_blk, n_q, n_k, 3]
        uid = feats["ref_space_uid"]
        valid = uid[qa][:, :, None] == uid[ka][:, None, :]
        valid = valid & win.query_valid[:, :, None] & win.key_valid[:, None]
        v = valid.to(d.dtype)[..., None]
        p = (
            self.linear_no_bias_d(d) * v
            + self.linear_no_bias_invd(1.0 / (1.0 + (d * d).sum(-1, keepdim=True))) * v
            + self.linear_no_bias_v(v) * v
        )
        if self.trunk_conditioned:
            tok = feats["atom_to_token"].long()
            c = c + self.linear_no_bias_s(self.layernorm_s(s_trunk))[tok]
            # [T, T, c_atompair], projected before the gather
            z_atom = chunked(lambda rows: self.linear_no_bias_z(self.layernorm_z(rows)), chunk_size, 0, z)
            p = p + z_atom[tok[qa][:, :, None], tok[ka][:, None, :]]
        c_act = F.relu(c)
        p = p + self.linear_no_bias_cl(c_act)[qa][:, :, None] + self.linear_no_bias_cm(c_act)[ka][:, None]
        p = p + self.small_mlp(p)
        return AtomConditioning(c, p, self.atom_transformer.pair_biases(p, win), win)

    def forward(
        self, feats: dict[str, torch.Tensor], cond: AtomConditioning, r_noisy: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Alg 5 lines 14-17: returns (token activations a, atom skip q)."""
        q = cond.c
        if r_noisy is not None:
            q = q + self.linear_no_bias_r(r_noisy)
        q = self.atom_transformer(q, cond.c, cond.biases, cond.windows)
        n_token = feats["restype"].shape[0]
        a = aggregate_to_tokens(F.relu(self.linear_no_bias_q(q)), feats["atom_to_token"].long(), n_token)
        return a, q


class AtomAttentionDecoder(nn.Module):
    """AF3 Algorithm 6. Shapes: a `[S, T, c_token]`, q_skip `[S, A, c_atom]` -> r_update `[S, A, 3]`."""

    def __init__(
        self,
        c_atom: int,
        c_atompair: int,
        c_token: int,
        n_blocks: int,
        n_heads: int,
        checkpoint_blocks: bool = False,
    ) -> None:
        super().__init__()
        self.linear_no_bias_a = linear(c_token, c_atom)
        self.atom_transformer = AtomTransformer(c_atom, c_atompair, n_blocks, n_heads, checkpoint_blocks)
        self.layernorm_q = layer_norm(c_atom, bias=False)
        self.linear_no_bias_out = linear(c_atom, 3)

    def forward(
        self,
        feats: dict[str, torch.Tensor],
        a: torch.Tensor,
        q_skip: torch.Tensor,
        cond: AtomConditioning,
        biases: list[torch.Tensor],
    ) -> torch.Tensor:
        """`cond` is the encoder's; `biases` = `self.atom_transformer.pair_biases(cond.p, cond.windows)`."""
        q = self.linear_no_bias_a(a)[..., feats["atom_to_token"].long(), :] + q_skip
        q = self.atom_transformer(q, cond.c, biases, cond.windows)
        return self.linear_no_bias_out(self.layernorm_q(q))
