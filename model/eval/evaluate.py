"""Score a target's predictions against a reference structure (the `evaluate` rule's job).

For every sample under `results/predictions/{target}/seed-{s}_sample-{k}/model.cif`:
  lddt           all-atom lDDT: global, per chain, per interface, per ligand (model.eval.lddt)
  ca_rmsd        Cα RMSD after superposition on the Cα atoms (protein chains)
  backbone_rmsd  RMSD of the backbone atoms (model.eval.dockq.BACKBONE_ATOMS) after superposition
  tm_score       TM-score per protein chain and for the complex (model.eval.tmscore)
  dockq          DockQ, fnat, fnonnat, iRMSD, LRMSD per protein-protein and protein-nucleic
                 interface with native contacts (model.eval.dockq)
  ligands        pocket-aligned RMSD, success (< 2 Å), lDDT and PoseBusters checks per ligand
and per target whether the top-ranked sample (ranking_scores.csv) was the best one (by mean DockQ
when the target has a scored interface, else by global lDDT). Chains are matched by sequence with
the best permutation for homomers (model.eval.structures), per sample.
"""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
from pathlib import Path

import gemmi
import numpy as np
import torch

from model.eval.dockq import BACKBONE_ATOMS, dockq
from model.eval.lddt import lddt_breakdown
from model.eval.ligand import pocket_aligned_rmsd, posebusters_checks
from model.eval.rmsd import rmsd
from model.eval.structures import NUCLEIC, ChainPair, MatchedAtoms, map_chains, matched_atoms, read_chains
from model.eval.tmscore import tm_scores
from model.fileio import write_json, write_text_atomic

TABLE_COLUMNS = (
    "target_id",
    "seed",
    "sample",
    "ranking_score",
    "top_ranked",
    "lddt",
    "ca_rmsd",
    "backbone_rmsd",
    "tm_score",
    "dockq_mean",
    "ligand_rmsd_mean",
    "ligand_success",
    "posebusters_valid",
    "error",
)
POLYMERS = ("protein", *NUCLEIC)


def _superposed_rmsd(m: MatchedAtoms, select: np.ndarray) -> float | None:
    if select.sum() < 3:
        return None
    x = torch.as_tensor(m.model_xyz[select])
    x_ref = torch.as_tensor(m.ref_xyz[select])
    return float(rmsd(x, x_ref))


def _interface_dockq(a: ChainPair, b: ChainPair) -> dict | None:
    """DockQ of the interface between two matched chains (the union of both structures' atoms)."""
    xm, xr, res, side, bb, pm, pr = [], [], [], [], [], [], []
    n_res = 0
    for s, pair in enumerate((a, b)):
        model_of_ref = {j: i for i, j in pair.residues}
        # every reference residue (unmatched ones count as missed contacts, as in DockQ)
        for j, ref_atoms in enumerate(pair.ref.res_atoms):
            i = model_of_ref.get(j)
            model_atoms = pair.model.res_atoms[i] if i is not None else {}
            for name in sorted(set(ref_atoms) | set(model_atoms)):
                xm.append(model_atoms.get(name, np.zeros(3)))
                xr.append(ref_atoms.get(name, np.zeros(3)))
                pm.append(name in model_atoms)
                pr.append(name in ref_atoms)
                res.append(n_res)
                side.append(s)
                bb.append(name in BACKBONE_ATOMS)
            n_res += 1
    receptor = 0 if len(a.ref.res_names) > len(b.ref.res_names) else 1
    return dockq(
        torch.as_tensor(np.asarray(xm)),
        torch.as_tensor(np.asarray(xr)),
        torch.as_tensor(res),
        torch.as_tensor(side),
        torch.as_tensor(bb),
        torch.as_tensor(pm),
        torch.as_tensor(pr),
        receptor,
    )


def _receptor_pdb(model_cif: Path, folder: Path) -> Path:
    """The model's polymer chains as a PDB file (PoseBusters' receptor input)."""
    st = gemmi.read_structure(str(model_cif))
    st.setup_entities()
    st.remove_ligands_and_waters()
    path = folder / "receptor.pdb"
    st.write_pdb(str(path))
    return path


