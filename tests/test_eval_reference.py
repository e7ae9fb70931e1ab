"""Scoring predictions against references on real PDB entries (../shared/data/mmcif), through
model.eval.evaluate (the `evaluate` rule's library call), with DockQ and tmtools as oracles."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import gemmi
import numpy as np
import pytest
from conftest import MMCIF_DIR

from model.eval.evaluate import evaluate_target, score_sample, table_rows, write_table
from model.eval.structures import read_chains


def _structure(entry: str, model_index: int = 0) -> gemmi.Structure:
    st = gemmi.read_structure(str(MMCIF_DIR / f"{entry}.cif.gz"))
    st.setup_entities()
    st.remove_hydrogens()
    st.remove_waters()
    st.remove_alternative_conformations()
    keep = st[model_index].clone()
    while len(st):
        del st[0]
    st.add_model(keep)
    return st


def _write(st: gemmi.Structure, path: Path) -> Path:
    st.make_mmcif_document().write_file(str(path))
    return path


def _moved(entry: str, path: Path, move: Callable[[str, str, np.ndarray], np.ndarray]) -> Path:
    """The entry's first model with every atom moved by move(label_asym_id, residue name, xyz)."""
    st = _structure(entry)
    for chain in st[0]:
        for res in chain:
            for atom in res:
                atom.pos = gemmi.Position(*move(res.subchain, res.name, np.array(atom.pos.tolist())))
    return _write(st, path)


def _noise(sigma: float, seed: int = 0) -> Callable:
    rng = np.random.default_rng(seed)
    return lambda _chain, _res, xyz: xyz + rng.normal(0.0, sigma, 3)


def _rigid_then_noise(chain_name: str, sigma: float) -> Callable:
    """Rotate chain `chain_name` by 0.15 rad about z and shift it 1.9 Å, then add noise everywhere."""
    c, s = math.cos(0.15), math.sin(0.15)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    noise = _noise(sigma)

    def move(chain, res, xyz):
        if chain == chain_name:
            xyz = rot @ xyz + np.array([1.5, -1.0, 0.5])
        return noise(chain, res, xyz)

    return move


@pytest.fixture(scope="module")
def reference_1k6p(tmp_path_factory) -> Path:
    """HIV-1 protease homodimer (chains A, B), first model, polymer chains only."""
    st = _structure("1k6p")
    st.remove_ligands_and_waters()
    return _write(st, tmp_path_factory.mktemp("ref") / "1k6p.cif")


def test_lddt_is_one_against_itself_and_falls_with_perturbation(tmp_path):
    ref = MMCIF_DIR / "1ubq.cif.gz"
    ref_chains = read_chains(ref)
    scores, rmsds = [], []
    for sigma in (0.0, 0.3, 0.8, 1.5, 3.0):
        model = _moved("1ubq", tmp_path / f"noise{sigma}.cif", _noise(sigma))
        result = score_sample(model, ref_chains, posebusters=False)
        scores.append(result["lddt"]["global"])
        rmsds.append(result["ca_rmsd"])
    assert scores[0] == pytest.approx(1.0, abs=1e-6)
    assert rmsds[0] < 1e-3
    assert all(a > b for a, b in zip(scores, scores[1:], strict=False)), scores
    assert all(a < b for a, b in zip(rmsds, rmsds[1:], strict=False)), rmsds
    assert scores[-1] < 0.5  # 3 Å of noise on every atom fails most of the 0.5-4 Å thresholds


def test_nmr_model_one_against_model_two_is_plausible(tmp_path):
    """Trp-cage (1L2Y): two NMR models of the same 20-residue protein. Measured: lDDT 0.864, Cα
    RMSD 0.78 Å; asserted: lDDT in 0.75-0.95 (close conformers whose side chains differ)."""
    model_two = _write(_structure("1l2y", model_index=1), tmp_path / "model2.cif")
    result = score_sample(model_two, read_chains(MMCIF_DIR / "1l2y.cif.gz"), posebusters=False)
    assert 0.75 < result["lddt"]["global"] < 0.95
    assert 0.1 < result["ca_rmsd"] < 2.0


