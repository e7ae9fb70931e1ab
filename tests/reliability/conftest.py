"""The reliability tests import the workflow's scripts (scripts/make_shards.py) as the rules do."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
