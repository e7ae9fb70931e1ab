# MSA and template search (model.search): one job per unique sequence key, never twice.
#
#   search_msa        wildcards molecule (protein|rna), sha (model.search.store.msa_key of the sequence,
#                     the molecule's databases and the search settings; MSA_QUERIES in common.smk)
#                     input  the molecule's databases and their .foldline.json sidecars (databases.smk)
#                     output results/msa/{molecule}/{sha}.a3m         unpaired MSA (query first)
#                            results/msa/{molecule}/{sha}.paired.a3m  UniProt rows for pairing (RNA: query)
#   search_templates  input  results/msa/protein/{sha}.a3m, templates.seqres (+ sidecar)
#                     output results/templates/protein/{sha}.npz: template features [K, L, ...] that
#                            build_features finds beside the MSA's name
#   pair_msas         input  results/msa/targets/{target}.json (features.smk) and the chains' paired a3m
#                     output results/msa/targets/{target}.paired.json, same format with per-chain
#                            {"unpaired", "paired"} where row i of every chain is one species,
#                            results/msa/paired/{target}/{chain}.a3m
#   templates         target: template features of every protein sequence of every target
#
# Helpers for other rule files: msa_files_for_target(wildcards) (a3m + paired a3m of a target),
# template_files(target_id) (its template npz files).


def _search_databases(wildcards) -> list[str]:
    """The databases (and sidecars) the search of one molecule reads."""
    from model.search.store import molecule_databases

    paths = list(molecule_databases(wildcards.molecule, config["databases"]).values())
    return paths + [database_sidecar(p) for p in paths]


def msa_files_for_target(wildcards) -> list[str]:
    """Every store file a target's MSAs come from (unpaired and paired a3m)."""
    keys = sorted(set(TARGET_MSA_KEYS[wildcards.target].values()))
    return [
        f"{RESULTS}/msa/{key}{suffix}"
        for key in keys
        for suffix in (".a3m", ".paired.a3m")
    ]


def template_files(target_id: str) -> list[str]:
    """Template features of a target's searched protein chains (none without a template database)."""
    if not config["databases"].get("templates", {}).get("seqres"):
        return []
    keys = sorted(
        {k for k in TARGET_MSA_KEYS[target_id].values() if k.startswith("protein/")}
    )
    return [f"{RESULTS}/templates/{key}.npz" for key in keys]


rule search_msa:
    """jackhmmer (protein) or nhmmer (RNA) of one unique sequence against its databases."""
    input:
        _search_databases,
    output:
        a3m=f"{RESULTS}/msa/{{molecule}}/{{sha}}.a3m",
        paired=f"{RESULTS}/msa/{{molecule}}/{{sha}}.paired.a3m",
    log:
        f"{LOGS}/search/msa/{{molecule}}/{{sha}}.log",
    wildcard_constraints:
        molecule="protein|rna",
        sha="[0-9a-f]{64}",
    conda:
        "../../envs/search.yaml"
    threads: config["search"]["threads"]
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        sequence=lambda w: MSA_QUERIES[f"{w.molecule}/{w.sha}"]["sequence"],
        molecule=lambda w: w.molecule,
    script:
        "../../scripts/search_msa.py"


rule search_templates:
    """hmmsearch of the MSA's profile against pdb_seqres; AF3 filters; features from the mmCIFs."""
    input:
        msa=f"{RESULTS}/msa/protein/{{sha}}.a3m",
        seqres=config["databases"]["templates"]["seqres"],
        sidecar=database_sidecar(config["databases"]["templates"]["seqres"]),
    output:
        npz=f"{RESULTS}/templates/protein/{{sha}}.npz",
    log:
        f"{LOGS}/search/templates/{{sha}}.log",
    wildcard_constraints:
        sha="[0-9a-f]{64}",
    conda:
        "../../envs/search.yaml"
    threads: config["search"]["threads"]
    resources:
        mem_mb=4000,
        runtime=120,
    script:
        "../../scripts/search_templates.py"


rule pair_msas:
    """Species pairing of a target's chains (AF3 §2.3): row i of every chain's paired a3m is one species."""
    input:
        manifest=f"{RESULTS}/msa/targets/{{target}}.json",
        msas=msa_files_for_target,
    output:
        manifest=f"{RESULTS}/msa/targets/{{target}}.paired.json",
        paired_dir=directory(f"{RESULTS}/msa/paired/{{target}}"),
    log:
        f"{LOGS}/search/pairing/{{target}}.log",
    conda:
        "../../envs/search.yaml"
    script:
        "../../scripts/search_pairing.py"


rule templates:
    """Template features of every target's protein chains."""
    input:
        [f for t in sorted(TARGETS) for f in template_files(t)],


localrules:
    templates,