def test_dockq_and_tm_score_equal_the_packages_on_the_same_files(tmp_path, reference_1k6p):
    dockq_package = pytest.importorskip("DockQ.DockQ", reason="DockQ oracle: make sysdeps installs it")
    tmtools = pytest.importorskip("tmtools")
    tm_io = pytest.importorskip("tmtools.io", reason="tmtools.io needs Biopython (make sysdeps)")

    # U1A-U2B'' with RNA (1A9N), one copy: RNA Q and proteins A, B (author names; labels A, C, E)
    st = _structure("1a9n")
    st.remove_ligands_and_waters()
    for name in ("R", "C", "D"):
        st[0].remove_chain(name)
    protein_rna = _write(st, tmp_path / "1a9n.cif")
    cases = [
        (reference_1k6p, _moved_file(reference_1k6p, tmp_path / "1k6p_model.cif", "B")),
        (protein_rna, _moved_file(protein_rna, tmp_path / "1a9n_model.cif", "C")),
    ]
    for ref, model in cases:
        ours = score_sample(model, read_chains(ref), posebusters=False)
        native = dockq_package.load_PDB(str(ref))
        predicted = dockq_package.load_PDB(str(model))
        same_names = {c.id: c.id for c in native}
        theirs, _ = dockq_package.run_on_all_native_interfaces(predicted, native, chain_map=same_names)
        # the package names chains by author id; map ours (label ids) through gemmi
        label_to_auth = _label_to_auth(ref)
        compared = 0
        for key, value in ours["dockq"].items():
            a, b = (label_to_auth[n] for n in key.split("-"))
            other = theirs.get(a + b) or theirs[b + a]
            for mine, their in (("dockq", "DockQ"), ("fnat", "fnat"), ("irmsd", "iRMSD"), ("lrmsd", "LRMSD")):
                assert value[mine] == pytest.approx(float(other[their]), abs=2e-4), (key, mine)
            compared += 1
        assert compared == len(theirs) and compared >= 1
        assert ref != protein_rna or any("Q" in k for k in theirs)  # protein-RNA interfaces scored

        st_model = tm_io.get_structure(str(model), format="mmcif")
        st_ref = tm_io.get_structure(str(ref), format="mmcif")
        ref_chains = {c.id: c for c in next(st_ref.get_models()).get_chains()}
        for chain in next(st_model.get_models()).get_chains():
            if chain.id not in ref_chains or not any(r.id[0] == " " and "CA" in r for r in chain):
                continue
            xyz_m, seq_m = tm_io.get_residue_data(chain)
            xyz_r, seq_r = tm_io.get_residue_data(ref_chains[chain.id])
            direct = tmtools.tm_align(xyz_m, xyz_r, seq_m, seq_r).tm_norm_chain2
            ours_tm = ours["tm_score"]["chains"]
            label = next(k for k, v in label_to_auth.items() if v == chain.id and k in ours_tm)
            assert ours_tm[label] == pytest.approx(direct, abs=1e-3), chain.id


def _moved_file(ref: Path, path: Path, chain: str) -> Path:
    st = gemmi.read_structure(str(ref))
    move = _rigid_then_noise(chain, 0.4)
    for ch in st[0]:
        for res in ch:
            for atom in res:
                atom.pos = gemmi.Position(*move(res.subchain, res.name, np.array(atom.pos.tolist())))
    return _write(st, path)


def _label_to_auth(path: Path) -> dict[str, str]:
    st = gemmi.read_structure(str(path))
    return {res.subchain: chain.name for chain in st[0] for res in chain}


