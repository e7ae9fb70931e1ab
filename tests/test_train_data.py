"""Training data pipeline on real feature files built from shared PDB entries by the real featurizer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import MMCIF_DIR, REPO

from model.data.store import load_features, load_meta
from model.train import data as D
from model.train.stages import resolve_stage

ENTRIES = ("1ubq", "1k6p", "1gya")  # monomer; homodimer + ligands; NMR protein + N-glycan


def build_training_files(out: Path, entries=ENTRIES) -> list[Path]:
    """Feature files with ground truth, written by scripts/build_features.py --mmcif."""
    cifs = [str(next(MMCIF_DIR.glob(f"{e}.cif*"))) for e in entries]
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_features.py"), "--mmcif", *cifs, "--out-dir", str(out),
         "--failed-dir", str(out / "failed"), "--ccd", ""],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    files = [out / f"{e}.h5" for e in entries]
    assert all(f.is_file() for f in files), list(out.iterdir())
    return files


@pytest.fixture(scope="session")
def train_files(tmp_path_factory) -> list[Path]:
    return build_training_files(tmp_path_factory.mktemp("train_features"))


def _cfg(*overrides: str) -> dict:
    return resolve_stage(REPO / "config" / "stages.yaml", 0, ["train_crop_size=32", *overrides])


def test_index_chains_interfaces_and_clusters(train_files):
    entries = {e.target_id: e for e in D.build_index(train_files)}
    assert set(entries) == set(ENTRIES)
    ubq, hiv = entries["1ubq"], entries["1k6p"]
    assert [c.mol_class for c in ubq.chains] == ["protein"] and ubq.interfaces == []
    assert ubq.chains[0].sequence.startswith("MQIFVKTLTGK")  # ubiquitin's sequence
    protein = [c for c in hiv.chains if c.mol_class == "protein"]
    assert len(protein) == 2 and protein[0].sequence == protein[1].sequence
    assert (protein[0].asym_id, protein[1].asym_id) in hiv.interfaces  # the protease dimer interface
    D.exact_clusters(list(entries.values()))
    assert protein[0].cluster == protein[1].cluster != ubq.chains[0].cluster


def test_sampling_weights_follow_af3_formula(train_files):
    entries = D.build_index(train_files)
    D.exact_clusters(entries)
    cfg = _cfg()["sampling"]
    units, probs = D.sampling_weights(entries, cfg)
    assert len(units) == sum(len(e.chains) + len(e.interfaces) for e in entries)
    assert np.isclose(probs.sum(), 1.0)
    raw = {}
    for (k, unit), p in zip(units, probs, strict=True):
        raw[(entries[k].target_id, unit)] = p
    ubq = raw[("1ubq", (0,))]
    hiv = next(e for e in entries if e.target_id == "1k6p")
    # ubiquitin: its own cluster of 1 -> 0.5 * 3 / 1; a protease chain: cluster of 2 -> 0.5 * 3 / 2
    assert np.isclose(raw[("1k6p", (hiv.chains[0].asym_id,))] / ubq, 0.5)


def test_filters(train_files):
    entries = D.build_index(train_files)
    entries[0].resolution, entries[1].release_date = 12.0, "2030-01-01"
    kept, dropped = D.apply_filters(entries, _cfg()["filters"])
    assert [e.target_id for e in kept] == [entries[2].target_id]
    assert "resolution" in dropped[0][1] and "release_date" in dropped[1][1]


def test_examples_are_deterministic_cropped_and_carry_loss_arrays(train_files):
    entries = D.build_index(train_files)
    D.exact_clusters(entries)
    cfg = _cfg()
    ds = D.TrainDataset(entries, cfg)
    a, b = ds[7], ds[7]
    assert a["target_id"] == b["target_id"]
    for k in a["feats"]:
        assert torch.equal(a["feats"][k], b["feats"][k]), k
    seen = set()
    for slot in range(12):
        ex = ds[slot]
        seen.add(ex["target_id"])
        feats, aux = ex["feats"], ex["aux"]
        n_tok = len(feats["asym_id"])
        assert n_tok <= 32
        fa = aux["frame_atoms"][aux["frame_mask"]]
        # every valid frame of a protein residue is N, CA, C: bonded N-CA and CA-C ~1.45/1.52 Å
        prot = feats["mol_type"][aux["frame_mask"]] == 0
        pos = feats["atom_pos"]
        d1 = (pos[fa[prot, 0]] - pos[fa[prot, 1]]).norm(dim=-1)
        d2 = (pos[fa[prot, 2]] - pos[fa[prot, 1]]).norm(dim=-1)
        assert ((d1 > 1.3) & (d1 < 1.6) & (d2 > 1.4) & (d2 < 1.65)).all()
    assert len(seen) >= 2


def test_every_example_places_its_reference_spaces_anew(train_files):
    """AF3 Table 5 ref_pos: each slot draws its own rotation and shift per reference space (seeded by
    the slot), the conformer inside a space stays the same rigid body, centred up to a 1 Å shift."""
    (entry,) = [e for e in D.build_index(train_files) if e.target_id == "1ubq"]
    stored = load_features(entry.path)
    first = D.load_example(entry, 1000, D.slot_rng(0, 0, 1), None)["feats"]  # 76 tokens: no crop
    again = D.load_example(entry, 1000, D.slot_rng(0, 0, 1), None)["feats"]
    other = D.load_example(entry, 1000, D.slot_rng(0, 0, 2), None)["feats"]
    assert torch.equal(first["ref_pos"], again["ref_pos"])
    uid = first["ref_space_uid"]
    for u in uid.unique()[:5]:
        spaces = [f["ref_pos"][uid == u].double() for f in (stored, first, other)]
        distances = [torch.cdist(x, x) for x in spaces]
        torch.testing.assert_close(distances[1], distances[0], atol=1e-4, rtol=0)
        torch.testing.assert_close(distances[2], distances[0], atol=1e-4, rtol=0)
        assert not torch.allclose(spaces[1], spaces[2], atol=0.1)
        assert spaces[1].mean(0).norm() <= 3**0.5 + 1e-4


def test_bond_pairs_and_symmetric_swaps_on_glycan_entry(train_files):
    path = train_files[ENTRIES.index("1gya")]
    feats = {k: v.numpy() for k, v in load_features(path).items()}
    meta = load_meta(path)
    all_atoms = np.arange(len(meta["atom_name"]))
    pairs = D.ligand_bond_pairs(feats, meta["atom_bonds"], meta["atom_bond_is_link"], all_atoms)
    names = meta["atom_name"][pairs]
    res = meta["token_res_name"][feats["atom_to_token"][pairs]]
    assert ["ASN", "NAG"] in res.tolist() and ["ND2", "C1"] in names.tolist()  # the N-glycosylation link
    length = np.linalg.norm(feats["atom_pos"][pairs[:, 0]] - feats["atom_pos"][pairs[:, 1]], axis=-1)
    assert (np.abs(length - 1.45) < 0.1).all()  # covalent C-N / C-O glycosidic bonds
    swaps = D.symmetric_swaps(feats, D.atom_names(feats["ref_atom_name_chars"]))
    swap_names = {tuple(meta["atom_name"][swaps[r, 1:]]) for r in range(len(swaps))}
    n_asp = int((meta["token_res_name"] == "ASP").sum())
    assert ("OD1", "OD2") in swap_names and n_asp > 0
    assert len(set(swaps[:, 0])) >= n_asp


def test_slot_sampler_is_independent_of_the_process_split():
    def slots(world: int, accum: int, start: int, n_steps: int) -> list[int]:
        out = []
        for rank in range(world):
            it = iter(D.SlotSampler(start, rank, world, accum))
            out += [next(it) for _ in range(n_steps * accum)]
        return sorted(out)

    assert slots(1, 4, 3, 2) == slots(2, 2, 3, 2) == slots(4, 1, 3, 2) == list(range(12, 20))


def test_filters_read_the_entries_header(train_files):
    """Resolution and release date travel from the mmCIF header into the feature file's attributes."""
    import gemmi

    entries = {e.target_id: e for e in D.build_index(train_files)}
    block = gemmi.cif.read(str(next(MMCIF_DIR.glob("1ubq.cif*")))).sole_block()
    assert entries["1ubq"].resolution == pytest.approx(float(block.find_value("_refine.ls_d_res_high")))
    assert entries["1gya"].resolution is None  # NMR
    ubq_release = entries["1ubq"].release_date
    assert ubq_release and ubq_release < entries["1k6p"].release_date
    base = {"max_resolution": 9.0, "release_date_cutoff": "2100-01-01", "max_chains": 1000}
    kept, dropped = D.apply_filters(list(entries.values()), {**base, "release_date_cutoff": ubq_release})
    assert [e.target_id for e in kept] == ["1ubq"] and {t for t, _ in dropped} == {"1k6p", "1gya"}
    kept, dropped = D.apply_filters(list(entries.values()), {**base, "max_resolution": 2.0})
    assert {e.target_id for e in kept} == {"1ubq", "1gya"} and [t for t, _ in dropped] == ["1k6p"]
