"""Confidence metrics (AF3 §5.9) from logits with known answers, and the RASA/clash geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import MMCIF_DIR

from model.infer import confidence as C


def peaked(shape: tuple[int, ...], n_bins: int, index: torch.Tensor | int) -> torch.Tensor:
    """Logits putting (almost) all probability in bin `index` (broadcast over shape)."""
    logits = torch.full((*shape, n_bins), -50.0)
    idx = torch.as_tensor(index).expand(shape).unsqueeze(-1)
    return logits.scatter(-1, idx, 50.0)


def f_tm(err: float, n: int) -> float:
    d0 = 1.24 * (max(n, 19) - 15) ** (1 / 3) - 1.8
    return 1 / (1 + (err / d0) ** 2)


def test_expected_values_hit_bin_centres():
    assert torch.allclose(C.expected_value(peaked((2,), 64, 10), 32.0), torch.tensor(10.5 * 0.5))
    assert torch.allclose(C.expected_value(peaked((1,), 50, 49), 1.0), torch.tensor(0.99))
    flat = torch.zeros(64)
    assert math.isclose(float(C.expected_value(flat, 32.0)), 16.0, rel_tol=1e-6)


def test_ptm_and_iptm_match_the_tm_formula():
    n = 30
    asym = torch.tensor([0] * 20 + [1] * 10)
    same = asym[:, None] == asym[None, :]
    # intra-chain pairs confident (bin 0 = 0.25 Å), cross-chain pairs hopeless (bin 63 = 31.75 Å)
    logits = peaked((1, n, n), 64, torch.where(same, 0, 63))
    everything = torch.ones(n, dtype=torch.bool)
    good, bad = f_tm(0.25, n), f_tm(31.75, n)
    ptm = float(C.tm_score(logits.softmax(-1), everything))
    assert math.isclose(ptm, (20 * good + 10 * bad) / 30, rel_tol=1e-4)  # best row: a chain-A token
    iptm = float(C.tm_score(logits.softmax(-1), everything, asym))
    assert math.isclose(iptm, bad, rel_tol=1e-4)
    # chain pTM uses the chain's own size for d0
    chain_b = float(C.tm_score(logits.softmax(-1), asym == 1))
    assert math.isclose(chain_b, f_tm(0.25, 10), rel_tol=1e-4)
    # rows without a frame do not count
    frame = torch.zeros(n, dtype=torch.bool)
    frame[25] = True
    assert math.isclose(
        float(C.tm_score(logits.softmax(-1), everything, has_frame=frame)),
        (10 * good + 20 * bad) / 30,
        rel_tol=1e-4,
    )


def test_contact_probs_threshold():
    edges = np.linspace(2, 22, 63)
    near = int(np.searchsorted(edges, 5.0))  # bin holding 5 Å
    far = int(np.searchsorted(edges, 15.0))
    assert float(C.contact_probs(peaked((1,), 64, near))) > 0.99
    assert float(C.contact_probs(peaked((1,), 64, far))) < 0.01


def test_has_clash_counts_polymer_chains_only():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(60, 3, generator=g) * 6
    chains = torch.tensor([0] * 60 + [1] * 60 + [2] * 60)
    polymer = torch.tensor([True, True, False])
    far = torch.cat([a, a + 100, a + 200])[None]
    assert not bool(C.has_clash(far, chains, polymer)[0])
    on_top = torch.cat([a, a + 0.01, a + 200])[None]  # chain B sits on chain A
    assert bool(C.has_clash(on_top, chains, polymer)[0])
    ligand_on_top = torch.cat([a, a + 100, a + 0.01])[None]  # chain 2 is a ligand: ignored
    assert not bool(C.has_clash(ligand_on_top, chains, polymer)[0])
    few = torch.cat([a, a + 100, a + 200])
    few[60:65] = a[:5] + 0.01  # 5 of 60 atoms (< 50%, < 100 atoms)
    assert not bool(C.has_clash(few[None], chains, polymer)[0])


def test_sasa_of_a_lone_atom_is_the_sphere():
    sasa = C.atom_sasa(torch.tensor([[0.0, 0, 0], [50.0, 0, 0]]), torch.tensor([1.7, 1.52]))
    expected = 4 * math.pi * (torch.tensor([1.7, 1.52]) + 1.4) ** 2
    assert torch.allclose(sasa, expected, rtol=1e-5)


def test_sasa_agrees_with_biotite_on_ubiquitin():
    gemmi = pytest.importorskip("gemmi")
    struc = pytest.importorskip("biotite.structure")
    st = gemmi.read_structure(str(MMCIF_DIR / "1ubq.cif.gz"))
    st.remove_waters()
    st.remove_hydrogens()
    atoms = [(a.pos.tolist(), a.element.name.upper()) for r in st[0][0] for a in r]
    xyz = np.array([p for p, _ in atoms], np.float32)
    elements = [e for _, e in atoms]
    arr = struc.AtomArray(len(xyz))
    arr.coord = xyz
    arr.element = np.array(elements)
    arr.res_name[:] = "ALA"
    ref = struc.sasa(arr, vdw_radii="Single", point_number=1000)
    radii = torch.tensor([C.VDW_RADIUS.get(e, C.VDW_RADIUS_DEFAULT) for e in elements])
    ours = C.atom_sasa(torch.from_numpy(xyz), radii).numpy()
    assert abs(ours.sum() - np.nansum(ref)) / np.nansum(ref) < 0.05
    assert np.corrcoef(ours, np.nan_to_num(ref))[0, 1] > 0.9


def test_fraction_disordered_separates_exposed_from_buried_residues():
    # 27 glycine-like residues of 4 atoms: spread far apart (all exposed) or packed in a 3 Å grid
    grid = torch.stack(torch.meshgrid(*[torch.arange(3.0)] * 3, indexing="ij"), -1).reshape(-1, 3)
    offsets = torch.tensor([[0, 0, 0], [1.5, 0, 0], [0, 1.5, 0], [0, 0, 1.5]])
    packed = (grid[:, None] * 3.0 + offsets[None]).reshape(-1, 3)
    spread = (grid[:, None] * 30.0 + offsets[None]).reshape(-1, 3)
    atom_to_token = torch.arange(27).repeat_interleave(4)
    mol_type = torch.zeros(27, dtype=torch.long)
    names = ["GLY"] * 27
    elements = ["C"] * 108
    x = torch.stack([spread, packed])
    frac = C.fraction_disordered(x, atom_to_token, mol_type, elements, names)
    assert float(frac[0]) == 1.0
    assert float(frac[1]) < 1.0  # the buried centre residue is ordered
    # no protein: defined as 0
    assert float(C.fraction_disordered(x, atom_to_token, mol_type + 3, elements, names)[0]) == 0.0


def test_summarize_shapes_ranges_and_ranking():
    t, a, s = 12, 28, 2  # 8 residues of 3 atoms, then a 4-atom ligand (one token per atom)
    asym = torch.tensor([0] * 8 + [1] * 4)
    feats = {
        "asym_id": asym,
        "mol_type": torch.tensor([0] * 8 + [3] * 4),
        "atom_to_token": torch.cat([torch.arange(8).repeat_interleave(3), torch.arange(8, 12)]),
    }
    meta = {
        "chain_type": ["protein", "ligand"],
        "atom_element": ["C"] * a,
        "token_res_name": ["ALA"] * 8 + ["LIG"] * 4,
    }
    g = torch.Generator().manual_seed(0)
    x = torch.randn(s, a, 3, generator=g) * 10
    out = C.summarize(
        torch.randn(s, a, 50, generator=g),
        torch.randn(s, t, t, 64, generator=g),
        torch.randn(s, t, t, 64, generator=g),
        torch.randn(t, t, 64, generator=g),
        x,
        feats,
        meta,
    )
    assert (
        out["atom_plddts"].shape == (s, a)
        and (0 <= out["atom_plddts"]).all()
        and (out["atom_plddts"] <= 100).all()
    )
    assert (
        out["pae"].shape == out["pde"].shape == (s, t, t)
        and (out["pae"] >= 0).all()
        and (out["pae"] <= 32).all()
    )
    assert out["contact_probs"].shape == (t, t)
    assert out["chain_pair_iptm"].shape == (s, 2, 2) and out["chain_ptm"].shape == (s, 2)
    assert np.allclose(out["chain_pair_iptm"], out["chain_pair_iptm"].transpose(0, 2, 1))
    assert np.allclose(np.diagonal(out["chain_pair_iptm"], axis1=1, axis2=2), out["chain_ptm"])
    for key in ("ptm", "iptm", "chain_ptm"):
        assert ((0 <= out[key]) & (out[key] <= 1)).all()
    expected = (
        0.8 * out["iptm"] + 0.2 * out["ptm"] + 0.5 * out["fraction_disordered"] - 100 * out["has_clash"]
    )
    assert np.allclose(out["ranking_score"], expected, atol=1e-6)
    # chain_pair_pae_min really is the minimum of the block
    assert np.isclose(out["chain_pair_pae_min"][0, 0, 1], out["pae"][0, :8, 8:].min())


def test_single_chain_ranks_by_ptm():
    t = 5
    feats = {"asym_id": torch.zeros(t, dtype=torch.long), "mol_type": torch.zeros(t, dtype=torch.long),
             "atom_to_token": torch.arange(t)}  # fmt: skip
    meta = {"chain_type": ["protein"], "atom_element": ["C"] * t, "token_res_name": ["GLY"] * t}
    x = torch.arange(t * 3.0).reshape(1, t, 3) * 5
    out = C.summarize(torch.zeros(1, t, 50), torch.zeros(1, t, t, 64), torch.zeros(1, t, t, 64),
                      torch.zeros(t, t, 64), x, feats, meta)  # fmt: skip
    assert np.isnan(out["iptm"][0])
    assert np.isclose(out["ranking_score"][0], out["ptm"][0] + 0.5 * out["fraction_disordered"][0])


def test_token_has_frame_from_the_reference_conformer():
    # tokens: a protein residue with N, CA, C; one missing C; a lone ion; a 2-atom ligand (2 tokens);
    # a straight 3-atom ligand (CO2-like, 3 tokens); a bent 3-atom ligand (water-like, 3 tokens)
    names = ["N", "CA", "C", "N", "CA", "ZN", "C1", "C2", "O1", "C", "O2", "H1", "O", "H2"]
    atom_to_token = np.array([0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    mol_type = np.array([0, 0, 3, 3, 3, 3, 3, 3, 3, 3, 3])
    centre = np.array([1, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13])
    uid = np.array([0, 0, 0, 1, 1, 2, 3, 3, 4, 4, 4, 5, 5, 5])
    ref_pos = np.zeros((14, 3))
    ref_pos[6:8] = [[0, 0, 0], [1.5, 0, 0]]
    ref_pos[8:11] = [[-1.2, 0, 0], [0, 0, 0], [1.2, 0, 0]]
    ref_pos[11:14] = [[0.8, 0.6, 0], [0, 0, 0], [-0.8, 0.6, 0]]
    ref_mask = np.ones(14, dtype=bool)
    frames = C.token_has_frame(atom_to_token, mol_type, names, centre, ref_pos, uid, ref_mask).tolist()
    assert frames == [True, False, False, False, False, False, False, False, True, True, True]
    # the same water with its oxygen's reference position masked: no token of it has a frame
    ref_mask[12] = False
    frames = C.token_has_frame(atom_to_token, mol_type, names, centre, ref_pos, uid, ref_mask).tolist()
    assert frames[-3:] == [False, False, False]
    # an atom between its two nearest neighbours, like haem's iron between two opposite nitrogens:
    # nearly straight (10 degrees off) is no frame, 30 degrees off is one (AF3's limit: 25 degrees)
    for degrees, expected in ((10.0, False), (30.0, True)):
        bend = np.radians(degrees)
        pos = np.array([[-2.0, 0, 0], [0, 0, 0], [2.0 * np.cos(bend), 2.0 * np.sin(bend), 0], [0, 5.0, 0]])
        one = np.arange(4)
        frame = C.token_has_frame(one, np.full(4, 3), ["N1", "FE", "N2", "C"], one, pos, np.zeros(4, int),
                                  np.ones(4, dtype=bool))  # fmt: skip
        assert bool(frame[1]) is expected


def test_ligand_frames_match_protenix_on_haem(tmp_path):
    """HEM from the shared CCD, featurized by Protenix 2.0.0 (oracle): on Protenix's own reference
    conformer, Foldline's frames are exactly Protenix's `has_frame` (FE, between two opposite
    nitrogens of its conformer, has none)."""
    import json

    from oracle import protenix_features

    jobs = [
        {"name": name, "sequences": [{"ligand": {"ligand": "CCD_HEM", "count": 1}}]} for name in ("a", "b")
    ]
    (tmp_path / "hem.json").write_text(json.dumps(jobs))
    features = protenix_features(tmp_path / "hem.json", tmp_path / "px")
    for job in features.values():
        n, names = len(job["has_frame"]), job["atom_array.atom_name"]
        frames = C.token_has_frame(
            job["atom_to_token_idx"], np.full(n, 3), names, np.arange(n), job["ref_pos"],
            job["ref_space_uid"], job["ref_mask"].astype(bool),
        )  # fmt: skip
        assert frames.tolist() == job["has_frame"].astype(bool).tolist()
    assert not any(
        job["has_frame"][list(job["atom_array.atom_name"]).index("FE")] for job in features.values()
    )


def test_sasa_batching_does_not_change_the_result():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(600, 3, generator=g) * 8
    radii = torch.full((600,), 1.7)
    assert torch.equal(C.atom_sasa(x, radii), C.atom_sasa(x, radii, chunk=97, budget=5000))


def test_protenix_ranking_equals_protenixs_own(tmp_path):
    """ranking="protenix" (the ranking of Protenix's presets) against Protenix 2.0.0's calculate_ptm /
    calculate_iptm and ranking_score formula (oracle): a two-chain complex whose tokens partly lack
    frames, and a single chain (Protenix's ipTM there is 0)."""
    from test_infer_sampler import _protenix_inference

    g = torch.Generator().manual_seed(5)
    cases = []
    frames = [True, False, True, True, False, True, True]
    for asym in ([0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 0, 0]):
        logits = torch.randn(2, 7, 7, 64, generator=g) * 3
        cases.append(
            {"pae_logits": logits.tolist(), "asym_id": asym, "has_frame": frames, "clash": [0.0, 1.0]}
        )
    oracle = _protenix_inference({"rankings": cases}, tmp_path)["rankings"]
    for case, theirs in zip(cases, oracle, strict=True):
        probs = torch.tensor(case["pae_logits"]).softmax(-1)
        asym, has_frame = torch.tensor(case["asym_id"]), torch.tensor(case["has_frame"])
        everything = torch.ones(7, dtype=torch.bool)
        ptm = C.tm_score(probs, everything, has_frame=has_frame)
        iptm = C.tm_score(probs, everything, asym, has_frame) if len(set(case["asym_id"])) > 1 else None
        disorder = torch.tensor([0.4, 0.9])  # counts in AF3's ranking, not in Protenix's
        score = C.ranking_score(ptm, iptm, disorder, torch.tensor([False, True]), "protenix")
        torch.testing.assert_close(ptm, torch.tensor(theirs["ptm"]), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(score, torch.tensor(theirs["ranking_score"]), rtol=1e-5, atol=1e-5)
        af3 = C.ranking_score(ptm, iptm, disorder, torch.tensor([False, True]), "af3")
        assert not torch.allclose(af3, score)
