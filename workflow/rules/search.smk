# MSA and template search (model.search): one job per unique sequence key, never twice.
#
#   search_protein    wildcards sha (model.search.store.msa_key of the sequence, the protein databases,
#                     the template database and the search settings; MSA_QUERIES in common.smk)
#                     input  the .foldline.json sidecars of the protein and template databases
#                     output results/msa/protein/{sha}.a3m         unpaired MSA (query first)
#                            results/msa/protein/{sha}.paired.a3m  UniProt rows for species pairing
#                            results/templates/protein/{sha}.npz   template features [K, L, ...] from
#                                                                  the MSA's profile (hmmsearch)
#   search_rna        wildcards sha; input the RNA databases' sidecars
#                     output results/msa/rna/{sha}.a3m, results/msa/rna/{sha}.paired.a3m (query only)
#   templates         target: template features of every protein sequence of every target
#
# The inputs are the databases' sidecars only: prepare_database (databases.smk) writes a sidecar
# from its database, so the order and the reruns are the same as with the FASTA files as inputs, at
# half the files for Snakemake to match per search job (a large screen has thousands of them).
# The template search reads the MSA, so both run in one job per protein sequence (the key already
# covers the template settings): half the jobs of a large screen. Species pairing of heteromers
# happens when a shard is featurized (features.smk). The store paths come from model.search.store
# (msa_path, paired_msa_path, template_path); common.smk's MSA_QUERIES / TARGET_MSA_KEYS map targets
# and chains to "{molecule}/{sha}" keys.


from model.search.databases import sidecar_path
from model.search.store import molecule_databases

SIDECARS = {
    molecule: [
        str(sidecar_path(p))
        for p in molecule_databases(molecule, config["databases"]).values()
    ]
    for molecule in ("protein", "rna")
}
SIDECARS["protein"].append(
    str(sidecar_path(config["databases"]["templates"]["seqres"]))
)


rule search_protein:
    """jackhmmer of one unique protein sequence against its databases, then its template search."""
    input:
        SIDECARS["protein"],
    output:
        a3m=f"{RESULTS}/msa/protein/{{sha}}.a3m",
        paired=f"{RESULTS}/msa/protein/{{sha}}.paired.a3m",
        npz=f"{RESULTS}/templates/protein/{{sha}}.npz",
    log:
        f"{LOGS}/search/protein/{{sha}}.log",
    wildcard_constraints:
        sha="[0-9a-f]{64}",
    conda:
        "../../envs/search.yaml"
    threads: config["search"]["threads"]
    resources:
        mem_mb=4000,
        runtime=360,
    params:
        sequence=lambda w: MSA_QUERIES[f"protein/{w.sha}"],
    script:
        "../../scripts/search_protein.py"


rule search_rna:
    """nhmmer of one unique RNA sequence against its databases."""
    input:
        SIDECARS["rna"],
    output:
        a3m=f"{RESULTS}/msa/rna/{{sha}}.a3m",
        paired=f"{RESULTS}/msa/rna/{{sha}}.paired.a3m",
    log:
        f"{LOGS}/search/rna/{{sha}}.log",
    wildcard_constraints:
        sha="[0-9a-f]{64}",
    conda:
        "../../envs/search.yaml"
    threads: config["search"]["threads"]
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        sequence=lambda w: MSA_QUERIES[f"rna/{w.sha}"],
        molecule="rna",
    script:
        "../../scripts/search_msa.py"


rule templates:
    """Template features of every target's protein chains."""
    input:
        sorted(
            f"{RESULTS}/templates/{key}.npz"
            for key in MSA_QUERIES
            if key.startswith("protein/")
        ),


localrules:
    templates,
