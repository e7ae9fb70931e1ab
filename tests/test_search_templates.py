"""Template search of 102m against the shared pdb_seqres and template features from the mmCIFs."""

from __future__ import annotations

import datetime
from pathlib import Path

import gemmi
import numpy as np
import pytest

from model.data.constants import GAP, RESTYPE_INDEX
from model.data.feature_spec import FEATURES
from model.search.jackhmmer import search_protein
from model.search.templates import (
    TemplateSettings,
    build_profile,
    find_mmcif,
    release_date,
    search_hits,
    search_templates,
    search_templates_many,
    write_templates,
)

MYOGLOBIN = (
    "MVLSEGEWQLVLHVWAKVEADVAGHGQDILIRLFKSHPETLEKFDRFKHLKTEAEMKASEDLKKAGVTVLTALGAILKKKGHHEAELKPLAQSHATKHK"
    "IPIKYLEFISEAIIHVLHSRHPGNFGADAQGAMNKALELFRKDIAAKYKELGYQG"
)
FAR_FUTURE = datetime.date(2100, 1, 1)


@pytest.fixture(scope="module")
def msa_rows(shared_data: Path) -> list[tuple[str, str]]:
    return search_protein(MYOGLOBIN, shared_data / "seqdb" / "msa_hits_for_shared_queries.fasta").rows


@pytest.fixture(scope="module")
def seqres(shared_data: Path) -> Path:
    return shared_data / "template_db" / "pdb_seqres_shared_structures.fasta"


def test_profile_has_one_match_state_per_query_column(msa_rows) -> None:
    assert build_profile(msa_rows).M == len(MYOGLOBIN)


def test_search_finds_both_myoglobin_entries(msa_rows, seqres) -> None:
    hits = search_hits(msa_rows, seqres)
    names = [h.name for h in hits]
    assert names[:2] == ["102m_A", "8f9h_A"] or names[:2] == ["8f9h_A", "102m_A"]
    for hit in hits[:2]:
        # identical sequences: every query column maps to the same seqres position
        assert hit.query_to_hit == {i: i for i in range(len(MYOGLOBIN))}
        assert hit.full_length == len(MYOGLOBIN)
    assert all(h.evalue <= hits[i + 1].evalue for i, h in enumerate(hits[:-1]))


def test_af3_filter_drops_exact_copies_of_the_query(msa_rows, seqres, shared_data: Path) -> None:
    kept, _ = search_templates(MYOGLOBIN, msa_rows, seqres, shared_data / "mmcif", FAR_FUTURE)
    assert not {"102m_A", "8f9h_A"} & {h.name for h in kept}


def test_template_features_from_mmcif(msa_rows, seqres, shared_data: Path) -> None:
    settings = TemplateSettings(max_subsequence_ratio=None)
    kept, arrays = search_templates(MYOGLOBIN, msa_rows, seqres, shared_data / "mmcif", FAR_FUTURE, settings)
    names = [h.name for h in kept]
    # 102m and 8f9h have the same sequence: the second is a duplicate template
    assert names[0] in ("102m_A", "8f9h_A") and "8f9h_A" not in names[1:] and "102m_A" not in names[1:]
    for name, array in arrays.items():
        _, dims, dtype = FEATURES[name]
        assert array.shape[:2] == (len(kept), len(MYOGLOBIN)) and array.ndim == len(dims)
        assert array.dtype == np.dtype(dtype)

    # independent read of the same chain with gemmi
    structure = gemmi.read_structure(str(find_mmcif(shared_data / "mmcif", kept[0].pdb_id)))
    structure.setup_entities()
    structure.remove_alternative_conformations()
    polymer = structure[0]["A"].get_polymer()
    expected_restype = np.full(len(MYOGLOBIN), GAP)
    expected_ca = np.full((len(MYOGLOBIN), 3), np.nan)
    expected_cb = np.full((len(MYOGLOBIN), 3), np.nan)
    for res in polymer:
        expected_restype[res.label_seq - 1] = RESTYPE_INDEX[res.name]
        if ca := res.find_atom("CA", "*"):
            expected_ca[res.label_seq - 1] = ca.pos.tolist()
        beta = res.find_atom("CA" if res.name == "GLY" else "CB", "*")
        if beta:
            expected_cb[res.label_seq - 1] = beta.pos.tolist()
    first = {k: v[0] for k, v in arrays.items()}
    seen = first["template_backbone_mask"]
    assert seen.sum() >= 150
    np.testing.assert_allclose(first["template_backbone"][seen, 1], expected_ca[seen], atol=1e-3)
    np.testing.assert_allclose(
        first["template_pseudo_beta"][first["template_pseudo_beta_mask"]],
        expected_cb[first["template_pseudo_beta_mask"]],
        atol=1e-3,
    )
    resolved = expected_restype != GAP
    assert (first["template_restype"][resolved] == expected_restype[resolved]).all()
    assert first["template_restype"][0] == RESTYPE_INDEX["MET"]


