"""The template embedder.

Implements AF3 Algorithm 16 (TemplateEmbedder) with its pairformer (Algorithm 17 without the single
track). The template distogram (39 bins, 3.25-50.75 Å, of pseudo-β distances) and the unit vectors
(Cα_j in the backbone frame of residue i) are computed here from the compact template features of
model/data/feature_spec.py. Feature columns follow Protenix's order so its weights load unchanged:
distogram 39, pseudo-β mask 1, restype_j 32, restype_i 32, unit vector 3, backbone-frame mask 1.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from model.data.constants import NUM_RESTYPES
from model.nn.config import ModelConfig
from model.nn.pairformer import PairformerStack
from model.nn.primitives import layer_norm, linear, precision

N_DGRAM_BINS = 39
DGRAM_MIN, DGRAM_MAX = 3.25, 50.75
TEMPLATE_FEATURE_DIM = N_DGRAM_BINS + 1 + 2 * NUM_RESTYPES + 3 + 1  # 108


def template_distogram(pseudo_beta: torch.Tensor) -> torch.Tensor:
    """`[K, N, 3]` -> one-hot `[K, N, N, 39]`: 38 edges from 3.25 to 50.75 Å, bin 0 below, 38 above."""
    d = torch.cdist(pseudo_beta.float(), pseudo_beta.float())
    edges = torch.linspace(DGRAM_MIN, DGRAM_MAX, N_DGRAM_BINS - 1, device=d.device)
    return F.one_hot(torch.bucketize(d, edges), N_DGRAM_BINS).float()


def backbone_unit_vectors(backbone: torch.Tensor) -> torch.Tensor:
    """`[K, N, 3 (N, CA, C), 3]` -> `[K, N, N, 3]`: unit vector to Cα_j in residue i's local frame.

    Frame of residue i: origin Cα, e1 along C - Cα, e2 the N - Cα direction orthogonalised (AF3 §4.3.2).
    """
    n_at, ca, c = backbone.float().unbind(-2)
    e1 = F.normalize(c - ca, dim=-1, eps=1e-6)
    v2 = n_at - ca
    e2 = F.normalize(v2 - (v2 * e1).sum(-1, keepdim=True) * e1, dim=-1, eps=1e-6)
    e3 = torch.cross(e1, e2, dim=-1)
    rot = torch.stack([e1, e2, e3], dim=-2)  # [K, N, 3 axes, 3]
    diff = ca[:, None, :, :] - ca[:, :, None, :]  # [K, i, j, 3] = Cα_j - Cα_i
    local = torch.einsum("kiac,kijc->kija", rot, diff)
    return F.normalize(local, dim=-1, eps=1e-6)


class TemplateEmbedder(nn.Module):
    """AF3 Algorithm 16. Shapes: z `[N, N, c_z]` -> update `[N, N, c_z]` (zeros without templates)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c, c_z = cfg.template.c, cfg.c_z
        self.n_blocks = cfg.template.n_blocks
        self.linear_no_bias_z = linear(c_z, c)
        self.layernorm_z = layer_norm(c_z)
        self.linear_no_bias_a = linear(TEMPLATE_FEATURE_DIM, c)
        self.pairformer_stack = PairformerStack(
            c,
            None,
            cfg.template.n_blocks,
            cfg,
            transition_n=cfg.template.transition_n,
            dropout_p=cfg.template.dropout,
        )
        self.layernorm_v = layer_norm(c)
        self.linear_no_bias_u = linear(c, c_z, init="final")

    def forward(
        self,
        feats: dict[str, torch.Tensor],
        z: torch.Tensor,
        chunk_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        restype = feats["template_restype"]
        n_templ, n_tok = restype.shape[0], z.shape[0]
        if n_templ == 0 or self.n_blocks == 0:
            return torch.zeros_like(z)
        asym = feats["asym_id"]
        same_chain = (asym[:, None] == asym[None, :]).float()  # templates never couple chains
        pb_mask = feats["template_pseudo_beta_mask"].float()
        bb_mask = feats["template_backbone_mask"].float()
        pb_2d = pb_mask[:, :, None] * pb_mask[:, None, :] * same_chain
        bb_2d = bb_mask[:, :, None] * bb_mask[:, None, :] * same_chain
        dgram = template_distogram(feats["template_pseudo_beta"]) * pb_2d[..., None]
        unit = backbone_unit_vectors(feats["template_backbone"]) * bb_2d[..., None]
        onehot = F.one_hot(restype.long(), NUM_RESTYPES).float()  # [K, N, 32]
        # The template embedding in and out is once per template per cycle: FP32, like the residual
        # stream v; only the pairformer blocks run in the trunk's dtype.
        fp32 = partial(precision, z.device, torch.float32)
        with fp32():
            z_in = self.linear_no_bias_z(self.layernorm_z(z))
        u = torch.zeros_like(z_in)
        for t in range(n_templ):
            a = torch.cat(
                [
                    dgram[t],
                    pb_2d[t][..., None],
                    onehot[t][None, :, :].expand(n_tok, -1, -1),
                    onehot[t][:, None, :].expand(-1, n_tok, -1),
                    unit[t],
                    bb_2d[t][..., None],
                ],
                dim=-1,
            )
            with fp32():
                v = z_in + self.linear_no_bias_a(a)
            _, v = self.pairformer_stack(None, v, chunk_size, generator)
            with fp32():
                u = u + self.layernorm_v(v)
        with fp32():
            return self.linear_no_bias_u(F.relu(u / n_templ))
