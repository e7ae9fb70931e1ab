# Search databases: statistics sidecars and optional checked downloads (model.search.databases).
#
#   prepare_database   input  {db}: a FASTA named in config `databases` (protein, rna, templates.seqres)
#                      output {db}.foldline.json: sequence/residue counts (the Z of E-values, without
#                             rereading a 100 GB file per search) and the file's sha256
#   download_{name}    one rule per config `databases.download` entry {url, sha256, dest}: fetches the
#                      URL (http(s), ftp or file://; a .gz URL to a plain dest is decompressed), checks
#                      the sha256 of the file written, renames it into place
#   databases          target: every configured database prepared (downloading what is missing)
#
# Searches stream FASTA directly (pyhmmer's digital reader, block by block, in parallel byte ranges);
# HMMER has no pressed format for sequence databases that would be faster, so none is made.

import re

from model.search.store import database_paths

DATABASE_PATHS = database_paths(config["databases"])


for _name, _spec in sorted((config["databases"].get("download") or {}).items()):

    rule:
        name:
            f"download_{_name}"
        output:
            _spec["dest"],
        log:
            f"{LOGS}/databases/download_{_name}.log",
        conda:
            "../../envs/search.yaml"
        resources:
            runtime=1440,
        params:
            action="download",
            url=_spec["url"],
            sha256=_spec["sha256"],
        script:
            "../../scripts/prepare_databases.py"


rule prepare_database:
    """Count and hash one database once (the sidecar search keys and Z values read)."""
    input:
        database="{db}",
    output:
        "{db}.foldline.json",
    log:
        f"{LOGS}/databases/{{db}}.log",
    wildcard_constraints:
        db="|".join(re.escape(p) for p in DATABASE_PATHS) or "(?!)",
    conda:
        "../../envs/search.yaml"
    params:
        action="prepare",
    script:
        "../../scripts/prepare_databases.py"


rule databases:
    """Every configured database downloaded (if configured) and prepared."""
    input:
        [f"{p}.foldline.json" for p in DATABASE_PATHS],


localrules:
    databases,
