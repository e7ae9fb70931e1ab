"""Interface confidences (ipSAE, pDockQ, interface pLDDT and PAE) from their published formulas,
and their place in summary_confidences.json through the writer the prediction job runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from test_infer_writer import fake_confidences, layout_from_gemmi, read_source

from model.infer.interface import interface_confidences, ipsae_d0, pdockq
from model.infer.writer import write_target


def test_ipsae_counts_only_pairs_below_the_pae_cutoff():
    # chain 0: tokens 0-2; chain 1: tokens 3-4. Rows aligned on chain 0 see PAE 2 and 12 Å (one pair
    # below 10 Å), 4 and 6 Å (two), 15 and 20 Å (none); chain 1's rows see 30 Å everywhere.
    pae = np.full((5, 5), 30.0)
    pae[0, 3:], pae[1, 3:], pae[2, 3:] = (2.0, 12.0), (4.0, 6.0), (15.0, 20.0)
    d0 = 1.24 * (27 - 15) ** (1 / 3) - 1.8  # n floored at 27: 1.0389 Å
    row0 = 1 / (1 + (2.0 / d0) ** 2)
    row1 = (1 / (1 + (4.0 / d0) ** 2) + 1 / (1 + (6.0 / d0) ** 2)) / 2
    out = interface_confidences(
        pae, np.full(5, 70.0), np.arange(15.0).reshape(5, 3) * 100, np.array([0, 0, 0, 1, 1]), ["protein"] * 2
    )
    ipsae = out["chain_pair_ipsae"]
    assert ipsae[0, 1] == pytest.approx(max(row0, row1)) and ipsae[1, 0] == ipsae[0, 1]
    assert math.isnan(ipsae[0, 0])
    # far apart (100 Å steps): no contacts, so pDockQ is 0 and the contact-based means are undefined
    assert out["chain_pair_pdockq"][0, 1] == 0.0
    assert math.isnan(out["chain_pair_iplddt"][0, 1]) and math.isnan(out["chain_pair_ipae"][0, 1])
    assert ipsae_d0(np.array([100]), nucleic=False)[0] == pytest.approx(1.24 * 85 ** (1 / 3) - 1.8)
    assert ipsae_d0(np.array([1]), nucleic=True)[0] == 2.0  # nucleic acid floor


def test_pdockq_and_interface_means_from_contacts():
    # chain 0 at x = 0 and 20 Å, chain 1 at x = 5 Å: one contact pair (0, 2) within 8 Å
    xyz = np.array([[0.0, 0, 0], [20.0, 0, 0], [5.0, 0, 0]])
    plddt = np.array([80.0, 10.0, 60.0])
    pae = np.array([[0.0, 0, 3.0], [0, 0, 9.0], [5.0, 7.0, 0]])
    out = interface_confidences(pae, plddt, xyz, np.array([0, 0, 1]), ["protein", "protein"])
    assert out["chain_pair_iplddt"][0, 1] == pytest.approx(70.0)  # tokens 0 and 2
    assert out["chain_pair_ipae"][0, 1] == pytest.approx((3.0 + 5.0) / 2)
    # one contact: log10(1) = 0, so x = 0 and pDockQ = L / (1 + exp(k x0)) + b
    assert out["chain_pair_pdockq"][0, 1] == pytest.approx(0.724 / (1 + math.exp(0.052 * 152.611)) + 0.018)
    x = 70.0 * math.log10(12)
    assert pdockq(70.0, 12) == pytest.approx(0.724 / (1 + math.exp(-0.052 * (x - 152.611))) + 0.018)


def test_summary_confidences_hold_the_interface_matrices(tmp_path):
    layout, xyz = layout_from_gemmi(read_source("1k6p"))  # HIV protease dimer with ligands
    folder = write_target(tmp_path, "t", layout, [(0, xyz[None], fake_confidences(layout, 1, 0))], 1, {})
    summary = json.loads((folder / "seed-0_sample-0" / "summary_confidences.json").read_text())
    n_chain = len(layout.chain_name)
    a, b = [c for c, t in enumerate(layout.chain_type) if t == "protein"][:2]
    for key in ("chain_pair_ipsae", "chain_pair_pdockq", "chain_pair_iplddt", "chain_pair_ipae"):
        matrix = np.array(summary[key], dtype=float)  # null -> nan
        assert matrix.shape == (n_chain, n_chain) and np.isnan(np.diag(matrix)).all()
        assert matrix[a, b] == matrix[b, a] and not math.isnan(matrix[a, b])
    assert summary["chain_pair_pdockq"][a][b] > 0.018  # the dimer interface has many contacts
    assert summary == json.loads((folder / "t_summary_confidences.json").read_text())
