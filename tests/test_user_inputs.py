"""Inputs that AF3 jobs give for a chain, read by the featurize-shard job (scripts/build_features.py
as the `build_features` rule runs it: --inputs, --shard, --template-dir): user MSAs (a3m or Stockholm,
plain, gzip or xz) and user templates (`templates`, `[]` = none)."""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import lzma
import sys
from pathlib import Path

import gemmi
import numpy as np
import pytest
from conftest import REPO, SHARED_DATA

from model.data import constants as C
from model.data import store

SCRIPT = REPO / "scripts" / "build_features.py"
STOCKHOLM = SHARED_DATA / "msa" / "2q2k_A" / "uniref90_hits.sto"
TEMPLATE_MMCIF = SHARED_DATA / "template_db" / "pdb_mmcif" / "5y2e.cif.gz"  # one chain, 45 of 47 resolved


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("build_features", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def featurize_shard(
    script, tmp_path: Path, jobs: dict[str, list], shard: dict | None = None, extra: tuple[str, ...] = ()
) -> dict:
    """Write each job (name -> AF3 `sequences`, or a whole Protenix job list) and a targets.csv naming
    them, run the shard job on them all, return {target: features | failure note}."""
    rows = ["target_id,json"]
    for name, sequences in jobs.items():
        job = {"dialect": "alphafold3", "version": 3, "name": name, "modelSeeds": [1], "sequences": sequences}
        if "name" in sequences[0]:
            job = sequences
        (tmp_path / f"{name}.json").write_text(json.dumps(job))
        rows.append(f"{name},{name}.json")
    (tmp_path / "targets.csv").write_text("\n".join(rows) + "\n")
    out, failed = tmp_path / "features", tmp_path / "failed"
    shard = shard or {name: {"chains": {}, "pair": False} for name in jobs}
    argv = ["--inputs", str(tmp_path / "targets.csv"), "--shard", json.dumps(shard), "--ccd", ""]
    argv += [
        "--template-dir",
        str(tmp_path / "templates"),
        "--out-dir",
        str(out),
        "--failed-dir",
        str(failed),
    ]
    assert script.main([*argv, *extra, "--status", str(tmp_path / "status.tsv")]) == 0
    return {
        name: store.load_features(out / f"{name}.h5")
        if (out / f"{name}.h5").is_file()
        else (failed / f"{name}.txt").read_text()
        for name in jobs
    }


def stockholm_as_a3m_by_easel(path: Path) -> str:
    """The oracle: HMMER's own reader and a2m writer (match columns by the RF line; '.' in insert
    columns, which a3m readers drop), the query moved first as AF3 keeps it."""
    from pyhmmer import easel

    with easel.MSAFile(str(path), format="stockholm") as handle:
        msa = handle.read()
    buffer = io.BytesIO()
    msa.write(buffer, "a2m")
    records = [">" + record for record in buffer.getvalue().decode().split(">")[1:]]
    query = [r for r in records if r.startswith(">query\n")]
    return "".join(query + [r for r in records if not r.startswith(">query\n")])


def protein(sequence: str, **fields) -> dict:
    return {"protein": {"id": "A", "sequence": sequence, **fields}}


def test_user_msa_a3m_gz_xz_and_stockholm_featurize_alike(script, tmp_path: Path) -> None:
    a3m = stockholm_as_a3m_by_easel(STOCKHOLM)
    query = "".join(
        line.split()[1] for line in STOCKHOLM.read_text().splitlines() if line.startswith("query ")
    )
    query = query.replace("-", "")
    (tmp_path / "u.a3m").write_text(a3m)
    (tmp_path / "u.a3m.gz").write_bytes(gzip.compress(a3m.encode()))
    (tmp_path / "u.a3m.xz").write_bytes(lzma.compress(a3m.encode()))
    (tmp_path / "u.sto").write_text(STOCKHOLM.read_text())
    (tmp_path / "u.sto.gz").write_bytes(gzip.compress(STOCKHOLM.read_bytes()))
    (tmp_path / "broken.a3m.gz").write_bytes(gzip.compress(a3m.encode())[:-30])
    names = {"plain": "u.a3m", "gz": "u.a3m.gz", "xz": "u.a3m.xz", "sto": "u.sto", "sto_gz": "u.sto.gz"}
    jobs = {name: [protein(query, unpairedMsaPath=path, pairedMsa="")] for name, path in names.items()}
    jobs["inline_sto"] = [protein(query, unpairedMsa=STOCKHOLM.read_text(), pairedMsa="")]
    jobs["broken"] = [protein(query, unpairedMsaPath="broken.a3m.gz", pairedMsa="")]
    feats = featurize_shard(script, tmp_path, jobs)
    plain = feats.pop("plain")
    n_rows = a3m.count(">")
    assert plain["msa"].shape[0] >= n_rows  # the query leads both blocks: every row of the file is there
    assert plain["deletion_matrix"].sum() > 0  # the Stockholm insert column became deletions
    for name in ("gz", "xz", "sto", "sto_gz", "inline_sto"):
        for key in ("msa", "deletion_matrix", "profile", "deletion_mean"):
            np.testing.assert_array_equal(
                feats[name][key].numpy(), plain[key].numpy(), err_msg=f"{name} {key}"
            )
    note = feats["broken"]
    assert (
        note.startswith("target broken: entity 1 (protein, chain A): unpairedMsaPath: ")
        and note.count("\n") == 1
    )


def single_chain_template() -> tuple[str, list[str], dict[int, np.ndarray]]:
    """The shared template mmCIF's chain: its one-letter sequence (entity_poly_seq, unresolved
    residues included) and the pseudo-beta (CB, CA for GLY) of each resolved residue, read by gemmi."""
    structure = gemmi.read_structure(str(TEMPLATE_MMCIF))
    structure.setup_entities()
    (entity,) = [e for e in structure.entities if e.entity_type == gemmi.EntityType.Polymer]
    names = [gemmi.Entity.first_mon(mon) for mon in entity.full_sequence]
    beta = {}
    for residue in structure[0][0].get_polymer():
        atom = residue.find_atom("CA" if residue.name == "GLY" else "CB", "*")
        if atom is not None:
            beta[residue.label_seq - 1] = np.array(atom.pos.tolist(), dtype=np.float32)
    return gemmi.one_letter_code(names).upper(), names, beta


def test_user_template_fills_the_template_features_at_its_mapped_indices(script, tmp_path: Path) -> None:
    sequence, names, beta = single_chain_template()
    assert len(beta) < len(sequence)  # unresolved residues count in templateIndices (AF3 input.md)
    # query residue q takes template residue q + 2 for the query's first part; the rest stays unmapped
    query_indices = list(range(len(sequence) - 12))
    (tmp_path / TEMPLATE_MMCIF.name).write_bytes(TEMPLATE_MMCIF.read_bytes())
    template = {"mmcifPath": TEMPLATE_MMCIF.name, "queryIndices": query_indices,
                "templateIndices": [q + 2 for q in query_indices]}  # fmt: skip
    msa = {"unpairedMsa": "", "pairedMsa": ""}
    jobs = {
        "given": [protein(sequence, templates=[template], **msa)],
        "none": [protein(sequence, templates=[], **msa)],
        "searched": [protein(sequence)],
    }
    # a template search's store file for the same sequence, as another target's search leaves it
    searched = {"template_restype": np.zeros((1, len(sequence)), dtype=np.int32)}
    searched |= {
        "template_pseudo_beta": np.ones((1, len(sequence), 3), np.float32),
        "template_pseudo_beta_mask": np.ones((1, len(sequence)), bool),
        "template_backbone": np.ones((1, len(sequence), 3, 3), np.float32),
        "template_backbone_mask": np.ones((1, len(sequence)), bool),
    }
    (tmp_path / "templates" / "protein").mkdir(parents=True)
    np.savez(tmp_path / "templates" / "protein" / "k.npz", **searched)
    (tmp_path / "msa" / "protein").mkdir(parents=True)
    (tmp_path / "msa" / "protein" / "k.a3m").write_text(f">query\n{sequence}\n")
    chains = {"chains": {"A": str(tmp_path / "msa" / "protein" / "k.a3m")}, "pair": False}
    feats = featurize_shard(script, tmp_path, jobs, {name: chains for name in jobs})
    given = feats["given"]
    restype, mask = given["template_restype"][0].numpy(), given["template_pseudo_beta_mask"][0].numpy()
    for q in query_indices:
        assert restype[q] == C.RESTYPE_INDEX[names[q + 2]], q
        assert mask[q] == (q + 2 in beta), q
        if mask[q]:
            np.testing.assert_allclose(given["template_pseudo_beta"][0, q].numpy(), beta[q + 2], atol=1e-3)
    assert (restype[len(query_indices) :] == C.GAP).all() and not mask[len(query_indices) :].any()
    assert given["template_backbone_mask"][0].numpy().sum() > 20
    # `[]`: no real template even though a search's store file for this chain exists
    assert (
        not feats["none"]["template_pseudo_beta_mask"].any()
        and not feats["none"]["template_backbone_mask"].any()
    )
    assert feats["searched"]["template_pseudo_beta_mask"][0].all()  # absent: the store's templates


def test_protenix_templates_path_hits_become_templates_with_the_search_filters(
    script, tmp_path: Path
) -> None:
    """Protenix `templatesPath`: a template search's hits (hmmsearch a3m) are made templates from the
    template mmCIF folder with the search's filters; a release date past the cutoff drops the hit."""
    template, names, beta = single_chain_template()
    query = "W" + template[1:20] + "W" + template[21:]  # not an exact copy of the template (AF3 filter)
    # the hit covers template residues 3..40 (1-based) at the same query columns
    row = "--" + template[2:40] + "-" * (len(template) - 40)
    (tmp_path / "hits.a3m").write_text(
        f">5y2e_A/3-40 [subseq from] mol:protein length:{len(template)}\n{row}\n"
    )
    job = [{"name": "hits", "sequences": [{"proteinChain": {"sequence": query, "count": 1,
                                                             "templatesPath": "hits.a3m"}}]}]  # fmt: skip
    database = ("--template-mmcif-dir", str(TEMPLATE_MMCIF.parent), "--max-templates", "4")
    given = featurize_shard(
        script, tmp_path, {"hits": job}, extra=(*database, "--template-max-date", "2100-01-01")
    )
    restype = given["hits"]["template_restype"][0].numpy()
    mask = given["hits"]["template_pseudo_beta_mask"][0].numpy()
    for q in range(2, 40):
        assert restype[q] == C.RESTYPE_INDEX[names[q]] and mask[q] == (q in beta), q
        if mask[q]:
            np.testing.assert_allclose(
                given["hits"]["template_pseudo_beta"][0, q].numpy(), beta[q], atol=1e-3
            )
    assert (restype[:2] == C.GAP).all() and (restype[40:] == C.GAP).all()
    dated = featurize_shard(
        script, tmp_path, {"hits": job}, extra=(*database, "--template-max-date", "1990-01-01")
    )
    assert not dated["hits"]["template_pseudo_beta_mask"].any()


def test_templates_empty_list_plans_no_template_search(tmp_path: Path) -> None:
    """Through the workflow: a chain whose AF3 job says `"templates": []` has its MSA searched but no
    template search (its store key is not among the batch's template members, no npz is written), and
    its features hold no real template; so has one whose Protenix job gives `templatesPath`; a chain
    that leaves `templates` unset is searched for both."""
    from test_workflow_helpers import make_workdir, snakemake

    work = tmp_path / "work"
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    without, with_search = "NLYIQWLKDGGPSSGRPPPS", "MKTAYIAKQRQISFVKSHFSRQ"
    for name, sequence, extra in (("none", without, {"templates": []}), ("searched", with_search, {})):
        job = {"dialect": "alphafold3", "version": 3, "name": name, "modelSeeds": [1],
               "sequences": [protein(sequence, **extra)]}  # fmt: skip
        (jobs / f"{name}.json").write_text(json.dumps(job))
    given_hits = "MEFVAKLFKFFKDLLGKFLGNN"  # Protenix templatesPath: the hits of a search already run
    (jobs / "hits.a3m").write_text(f">5y2e_A/1-22 mol:protein length:47\n{given_hits}\n")
    job = [{"name": "hits", "sequences": [{"proteinChain": {"sequence": given_hits, "count": 1,
                                                             "templatesPath": "hits.a3m"}}]}]  # fmt: skip
    (jobs / "hits.json").write_text(json.dumps(job))
    (jobs / "targets.csv").write_text(
        "target_id,json\nnone,none.json\nsearched,searched.json\nhits,hits.json\n"
    )
    make_workdir(work, {"inputs": str(jobs / "targets.csv"), "allowed_roots": [str(jobs)]})
    snakemake(work, "results/features.ok", "--cores", "2")  # `features` without the training entries
    results = work / "results"
    searched = dict(
        line.split("\t")[::-1]
        for record in (results / "msa" / "protein" / "batches").glob("[0-9a-f][0-9a-f].tsv")
        for line in record.read_text().splitlines()
    )
    assert set(searched) == {without, with_search, given_hits}  # every MSA searched
    assert (results / "msa" / "protein" / f"{searched[without]}.a3m").is_file()
    assert not (results / "templates" / "protein" / f"{searched[without]}.npz").exists()
    assert not (results / "templates" / "protein" / f"{searched[given_hits]}.npz").exists()
    assert (results / "features" / "hits.h5").is_file()
    assert (results / "templates" / "protein" / f"{searched[with_search]}.npz").is_file()
    features = store.load_features(results / "features" / "none.h5")
    assert not features["template_pseudo_beta_mask"].any() and not features["template_backbone_mask"].any()