def test_homodimer_with_swapped_chains_scores_the_same(tmp_path, reference_1k6p):
    model = _moved_file(reference_1k6p, tmp_path / "model.cif", "B")
    st = gemmi.read_structure(str(model))
    for chain in st[0]:
        new = {"A": "B", "B": "A"}[chain.name]
        chain.name = new
        for res in chain:
            res.subchain = new
    st.setup_entities()
    swapped = _write(st, tmp_path / "swapped.cif")
    ref_chains = read_chains(reference_1k6p)
    plain = score_sample(model, ref_chains, posebusters=False)
    other = score_sample(swapped, ref_chains, posebusters=False)
    assert plain["chain_map"] == {"A": "A", "B": "B"}
    assert other["chain_map"] == {"A": "B", "B": "A"}
    assert other["lddt"]["global"] == pytest.approx(plain["lddt"]["global"], abs=1e-6)
    assert other["lddt"]["global"] < 0.99  # the model is perturbed, so the equality means something
    assert other["ca_rmsd"] == pytest.approx(plain["ca_rmsd"], abs=1e-4)
    assert other["tm_score"]["complex"] == pytest.approx(plain["tm_score"]["complex"], abs=1e-4)
    (dockq_plain,) = plain["dockq"].values()
    (dockq_swapped,) = other["dockq"].values()
    assert dockq_swapped["dockq"] == pytest.approx(dockq_plain["dockq"], abs=1e-6)


def test_ligand_moved_three_angstrom_fails_the_two_angstrom_criterion(tmp_path):
    ref = MMCIF_DIR / "102m.cif.gz"  # myoglobin with its haem (HEM)
    shift = np.array([3.0, 0.0, 0.0])
    moved = _moved("102m", tmp_path / "moved.cif", lambda _c, res, xyz: xyz + shift if res == "HEM" else xyz)
    same = _moved("102m", tmp_path / "same.cif", lambda _c, _r, xyz: xyz)
    ref_chains = read_chains(ref)
    (hem,) = [c.name for c in ref_chains if c.res_names == ["HEM"]]
    scored = score_sample(moved, ref_chains, posebusters=False)
    assert scored["unmatched_model_chains"] == [] and scored["unmatched_reference_chains"] == []
    result = scored["ligands"][hem]
    assert result["rmsd"] == pytest.approx(3.0, abs=1e-3)
    assert result["success"] is False and result["pocket_residues"] > 5
    assert result["lddt"] < 0.9
    exact = score_sample(same, ref_chains, posebusters=False)["ligands"][hem]
    assert exact["rmsd"] < 1e-3 and exact["success"] is True and exact["lddt"] == pytest.approx(1.0)


def test_unmatched_reference_is_a_one_line_error_not_a_zero(tmp_path):
    pred = tmp_path / "predictions" / "ubq"
    (pred / "seed-1_sample-0").mkdir(parents=True)
    _moved("1ubq", pred / "seed-1_sample-0" / "model.cif", _noise(0.0))
    (pred / "ranking_scores.csv").write_text("seed,sample,ranking_score\n1,0,0.5\n")
    wrong = evaluate_target("ubq", pred, MMCIF_DIR / "1bna.cif.gz", posebusters=False)
    assert "samples" not in wrong and "\n" not in wrong["error"] and "ubq" in wrong["error"]
    missing = evaluate_target("ubq", pred, None)
    assert "no reference" in missing["error"]
    right = evaluate_target("ubq", pred, MMCIF_DIR / "1ubq.cif.gz", posebusters=False)
    assert right["samples"][0]["lddt"]["global"] == pytest.approx(1.0)
    assert right["samples"][0]["unmatched_model_chains"] == []
    assert right["ranking"]["top_is_best"] is True
    write_table([wrong, right], tmp_path / "evaluation.tsv")
    lines = (tmp_path / "evaluation.tsv").read_text().splitlines()
    assert len(lines) == 3 and lines[0].startswith("target_id\tseed")
    error_row = table_rows(wrong)[0]
    assert error_row.get("lddt") is None  # an error row has no scores, not zeros


