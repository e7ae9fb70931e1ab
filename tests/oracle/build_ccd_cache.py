"""Build Protenix's CCD cache from a `components.cif` with Protenix's own cache builder, offline.

Run with the oracle environment: `.venv-oracle/bin/python tests/oracle/build_ccd_cache.py`. It reads
`{oracle env}/protenix_root/common/components.cif` (written by `export_ccd.py`) and writes the RDKit
molecule cache beside it with `scripts.gen_ccd_cache.precompute_ccd_mol` from the Protenix 2.0.0 wheel:
one ETKDGv3 conformer per component, as Protenix's released cache holds.
"""

from __future__ import annotations

import protenix_env

protenix_env.prepare()

from scripts.gen_ccd_cache import precompute_ccd_mol  # noqa: E402  (Protenix's builder, after prepare)

if __name__ == "__main__":
    precompute_ccd_mol(protenix_env.CCD_FILE, protenix_env.CCD_CACHE, num_cpu=1)
