"""Build Protenix's CCD cache from a `components.cif` with Protenix's own cache builder, offline.

Run with the oracle environment: `.venv-oracle/bin/python tests/oracle/build_ccd_cache.py`. It reads
`{oracle env}/protenix_root/common/components.cif` (written by `export_ccd.py`) and writes the RDKit
molecule cache beside it with `scripts.gen_ccd_cache.precompute_ccd_mol` from the Protenix 2.0.0 wheel:
one ETKDGv3 conformer per component, as Protenix's released cache holds.

Protenix embeds without a seed, and RDKit's unseeded embeddings continue one random stream per
process, so a conformer would depend on which components its worker embedded before. Each component
therefore gets a fresh worker process (`maxtasksperchild=1`): its conformer is the first unseeded
embedding of a process, the same whatever else the cache holds.
"""

from __future__ import annotations

import functools
import multiprocessing
import types

import protenix_env

protenix_env.prepare()

from scripts import gen_ccd_cache  # noqa: E402  (Protenix's builder, after prepare)

if __name__ == "__main__":
    gen_ccd_cache.multiprocessing = types.SimpleNamespace(
        Pool=functools.partial(multiprocessing.get_context("fork").Pool, maxtasksperchild=1)
    )
    gen_ccd_cache.precompute_ccd_mol(protenix_env.CCD_FILE, protenix_env.CCD_CACHE, num_cpu=1)
