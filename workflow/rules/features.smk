# Features: one HDF5 per prediction target (results/features/{target}.h5) and per training entry
# (results/features/train/{entry}.h5), written by scripts/build_features.py.
#
# A target that cannot be featurized is data, not a crash: the script writes results/failed/{t}.txt
# instead of the h5 and exits 0. Each job therefore declares a one-line status file as its output,
# "ok<TAB>{h5}" or "failed<TAB>{reason}", that shards and the summary read; the h5 sits beside it.


rule msa_manifest:
    """Which searched a3m file serves which chain of one target (pair_msas in search.smk adds the
    species-paired rows; build_features reads its {target}.paired.json)."""
    input:
        lambda w: msa_files(w.target),
    output:
        f"{RESULTS}/msa/targets/{{target}}.json",
    log:
        f"{LOGS}/features/{{target}}.manifest.log",
    wildcard_constraints:
        # not pair_msas's {target}.paired.json
        target=rf"(?![^/]*\.paired$){TARGET_ID}",
    params:
        chains=lambda w: {
            chain: f"{RESULTS}/msa/{key}.a3m"
            for chain, key in sorted(TARGET_MSA_KEYS[w.target].items())
        },
    run:
        import json

        Path(output[0]).write_text(
            json.dumps(
                {"target_id": wildcards.target, "chains": params.chains}, indent=1
            )
            + "\n"
        )


rule build_features:
    """Featurize one prediction target (AF3 §2.8 features per model/data/feature_spec.py)."""
    input:
        manifest=lambda w: msa_manifest_file(w.target),
        templates=lambda w: template_files(w.target),
        source=target_inputs,
    output:
        status=f"{RESULTS}/features/{{target}}.status",
    log:
        f"{LOGS}/features/{{target}}.log",
    conda:
        "../../envs/model.yaml"
    threads: 1
    params:
        inputs=config["inputs"],
        roots=ALLOWED_ROOT_ARGS,
        ccd=config["ccd"],
        seed=config["feature_seed"],
        fingerprint=target_fingerprint,
        h5=lambda w: f"{RESULTS}/features/{w.target}.h5",
        failed=lambda w: f"{RESULTS}/failed/{w.target}.txt",
        failed_dir=lambda w: f"{RESULTS}/failed",
        template_dir=lambda w: f"{RESULTS}/templates",
    shell:
        "rm -f {params.h5} {params.failed}; "
        "python scripts/build_features.py --inputs {params.inputs} --target-id {wildcards.target}"
        " {params.roots}"
        " --msa-manifest {input.manifest} --template-dir {params.template_dir} --ccd '{params.ccd}'"
        " --out {params.h5} --failed-dir {params.failed_dir} --seed {params.seed} > {log} 2>&1; "
        "if [ -s {params.h5} ]; then printf 'ok\\t%s\\n' {params.h5};"
        " elif [ -s {params.failed} ]; then printf 'failed\\t%s\\n' \"$(head -n 1 {params.failed})\";"
        " else echo 'build_features.py wrote neither {params.h5} nor {params.failed}' >&2; exit 1;"
        " fi > {output.status}"


rule build_training_features:
    """Featurize one training entry from its mmCIF, with ground truth."""
    input:
        mmcif=lambda w: TRAINING_ENTRIES[w.entry],
    output:
        status=f"{RESULTS}/features/train/{{entry}}.status",
    log:
        f"{LOGS}/features/train/{{entry}}.log",
    conda:
        "../../envs/model.yaml"
    threads: 1
    params:
        ccd=config["ccd"],
        seed=config["feature_seed"],
        h5=lambda w: f"{RESULTS}/features/train/{w.entry}.h5",
        failed=lambda w: f"{RESULTS}/failed/train/{w.entry}.txt",
        failed_dir=lambda w: f"{RESULTS}/failed/train",
    shell:
        "rm -f {params.h5} {params.failed}; "
        "python scripts/build_features.py --mmcif {input.mmcif} --ccd '{params.ccd}'"
        " --out {params.h5} --failed-dir {params.failed_dir} --seed {params.seed} > {log} 2>&1; "
        "if [ -s {params.h5} ]; then printf 'ok\\t%s\\n' {params.h5};"
        " elif [ -s {params.failed} ]; then printf 'failed\\t%s\\n' \"$(head -n 1 {params.failed})\";"
        " else echo 'build_features.py wrote neither {params.h5} nor {params.failed}' >&2; exit 1;"
        " fi > {output.status}"
