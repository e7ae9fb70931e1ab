"""config/stages.yaml must hold the seed table verbatim; parsed here straight from SEED.md."""

from __future__ import annotations

import re

import pytest
from conftest import REPO

from model.train.stages import StageConfigError, get_dotted, resolve_stage

SEED = REPO.parent / "shared" / "docs" / "SEED.md"
STAGES = REPO / "config" / "stages.yaml"


def _seed_table() -> dict[str, list[str]]:
    """Rows of the markdown table under 'Training stages': backticked setting -> 4 cell strings."""
    text = SEED.read_text()
    section = text.split("## Training stages", 1)[1].split("##", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"\|\s*`([^`]+)`\s*\|(.*)\|\s*$", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in m.group(2).split("|")]
    return rows


def _seed_value(cell: str):
    if cell in ("True", "False"):
        return cell == "True"
    return float(cell)


def test_stage_configs_equal_seed_table():
    rows = _seed_table()
    assert len(rows) == 9  # every backticked setting of the table
    for index in range(4):
        cfg = resolve_stage(STAGES, index)
        for key, cells in rows.items():
            assert len(cells) == 4
            expected = _seed_value(cells[index])
            got = get_dotted(cfg, key)
            assert type(got) is bool if isinstance(expected, bool) else not isinstance(got, bool)
            assert got == expected, f"stage{index} {key}: {got!r} != seed {expected!r}"
        assert cfg["steps"] > 0 and cfg["lr"] > 0


def test_overrides_and_errors(tmp_path):
    cfg = resolve_stage(STAGES, "stage1", ["steps=3", "loss.weight.alpha_bond=0.5", "precision=fp32"])
    assert cfg["steps"] == 3 and cfg["loss"]["weight"]["alpha_bond"] == 0.5 and cfg["precision"] == "fp32"
    assert cfg["stage"] == "stage1" and cfg["stage_index"] == 1
    with pytest.raises(StageConfigError, match="unknown key"):
        resolve_stage(STAGES, 0, ["loss.weight.alpha_typo=1"])
    with pytest.raises(StageConfigError, match="not found"):
        resolve_stage(STAGES, 7)
