"""Unit tests of the network modules (model/nn): shapes, chunking, checkpointing, memory, presets."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from model.data.constants import NUM_RESTYPES
from model.infer.predict import PredictSettings, make_plan, predict_seed
from model.nn.atom_attention import AtomAttentionDecoder, AtomAttentionEncoder, atom_windows
from model.nn.config import load_preset
from model.nn.embedders import FourierEmbedding, InputFeatureEmbedder, RelativePositionEncoding
from model.nn.heads import ConfidenceHead, DistogramHead
from model.nn.msa import MSAModule, MSAPairWeightedAveraging, OuterProductMean
from model.nn.network import Foldline
from model.nn.pairformer import (
    PairformerStack,
    TriangleAttention,
    TriangleMultiplication,
    set_triangle_attention_kernel,
)
from model.nn.primitives import (
    FLEX_KERNEL,
    AdaptiveLayerNorm,
    Transition,
    _flex_with_bias,
    bucket_batch,
    bucket_length,
    dropout,
    flex_attention_with_bias,
    sdpa_attention,
)
from model.nn.synthetic import randomize_parameters as rnd
from model.nn.synthetic import synthetic_features
from model.nn.template import TemplateEmbedder, backbone_unit_vectors, template_distogram
from model.nn.transformer import ConditionedTransitionBlock, DiffusionTransformer

TINY = load_preset("tiny")


@pytest.fixture(scope="module")
def feats() -> dict[str, torch.Tensor]:
    return synthetic_features(24, atoms_per_token=7, n_msa=9, n_templ=2, seed=3)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).norm() / b.norm()) if b.norm() > 0 else float((a - b).norm())


def test_base_preset_parameter_count_matches_protenix_base_v1():
    with torch.device("meta"):
        net = Foldline(load_preset("base"))
    n = sum(p.numel() for p in net.parameters())
    print(f"base preset parameters: {n} = {n / 1e6:.2f} M")
    assert round(n / 1e6, 2) == 368.48
    # Spot checks of the released Protenix base v1.0.0 layout (names and shapes from its state_dict).
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert shapes["input_embedder.atom_attention_encoder.linear_no_bias_f.weight"] == (128, 385)
    assert shapes["relative_position_encoding.linear_no_bias.weight"] == (128, 139)
    assert shapes["template_embedder.linear_no_bias_a.weight"] == (64, 108)
    assert shapes["msa_module.linear_no_bias_m.weight"] == (64, 34)
    assert shapes["diffusion_module.diffusion_conditioning.linear_no_bias_s.weight"] == (384, 833)
    assert shapes["confidence_head.plddt_weight"] == (24, 384, 50)
    assert shapes["pairformer_stack.blocks.47.attention_pair_bias.linear_nobias_z.weight"] == (16, 128)
    assert "msa_module.blocks.3.msa_stack.transition_m.linear_no_bias.weight" not in shapes
    assert shapes[
        "diffusion_module.diffusion_transformer.blocks.23.conditioned_transition_block.linear_nobias_b.weight"
    ] == (768, 1536)
    assert len(shapes) == 4174  # every state_dict entry of Protenix base v1.0.0


def test_load_preset_rejects_unknown_keys(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("c_s: 8\npairformer: {n_blok: 2}\n")
    with pytest.raises(ValueError, match="n_blok"):
        load_preset(bad)
    with pytest.raises(FileNotFoundError):
        load_preset("no_such_preset")


def test_primitive_shapes_and_adaln_conditioning():
    x = torch.randn(5, 6, 16)
    assert Transition(16, 4)(x).shape == x.shape
    ada = rnd(AdaptiveLayerNorm(16, 8))
    s1, s2 = torch.randn(6, 8), torch.randn(6, 8)
    assert ada(x, s1).shape == x.shape
    assert not torch.allclose(ada(x, s1), ada(x, s2))
    ctb = ConditionedTransitionBlock(16, 8)
    assert ctb(x, s1).shape == x.shape


def test_dropout_generator_determinism_and_shared_masks():
    x = torch.ones(4, 5, 6)
    a = dropout(x, 0.5, True, torch.Generator().manual_seed(1), shared_dim=-3)
    b = dropout(x, 0.5, True, torch.Generator().manual_seed(1), shared_dim=-3)
    assert torch.equal(a, b)
    assert torch.equal(a[0], a[3])  # rowwise: one mask for every row
    assert set(a.unique().tolist()) <= {0.0, 2.0}
    assert torch.equal(dropout(x, 0.5, False), x)


def test_triangle_and_pairformer_shapes_and_chunking():
    torch.manual_seed(0)
    z = torch.randn(13, 13, 16)
    s = torch.randn(13, 32)
    for mod in (
        TriangleMultiplication(16, 12, outgoing=True),
        TriangleMultiplication(16, 12, outgoing=False),
        TriangleAttention(16, 8, 2, starting=True),
        TriangleAttention(16, 8, 2, starting=False),
        Transition(16, 4),
    ):
        rnd(mod)
        full = mod(z)
        assert full.shape == z.shape
        assert rel_err(mod(z, chunk_size=4), full) <= 1e-5, type(mod).__name__
    stack = rnd(PairformerStack(16, 32, 2, TINY).eval())
    s_full, z_full = stack(s, z)
    s_ch, z_ch = stack(s, z, chunk_size=5)
    assert s_full.shape == s.shape and z_full.shape == z.shape
    assert rel_err(s_ch, s_full) <= 1e-5 and rel_err(z_ch, z_full) <= 1e-5


def test_triangle_multiplication_matches_the_algorithm_sums():
    torch.manual_seed(0)
    z = torch.randn(6, 6, 16)
    for outgoing, eq in ((True, "ikc,jkc->ijc"), (False, "kic,kjc->ijc")):
        m = rnd(TriangleMultiplication(16, 12, outgoing))
        zn = m.layer_norm_in(z)
        a = torch.sigmoid(m.linear_a_g(zn)) * m.linear_a_p(zn)
        b = torch.sigmoid(m.linear_b_g(zn)) * m.linear_b_p(zn)
        ref = torch.sigmoid(m.linear_g(zn)) * m.linear_z(m.layer_norm_out(torch.einsum(eq, a, b)))
        torch.testing.assert_close(m(z), ref, rtol=1e-5, atol=1e-6)
        # The channel-first implementation must also give the reference's parameter gradients.
        weights = torch.randn_like(ref)
        ours = torch.autograd.grad((m(z) * weights).sum(), list(m.parameters()))
        theirs = torch.autograd.grad((ref * weights).sum(), list(m.parameters()))
        for name, g_ours, g_ref in zip([n for n, _ in m.named_parameters()], ours, theirs, strict=True):
            torch.testing.assert_close(g_ours, g_ref, rtol=1e-4, atol=1e-6, msg=name)


def test_triangle_attention_ending_node_is_starting_node_on_the_transpose():
    torch.manual_seed(0)
    z = torch.randn(7, 7, 16)
    start = rnd(TriangleAttention(16, 8, 2, starting=True))
    end = TriangleAttention(16, 8, 2, starting=False)
    end.load_state_dict(start.state_dict())
    torch.testing.assert_close(end(z), start(z.transpose(0, 1)).transpose(0, 1))


def test_msa_modules_shapes_and_chunking(feats):
    torch.manual_seed(0)
    m, z = torch.randn(9, 11, 8), torch.randn(11, 11, 16)
    opm = rnd(OuterProductMean(8, 16, 4))
    assert opm(m).shape == z.shape
    assert rel_err(opm(m, chunk_size=3), opm(m)) <= 1e-5
    pwa = rnd(MSAPairWeightedAveraging(8, 16, 2, 4))
    assert pwa(m, z).shape == m.shape
    assert rel_err(pwa(m, z, chunk_size=4), pwa(m, z)) <= 1e-5
    module = rnd(MSAModule(TINY).eval())
    t = feats["restype"].shape[0]
    z = torch.randn(t, t, TINY.c_z)
    s_inputs = torch.randn(t, TINY.c_s_inputs)
    full = module(feats, z, s_inputs)
    assert full.shape == z.shape
    assert rel_err(module(feats, z, s_inputs, chunk_size=5), full) <= 1e-5
    empty = dict(feats, msa=feats["msa"][:0], deletion_matrix=feats["deletion_matrix"][:0])
    assert torch.equal(module(empty, z, s_inputs), z)


def test_template_features_and_embedder(feats):
    pb = torch.tensor([[[0.0, 0, 0], [3.0, 0, 0], [4.0, 0, 0], [60.0, 0, 0]]])
    dg = template_distogram(pb)
    assert dg.shape == (1, 4, 4, 39)
    assert dg[0, 0, 0].argmax() == 0  # 0 Å: below the first edge
    assert dg[0, 0, 2].argmax() == 1  # 4 Å: between 3.25 and 4.53 Å
    assert dg[0, 0, 3].argmax() == 38  # beyond 50.75 Å
    # Ideal frame: CA at origin, C along +x, N in the xy-plane -> local = global coordinates.
    bb = torch.tensor([[[[0.0, 1, 0], [0, 0, 0], [1, 0, 0]], [[0, 1, 5], [0, 0, 5], [1, 0, 5]]]])
    uv = backbone_unit_vectors(bb)
    torch.testing.assert_close(uv[0, 0, 1], torch.tensor([0.0, 0.0, 1.0]))
    emb = rnd(TemplateEmbedder(TINY).eval())
    t = feats["restype"].shape[0]
    z = torch.randn(t, t, TINY.c_z)
    out = emb(feats, z)
    assert out.shape == z.shape and out.abs().sum() > 0
    assert rel_err(emb(feats, z, chunk_size=7), out) <= 1e-5
    none = {k: (v[:0] if k.startswith("template_") else v) for k, v in feats.items()}
    assert torch.equal(emb(none, z), torch.zeros_like(z))


def test_embedders_shapes(feats):
    t = feats["restype"].shape[0]
    assert InputFeatureEmbedder(TINY)(feats).shape == (t, TINY.c_s_inputs)
    relpe = RelativePositionEncoding(32, 2, TINY.c_z)
    assert relpe(feats).shape == (t, t, TINY.c_z)
    assert FourierEmbedding(256)(torch.rand(5)).shape == (5, 256)


def test_relative_position_one_hot_columns():
    f = {
        "asym_id": torch.tensor([0, 0, 1]),
        "residue_index": torch.tensor([1, 40, 1]),
        "token_index": torch.tensor([0, 1, 2]),
        "entity_id": torch.tensor([0, 0, 0]),
        "sym_id": torch.tensor([0, 0, 1]),
    }
    relpe = RelativePositionEncoding(32, 2, 139)
    relpe.linear_no_bias.weight.data = torch.eye(139)  # identity: the output is the one-hot input
    rel = relpe(f)
    assert rel[0, 1, :66].argmax() == 0  # 1 - 40 + 32 clipped to 0
    assert rel[1, 0, :66].argmax() == 64  # clipped to 2·r_max
    assert rel[0, 2, :66].argmax() == 65  # other chain
    assert rel[0, 0, 66:132].argmax() == 32  # same residue, same token
    assert rel[0, 2, 132] == 1  # same entity
    assert rel[0, 2, 133:].argmax() == 1  # sym 0 - 1 + 2
    assert rel[0, 1, 133:].argmax() == 2  # same entity, same copy
    f["entity_id"] = torch.tensor([0, 0, 1])
    assert relpe(f)[0, 2, 133:].argmax() == 5  # other entity


def test_diffusion_transformer_and_atom_attention_shapes(feats):
    torch.manual_seed(0)
    dt = DiffusionTransformer(16, 8, 4, n_blocks=2, n_heads=2)
    a, s, z = torch.randn(3, 10, 16), torch.randn(3, 10, 8), torch.randn(10, 10, 4)
    assert dt(a, s, dt.pair_biases(z)).shape == a.shape
    t, n_atom = feats["restype"].shape[0], feats["ref_pos"].shape[0]
    enc = AtomAttentionEncoder(16, 8, 32, 1, 2, 32, 128, c_s=20, c_z=12)
    s_trunk, z_trunk = torch.randn(t, 20), torch.randn(t, t, 12)
    cond = enc.condition(feats, s_trunk, z_trunk)
    r = torch.randn(2, n_atom, 3)
    a, q = enc(feats, cond, r)
    assert a.shape == (2, t, 32) and q.shape == (2, n_atom, 16)
    assert cond.p.shape == (-(-n_atom // 32), 32, 128, 8)
    dec = AtomAttentionDecoder(16, 8, 32, 1, 2)
    out = dec(feats, a, q, cond, dec.atom_transformer.pair_biases(cond.p, cond.windows))
    assert out.shape == (2, n_atom, 3)


def test_local_attention_windows_follow_algorithm_7():
    w = atom_windows(100, 32, 128, torch.device("cpu"))
    assert w.n_pad == 28
    assert w.query_atom.shape == (4, 32) and w.key_atom.shape == (4, 128)
    # Block 1 holds atoms 32..63; its keys are centred on them: 48 - 64 = -16 .. 111 (valid 0..99).
    assert w.key_valid[1].sum() == 100 and w.key_atom[1, 16] == 0
    assert int(w.query_valid.sum()) == 100


def test_local_atom_attention_matches_dense_masked_attention(feats):
    """Each query attends exactly to its window: compare against a dense masked reference."""
    torch.manual_seed(0)
    n_atom = 150
    enc = rnd(AtomAttentionEncoder(16, 8, 32, 1, 2, 32, 128))
    blk = enc.atom_transformer.diffusion_transformer.blocks[0].attention_pair_bias
    q_in = torch.randn(n_atom, 16)
    win = atom_windows(n_atom, 32, 128, torch.device("cpu"))
    n_blk = win.key_atom.shape[0]
    bias = torch.randn(n_blk, 2, 32, 128)
    mask = win.query_valid[:, :, None] & win.key_valid[:, None, :]
    bias = bias.masked_fill(~mask[:, None], -1e9)
    from model.nn.transformer import local_attention

    local = local_attention(blk.attention, q_in, q_in, bias, win.n_pad, win.key_atom)
    dense_bias = torch.full((2, n_atom, n_atom), -1e9)
    for b in range(n_blk):
        for i in range(32):
            qi = b * 32 + i
            if qi >= n_atom:
                continue
            for k in range(128):
                if win.key_valid[b, k]:
                    dense_bias[:, qi, win.key_atom[b, k]] = bias[b, :, i, k]
    dense = blk.attention(q_in, q_in, dense_bias)
    torch.testing.assert_close(local, dense, rtol=1e-5, atol=1e-5)


class _LargestTensor(TorchDispatchMode):
    """Records the element count of the largest tensor any op produces."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def _largest_atom_intermediate(n_token: int) -> tuple[int, int]:
    f = synthetic_features(n_token, atoms_per_token=10, n_msa=1, n_templ=0, seed=0)
    cfg = copy.deepcopy(TINY)
    enc = AtomAttentionEncoder(cfg.c_atom, cfg.c_atompair, 32, 1, 2, 32, 128)
    with torch.no_grad(), _LargestTensor() as probe:
        cond = enc.condition(f)
        enc(f, cond)
    return f["ref_pos"].shape[0], probe.largest


