# MSA and template search (model.search): one job per unique sequence key, never twice.
#
#   search_settings   wildcards molecule (protein|rna)
#                     input  the .foldline.json sidecars of the molecule's databases (databases.smk;
#                            protein: and of the template database)
#                     output results/msa/{molecule}.settings.json: config `databases` and `search`
#                            (less `threads`), what every search of the molecule reads
#   search_protein    wildcards sha (model.search.store.msa_key of the sequence, the protein databases,
#                     the template database and the search settings; MSA_QUERIES in common.smk)
#                     output results/msa/protein/{sha}.a3m         unpaired MSA (query first)
#                            results/msa/protein/{sha}.paired.a3m  UniProt rows for species pairing
#                            results/templates/protein/{sha}.npz   template features [K, L, ...] from
#                                                                  the MSA's profile (hmmsearch)
#   search_rna        wildcards sha
#                     output results/msa/rna/{sha}.a3m, results/msa/rna/{sha}.paired.a3m (query only)
#   templates         target: template features of every protein sequence of every target
#
# The template search reads the MSA, so both run in one job per protein sequence (the key covers the
# template settings too). A search job's one input is its molecule's settings file, marked ancient:
# the key already names every database and setting, so a rewritten settings file (say, a changed
# thread count) must not re-search the store, and a changed database gives new keys anyway. One input
# instead of the databases and their sidecars also keeps the plan of a large screen cheap (Snakemake
# matches every input of every job). Species pairing of heteromers happens when a shard is featurized
# (features.smk). common.smk's MSA_QUERIES / TARGET_MSA_KEYS map targets and chains to
# "{molecule}/{sha}" keys; the store layout is model.search.store's.


localrules:
    search_settings,
    templates,


rule search_settings:
    """The databases and settings every search of one molecule uses, once the databases are prepared."""
    input:
        search_sidecars,
    output:
        f"{RESULTS}/msa/{{molecule}}.settings.json",
    log:
        f"{LOGS}/search/{{molecule}}.settings.log",
    wildcard_constraints:
        molecule="protein|rna",
    params:
        settings={
            "databases": config["databases"],
            "search": {k: v for k, v in config["search"].items() if k != "threads"},
        },
    run:
        import json

        Path(output[0]).write_text(
            json.dumps(params.settings, indent=1, sort_keys=True) + "\n"
        )


rule search_protein:
    """jackhmmer of one unique protein sequence against its databases, then its template search."""
    input:
        settings=ancient(f"{RESULTS}/msa/protein.settings.json"),
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
    shell:
        "python scripts/search_sequence.py --settings {input.settings} --molecule protein"
        " --sequence {params.sequence} --out {output.a3m} --templates {output.npz}"
        " --threads {threads} > {log} 2>&1"


rule search_rna:
    """nhmmer of one unique RNA sequence against its databases."""
    input:
        settings=ancient(f"{RESULTS}/msa/rna.settings.json"),
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
    shell:
        "python scripts/search_sequence.py --settings {input.settings} --molecule rna"
        " --sequence {params.sequence} --out {output.a3m} --threads {threads} > {log} 2>&1"


rule templates:
    """Template features of every target's protein chains."""
    input:
        sorted(
            f"{RESULTS}/templates/{key}.npz"
            for key in MSA_QUERIES
            if key.startswith("protein/")
        ),
