# Trained CNN → filter PWMs → Tomtom against JASPAR CORE of the target's taxon → logos.


rule motifs:
    input:
        shards=f"{DATA}/shards/{{target}}/manifest.json",
        weights="results/models/{target}/cnn/model.safetensors",
        config="results/models/{target}/cnn/config.json",
    output:
        meme="results/motifs/{target}/filters.meme",
        tomtom="results/motifs/{target}/tomtom.tsv",
        recovery="results/motifs/{target}/recovery.tsv",
        record="results/motifs/{target}/record.json",
    params:
        model_dir=lambda w: f"results/models/{w.target}/cnn",
        out_dir=lambda w: f"results/motifs/{w.target}",
        jaspar_id=lambda w: SAMPLES.loc[w.target, "jaspar_id"],
        tax_group=lambda w: SAMPLES.loc[w.target, "tax_group"],
        json=as_json(config["motifs"]),
        code=CODE["motifs"],
    log:
        "results/logs/motifs/{target}.log",
    benchmark:
        "results/benchmarks/motifs/{target}.tsv"
    threads: 1
    resources:
        mem_mb=mem_request("motifs"),
        runtime=runtime_request("motifs"),
    conda:
        "../../envs/motifs.yaml"
    shell:
        "helixflow motifs --target {wildcards.target} --shards {input.shards} "
        "--model-dir {params.model_dir} --out-dir {params.out_dir} "
        "--jaspar-id={params.jaspar_id:q} --tax-group {params.tax_group} "
        "--params {params.json:q} 2> {log}"


rule motifs_summary:
    input:
        expand("results/motifs/{target}/recovery.tsv", target=TARGETS),
    output:
        report("results/motifs/summary.tsv", caption="../report/motifs_summary.rst",
               category="1. Summary"),
    params:
        code=CODE["summarize"],
    log:
        "results/logs/motifs_summary.log",
    benchmark:
        "results/benchmarks/motifs_summary.tsv"
    threads: 1
    resources:
        mem_mb=mem_request("motifs_summary"),
        runtime=runtime_request("motifs_summary"),
    conda:
        "../../envs/report.yaml"
    shell:
        "helixflow summarize --tables {input} --out {output} 2> {log}"
