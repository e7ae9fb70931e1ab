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
# The store paths come from model.search.store (msa_key, msa_path, paired_msa_path, template_path);
# common.smk's MSA_QUERIES / TARGET_MSA_KEYS map targets and chains to "{molecule}/{sha}" keys.


from model.search.store import search_inputs


rule search_msa:
    """jackhmmer (protein) or nhmmer (RNA) of one unique sequence against its databases."""
    input:
        lambda w: search_inputs(w.molecule, config["databases"]),
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
        sidecar=f'{config["databases"]["templates"]["seqres"]}.foldline.json',
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
        msas=lambda w: [
            f"{RESULTS}/msa/{key}{suffix}"
            for key in sorted(set(TARGET_MSA_KEYS[w.target].values()))
            for suffix in (".a3m", ".paired.a3m")
        ],
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
        sorted(
            {
                f"{RESULTS}/templates/{key}.npz"
                for keys in TARGET_MSA_KEYS.values()
                for key in keys.values()
                if key.startswith("protein/")
            }
        ),


localrules:
    templates,