def test_release_date_cutoff(msa_rows, seqres, shared_data: Path) -> None:
    dates = {}
    for pdb in ("102m", "8f9h"):
        doc = gemmi.cif.read(str(find_mmcif(shared_data / "mmcif", pdb)))
        dates[pdb] = release_date(doc.sole_block())
    assert dates["102m"] < datetime.date(2000, 1, 1) < dates["8f9h"]
    settings = TemplateSettings(max_subsequence_ratio=None, deduplicate=False)
    kept, _ = search_templates(
        MYOGLOBIN, msa_rows, seqres, shared_data / "mmcif", datetime.date(2000, 1, 1), settings
    )
    assert "102m_A" in {h.name for h in kept} and "8f9h_A" not in {h.name for h in kept}
    # training: 60 days before the query's own release date also applies
    kept, _ = search_templates(
        MYOGLOBIN,
        msa_rows,
        seqres,
        shared_data / "mmcif",
        FAR_FUTURE,
        settings,
        query_release_date=dates["102m"] + datetime.timedelta(days=59),
    )
    assert not {"102m_A", "8f9h_A"} & {h.name for h in kept}


def test_write_templates_npz(msa_rows, seqres, shared_data: Path, tmp_path: Path) -> None:
    settings = TemplateSettings(max_subsequence_ratio=None)
    kept, arrays = search_templates(MYOGLOBIN, msa_rows, seqres, shared_data / "mmcif", FAR_FUTURE, settings)
    path = tmp_path / "t" / "x.npz"
    write_templates(path, arrays, kept)
    with np.load(path) as data:
        assert list(data["template_names"]) == [h.name for h in kept]
        for name, array in arrays.items():
            np.testing.assert_array_equal(data[name], array)
    assert not list(path.parent.glob(".*tmp"))


def test_many_template_searches_equal_single_ones(msa_rows, seqres, shared_data: Path) -> None:
    db = shared_data / "seqdb" / "msa_hits_for_shared_queries.fasta"
    records = [r.splitlines() for r in seqres.read_text().split(">")[1:]]
    others = [
        "".join(lines[1:])
        for lines in records
        if "mol:protein" in lines[0] and "myoglobin" not in lines[0].lower()
    ][:2]
    queries = [(MYOGLOBIN, msa_rows, None)]
    queries += [(query, search_protein(query, db).rows, None) for query in others]
    settings = TemplateSettings(max_subsequence_ratio=None)  # keep exact copies: more hits to compare
    mmcif = shared_data / "mmcif"
    batch = search_templates_many(queries, seqres, mmcif, FAR_FUTURE, settings, threads=2)
    assert len(batch[0][0]) >= 2  # 102m and 8f9h
    for (query, rows, _), (kept, arrays) in zip(queries, batch, strict=True):
        single_kept, single_arrays = search_templates(query, rows, seqres, mmcif, FAR_FUTURE, settings)
        assert [(h.name, h.evalue, h.query_to_hit) for h in kept] == [
            (h.name, h.evalue, h.query_to_hit) for h in single_kept
        ]
        assert arrays.keys() == single_arrays.keys()
        for name, array in arrays.items():
            np.testing.assert_array_equal(array, single_arrays[name])
