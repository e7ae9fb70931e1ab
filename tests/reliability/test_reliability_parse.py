"""Bad and unusual inputs at the layer the workflow parses them: `read_target_table` (what
workflow/rules/common.smk calls to load the targets table) with each kind beside two good targets."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from make_shards import read_target_table

from model.data.ccd import load_ccd
from model.data.inputs import TargetError, check_target_id, invalid_row_id
from reliability.cases import ACCEPTED_CASES, GOOD_ROWS, HEADER, PARSE_CASES, TABLE_CASES, Case

REPO = Path(__file__).resolve().parents[2]
# the shipped limits, with a small file-size limit so that the oversized-file kinds stay small
LIMITS = {**yaml.safe_load((REPO / "config" / "config.yaml").read_text())["limits"], "input_file_mb": 1}


@pytest.fixture(scope="module")
def ccd():
    return load_ccd()


def _table(folder: Path, case: Case) -> Path:
    for name, content in case.files.items():
        path = folder / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    row = case.row if isinstance(case.row, bytes) else case.row.encode()
    lines = [HEADER.encode(), GOOD_ROWS[0].encode(), row, GOOD_ROWS[1].encode()]
    table = folder / "targets.csv"
    table.write_bytes(b"\n".join(lines) + b"\n")
    return table


def _read(table: Path, ccd):
    return read_target_table(table, [table.parent], ccd, LIMITS)


@pytest.mark.parametrize("case", PARSE_CASES, ids=[c.kind for c in PARSE_CASES])
def test_a_bad_row_is_its_targets_note_and_the_good_targets_go_on(case: Case, tmp_path: Path, ccd) -> None:
    table = _read(_table(tmp_path, case), ccd)
    assert set(table.targets) == {"good_a", "good_b"} - set(case.also_fails)
    assert set(table.invalid) == {case.target_id, *case.also_fails}
    note = table.invalid[case.target_id]
    assert note.startswith(case.note), note
    assert "\n" not in note and len(note) < 400
    assert set(table.tokens) == set(table.targets)


@pytest.mark.parametrize("case", ACCEPTED_CASES, ids=[c.kind for c in ACCEPTED_CASES])
def test_a_valid_unusual_row_is_accepted(case: Case, tmp_path: Path, ccd) -> None:
    table = _read(_table(tmp_path, case), ccd)
    assert table.invalid == {}
    assert set(table.targets) == {"good_a", case.target_id, "good_b"}
    assert table.tokens[case.target_id] > 0


@pytest.mark.parametrize(("kind", "content", "note"), TABLE_CASES, ids=[c[0] for c in TABLE_CASES])
def test_the_shape_of_the_table(kind: str, content: bytes, note: str | None, tmp_path: Path, ccd) -> None:
    path = tmp_path / "targets.csv"
    path.write_bytes(content)
    if note is None:  # accepted: every good target parsed
        table = _read(path, ccd)
        assert table.invalid == {} and len(table.targets) == 2
        return
    with pytest.raises(TargetError) as raised:
        _read(path, ccd)
    assert str(raised.value).startswith(note), str(raised.value)
    assert "\n" not in str(raised.value)


def test_file_and_smiles_ligands_are_sized_from_the_molecule(tmp_path: Path, ccd) -> None:
    """Proline has 8 heavy atoms, written as SMILES or given as an SDF file (it was a TypeError)."""
    (tmp_path / "proline.sdf").write_text(ACCEPTED_CASES[0].files["proline.sdf"])
    (tmp_path / "targets.csv").write_text(
        "target_id,chains\nsmiles,protein:MKT;ligand:smiles=OC(=O)C1CCCN1\nfile,protein:MKT;ligand:file=proline.sdf\n"
    )
    table = _read(tmp_path / "targets.csv", ccd)
    assert table.invalid == {}
    assert table.tokens == {"smiles": 3 + 8, "file": 3 + 8}


def test_an_unsafe_ids_name_never_collides_with_a_real_id(tmp_path: Path, ccd) -> None:
    """A real target called invalid-row-3 beside an unsafe id on row 3: both are kept, apart (the old
    replacement name was that very id, and one of the two was lost)."""
    (tmp_path / "targets.csv").write_text("target_id,chains\ninvalid-row-3,protein:MKT\n../x,protein:MKT\n")
    table = _read(tmp_path / "targets.csv", ccd)
    assert set(table.targets) == {"invalid-row-3"}
    assert set(table.invalid) == {invalid_row_id(3)}
    assert all(check_target_id(invalid_row_id(n)) is not None for n in (2, 3, 10_000))


def test_the_catalogue_holds_at_least_sixty_kinds() -> None:
    kinds = [c.kind for c in PARSE_CASES + ACCEPTED_CASES] + [c[0] for c in TABLE_CASES]
    assert len(kinds) == len(set(kinds)) and len(kinds) >= 60
