# MSA and template search (model.search): each unique sequence key searched once, in batches.
#
#   search_protein    wildcards batch (two hex digits: the keys' first two; SEARCH_BATCHES in common.smk;
#                     "train-" and two digits for training entries' sequences, manifest.smk)
#                     input  the .foldline.json sidecars of the protein and template databases (training
#                            batches: and the manifest their members come from)
#                     output results/msa/protein/batches/{batch}.tsv: sha<TAB>sequence of every member,
#                            written last, once every member is in the store:
#                              results/msa/protein/{sha}.a3m         unpaired MSA (query first)
#                              results/msa/protein/{sha}.paired.a3m  UniProt rows for species pairing
#                              results/templates/protein/{sha}.npz   template features [K, L, ...], for
#                                the members of params.templates only (a chain with AF3 `templates`
#                                given, `[]` included, asks for no template search)
#   search_rna        the same for RNA: results/msa/rna/batches/{batch}.tsv, results/msa/rna/{sha}.a3m
#                     and .paired.a3m (the query only)
#   templates         target: template features of every protein sequence of every target
#
# `sha` is model.search.store.msa_key of the sequence, the molecule's databases and the search
# settings (MSA_QUERIES / TARGET_MSA_KEYS in common.smk map targets and chains to "{molecule}/{sha}").
# A batch job reads each database once for all its members (model.search.store.search_msas) and skips
# entries already in the store, so a rerun of a batch (a new sequence joined it, or `-R search_protein`
# after deleting entries) searches only what is missing. The entries are not declared outputs:
# Snakemake would delete a rerun batch's finished entries first. A store of any size is at most 256
# jobs per molecule, and the plan of a large screen stays small. Species pairing of heteromers happens
# when a shard is featurized (features.smk).


localrules:
    templates,


rule search_protein:
    """jackhmmer of a batch of unique protein sequences against their databases, then templates."""
    input:
        lambda w: search_inputs("protein", w.batch),
    output:
        f"{RESULTS}/msa/protein/batches/{{batch}}.tsv",
    log:
        f"{LOGS}/search/protein/{{batch}}.log",
    wildcard_constraints:
        batch="(train-)?[0-9a-f]{2}",
    conda:
        "../../envs/search.yaml"
    threads: config["search"]["threads"]
    resources:
        mem_mb=8000,
        runtime=1440,
    params:
        molecule="protein",
        members=lambda w: search_members("protein", w.batch),
        templates=lambda w: template_search_shas(w.batch),
        results=lambda w: RESULTS,
    script:
        "../../scripts/search_batch.py"


rule search_rna:
    """nhmmer of a batch of unique RNA sequences against their databases."""
    input:
        lambda w: search_inputs("rna", w.batch),
    output:
        f"{RESULTS}/msa/rna/batches/{{batch}}.tsv",
    log:
        f"{LOGS}/search/rna/{{batch}}.log",
    wildcard_constraints:
        batch="(train-)?[0-9a-f]{2}",
    conda:
        "../../envs/search.yaml"
    threads: config["search"]["threads"]
    resources:
        mem_mb=8000,
        runtime=1440,
    params:
        molecule="rna",
        members=lambda w: search_members("rna", w.batch),
        results=lambda w: RESULTS,
    script:
        "../../scripts/search_batch.py"


rule templates:
    """Template features of every target's protein chains (made by the search batches)."""
    input:
        expand(
            f"{RESULTS}/msa/protein/batches/{{batch}}.tsv",
            batch=sorted(SEARCH_BATCHES.get("protein", {})),
        ),
