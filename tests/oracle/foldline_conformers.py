"""Foldline's reference-conformer procedure run under Protenix's RDKit (the oracle environment).

    .venv-oracle/bin/python tests/oracle/foldline_conformers.py COMPONENTS.pkl OUT.npz

COMPONENTS.pkl is a pickled {code: model.data.ccd.Component}, written by Foldline's environment from
the CCD Foldline featurizes with (the oracle's biotite bundles another CCD release). For every code,
OUT.npz holds `{code}`: `model.data.conformers.reference_conformer(component)` (the molecule of
`mol_from_component`, one ETKDGv3 embedding with `CONFORMER_SEED`), heavy atoms in the component's
order, computed here with RDKit 2025.9.3, Protenix's pin. Comparing it with Protenix's conformers tests
Foldline's procedure with the RDKit version held equal (tests/test_protenix_feature_parity.py).
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository's `model`

import numpy as np  # noqa: E402
from rdkit import rdBase  # noqa: E402

from model.data.conformers import reference_conformer  # noqa: E402


def main(components_pkl: str, out_npz: str) -> None:
    with open(components_pkl, "rb") as f:
        components = pickle.load(f)
    out = {"rdkit_version": np.array(rdBase.rdkitVersion)}
    for code, component in components.items():
        coords, mask = reference_conformer(component)
        if not mask.all():
            raise RuntimeError(f"{code}: no conformer under RDKit {rdBase.rdkitVersion}")
        out[code] = coords
    np.savez(out_npz, **out)


if __name__ == "__main__":
    main(*sys.argv[1:])