def test_training_validation_dockq_equals_the_evaluation_dockq(tmp_path, reference_1k6p):
    """The validation score of complexes during training (model.eval.dockq.complex_dockq on feature
    arrays) agrees with `evaluate` on files holding the same coordinates."""
    import torch

    from model.data.ccd import load_ccd
    from model.data.features import featurize
    from model.data.structure import parse_mmcif
    from model.eval.dockq import complex_dockq

    c, s = math.cos(0.2), math.sin(0.2)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])

    def move(chain: str, xyz: np.ndarray) -> np.ndarray:  # deterministic, so both paths see the same
        xyz = xyz + 0.3 * np.sin(3.0 * xyz)
        return rot @ xyz + np.array([1.0, 2.0, -1.0]) if chain == "B" else xyz

    st = gemmi.read_structure(str(reference_1k6p))
    for ch in st[0]:
        for res in ch:
            for atom in res:
                atom.pos = gemmi.Position(*move(res.subchain, np.array(atom.pos.tolist())))
    model = _write(st, tmp_path / "model.cif")
    (expected,) = score_sample(model, read_chains(reference_1k6p), posebusters=False)["dockq"].values()

    structure = parse_mmcif(reference_1k6p, load_ccd(None), assembly=None)
    feats = featurize(structure, load_ccd(None), with_truth=True).features
    truth = feats["atom_pos"].astype(np.float64)
    chain_of_atom = structure.chain_name[structure.atom_chain]
    pred = np.stack([move(ch, xyz) for ch, xyz in zip(chain_of_atom, truth, strict=True)])
    pred[~feats["atom_resolved"]] += 1000.0  # atoms the reference lacks: far from every contact
    t = {k: torch.as_tensor(v) for k, v in feats.items()}
    value = complex_dockq(
        torch.as_tensor(pred), torch.as_tensor(truth), t["atom_resolved"], t["atom_to_token"].long(),
        t["asym_id"].long(), t["mol_type"].long(), t["ref_atom_name_chars"],
    )  # fmt: skip
    assert 0.2 < expected["dockq"] < 0.95
    assert value == pytest.approx(expected["dockq"], abs=1e-4)


@pytest.mark.slow  # PoseBusters' checks take ~10 s of CPU per pose
def test_posebusters_checks_pass_for_the_crystal_pose_and_catch_a_clash(tmp_path):
    """evaluate_target on a prediction folder written by the writer from 1K6P (HIV protease with its
    inhibitor XN3): the crystal pose passes every PoseBusters check; pushed 3 Å into the protein it
    fails the 2 Å criterion and a protein-clash check."""
    from test_infer_writer import fake_confidences, layout_from_gemmi, read_source

    from model.data.ccd import load_ccd
    from model.infer.writer import set_bond_orders, write_target

    src = read_source("1k6p")
    for chain in src[0]:
        for i in reversed(range(len(chain))):
            if chain[i].het_flag == "H" and chain[i].name != "XN3":
                del chain[i]
    src.setup_entities()
    layout, xyz = layout_from_gemmi(src)
    ccd = load_ccd(None)
    set_bond_orders(layout, lambda code: ccd[code] if code in ccd else None)  # as the prediction job does
    ligand = layout.chain_type[layout.atom_chain] == "ligand"
    reference = _write(src, tmp_path / "reference.cif")
    shifted = xyz.copy()
    protein_centre = xyz[~ligand].mean(0)
    toward = protein_centre - xyz[ligand].mean(0)
    shifted[ligand] += 3.0 * toward / np.linalg.norm(toward)
    results = {}
    for name, coords in (("crystal", xyz), ("shifted", shifted)):
        folder = write_target(
            tmp_path / name, "hiv", layout, [(1, coords[None], fake_confidences(layout, 1, 1))], 1, {}
        )
        result = evaluate_target("hiv", folder, reference)
        (results[name],) = result["samples"][0]["ligands"].values()
    crystal, moved = results["crystal"], results["shifted"]
    assert crystal["rmsd"] < 1e-3 and crystal["success"] and crystal["posebusters"]["all"]
    assert len(crystal["posebusters"]) > 10
    assert moved["rmsd"] == pytest.approx(3.0, abs=1e-3) and not moved["success"]
    assert not moved["posebusters"]["all"]
    assert not (
        moved["posebusters"]["minimum_distance_to_protein"]
        and moved["posebusters"]["volume_overlap_with_protein"]
    )