def test_atom_attention_memory_is_linear_in_atoms():
    n_small, big_small = _largest_atom_intermediate(64)  # 640 atoms
    n_large, big_large = _largest_atom_intermediate(256)  # 2560 atoms
    ratio = big_large / big_small
    print(f"largest atom intermediate: {big_small} at {n_small} atoms, {big_large} at {n_large} atoms")
    assert ratio <= 1.1 * n_large / n_small  # linear (quadratic would be 16x)
    assert big_large < n_large * n_large  # never an N_atom x N_atom tensor


def test_heads_shapes():
    z = torch.randn(5, 5, 16)
    logits = rnd(DistogramHead(16, 64))(z)
    assert logits.shape == (5, 5, 64)
    torch.testing.assert_close(logits, logits.transpose(0, 1))


def test_plddt_weights_follow_atom_to_tokatom_idx(feats):
    """pLDDT/resolved logits of an atom use the weight matrix of its `atom_to_tokatom_idx` (its
    place in the residue's standard atom list), not its position among the token's atoms."""
    head = rnd(ConfidenceHead(TINY).eval(), seed=2)
    t, a = feats["restype"].shape[0], feats["ref_pos"].shape[0]
    g = torch.Generator().manual_seed(0)
    s_inputs, s = torch.randn(t, TINY.c_s_inputs, generator=g), torch.randn(t, TINY.c_s, generator=g)
    z, x = torch.randn(t, t, TINY.c_z, generator=g), torch.randn(1, a, 3, generator=g)
    token0 = torch.nonzero(feats["atom_to_token"] == 0).squeeze(1)
    same = dict(feats, atom_to_tokatom_idx=feats["atom_to_tokatom_idx"].clone())
    same["atom_to_tokatom_idx"][token0] = 3  # every atom of token 0 reads weight 3
    with torch.no_grad():
        plain, moved = head(feats, s_inputs, s, z, x), head(same, s_inputs, s, z, x)
    for key in ("plddt_logits", "resolved_logits"):
        assert not torch.allclose(plain[key][0, token0[0]], plain[key][0, token0[1]])
        torch.testing.assert_close(moved[key][0, token0], moved[key][0, token0[3]].expand(len(token0), -1))
        torch.testing.assert_close(moved[key][0, token0[3]], plain[key][0, token0[3]])
        others = feats["atom_to_token"] != 0
        torch.testing.assert_close(moved[key][0, others], plain[key][0, others])


