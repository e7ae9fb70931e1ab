"""Input embedders.

Implements AF3 Algorithm 2 (InputFeatureEmbedder, around the Algorithm 5 atom attention encoder),
Algorithm 3 (RelativePositionEncoding) and Algorithm 22 (FourierEmbedding of the noise level).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from model.data.constants import NUM_RESTYPES
from model.nn.atom_attention import AtomAttentionEncoder
from model.nn.config import ModelConfig
from model.nn.primitives import linear


class InputFeatureEmbedder(nn.Module):
    """AF3 Algorithm 2. Shapes: feats (per feature_spec) -> s_inputs `[T, c_s_inputs]`."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        enc = cfg.input_atom_encoder
        self.atom_attention_encoder = AtomAttentionEncoder(
            cfg.c_atom,
            cfg.c_atompair,
            cfg.c_token_input,
            enc.n_blocks,
            enc.n_heads,
            cfg.n_queries,
            cfg.n_keys,
            checkpoint_blocks=cfg.checkpoint_blocks,
        )

    def forward(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        cond = self.atom_attention_encoder.condition(feats)
        a, _ = self.atom_attention_encoder(feats, cond)
        return torch.cat(
            [
                a,
                F.one_hot(feats["restype"].long(), NUM_RESTYPES).to(a.dtype),
                feats["profile"].to(a.dtype),
                feats["deletion_mean"].to(a.dtype)[:, None],
            ],
            dim=-1,
        )


class RelativePositionEncoding(nn.Module):
    """AF3 Algorithm 3. Shapes: feats -> `[T, T, c_z]`.

    Columns: relative residue 2·r_max+2, relative token 2·r_max+2, same entity 1, relative chain 2·s_max+2.
    """

    def __init__(self, r_max: int, s_max: int, c_z: int) -> None:
        super().__init__()
        self.r_max, self.s_max = r_max, s_max
        self.linear_no_bias = linear(2 * (2 * r_max + 2) + 1 + 2 * s_max + 2, c_z)

    def forward(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        def pair(name: str) -> tuple[torch.Tensor, torch.Tensor]:
            x = feats[name].long()
            return x[:, None], x[None, :]

        asym_i, asym_j = pair("asym_id")
        res_i, res_j = pair("residue_index")
        tok_i, tok_j = pair("token_index")
        ent_i, ent_j = pair("entity_id")
        sym_i, sym_j = pair("sym_id")
        same_chain, same_res, same_entity = asym_i == asym_j, res_i == res_j, ent_i == ent_j
        r, s = self.r_max, self.s_max
        d_res = torch.where(same_chain, (res_i - res_j + r).clamp(0, 2 * r), 2 * r + 1)
        d_tok = torch.where(same_chain & same_res, (tok_i - tok_j + r).clamp(0, 2 * r), 2 * r + 1)
        # Protenix (and its released weights): copies of one entity, chain itself included, are
        # told apart by sym_id; other entities get the last class (the paper keys this on same_chain).
        d_chain = torch.where(same_entity, (sym_i - sym_j + s).clamp(0, 2 * s), 2 * s + 1)
        rel = torch.cat(
            [
                F.one_hot(d_res, 2 * r + 2),
                F.one_hot(d_tok, 2 * r + 2),
                same_entity[..., None],
                F.one_hot(d_chain, 2 * s + 2),
            ],
            dim=-1,
        ).to(self.linear_no_bias.weight.dtype)
        return self.linear_no_bias(rel)


class FourierEmbedding(nn.Module):
    """AF3 Algorithm 22: cos(2π(t·w + b)) with w, b drawn once from N(0, 1) and frozen.

    Shapes: t `[S]` -> `[S, c]`.
    """

    def __init__(self, c: int, seed: int = 42) -> None:
        super().__init__()
        # Drawn on the CPU so the values do not depend on the device the module is built on;
        # torch.empty(0) honours a surrounding `with torch.device(...)`.
        g = torch.Generator().manual_seed(seed)
        device = torch.empty(0).device
        self.w = nn.Parameter(torch.randn(c, generator=g, device="cpu").to(device), requires_grad=False)
        self.b = nn.Parameter(torch.randn(c, generator=g, device="cpu").to(device), requires_grad=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return torch.cos(2 * math.pi * (t[..., None] * self.w + self.b))
