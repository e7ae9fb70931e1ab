"""Write the components Protenix's oracle needs as a text `components.cif`, from Foldline's CCD.

Run with Foldline's environment (`.venv/bin/python tests/oracle/export_ccd.py OUT.cif`): it reads the
same BinaryCIF CCD that `model/data/ccd.py` reads (the one biotite ships), so both featurizers see
identical chemistry. Protenix's cache builder (`build_ccd_cache.py`) then turns the file into its
RDKit-molecule cache. `CODES` is the whole CCD the oracle knows: add a code here when a test needs it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from biotite.structure.io import pdbx

from model.data.ccd import _biotite_ccd_path
from model.fileio import atomic_path

STANDARD = (
    "ALA ARG ASN ASP CYS GLN GLU GLY HIS ILE LEU LYS MET PHE PRO SER THR TRP TYR VAL UNK "
    "A C G U N DA DC DG DT DN"
)
LIGANDS_AND_MODIFIED = (
    "SEP PSU MSE HYP 5MC BP5 NCY 5IU HEM ATP ADP GTP NAG MAN FMN MG ZN CA NA CL FE MN K SO4 PO4 EDO"
)
CODES = tuple(sorted(set(f"{STANDARD} {LIGANDS_AND_MODIFIED}".split())))


def _columns(category: pdbx.BinaryCIFCategory) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Every column of a category as (strings, mask or None)."""
    out = {}
    for name in category.keys():
        column = category[name]
        mask = None if column.mask is None else column.mask.array
        out[name] = (column.as_array(str), mask)
    return out


def export(codes: tuple[str, ...], out: Path) -> None:
    block = pdbx.BinaryCIFFile.read(str(_biotite_ccd_path())).block
    tables = {name: _columns(block[name]) for name in ("chem_comp", "chem_comp_atom", "chem_comp_bond")}
    key = {"chem_comp": "id", "chem_comp_atom": "comp_id", "chem_comp_bond": "comp_id"}
    cif = pdbx.CIFFile()
    for code in codes:
        cif_block = pdbx.CIFBlock()
        for name, columns in tables.items():
            rows = np.flatnonzero(columns[key[name]][0] == code)
            if name == "chem_comp" and len(rows) == 0:
                raise KeyError(f"{code} is not in {_biotite_ccd_path()}")
            if len(rows) == 0:
                continue
            cif_block[name] = pdbx.CIFCategory(
                {
                    col: pdbx.CIFColumn(values[rows], None if mask is None else mask[rows])
                    for col, (values, mask) in columns.items()
                }
            )
        cif[code] = cif_block
    with atomic_path(out) as tmp:
        cif.write(str(tmp))


if __name__ == "__main__":
    export(CODES, Path(sys.argv[1]))