def test_fresh_blocks_start_as_the_identity():
    """Final projections are zero-initialised (AF2/AF3 init): untrained residual blocks change nothing."""
    torch.manual_seed(0)
    s, z = torch.randn(9, 32), torch.randn(9, 9, 16)
    s_out, z_out = PairformerStack(16, 32, 2, TINY).eval()(s, z)
    torch.testing.assert_close(s_out, s)
    torch.testing.assert_close(z_out, z)
    m = torch.randn(4, 9, 8)
    assert OuterProductMean(8, 16, 4)(m).abs().max() == 0


def test_msa_row_subsample_is_seeded_and_a_subset():
    module = MSAModule(TINY)
    a = module.sample_rows(50, torch.device("cpu"), torch.Generator().manual_seed(0))
    b = module.sample_rows(50, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert 1 <= a.numel() <= 50 and a.unique().numel() == a.numel() and int(a.max()) < 50
    sizes = {
        module.sample_rows(50, torch.device("cpu"), torch.Generator().manual_seed(s)).numel()
        for s in range(8)
    }
    assert len(sizes) > 1  # the number of rows varies too


def _msa_rows_per_recycle(net: Foldline, feats: dict[str, torch.Tensor], run) -> list[list[int]]:
    """Which rows of feats["msa"] (by index) the MSA module embeds in each recycle of `run()`."""
    one_hot = torch.nn.functional.one_hot(feats["msa"].long(), NUM_RESTYPES).float()
    seen: list[list[int]] = []

    def record(module, args):
        embedded = args[0][..., :NUM_RESTYPES]
        seen.append([int((one_hot == row).all(-1).all(-1).nonzero()[0, 0]) for row in embedded])

    handle = net.msa_module.linear_no_bias_m.register_forward_pre_hook(record)
    try:
        run()
    finally:
        handle.remove()
    return seen


@pytest.fixture(scope="module")
def msa_feats() -> dict[str, torch.Tensor]:
    feats = synthetic_features(16, atoms_per_token=5, n_msa=40, n_templ=0, seed=11)
    assert len({tuple(row.tolist()) for row in feats["msa"]}) == 40  # rows tell themselves apart
    return feats


def test_inference_subsamples_msa_rows_every_recycle_from_the_seed(msa_feats):
    assert TINY.msa.sample_at_inference and load_preset("base").msa.sample_at_inference
    net = rnd(Foldline(TINY).eval())
    settings = PredictSettings(n_cycle=3, n_step=2, n_sample=1)
    plan = make_plan(16, settings, torch.device("cpu"))
    runs = {}
    for name, seed in (("first", 5), ("again", 5), ("other", 6)):
        out = {}

        def run(seed=seed, out=out):
            out["coords"] = predict_seed(net, msa_feats, seed, settings, plan, torch.device("cpu"))[0]

        runs[name] = (_msa_rows_per_recycle(net, msa_feats, run), out["coords"])
    rows, coords = runs["first"]
    assert len(rows) == 3
    assert all(len(set(r)) == len(r) >= 1 for r in rows)  # subsets, no row twice
    assert len({tuple(r) for r in rows}) == 3  # a fresh subset every recycle
    assert any(len(r) < 40 for r in rows)
    assert runs["again"][0] == rows and torch.equal(runs["again"][1], coords)  # the seed fixes them
    assert runs["other"][0] != rows


def test_all_msa_rows_at_inference_equal_the_unsampled_computation(msa_feats):
    sampled = rnd(Foldline(TINY).eval())
    cfg = copy.deepcopy(TINY)
    cfg.msa.sample_at_inference = False
    every_row = Foldline(cfg).eval()
    every_row.load_state_dict(sampled.state_dict())
    out = {}

    def run(net, key, generator):
        def go():
            with torch.no_grad():
                out[key] = net.run_trunk(msa_feats, n_cycle=2, generator=generator).z

        return go

    seen = _msa_rows_per_recycle(
        every_row, msa_feats, run(every_row, "all", torch.Generator().manual_seed(0))
    )
    assert seen == [list(range(40))] * 2
    _msa_rows_per_recycle(sampled, msa_feats, run(sampled, "unsampled", None))
    _msa_rows_per_recycle(sampled, msa_feats, run(sampled, "sampled", torch.Generator().manual_seed(0)))
    assert torch.equal(out["all"], out["unsampled"])
    assert not torch.allclose(out["sampled"], out["unsampled"])


# --- triangle attention through FlexAttention (issue #18) ---------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_size_buckets_are_bounded_and_cover_every_size():
    sizes = range(1, 8193)
    buckets = {bucket_length(n) for n in sizes}
    assert len(buckets) == 40
    for n in sizes:
        padded = bucket_length(n)
        assert n <= padded and padded % 64 == 0
        assert padded - n < max(64, n / 8), n  # under 64 up to 512, under one eighth above
    assert [bucket_batch(b) for b in (1, 3, 32, 33, 64, 100)] == [1, 4, 32, 64, 64, 128]


@pytest.fixture
def eager_flex_kernel(monkeypatch):
    """The compiled-path logic (padding to buckets, key masking, fallback) with the eager kernel in
    place of torch.compile's, so it runs on CPU."""
    monkeypatch.setattr(FLEX_KERNEL, "compiled", _flex_with_bias)
    monkeypatch.setattr(FLEX_KERNEL, "failed", False)
    return FLEX_KERNEL


@pytest.mark.parametrize(("batch", "n"), [(5, 7), (3, 70), (64, 64)])
def test_flex_attention_padded_to_a_bucket_equals_sdpa(eager_flex_kernel, batch, n):
    torch.manual_seed(0)
    q, k, v = (torch.randn(batch, 2, n, 16) for _ in range(3))
    bias = 3 * torch.randn(n, n, 2).permute(2, 0, 1)  # permuted like the triangle bias
    shapes = []

    def recording_kernel(q, k, v, bias):
        shapes.append((tuple(q.shape), tuple(bias.shape), bias.is_contiguous()))
        return _flex_with_bias(q, k, v, bias)

    eager_flex_kernel.compiled = recording_kernel
    out = flex_attention_with_bias(q, k, v, bias, compiled=True)
    torch.testing.assert_close(out, sdpa_attention(q, k, v, bias), rtol=1e-5, atol=1e-5)
    n_pad = bucket_length(n)
    assert shapes == [((bucket_batch(batch), 2, n_pad, 16), (2, n_pad, n_pad), True)]


def test_flex_attention_failure_falls_back_to_sdpa_once(eager_flex_kernel, caplog):

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 9, 16) for _ in range(3))
    bias = torch.randn(2, 9, 9)
    calls = []

    def broken(*args):
        calls.append(1)
        raise RuntimeError("no Triton here")

    eager_flex_kernel.compiled = broken
    with caplog.at_level("WARNING", logger="model.nn.primitives"):
        first = flex_attention_with_bias(q, k, v, bias, compiled=True)
        second = flex_attention_with_bias(q, k, v, bias, compiled=True)
    reference = sdpa_attention(q, k, v, bias)
    torch.testing.assert_close(first, reference)
    torch.testing.assert_close(second, reference)
    assert calls == [1] and eager_flex_kernel.failed
    assert sum("FlexAttention unavailable" in r.message for r in caplog.records) == 1