def score_sample(model_cif: Path, ref_chains: list, posebusters: bool = True) -> dict:
    """Every metric of one predicted model against the reference chains (see module docstring)."""
    model_chains = read_chains(model_cif)
    pairs = map_chains(model_chains, ref_chains)
    m = matched_atoms(pairs)
    names = [p.model.name for p in pairs]
    kinds = np.asarray(m.chain_kind)
    atom_kind = kinds[m.chain]
    ligand_chains = [c for c, k in enumerate(kinds) if k == "ligand"]
    x_pred = torch.as_tensor(m.model_xyz, dtype=torch.float32)
    x_true = torch.as_tensor(m.ref_xyz, dtype=torch.float32)
    out: dict = {
        "chain_map": {p.model.name: p.ref.name for p in pairs},
        # e.g. a ligand the experiment did not resolve, or reference chains the model lacks
        "unmatched_model_chains": sorted({c.name for c in model_chains} - {p.model.name for p in pairs}),
        "unmatched_reference_chains": sorted({c.name for c in ref_chains} - {p.ref.name for p in pairs}),
        "lddt": lddt_breakdown(
            x_pred, x_true, torch.as_tensor(m.chain), torch.as_tensor(m.is_nucleotide()), names, ligand_chains
        ),
        "ca_rmsd": _superposed_rmsd(m, (atom_kind == "protein") & (m.atom_name == "CA")),
        "backbone_rmsd": _superposed_rmsd(
            m, np.isin(atom_kind, POLYMERS) & np.isin(m.atom_name, sorted(BACKBONE_ATOMS))
        ),
        "tm_score": tm_scores(pairs),
        "dockq": {},
        "ligands": {},
    }
    for ia, a in enumerate(pairs):
        for b in pairs[ia + 1 :]:
            kinds_ab = {a.model.kind, b.model.kind}
            if not kinds_ab <= set(POLYMERS) or "protein" not in kinds_ab:
                continue
            value = _interface_dockq(a, b)
            if value is not None:
                out["dockq"][f"{a.model.name}-{b.model.name}"] = value
    is_polymer = np.isin(atom_kind, POLYMERS)
    with tempfile.TemporaryDirectory() as tmp:
        receptor = None
        for c in ligand_chains:
            name = names[c]
            pose = pocket_aligned_rmsd(
                m.model_xyz, m.ref_xyz, m.chain == c, is_polymer, m.residue, m.atom_name
            ) or {"rmsd": None, "success": None, "pocket_residues": 0}
            pose["lddt"] = out["lddt"]["ligands"].get(name)
            sdf = model_cif.parent / f"ligand-{name}.sdf"
            if posebusters and sdf.is_file() and is_polymer.any():
                receptor = receptor or _receptor_pdb(model_cif, Path(tmp))
                pose["posebusters"] = posebusters_checks(sdf, receptor)
            out["ligands"][name] = pose
    return out


def _sample_dirs(pred_dir: Path) -> list[tuple[int, int, Path]]:
    found = []
    for sub in pred_dir.glob("seed-*_sample-*"):
        seed, sample = sub.name.removeprefix("seed-").split("_sample-")
        if (sub / "model.cif").is_file():
            found.append((int(seed), int(sample), sub))
    return sorted(found)


def _ranking_scores(pred_dir: Path) -> dict[tuple[int, int], float]:
    path = pred_dir / "ranking_scores.csv"
    if not path.is_file():
        return {}
    with path.open() as fh:
        return {(int(r["seed"]), int(r["sample"])): float(r["ranking_score"]) for r in csv.DictReader(fh)}


def _quality(sample: dict) -> tuple[str, float | None]:
    dockqs = [v["dockq"] for v in sample["dockq"].values()]
    if dockqs:
        return "dockq_mean", float(np.mean(dockqs))
    return "lddt", sample["lddt"]["global"]


