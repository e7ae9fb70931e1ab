"""Output heads.

Implements the distogram head (AF3 §4.4, 64 bins) and AF3 Algorithm 31 (ConfidenceHead: pLDDT 50
bins per atom, PAE 64, PDE 64, resolved 2) with its Algorithm 17 pairformer.
"""

from __future__ import annotations

import torch
from torch import nn

from model.nn.config import ModelConfig
from model.nn.pairformer import PairformerStack
from model.nn.primitives import layer_norm, linear, precision


class DistogramHead(nn.Module):
    """Symmetric distogram logits. Shapes: z `[T, T, c_z]` -> `[T, T, n_bins]`."""

    def __init__(self, c_z: int, n_bins: int) -> None:
        super().__init__()
        self.linear = linear(c_z, n_bins, bias=True, init="final")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        logits = self.linear(z)
        return logits + logits.transpose(0, 1)


def per_position_linear(a: torch.Tensor, weight: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """`a[n] @ weight[pos[n]]` without materialising `weight[pos]` (`[A, c, b]` would be large).

    Shapes: a `[A, c]`, weight `[P, c, b]`, pos `[A]` in [0, P) -> `[A, b]`.
    """
    out = a.new_zeros(a.shape[0], weight.shape[-1])
    for p in range(weight.shape[0]):
        sel = torch.nonzero(pos == p).squeeze(-1)
        if sel.numel():
            out = out.index_copy(0, sel, a[sel] @ weight[p])
    return out


class ConfidenceHead(nn.Module):
    """AF3 Algorithm 31.

    Shapes: s_inputs `[T, c_s_inputs]`, s_trunk `[T, c_s]`, z_trunk `[T, T, c_z]`, x_pred `[S, A, 3]`
    -> plddt `[S, A, 50]`, pae `[S, T, T, 64]`, pde `[S, T, T, 64]`, resolved `[S, A, 2]` logits.
    pLDDT/resolved use one weight matrix per atom position within the token (Protenix layout): the
    atom's index in its standard residue's full CCD atom list (`atom_to_tokatom_idx`, so a nucleotide
    without OP3 still puts P at 1), 0 for atomised tokens.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cc = cfg.confidence
        c_s, c_z = cfg.c_s, cfg.c_z
        self.stop_gradient = cc.stop_gradient
        self.max_atoms_per_token = cc.max_atoms_per_token
        lower = torch.arange(cc.distance_bin_start, cc.distance_bin_end, cc.distance_bin_step)
        upper = torch.cat([lower[1:], lower.new_tensor([1e6])])
        # Frozen parameters (not buffers) so the count and state_dict match Protenix.
        self.lower_bins = nn.Parameter(lower, requires_grad=False)
        self.upper_bins = nn.Parameter(upper, requires_grad=False)
        n_dist = lower.numel()
        self.linear_no_bias_s1 = linear(cfg.c_s_inputs, c_z)
        self.linear_no_bias_s2 = linear(cfg.c_s_inputs, c_z)
        self.linear_no_bias_d = linear(n_dist, c_z)
        self.linear_no_bias_d_wo_onehot = linear(1, c_z)
        self.input_strunk_ln = layer_norm(c_s)
        self.pairformer_stack = PairformerStack(c_z, c_s, cc.n_blocks, cfg, dropout_p=0.0)
        self.pae_ln = layer_norm(c_z)
        self.pde_ln = layer_norm(c_z)
        self.plddt_ln = layer_norm(c_s)
        self.resolved_ln = layer_norm(c_s)
        # Output projections start at zero: uniform predictions until the head has learnt something.
        self.linear_no_bias_pae = linear(c_z, cc.pae_bins, init="final")
        self.linear_no_bias_pde = linear(c_z, cc.pde_bins, init="final")
        self.plddt_weight = nn.Parameter(torch.zeros(cc.max_atoms_per_token, c_s, cc.plddt_bins))
        self.resolved_weight = nn.Parameter(torch.zeros(cc.max_atoms_per_token, c_s, 2))

    def forward(
        self,
        feats: dict[str, torch.Tensor],
        s_inputs: torch.Tensor,
        s_trunk: torch.Tensor,
        z_trunk: torch.Tensor,
        x_pred: torch.Tensor,
        chunk_size: int | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> dict[str, torch.Tensor]:
        if self.stop_gradient:
            s_inputs, s_trunk, z_trunk, x_pred = (t.detach() for t in (s_inputs, s_trunk, z_trunk, x_pred))
        a2t = feats["atom_to_token"].long()
        pos = feats["atom_to_tokatom_idx"].long().clamp(max=self.max_atoms_per_token - 1)
        rep = feats["token_rep_atom"].long()
        out: dict[str, list[torch.Tensor]] = {"plddt": [], "pae": [], "pde": [], "resolved": []}
        with precision(x_pred.device, dtype):
            s_inputs, s_trunk, z_trunk = s_inputs.float(), s_trunk.float(), z_trunk.float()
            # s1 feeds the column token j and s2 the row token i (Protenix's assignment).
            z0 = z_trunk + self.linear_no_bias_s1(s_inputs)[None] + self.linear_no_bias_s2(s_inputs)[:, None]
            s0 = self.input_strunk_ln(s_trunk.clamp(-512, 512))
            for x in x_pred.float():  # one sample at a time: the pair stack dominates memory
                x_rep = x[rep]
                d = torch.cdist(x_rep, x_rep)
                onehot = ((d[..., None] > self.lower_bins) & (d[..., None] < self.upper_bins)).float()
                z = z0 + self.linear_no_bias_d(onehot) + self.linear_no_bias_d_wo_onehot(d[..., None])
                s, z = self.pairformer_stack(s0, z, chunk_size)
                z, s = z.float(), s.float()
                with precision(x_pred.device, torch.float32):  # output projections always in FP32
                    out["pae"].append(self.linear_no_bias_pae(self.pae_ln(z)))
                    out["pde"].append(self.linear_no_bias_pde(self.pde_ln(z + z.transpose(0, 1))))
                    a = s[a2t]
                    out["plddt"].append(per_position_linear(self.plddt_ln(a), self.plddt_weight, pos))
                    out["resolved"].append(
                        per_position_linear(self.resolved_ln(a), self.resolved_weight, pos)
                    )
        return {f"{k}_logits": torch.stack(v) for k, v in out.items()}
