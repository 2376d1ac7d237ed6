# Genome → token corpus per split (training chromosomes for pretraining; valid/test ones
# only to judge it) → self-supervised pretraining → held-out masked-token diagnostics vs
# k-mer baselines → transfer to every target (probe, fine-tune, adapters, label efficiency).
# Optional: `pretraining: null`.

if PRETRAINING:

    rule corpus:
        input:
            fasta=f"{DATA}/genome.fa",
            fai=f"{DATA}/genome.fa.fai",
        output:
            f"{DATA}/corpus/{{split}}/manifest.json",
        params:
            out_dir=lambda w, output: Path(output[0]).parent,
            json=as_json(PRETRAINING["corpus"]),
            splits=as_json(config["splits"]),
            code=CODE["corpus"],
        wildcard_constraints:
            split="train|valid|test",
        log:
            "results/logs/corpus/{split}.log",
        benchmark:
            "results/benchmarks/corpus/{split}.tsv"
        priority: 50  # corpus → pretrain → transfer is the longest chain: start it early
        threads: config["threads"]
        resources:
            mem_mb=mem_request("corpus"),
            runtime=runtime_request("corpus"),
        conda:
            "../../envs/data.yaml"
        shell:
            "helixflow corpus --fasta {input.fasta} --split {wildcards.split} "
            "--out-dir {params.out_dir} --threads {threads} --params {params.json:q} "
            "--splits {params.splits:q} 2> {log}"

    # Resumes from results/pretrain/checkpoint.pt when a killed run left one behind (a
    # checkpoint of other settings or data is ignored). On a cluster: one GPU (profiles/slurm).
    rule pretrain:
        input:
            corpus=f"{DATA}/corpus/train/manifest.json",
            valid=f"{DATA}/corpus/valid/manifest.json",
        output:
            weights="results/pretrain/model.safetensors",
            config="results/pretrain/config.json",
            heads="results/pretrain/heads.safetensors",
            metrics=report("results/pretrain/metrics.tsv",
                           caption="../report/pretrain_metrics.rst",
                           category="12. Pretraining and transfer"),
            summary="results/pretrain/summary.json",
            record="results/pretrain/record.json",
        params:
            device=DEVICE,
            out_dir=lambda w, output: Path(output.record).parent,
            json=as_json({**PRETRAINING["params"], "seed": config["seed"]}),
            # several GPUs: one DDP process each, started by torchrun on the job's node
            launcher=f"torchrun --standalone --nproc-per-node {PRETRAINING['gpus']} "
            "-m helixflow" if PRETRAINING["gpus"] > 1 else "helixflow",
            code=CODE["pretrain"],
        log:
            "results/logs/pretrain.log",
        benchmark:
            "results/benchmarks/pretrain.tsv"
        priority: 50
        threads: config["threads"]
        resources:
            mem_mb=mem_request("pretrain"),
            runtime=runtime_request("pretrain"),
            gpu=GPU * PRETRAINING["gpus"],
        conda:
            "../../envs/pretrain.yaml"
        shell:
            "{params.launcher} pretrain --corpus {input.corpus} --valid {input.valid} "
            "--out-dir {params.out_dir} --threads {threads} --params {params.json:q} "
            "--device {params.device} 2> {log}"

    rule pretrain_diagnostics:
        input:
            weights="results/pretrain/model.safetensors",
            corpus=f"{DATA}/corpus/train/manifest.json",
            valid=f"{DATA}/corpus/valid/manifest.json",
            heldout=f"{DATA}/corpus/test/manifest.json",
        output:
            table=report("results/pretrain/diagnostics.tsv",
                         caption="../report/pretrain_diagnostics.rst",
                         category="12. Pretraining and transfer"),
            figure=report("results/pretrain/diagnostics.png",
                          caption="../report/pretrain_diagnostics.rst",
                          category="12. Pretraining and transfer"),
        params:
            encoder_dir=lambda w, input: Path(input.weights).parent,
            json=as_json(PRETRAINING["diagnostics"]),
            code=CODE["pretrain-diagnostics"],
        log:
            "results/logs/pretrain_diagnostics.log",
        benchmark:
            "results/benchmarks/pretrain_diagnostics.tsv"
        threads: 1
        resources:
            mem_mb=mem_request("pretrain_diagnostics"),
            runtime=runtime_request("pretrain_diagnostics"),
        conda:
            "../../envs/pretrain.yaml"
        shell:
            "helixflow pretrain-diagnostics --encoder-dir {params.encoder_dir} "
            "--corpus {input.corpus} --valid {input.valid} --heldout {input.heldout} "
            "--out {output.table} --params {params.json:q} 2> {log}"

    rule transfer:
        input:
            shards=f"{DATA}/shards/{{target}}/manifest.json",
            weights="results/pretrain/model.safetensors",
        output:
            runs="results/transfer/{target}/runs.tsv",
            summary="results/transfer/{target}/summary.json",
            record="results/transfer/{target}/record.json",
            figure="results/transfer/{target}/label_efficiency.png",
            predictions=transfer_predictions("{target}"),
        params:
            device=DEVICE,
            encoder_dir=lambda w, input: Path(input.weights).parent,
            out_dir=lambda w, output: Path(output.runs).parent,
            json=as_json(transfer_params()),
            code=CODE["transfer"],
        log:
            "results/logs/transfer/{target}.log",
        benchmark:
            "results/benchmarks/transfer/{target}.tsv"
        priority: 50
        threads: 1
        resources:
            mem_mb=mem_request("transfer"),
            runtime=runtime_request("transfer"),
            gpu=GPU,
        conda:
            "../../envs/pretrain.yaml"
        shell:
            "helixflow transfer --target {wildcards.target} --shards {input.shards} "
            "--encoder-dir {params.encoder_dir} --out-dir {params.out_dir} "
            "--params {params.json:q} --device {params.device} 2> {log}"

    rule transfer_summary:
        input:
            runs=expand("results/transfer/{target}/runs.tsv", target=TARGETS),
            metrics=expand("results/metrics/{target}.tsv", target=TARGETS),
        output:
            table=report("results/transfer/comparison.tsv",
                         caption="../report/transfer_table.rst",
                         category="12. Pretraining and transfer"),
            figure=report("results/figures/label_efficiency.png",
                          caption="../report/label_efficiency.rst",
                          category="12. Pretraining and transfer"),
            svg="results/figures/label_efficiency.svg",
        params:
            code=CODE["transfer-summary"],
        log:
            "results/logs/transfer_summary.log",
        benchmark:
            "results/benchmarks/transfer_summary.tsv"
        threads: 1
        resources:
            mem_mb=mem_request("transfer_summary"),
            runtime=runtime_request("transfer_summary"),
        conda:
            "../../envs/pretrain.yaml"
        shell:
            "helixflow transfer-summary --runs {input.runs} --metrics {input.metrics} "
            "--out {output.table} --figure {output.figure} 2> {log}"