def test_references_from_a_folder_or_a_table(tmp_path):
    from model.eval.references import reference_table

    folder = tmp_path / "refs"
    folder.mkdir()
    (folder / "ubq.cif.gz").symlink_to(MMCIF_DIR / "1ubq.cif.gz")
    (folder / "dna.pdb").write_text("END\n")
    (folder / "notes.txt").write_text("not a structure\n")
    assert reference_table(folder) == {"ubq": folder / "ubq.cif.gz", "dna": folder / "dna.pdb"}
    table = tmp_path / "refs.csv"
    table.write_text("target_id,reference\nubq,refs/ubq.cif.gz\nmissing,refs/none.cif\n")
    assert reference_table(table) == {"ubq": tmp_path / "refs" / "ubq.cif.gz"}  # absent files are left out


def test_posebusters_failure_is_reported_not_raised(tmp_path):
    from model.eval.ligand import posebusters_checks

    (tmp_path / "ligand.sdf").write_text("not a molfile\n")
    result = posebusters_checks(tmp_path / "ligand.sdf", tmp_path / "missing.pdb")
    assert set(result) == {"error"} and "\n" not in result["error"]


def test_lddt_breakdown_in_chunks_equals_the_plain_lddt():
    import torch

    from model.eval.lddt import lddt, lddt_breakdown, lddt_pair_mask

    gen = torch.Generator().manual_seed(0)
    x_true = torch.randn(60, 3, generator=gen) * 8
    x_pred = x_true + torch.randn(60, 3, generator=gen) * 1.5
    chain = torch.tensor([0] * 25 + [1] * 20 + [2] * 15)
    nucleotide = chain == 1
    cutoff = torch.where(nucleotide, 30.0, 15.0)
    mask = torch.ones(60, dtype=torch.bool)
    out = lddt_breakdown(x_pred, x_true, chain, nucleotide, ["A", "B", "L"], [2], chunk=7)
    assert out["global"] == pytest.approx(float(lddt(x_pred, x_true, mask, cutoff)), abs=1e-6)
    in_b = chain == 1
    assert out["chains"]["B"] == pytest.approx(
        float(lddt(x_pred, x_true, mask, cutoff, pair_select=in_b[:, None] & in_b[None, :])), abs=1e-6
    )
    across = (chain[:, None] == 0) & (chain[None, :] == 2) | (chain[:, None] == 2) & (chain[None, :] == 0)
    assert out["interfaces"]["A-L"] == pytest.approx(
        float(lddt(x_pred, x_true, mask, cutoff, pair_select=across)), abs=1e-6
    )
    ligand_rows = (chain == 2)[:, None].expand(60, 60)
    assert out["ligands"]["L"] == pytest.approx(
        float(lddt(x_pred, x_true, mask, cutoff, pair_select=ligand_rows)), abs=1e-6
    )
    assert bool(lddt_pair_mask(x_true, mask, cutoff, pair_select=across).any())


def test_reference_column_of_the_targets_table(tmp_path):
    """Without `references`, evaluate reads the targets table's own `reference` column (a BOM too)."""
    from model.data.inputs import load_targets
    from model.eval.references import reference_table

    (tmp_path / "refs").mkdir()
    (tmp_path / "refs" / "trp.cif.gz").symlink_to(MMCIF_DIR / "1l2y.cif.gz")
    table = tmp_path / "targets.csv"
    table.write_bytes(
        "\ufefftarget_id,chains,reference\r\ntrp,protein:NLYIQWLKDGGPSSGRPPPS,refs/trp.cif.gz\r\n"
        "ubq,protein:MQIFVKTLTGK,\r\n".encode()
    )
    targets, errors = load_targets(table)
    assert [t.target_id for t in targets] == ["trp", "ubq"] and not errors
    assert reference_table(table) == {"trp": tmp_path / "refs" / "trp.cif.gz"}
