"""The `search_protein` rule's script: one protein sequence's MSA search (scripts/search_msa.py), then
its template search (scripts/search_templates.py) from that MSA, in one job.

Both run in one job because the template search needs the MSA and the store key covers both; on a
cluster that is one queue wait per unique sequence instead of two. Standalone, run the two scripts.
`snakemake` object: params.sequence, output.a3m, output.npz, threads, log, config.
"""

import logging
from pathlib import Path

import search_msa
import search_templates

sm = globals()["snakemake"]
logging.basicConfig(
    filename=sm.log[0] if sm.log else None, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s"
)
search_msa.run(
    sm.params.sequence,
    "protein",
    sm.config["databases"],
    sm.config["search"],
    Path(sm.output.a3m),
    sm.threads,
)
templates = sm.config["databases"]["templates"]
search_templates.run(
    Path(sm.output.a3m),
    Path(templates["seqres"]),
    Path(templates["mmcif_dir"]),
    sm.config["search"]["template_max_date"],
    int(sm.config["search"]["max_templates"]),
    Path(sm.output.npz),
    sm.threads,
)
