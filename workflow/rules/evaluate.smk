# Classical baselines on the same windows, then held-out-chromosome metrics per target
# and for all targets.


rule kmer_baseline:
    input:
        shards=f"{DATA}/shards/{{target}}/manifest.json",
    output:
        predictions="results/models/{target}/kmer_logreg/test_predictions.tsv",
        record="results/models/{target}/kmer_logreg/record.json",
    params:
        out_dir=lambda w: f"results/models/{w.target}/kmer_logreg",
        json=as_json({"seed": config["seed"], "kmer_k": config["evaluate"]["kmer_k"],
                      "kmer_C": config["evaluate"]["kmer_C"]}),
        code=CODE["kmer-baseline"],
    log:
        "results/logs/kmer_baseline/{target}.log",
    benchmark:
        "results/benchmarks/kmer_baseline/{target}.tsv"
    threads: 1
    resources:
        mem_mb=mem_request("kmer_baseline"),
        runtime=runtime_request("kmer_baseline"),
    conda:
        "../../envs/evaluate.yaml"
    shell:
        "helixflow kmer-baseline --shards {input.shards} --out-dir {params.out_dir} "
        "--params {params.json:q} 2> {log}"


rule pwm_baseline:
    input:
        shards=f"{DATA}/shards/{{target}}/manifest.json",
    output:
        predictions="results/models/{target}/pwm_jaspar/test_predictions.tsv",
        record="results/models/{target}/pwm_jaspar/record.json",
    params:
        out_dir=lambda w: f"results/models/{w.target}/pwm_jaspar",
        jaspar_id=lambda w: SAMPLES.loc[w.target, "jaspar_id"],
        release=f"--release {config['motifs']['jaspar_release']}"
        if config["motifs"]["jaspar_release"] else "",
        code=CODE["pwm-baseline"],
    log:
        "results/logs/pwm_baseline/{target}.log",
    benchmark:
        "results/benchmarks/pwm_baseline/{target}.tsv"
    threads: 1
    resources:
        mem_mb=mem_request("pwm_baseline"),
        runtime=runtime_request("pwm_baseline"),
    conda:
        "../../envs/evaluate.yaml"
    shell:
        "helixflow pwm-baseline --shards {input.shards} --out-dir {params.out_dir} "
        "--jaspar-id {params.jaspar_id} {params.release} 2> {log}"


rule evaluate:
    input:
        unpack(lambda w: evaluated_models(w.target)),
    output:
        table="results/metrics/{target}.tsv",
        paired="results/metrics/paired/{target}.tsv",
    params:
        predictions=lambda w, input: [f"{m}={p}" for m, p in input.items()],
        n_boot=config["evaluate"]["n_boot"],
        level=config["evaluate"]["level"],
        seed=config["seed"],
        code=CODE["evaluate"],
    log:
        "results/logs/evaluate/{target}.log",
    benchmark:
        "results/benchmarks/evaluate/{target}.tsv"
    threads: 1
    resources:
        mem_mb=mem_request("evaluate"),
        runtime=runtime_request("evaluate"),
    conda:
        "../../envs/evaluate.yaml"
    shell:
        "helixflow evaluate --target {wildcards.target} --predictions {params.predictions} "
        "--n-boot {params.n_boot} --level {params.level} --seed {params.seed} "
        "--out {output.table} --paired {output.paired} 2> {log}"


rule choose_model:
    input:
        unpack(lambda w: selection_inputs(w.target)),
    output:
        "results/metrics/selection/{target}.tsv",
    params:
        valid=lambda w, input: [f"{m}={input[f'valid_{m}']}" for m in candidate_models(w.target)],
        test=lambda w, input: [f"{m}={input[f'test_{m}']}" for m in candidate_models(w.target)],
        n_boot=config["evaluate"]["n_boot"],
        level=config["evaluate"]["level"],
        seed=config["seed"],
        code=CODE["choose-model"],
    log:
        "results/logs/choose_model/{target}.log",
    benchmark:
        "results/benchmarks/choose_model/{target}.tsv"
    threads: 1
    resources:
        mem_mb=mem_request("choose_model"),
        runtime=runtime_request("choose_model"),
    conda:
        "../../envs/evaluate.yaml"
    shell:
        "helixflow choose-model --target {wildcards.target} --valid {params.valid} "
        "--test {params.test} --n-boot {params.n_boot} --level {params.level} "
        "--seed {params.seed} --out {output} 2> {log}"


rule selection_summary:
    input:
        expand("results/metrics/selection/{target}.tsv", target=TARGETS),
    output:
        report("results/metrics/selection.tsv", caption="../report/selection.rst",
               category="1. Summary"),
    params:
        code=CODE["summarize"],
    log:
        "results/logs/selection_summary.log",
    benchmark:
        "results/benchmarks/selection_summary.tsv"
    threads: 1
    resources:
        mem_mb=mem_request("selection_summary"),
        runtime=runtime_request("selection_summary"),
    conda:
        "../../envs/report.yaml"
    shell:
        "helixflow summarize --tables {input} --out {output} 2> {log}"


rule paired_summary:
    input:
        expand("results/metrics/paired/{target}.tsv", target=TARGETS),
    output:
        report("results/metrics/paired_summary.tsv", caption="../report/paired_summary.rst",
               category="1. Summary"),
    params:
        code=CODE["summarize"],
    log:
        "results/logs/paired_summary.log",
    benchmark:
        "results/benchmarks/paired_summary.tsv"
    threads: 1
    resources:
        mem_mb=mem_request("paired_summary"),
        runtime=runtime_request("paired_summary"),
    conda:
        "../../envs/report.yaml"
    shell:
        "helixflow summarize --tables {input} --out {output} 2> {log}"


rule metrics_summary:
    input:
        metric_tables(),
    output:
        report("results/metrics/summary.tsv", caption="../report/metrics_summary.rst",
               category="1. Summary"),
    params:
        code=CODE["summarize"],
    log:
        "results/logs/metrics_summary.log",
    benchmark:
        "results/benchmarks/metrics_summary.tsv"
    threads: 1
    resources:
        mem_mb=mem_request("metrics_summary"),
        runtime=runtime_request("metrics_summary"),
    conda:
        "../../envs/report.yaml"
    shell:
        "helixflow summarize --tables {input} --out {output} 2> {log}"
