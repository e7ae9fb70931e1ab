"""Prediction outputs, AlphaFold 3's layout and key names (DESIGN.md, "Predictions").

Per target, under `{out_dir}/{target}/`:
  seed-{s}_sample-{k}/model.cif               every entity; pLDDT in the B-factor column;
                                               `struct_conn` for covalent links between residues,
                                               `chem_comp_bond` for bonds inside ligands
  seed-{s}_sample-{k}/confidences.json         atom_chain_ids, atom_plddts, contact_probs, pae, pde,
                                               token_chain_ids, token_res_ids
  seed-{s}_sample-{k}/summary_confidences.json ptm, iptm, ranking_score, fraction_disordered,
                                               has_clash, chain_ptm, chain_iptm, chain_pair_iptm,
                                               chain_pair_pae_min, num_recycles, and the interface
                                               confidences chain_pair_ipsae, chain_pair_pdockq,
                                               chain_pair_iplddt, chain_pair_ipae (model.infer.interface)
  {target}_model.cif, {target}_confidences.json, {target}_summary_confidences.json   (best sample)
  ranking_scores.csv (seed,sample,ranking_score), pae.png (best sample), provenance.json,
  seed-{s}_sample-{k}/ligand-{chain}.sdf for every ligand chain when RDKit is importable.
Every file is written to a temp name in its folder and renamed.

Uses gemmi (and matplotlib, optionally RDKit); the GPU timing path never imports this module.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gemmi
import numpy as np

from model.fileio import write_bytes_atomic, write_json, write_text_atomic
from model.infer.interface import interface_confidences

POLYMER_TYPE = {
    "protein": gemmi.PolymerType.PeptideL,
    "rna": gemmi.PolymerType.Rna,
    "dna": gemmi.PolymerType.Dna,
}
ENTITY_TYPE = {
    "protein": gemmi.EntityType.Polymer,
    "rna": gemmi.EntityType.Polymer,
    "dna": gemmi.EntityType.Polymer,
    "branched": gemmi.EntityType.Branched,
    "ligand": gemmi.EntityType.NonPolymer,
    "ion": gemmi.EntityType.NonPolymer,
}


@dataclass
class TargetLayout:
    """What the writer needs about a target, from the feature file (numpy, no batch dim).

    Tokens [T]: residue_index, asym_id, token_res_name, token_rep_atom (representative atom, the
    token's first atom where the features lack it). Atoms [A]: atom_to_token, atom_name,
    atom_element. Chains [C]: chain_name, chain_type, chain_entity_id. Bonds [B, 2]: atom_bonds,
    atom_bond_is_link [B].
    """

    residue_index: np.ndarray
    asym_id: np.ndarray
    token_res_name: np.ndarray
    atom_to_token: np.ndarray
    atom_name: np.ndarray
    atom_element: np.ndarray
    chain_name: np.ndarray
    chain_type: np.ndarray
    chain_entity_id: np.ndarray
    atom_bonds: np.ndarray
    atom_bond_is_link: np.ndarray
    # [B] bond order 1/2/3 (Kekulé) where known from the CCD, 0 = unknown; see `set_bond_orders`.
    atom_bond_order: np.ndarray | None = None
    token_rep_atom: np.ndarray | None = None

    @classmethod
    def from_features(cls, feats: dict, meta: dict) -> TargetLayout:
        """Build from `store.load_features` tensors (or numpy arrays) and `store.load_meta`."""

        def arr(x) -> np.ndarray:
            return x.cpu().numpy() if hasattr(x, "cpu") else np.asarray(x)

        bonds = np.asarray(meta.get("atom_bonds", np.zeros((0, 2), np.int32)), dtype=np.int64).reshape(-1, 2)
        is_link = np.asarray(meta.get("atom_bond_is_link", np.zeros(len(bonds), bool)), dtype=bool)
        return cls(
            residue_index=arr(feats["residue_index"]).astype(np.int64),
            asym_id=arr(feats["asym_id"]).astype(np.int64),
            token_res_name=np.asarray(meta["token_res_name"], dtype=str),
            atom_to_token=arr(feats["atom_to_token"]).astype(np.int64),
            atom_name=np.asarray(meta["atom_name"], dtype=str),
            atom_element=np.asarray(meta["atom_element"], dtype=str),
            chain_name=np.asarray(meta["chain_name"], dtype=str),
            chain_type=np.asarray(meta["chain_type"], dtype=str),
            chain_entity_id=np.asarray(meta["chain_entity_id"], dtype=str),
            atom_bonds=bonds,
            atom_bond_is_link=is_link,
            token_rep_atom=(
                arr(feats["token_rep_atom"]).astype(np.int64) if "token_rep_atom" in feats else None
            ),
        )

    @property
    def rep_atom(self) -> np.ndarray:
        """[T] representative atom of each token."""
        if self.token_rep_atom is not None:
            return self.token_rep_atom
        return np.unique(self.atom_to_token, return_index=True)[1]

    @property
    def atom_chain(self) -> np.ndarray:
        """[A] chain index of each atom."""
        return self.asym_id[self.atom_to_token]

    def residues(self) -> list[tuple[int, int, str, np.ndarray]]:
        """(chain index, residue index, CCD code, atom indices) per residue, in atom order.

        A residue is a run of atoms with the same chain, residue_index and residue name and no
        repeated atom name: a standard residue is one token, a ligand or modified residue several
        (one per atom).
        """
        chain = self.atom_chain
        res_idx = self.residue_index[self.atom_to_token]
        name = self.token_res_name[self.atom_to_token]
        out: list[tuple[int, int, str, list[int]]] = []
        seen: set[str] = set()
        for a in range(len(self.atom_to_token)):
            key = (int(chain[a]), int(res_idx[a]), str(name[a]))
            # A repeated atom name starts a new residue (two copies of a sugar with one index).
            if out and out[-1][:3] == key and str(self.atom_name[a]) not in seen:
                out[-1][3].append(a)
            else:
                out.append((*key, [a]))
                seen = set()
            seen.add(str(self.atom_name[a]))
        return [(c, r, n, np.asarray(idx)) for c, r, n, idx in out]


def build_structure(
    layout: TargetLayout, coords: np.ndarray, atom_plddts: np.ndarray, name: str
) -> gemmi.Structure:
    """A gemmi structure of one sample. coords: [A, 3]; atom_plddts: [A] (B-factor column)."""
    st = gemmi.Structure()
    st.name = name
    model = gemmi.Model(1) if hasattr(gemmi.Model, "num") else gemmi.Model("1")
    chains: dict[int, gemmi.Chain] = {}
    sequences: dict[int, list[str]] = {}
    for chain_idx, res_idx, res_name, atoms in layout.residues():
        ctype = str(layout.chain_type[chain_idx])
        if chain_idx not in chains:
            chains[chain_idx] = gemmi.Chain(str(layout.chain_name[chain_idx]))
            sequences[chain_idx] = []
        res = gemmi.Residue()
        res.name = res_name
        res.seqid = gemmi.SeqId(res_idx, " ")
        res.subchain = str(layout.chain_name[chain_idx])
        res.entity_id = str(layout.chain_entity_id[chain_idx])
        if ctype in POLYMER_TYPE:
            res.label_seq = res_idx
            res.entity_type = gemmi.EntityType.Polymer
            res.het_flag = "A"
        else:
            res.entity_type = ENTITY_TYPE.get(ctype, gemmi.EntityType.NonPolymer)
            res.het_flag = "H"
        sequences[chain_idx].append(res_name)
        for a in atoms:
            atom = gemmi.Atom()
            atom.name = str(layout.atom_name[a])
            atom.element = gemmi.Element(str(layout.atom_element[a]))
            atom.pos = gemmi.Position(*(round(float(v), 3) for v in coords[a]))
            atom.occ = 1.0
            atom.b_iso = float(np.clip(atom_plddts[a], 0.0, 100.0))
            res.add_atom(atom)
        chains[chain_idx].add_residue(res)
    for chain_idx in sorted(chains):
        model.add_chain(chains[chain_idx])
    st.add_model(model)

    entities: dict[str, gemmi.Entity] = {}
    subchains: dict[str, list[str]] = {}
    for chain_idx in sorted(chains):
        ent_id = str(layout.chain_entity_id[chain_idx])
        ctype = str(layout.chain_type[chain_idx])
        if ent_id not in entities:
            ent = gemmi.Entity(ent_id)
            ent.entity_type = ENTITY_TYPE.get(ctype, gemmi.EntityType.NonPolymer)
            if ctype in POLYMER_TYPE:
                ent.polymer_type = POLYMER_TYPE[ctype]
                ent.full_sequence = sequences[chain_idx]
            entities[ent_id] = ent
        subchains.setdefault(ent_id, []).append(str(layout.chain_name[chain_idx]))
    for ent_id, ent in entities.items():
        ent.subchains = subchains[ent_id]  # gemmi returns copies of lists: assign, do not append
        st.entities.append(ent)

    _add_links(st, layout, coords)
    st.setup_cell_images()
    return st


def _atom_address(layout: TargetLayout, atom: int, res_names: np.ndarray) -> gemmi.AtomAddress:
    chain = int(layout.atom_chain[atom])
    res_idx = int(layout.residue_index[layout.atom_to_token[atom]])
    return gemmi.AtomAddress(
        str(layout.chain_name[chain]),
        gemmi.SeqId(res_idx, " "),
        str(res_names[atom]),
        str(layout.atom_name[atom]),
    )


def _add_links(st: gemmi.Structure, layout: TargetLayout, coords: np.ndarray) -> None:
    """Inter-residue covalent bonds that are not plain polymer links -> struct_conn (disulf for
    CYS SG-SG, covale otherwise), with the distance in this sample."""
    res_names = layout.token_res_name[layout.atom_to_token]
    counts = {gemmi.ConnectionType.Covale: 0, gemmi.ConnectionType.Disulf: 0}
    for i, j in layout.atom_bonds[layout.atom_bond_is_link]:
        i, j = int(i), int(j)
        disulf = {str(layout.atom_name[i]), str(layout.atom_name[j])} == {"SG"} and {
            str(res_names[i]),
            str(res_names[j]),
        } == {"CYS"}
        kind = gemmi.ConnectionType.Disulf if disulf else gemmi.ConnectionType.Covale
        counts[kind] += 1
        con = gemmi.Connection()
        con.name = f"{'disulf' if disulf else 'covale'}{counts[kind]}"
        con.type = kind
        con.partner1 = _atom_address(layout, i, res_names)
        con.partner2 = _atom_address(layout, j, res_names)
        con.reported_distance = round(float(np.linalg.norm(coords[i] - coords[j])), 3)
        st.connections.append(con)


def set_bond_orders(layout: TargetLayout, component: Callable[[str], object | None]) -> None:
    """Fill `layout.atom_bond_order` for bonds inside non-polymer residues from their component.

    component(code) returns a `model.data.ccd.Component` (atom_names, bonds, bond_orders) or None
    (unknown code, e.g. a SMILES ligand); such bonds stay 0 (unknown). The feature file stores
    connectivity only, hence this lookup.
    """
    res_names = layout.token_res_name[layout.atom_to_token]
    res_key = layout.asym_id[layout.atom_to_token] * 1_000_000 + layout.residue_index[layout.atom_to_token]
    chain_type = layout.chain_type[layout.atom_chain]
    tables: dict[str, dict[frozenset, int]] = {}
    orders = np.zeros(len(layout.atom_bonds), dtype=np.int32)
    for b, (i, j) in enumerate(layout.atom_bonds):
        if layout.atom_bond_is_link[b] or res_key[i] != res_key[j] or chain_type[i] in POLYMER_TYPE:
            continue
        code = str(res_names[i])
        if code not in tables:
            comp = component(code)
            tables[code] = {}
            if comp is not None:
                names = comp.atom_names
                for (p, q), order in zip(comp.bonds, comp.bond_orders, strict=True):
                    tables[code][frozenset((names[p], names[q]))] = int(order)
        orders[b] = tables[code].get(frozenset((str(layout.atom_name[i]), str(layout.atom_name[j]))), 0)
    layout.atom_bond_order = orders


BOND_ORDER_CIF = {0: "?", 1: "SING", 2: "DOUB", 3: "TRIP"}


def ligand_bonds(layout: TargetLayout) -> list[tuple[str, str, str, int]]:
    """(CCD code, atom 1, atom 2, order or 0) for bonds inside non-polymer residues, one per component."""
    chain_type = layout.chain_type[layout.atom_chain]
    res_names = layout.token_res_name[layout.atom_to_token]
    res_key = layout.asym_id[layout.atom_to_token] * 1_000_000 + layout.residue_index[layout.atom_to_token]
    orders = (
        layout.atom_bond_order if layout.atom_bond_order is not None else np.zeros(len(layout.atom_bonds))
    )
    seen: dict[tuple[str, str, str], int] = {}
    for b, (i, j) in enumerate(layout.atom_bonds):
        if layout.atom_bond_is_link[b] or chain_type[i] in POLYMER_TYPE or res_key[i] != res_key[j]:
            continue
        pair = sorted((str(layout.atom_name[i]), str(layout.atom_name[j])))
        seen.setdefault((str(res_names[i]), pair[0], pair[1]), int(orders[b]))
    return [(*key, order) for key, order in seen.items()]


def mmcif_text(layout: TargetLayout, coords: np.ndarray, atom_plddts: np.ndarray, name: str) -> str:
    """mmCIF text for one sample (see `build_structure`), with chem_comp_bond for ligands."""
    st = build_structure(layout, coords, atom_plddts, name)
    groups = gemmi.MmcifOutputGroups(True)
    doc = st.make_mmcif_document(groups)
    block = doc.sole_block()
    bonds = ligand_bonds(layout)
    if bonds:
        table = block.init_loop("_chem_comp_bond.", ["comp_id", "atom_id_1", "atom_id_2", "value_order"])
        for comp, a1, a2, order in bonds:  # '?' where the order is unknown (no CCD entry)
            table.add_row(
                [gemmi.cif.quote(comp), gemmi.cif.quote(a1), gemmi.cif.quote(a2), BOND_ORDER_CIF[order]]
            )
    return doc.as_string()


def write_mmcif(
    path: str | Path, layout: TargetLayout, coords: np.ndarray, atom_plddts: np.ndarray, name: str
):
    write_text_atomic(path, mmcif_text(layout, coords, atom_plddts, name))


def _round(values: np.ndarray, decimals: int, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Round in float64 (float32 values would print as 0.18000000715...), optionally clipped."""
    out = np.asarray(values, dtype=np.float64)
    if lo is not None:
        out = np.clip(out, lo, hi)
    return np.round(out, decimals)


def confidences_json(layout: TargetLayout, conf: dict, k: int) -> dict:
    """confidences.json of sample k (AF3 keys and rounding, plus pde)."""
    token_chain = layout.chain_name[layout.asym_id]
    return {
        "atom_chain_ids": layout.chain_name[layout.atom_chain].tolist(),
        "atom_plddts": _round(conf["atom_plddts"][k], 2, 0.0, 99.99),
        "contact_probs": _round(conf["contact_probs"], 2, 0.0, 1.0),
        "pae": _round(conf["pae"][k], 1),
        "pde": _round(conf["pde"][k], 1),
        "token_chain_ids": token_chain.tolist(),
        "token_res_ids": layout.residue_index.tolist(),
    }


def sample_interface_confidences(layout: TargetLayout, coords: np.ndarray, conf: dict, k: int) -> dict:
    """ipSAE, pDockQ, interface pLDDT and PAE per chain pair of sample k (model.infer.interface)."""
    rep = layout.rep_atom
    return interface_confidences(
        conf["pae"][k], conf["atom_plddts"][k][rep], coords[rep], layout.asym_id, layout.chain_type
    )


def summary_json(conf: dict, k: int, n_cycle: int, interface: dict | None = None) -> dict:
    """summary_confidences.json of sample k (AF3 keys; [C] and [C, C] arrays as lists), with the
    interface confidences of `sample_interface_confidences` when given (NaN becomes null)."""
    iptm = float(conf["iptm"][k])
    extra = {key: _round(value, 3) for key, value in (interface or {}).items()}
    base = {
        "chain_iptm": _round(conf["chain_iptm"][k], 2),
        "chain_pair_iptm": _round(conf["chain_pair_iptm"][k], 2),
        "chain_pair_pae_min": _round(conf["chain_pair_pae_min"][k], 2),
        "chain_ptm": _round(conf["chain_ptm"][k], 2),
        "fraction_disordered": round(float(conf["fraction_disordered"][k]), 2),
        "has_clash": float(conf["has_clash"][k]),
        "iptm": None if math.isnan(iptm) else round(iptm, 2),
        "num_recycles": int(n_cycle),
        "ptm": round(float(conf["ptm"][k]), 2),
        "ranking_score": round(float(conf["ranking_score"][k]), 2),
    }
    return dict(sorted((base | extra).items()))


def write_pae_png(path: str | Path, pae: np.ndarray, token_chain_ids: list[str], title: str) -> None:
    """PAE heat map [T, T] with chain boundaries marked (`pae_png`), written atomically."""
    write_bytes_atomic(path, pae_png(pae, token_chain_ids, title))


def pae_png(pae: np.ndarray, token_chain_ids: list[str], title: str) -> bytes:
    """PNG bytes of the PAE heat map [T, T]: rows aligned, columns scored, chain boundaries as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5), dpi=100)
    im = ax.imshow(pae, cmap="Greens_r", vmin=0, vmax=32)
    fig.colorbar(im, ax=ax, label="expected position error (Å)")
    bounds = [i for i in range(1, len(token_chain_ids)) if token_chain_ids[i] != token_chain_ids[i - 1]]
    for b in bounds:
        ax.axhline(b - 0.5, color="k", lw=0.5)
        ax.axvline(b - 0.5, color="k", lw=0.5)
    ax.set_xlabel("scored token")
    ax.set_ylabel("aligned token")
    ax.set_title(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def ligand_sdf(layout: TargetLayout, coords: np.ndarray, chain_idx: int) -> str | None:
    """SDF text of one ligand chain: elements, coordinates and connectivity from the feature file,
    bond orders from `atom_bond_order` (single where unknown). None when RDKit is missing."""
    try:
        from rdkit import Chem
    except ImportError:
        return None
    atoms = np.nonzero(layout.atom_chain == chain_idx)[0]
    local = {int(a): n for n, a in enumerate(atoms)}
    mol = Chem.RWMol()
    for a in atoms:
        atom = Chem.Atom(str(layout.atom_element[a]).capitalize())
        atom.SetProp("_Name", str(layout.atom_name[a]))
        mol.AddAtom(atom)
    kinds = {2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}
    orders = (
        layout.atom_bond_order if layout.atom_bond_order is not None else np.zeros(len(layout.atom_bonds))
    )
    for (i, j), order in zip(layout.atom_bonds, orders, strict=True):
        i, j = int(i), int(j)
        if i in local and j in local and mol.GetBondBetweenAtoms(local[i], local[j]) is None:
            mol.AddBond(local[i], local[j], kinds.get(int(order), Chem.BondType.SINGLE))
    conf = Chem.Conformer(len(atoms))
    for n, a in enumerate(atoms):
        conf.SetAtomPosition(n, [float(v) for v in coords[a]])
    mol.AddConformer(conf, assignId=True)
    m = mol.GetMol()
    m.SetProp(
        "_Name", f"{layout.chain_name[chain_idx]} {layout.token_res_name[layout.asym_id == chain_idx][0]}"
    )
    return Chem.MolToMolBlock(m, kekulize=False) + "$$$$\n"


def write_target(
    out_dir: str | Path,
    target: str,
    layout: TargetLayout,
    samples: list[tuple[int, np.ndarray, dict]],
    n_cycle: int,
    provenance: dict,
) -> Path:
    """Write every output file of one target.

    samples: one (seed, coords [S, A, 3], confidences from `confidence.summarize`) per seed.
    Returns the target folder.
    """
    folder = Path(out_dir) / target
    rows: list[tuple[int, int, float]] = []
    best: tuple[float, int, int] | None = None
    for seed, coords, conf in samples:
        for k in range(coords.shape[0]):
            sub = folder / f"seed-{seed}_sample-{k}"
            write_mmcif(sub / "model.cif", layout, coords[k], conf["atom_plddts"][k], target)
            write_json(sub / "confidences.json", confidences_json(layout, conf, k), indent=None)
            interface = sample_interface_confidences(layout, coords[k], conf, k)
            write_json(sub / "summary_confidences.json", summary_json(conf, k, n_cycle, interface))
            for c, ctype in enumerate(layout.chain_type):
                if ctype in ("ligand", "ion") and np.any(layout.atom_chain == c):
                    sdf = ligand_sdf(layout, coords[k], c)
                    if sdf is not None:
                        write_text_atomic(sub / f"ligand-{layout.chain_name[c]}.sdf", sdf)
            # Rank on the value ranking_scores.csv holds, first wins ties, so readers of the CSV agree.
            score = round(float(conf["ranking_score"][k]), 4)
            rows.append((seed, k, score))
            if best is None or score > best[0]:
                best = (score, len(rows) - 1, k)
    if best is None:
        raise ValueError(f"target {target}: no samples to write")
    seed_pos = {seed: n for n, (seed, _, _) in enumerate(samples)}
    best_seed = rows[best[1]][0]
    _, coords, conf = samples[seed_pos[best_seed]]
    k = best[2]
    write_mmcif(folder / f"{target}_model.cif", layout, coords[k], conf["atom_plddts"][k], target)
    write_json(folder / f"{target}_confidences.json", confidences_json(layout, conf, k), indent=None)
    interface = sample_interface_confidences(layout, coords[k], conf, k)
    write_json(folder / f"{target}_summary_confidences.json", summary_json(conf, k, n_cycle, interface))
    token_chain = layout.chain_name[layout.asym_id].tolist()
    write_pae_png(folder / "pae.png", conf["pae"][k], token_chain, f"{target} seed {best_seed} sample {k}")

    csv_lines = [
        "seed,sample,ranking_score",
        *(f"{seed},{sample},{score:.4f}" for seed, sample, score in rows),
    ]
    write_text_atomic(folder / "ranking_scores.csv", "\n".join(csv_lines) + "\n")
    write_json(folder / "provenance.json", {**provenance, "best": {"seed": best_seed, "sample": k}}, indent=2)
    return folder
