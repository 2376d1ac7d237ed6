# Shards → CNN per target (settings picked on the valid split) → capacity sweep on one target.


rule train_cnn:
    input:
        shards=f"{DATA}/shards/{{target}}/manifest.json",
    output:
        weights="results/models/{target}/cnn/model.safetensors",
        config="results/models/{target}/cnn/config.json",
        history="results/models/{target}/cnn/history.tsv",
        grid="results/models/{target}/cnn/grid.tsv",
        predictions="results/models/{target}/cnn/test_predictions.tsv",
        record="results/models/{target}/cnn/record.json",
    params:
        device=DEVICE,
        out_dir=lambda w: f"results/models/{w.target}/cnn",
        json=as_json({"seed": config["seed"], **config["cnn"]}),
        code=CODE["train"],
    log:
        "results/logs/train_cnn/{target}.log",
    benchmark:
        "results/benchmarks/train_cnn/{target}.tsv"
    threads: config["threads"]
    resources:
        mem_mb=mem_request("train_cnn"),
        runtime=runtime_request("train_cnn"),
        gpu=GPU,
    conda:
        "../../envs/train.yaml"
    shell:
        "helixflow train --shards {input.shards} --out-dir {params.out_dir} "
        "--threads {threads} --params {params.json:q} --device {params.device} 2> {log}"


rule sweep_arm:
    input:
        shards=f"{DATA}/shards/{SWEEP_TARGET}/manifest.json",
    output:
        history="results/models/{target}/sweep/{arm}/history.tsv",
        record="results/models/{target}/sweep/{arm}/record.json",
    wildcard_constraints:
        target=SWEEP_TARGET,
    params:
        device=DEVICE,
        out_dir=lambda w: f"results/models/{w.target}/sweep/{w.arm}",
        json=lambda w: as_json({"seed": config["seed"], "arm": SWEEP_ARMS[w.arm],
                                "epochs": SWEEP["epochs"],
                                "architecture": config["cnn"]["architecture"],
                                "training": config["cnn"]["training"]}),
        code=CODE["sweep-arm"],
    log:
        "results/logs/sweep/{target}/{arm}.log",
    benchmark:
        "results/benchmarks/sweep/{target}/{arm}.tsv"
    threads: config["threads"]
    resources:
        mem_mb=mem_request("sweep_arm"),
        runtime=runtime_request("sweep_arm"),
        gpu=GPU,
    conda:
        "../../envs/train.yaml"
    shell:
        "helixflow sweep-arm --shards {input.shards} --out-dir {params.out_dir} "
        "--threads {threads} --params {params.json:q} --device {params.device} 2> {log}"


rule sweep_summary:
    input:
        expand("results/models/{target}/sweep/{arm}/record.json", target=SWEEP_TARGET,
               arm=SWEEP_ARMS),
    output:
        report("results/metrics/sweep.tsv", caption="../report/sweep_table.rst",
               category="3. Overfitting experiment"),
    params:
        arm_dirs=[f"results/models/{SWEEP_TARGET}/sweep/{arm}" for arm in SWEEP_ARMS],
        code=CODE["sweep-summary"],
    log:
        "results/logs/sweep/summary.log",
    benchmark:
        "results/benchmarks/sweep/summary.tsv"
    threads: 1
    resources:
        mem_mb=mem_request("sweep_summary"),
        runtime=runtime_request("sweep_summary"),
    conda:
        "../../envs/report.yaml"
    shell:
        "helixflow sweep-summary --arm-dirs {params.arm_dirs} --out {output} 2> {log}"