def test_flex_attention_leaves_heads_too_narrow_for_the_kernel_to_sdpa(eager_flex_kernel):
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 2, 9, 8) for _ in range(3))  # the tiny preset's head width
    bias = torch.randn(2, 9, 9)
    eager_flex_kernel.compiled = lambda *args: pytest.fail("the compiled kernel was called")
    out = flex_attention_with_bias(q, k, v, bias, compiled=True)
    torch.testing.assert_close(out, sdpa_attention(q, k, v, bias))
    assert not eager_flex_kernel.failed


@pytest.mark.parametrize("starting", [True, False])
def test_triangle_attention_flex_kernel_equals_sdpa_kernel(eager_flex_kernel, starting):

    torch.manual_seed(0)
    z = torch.randn(11, 11, 16)
    mod = rnd(TriangleAttention(16, 8, 2, starting=starting, kernel="sdpa"))
    with torch.no_grad():
        reference = mod(z)
        set_triangle_attention_kernel(mod, "flex")
        assert mod.kernel == "flex"
        torch.testing.assert_close(mod(z), reference, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(mod(z, chunk_size=4), reference, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="triangle attention kernel"):
        mod.kernel = "triton"


def test_triangle_attention_kernel_comes_from_the_config():
    cfg = copy.deepcopy(TINY)
    cfg.triangle.attention_kernel = "flex"
    stack = PairformerStack(cfg.c_z, cfg.c_s, 1, cfg)
    kernels = {m.kernel for m in stack.modules() if isinstance(m, TriangleAttention)}
    assert kernels == {"flex"}
    assert TINY.triangle.attention_kernel == "sdpa"  # FlexAttention is opt-in until measured on a GPU


@pytest.mark.slow
def test_flex_attention_compiles_for_padded_buckets_on_cpu():
    """torch.compile's own path (dynamo tracing of the bias closure, static shapes, an FP32 bias with
    BF16 queries), through inductor's CPU kernel, where CUDA is absent; forward only."""
    torch.manual_seed(0)
    for batch, n, dtype in ((5, 70, torch.float32), (5, 70, torch.bfloat16), (3, 64, torch.float32)):
        q, k, v = (torch.randn(batch, 2, n, 16, dtype=dtype) for _ in range(3))
        bias = torch.randn(n, n, 2).permute(2, 0, 1)
        with torch.no_grad():
            out = flex_attention_with_bias(q, k, v, bias, compiled=True)
        assert not FLEX_KERNEL.failed
        reference = sdpa_attention(q.float(), k.float(), v.float(), bias)
        assert rel_err(out.float(), reference) < (1e-5 if dtype == torch.float32 else 2e-2)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("n", [64, 100, 300])
def test_compiled_flex_triangle_attention_matches_sdpa_on_cuda(n):
    torch.manual_seed(0)
    z = torch.randn(n, n, 32, device="cuda", requires_grad=True)
    mod = rnd(TriangleAttention(32, 16, 2, starting=False, kernel="sdpa")).cuda()
    outs, grads = [], []
    for kernel in ("sdpa", "auto"):
        mod.kernel = kernel
        for dtype in (torch.float32, torch.bfloat16):
            with torch.autocast("cuda", dtype=dtype, enabled=dtype == torch.bfloat16):
                out = mod(z)
            outs.append(out.float())
            grads.append(
                torch.autograd.grad((out.float() * torch.cos(out.float())).sum(), [z, mod.linear.weight])
            )
    assert not FLEX_KERNEL.failed
    assert rel_err(outs[2], outs[0]) < 5e-3  # FP32 (a compiled kernel may use TF32)
    assert rel_err(outs[3], outs[0]) < 2e-2  # BF16 against the FP32 reference
    for g_flex, g_ref in zip(grads[2], grads[0], strict=True):
        assert rel_err(g_flex, g_ref) < 5e-3


# --- the denoiser as a CUDA graph (issue #18) -----------------------------------------------------------


def test_aggregate_to_tokens_is_the_mean_of_each_tokens_atoms():
    from model.nn.atom_attention import aggregate_to_tokens

    torch.manual_seed(0)
    atom_to_token = torch.tensor([0, 0, 0, 2, 2, 3, 3, 3, 3])  # token 1 has no atoms
    x = torch.randn(2, 9, 5)
    expected = torch.zeros(2, 4, 5)
    for token in range(4):
        atoms = atom_to_token == token
        if atoms.any():
            expected[:, token] = x[:, atoms].mean(dim=1)
    torch.testing.assert_close(aggregate_to_tokens(x, atom_to_token, 4), expected)


def _diffusion_inputs(cfg, feats, dtype=torch.float32, device="cpu"):
    from model.nn.diffusion import DiffusionModule
    from model.nn.network import TrunkOutput

    n = feats["restype"].shape[0]
    g = torch.Generator().manual_seed(1)
    trunk = TrunkOutput(
        torch.randn(n, cfg.c_s_inputs, generator=g).to(device),
        torch.randn(n, cfg.c_s, generator=g).to(device),
        torch.randn(n, n, cfg.c_z, generator=g).to(device),
    )
    module = rnd(DiffusionModule(cfg), seed=2).to(device).eval()
    feats = {k: v.to(device) for k, v in feats.items()}
    with torch.no_grad():
        cond = module.prepare(feats, trunk, dtype)
    return module, cond, trunk


def test_cuda_graph_switch_leaves_cpu_denoising_eager_and_unchanged(feats):
    module, cond, _ = _diffusion_inputs(TINY, feats)
    x = 10 * torch.randn(2, feats["ref_pos"].shape[0], 3)
    sigma = torch.tensor([30.0, 2.0])
    with torch.no_grad():
        eager = module.denoise(x, sigma, cond)
        module.cuda_graph = True
        switched = module.denoise(x, sigma, cond)
    assert torch.equal(switched, eager) and cond.graphs == {}
    assert TINY.diffusion.cuda_graph is False  # off until measured


def test_chunked_diffusion_conditioning_equals_unchunked(feats):
    module, cond, trunk = _diffusion_inputs(TINY, feats)
    x = 10 * torch.randn(2, feats["ref_pos"].shape[0], 3)
    sigma = torch.tensor([30.0, 2.0])
    with torch.no_grad():
        reference = module.denoise(x, sigma, cond)
        module.bias_cache_max_tokens = 0  # the token biases recomputed every step, by row blocks
        chunked_cond = module.prepare(feats, trunk, chunk_size=5)
        assert chunked_cond.token_biases is None and chunked_cond.chunk_size == 5
        assert rel_err(module.denoise(x, sigma, chunked_cond), reference) <= 1e-5


def test_tf32_matmuls_is_scoped_to_its_block():
    from model.nn.diffusion import tf32_matmuls

    matmul = torch.backends.cuda.matmul
    before = matmul.fp32_precision
    with pytest.raises(RuntimeError, match="inside"), tf32_matmuls(True):
        assert matmul.fp32_precision == "tf32"
        raise RuntimeError("inside")
    assert matmul.fp32_precision == before
    with tf32_matmuls(False):
        assert matmul.fp32_precision == before


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_graph_denoiser_replays_the_eager_step_without_host_syncs(feats, dtype):
    from model.nn.sampler import noise_schedule, sample_diffusion

    module, cond, _ = _diffusion_inputs(TINY, feats, dtype, "cuda")
    n_atom = feats["ref_pos"].shape[0]
    x = 10 * torch.randn(3, n_atom, 3, device="cuda")
    sigma = torch.tensor([30.0, 2.0, 0.1], device="cuda")
    with torch.no_grad():
        torch.cuda.set_sync_debug_mode("error")  # any host sync inside the step raises
        try:
            eager = module.denoise(x, sigma, cond)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        coords = {}
        for graph in (False, True):
            module.cuda_graph = graph
            gen = torch.Generator(device="cuda").manual_seed(5)
            schedule = noise_schedule(5, sigma_data=module.sigma_data)
            coords[graph] = sample_diffusion(
                lambda x, s: module.denoise(x, s, cond), n_atom, 3, 5, gen, schedule=schedule
            )
        replayed = module.denoise(x, sigma, cond)  # a replay of the captured [3, A, 3] graph
    assert len(cond.graphs) == 1 and next(iter(cond.graphs.values())).graph is not None
    assert rel_err(replayed, eager) < 1e-5
    assert rel_err(coords[True], coords[False]) < 1e-4


# --- pair-stack memory at large N (issue #18) -----------------------------------------------------------


def test_chunked_triangle_multiplication_never_forms_the_whole_projections():
    torch.manual_seed(0)
    n, c_z, c = 24, 16, 12
    z = torch.randn(n, n, c_z)
    for outgoing in (True, False):
        mod = rnd(TriangleMultiplication(c_z, c, outgoing))
        with torch.no_grad(), _LargestTensor() as whole:
            reference = mod(z)
        with torch.no_grad(), _LargestTensor() as by_rows:
            chunked_out = mod(z, chunk_size=5)
        assert rel_err(chunked_out, reference) <= 1e-5
        assert whole.largest == 4 * c * n * n  # the four projections in one GEMM
        assert by_rows.largest == n * n * c_z  # now nothing beyond the pair itself


def test_pair_stack_without_autograd_updates_in_place_but_never_its_input():
    torch.manual_seed(0)
    stack = rnd(PairformerStack(16, 32, 2, TINY).eval())
    s, z = torch.randn(9, 32), torch.randn(9, 9, 16)
    z_before = z.clone()
    s_grad, z_grad = stack(s, z)  # autograd on: out-of-place residuals
    with torch.no_grad():
        s_inf, z_inf = stack(s, z, chunk_size=4)
    assert torch.equal(z, z_before)
    assert rel_err(z_inf, z_grad) <= 1e-5 and rel_err(s_inf, s_grad) <= 1e-5


class _PairSizedTensors(TorchDispatchMode):
    """Counts the new tensors (not views of an op's inputs) of at least `numel` elements."""

    def __init__(self, numel: int) -> None:
        super().__init__()
        self.numel, self.count = numel, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {a.untyped_storage().data_ptr() for a in args if isinstance(a, torch.Tensor)}
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.numel() >= self.numel:
                self.count += t.untyped_storage().data_ptr() not in inputs
        return out


def test_chunked_triangle_attention_forms_only_its_output_whole():
    torch.manual_seed(0)
    n, c_z = 20, 16
    z = torch.randn(n, n, c_z)
    for starting in (True, False):
        mod = rnd(TriangleAttention(c_z, 8, 2, starting=starting))
        with torch.no_grad(), _PairSizedTensors(n * n * c_z) as whole:
            reference = mod(z)
        with torch.no_grad(), _PairSizedTensors(n * n * c_z) as by_rows:
            out = mod(z, chunk_size=6)
        assert rel_err(out, reference) <= 1e-5
        assert whole.count >= 4  # normalized pair, q, k, v, ... (and the ending node's transposed copy)
        assert by_rows.count == 1  # the output alone
