"""Shared fixtures: the real public data in ../shared/data (never copied into the repo)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
MMCIF_DIR = SHARED_DATA / "mmcif"


def shared_entries() -> list[str]:
    """PDB ids of every shared mmCIF entry, sorted."""
    return sorted(p.name.split(".")[0] for p in MMCIF_DIR.glob("*.cif*"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