def evaluate_target(target_id: str, pred_dir: Path, reference: Path | None, posebusters: bool = True) -> dict:
    """Scores of every sample of one target, or {"target_id", "error"} with a one-line reason."""
    head = {"target_id": target_id, "reference": str(reference) if reference else None}
    if reference is None or not Path(reference).is_file():
        return head | {"error": f"target {target_id}: no reference structure ({reference or 'none given'})"}
    samples = _sample_dirs(pred_dir)
    if not samples:
        return head | {"error": f"target {target_id}: no predicted models under {pred_dir}"}
    try:
        ref_chains = read_chains(reference)
    except (RuntimeError, ValueError, OSError) as error:
        return head | {"error": f"target {target_id}: reference {reference}: {' '.join(str(error).split())}"}
    ranking = _ranking_scores(pred_dir)
    scored = []
    for seed, k, folder in samples:
        try:
            values = score_sample(folder / "model.cif", ref_chains, posebusters)
        except (RuntimeError, ValueError) as error:
            return head | {"error": f"target {target_id}: {' '.join(str(error).split())}"}
        scored.append({"seed": seed, "sample": k, "ranking_score": ranking.get((seed, k))} | values)
    ranked = [s for s in scored if s["ranking_score"] is not None]
    # first wins ties, as in the writer's choice of the best sample
    top = max(ranked, key=lambda s: s["ranking_score"]) if ranked else scored[0]
    criterion, _ = _quality(top)
    best = max(scored, key=lambda s: _quality(s)[1] if _quality(s)[1] is not None else -math.inf)
    top_value, best_value = _quality(top)[1], _quality(best)[1]
    for s in scored:
        s["top_ranked"] = s is top
    return head | {
        "samples": scored,
        "ranking": {
            "criterion": criterion,
            "top_ranked": f"seed-{top['seed']}_sample-{top['sample']}",
            "best": f"seed-{best['seed']}_sample-{best['sample']}",
            "top_is_best": top_value is not None and best_value is not None and top_value >= best_value,
            "top_value": top_value,
            "best_value": best_value,
        },
    }


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def table_rows(result: dict) -> list[dict]:
    """Rows of results/evaluation.tsv for one target's evaluation: one per sample, or one error row."""
    if "error" in result:
        return [{"target_id": result["target_id"], "error": result["error"]}]
    rows = []
    for s in result["samples"]:
        ligands = list(s["ligands"].values())
        rmsds = [v["rmsd"] for v in ligands if v["rmsd"] is not None]
        success = [v["success"] for v in ligands if v["success"] is not None]
        valid = [v["posebusters"]["all"] for v in ligands if "all" in v.get("posebusters", {})]
        dockqs = [v["dockq"] for v in s["dockq"].values()]
        row = {
            "target_id": result["target_id"],
            "seed": s["seed"],
            "sample": s["sample"],
            "ranking_score": s["ranking_score"],
            "top_ranked": s["top_ranked"],
            "lddt": s["lddt"]["global"],
            "ca_rmsd": s["ca_rmsd"],
            "backbone_rmsd": s["backbone_rmsd"],
            "tm_score": s["tm_score"]["complex"],
            "dockq_mean": float(np.mean(dockqs)) if dockqs else None,
            "ligand_rmsd_mean": float(np.mean(rmsds)) if rmsds else None,
            "ligand_success": float(np.mean(success)) if success else None,
            "posebusters_valid": float(np.mean(valid)) if valid else None,
        }
        rows.append(row)
    return rows


def write_table(results: list[dict], path: Path) -> None:
    """results/evaluation.tsv: TABLE_COLUMNS, one row per target and sample (atomic)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=TABLE_COLUMNS, delimiter="\t", lineterminator="\n")
    writer.writeheader()
    for result in sorted(results, key=lambda r: r["target_id"]):
        for row in table_rows(result):
            writer.writerow({c: _fmt(row.get(c)) for c in TABLE_COLUMNS})
    write_text_atomic(path, buf.getvalue())


def write_result(result: dict, path: Path) -> None:
    """results/evaluation/{target}.json (atomic; NaN never appears, missing values are null)."""
    write_json(path, result)


def evaluation_table(result_files: list[Path], out: Path) -> None:
    """results/evaluation.tsv from the per-target JSON files."""
    write_table([json.loads(Path(p).read_text()) for p in result_files], out)
