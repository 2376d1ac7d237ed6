# Methylation calls → CpG regions → masked autoencoder vs baselines (coverage × span sweep).
# scRNA counts → QC → NB denoising autoencoder vs MSE; batch-aware contrastive encoder.
# Both stages are optional: `methylation: null` / `scrna: null` in the config.

if METHYLATION:

    rule methylation_mae:
        input:
            [f"resources/{spec['path']}" for spec in METHYLATION["inputs"]],
        output:
            metrics=report(f"results/methylation/{METHYLATION['name']}/metrics.tsv",
                           caption="../report/methylation_metrics.rst",
                           category="5. Methylation"),
            history=f"results/methylation/{METHYLATION['name']}/history.tsv",
            record=f"results/methylation/{METHYLATION['name']}/record.json",
            summary=f"results/methylation/{METHYLATION['name']}/summary.json",
            sweep=report("results/figures/methylation_sweep.png",
                         caption="../report/methylation_sweep.rst", category="5. Methylation"),
            sweep_svg="results/figures/methylation_sweep.svg",
            example=report("results/figures/methylation_example.png",
                           caption="../report/methylation_example.rst",
                           category="5. Methylation"),
            example_svg="results/figures/methylation_example.svg",
        params:
            out_dir=lambda w, output: Path(output.record).parent,
            fmt=METHYLATION["format"],
            json=as_json({"seed": config["seed"], "threads": config["threads"],
                          **METHYLATION["params"]}),
            code=CODE["methylation"],
        log:
            f"results/logs/methylation_mae/{METHYLATION['name']}.log",
        benchmark:
            f"results/benchmarks/methylation_mae/{METHYLATION['name']}.tsv"
        threads: config["threads"]
        resources:
            mem_mb=mem_request("methylation_mae"),
            runtime=runtime_request("methylation_mae"),
        conda:
            "../../envs/omics.yaml"
        shell:
            "helixflow methylation --inputs {input:q} --format {params.fmt} "
            "--out-dir {params.out_dir} --figure-dir results/figures "
            "--params {params.json:q} 2> {log}"


if SCRNA:

    rule scrna:
        input:
            [f"resources/{spec['path']}" for spec in SCRNA["files"]],
        output:
            h5ad=f"results/scrna/{SCRNA['name']}/qc.h5ad",
            denoise=report(f"results/scrna/{SCRNA['name']}/denoise_metrics.tsv",
                           caption="../report/scrna_denoise.rst", category="6. Single-cell RNA"),
            batch=report(f"results/scrna/{SCRNA['name']}/batch_metrics.tsv",
                         caption="../report/scrna_batch_metrics.rst",
                         category="6. Single-cell RNA"),
            history=f"results/scrna/{SCRNA['name']}/history.tsv",
            record=f"results/scrna/{SCRNA['name']}/record.json",
            umap=report("results/figures/scrna_umap.png", caption="../report/scrna_umap.rst",
                        category="6. Single-cell RNA"),
            umap_svg="results/figures/scrna_umap.svg",
            batch_fig=report("results/figures/scrna_batch.png",
                             caption="../report/scrna_batch.rst", category="6. Single-cell RNA"),
            batch_svg="results/figures/scrna_batch.svg",
        params:
            matrix=lambda w: f"resources/{SCRNA['matrix']}",
            out_dir=lambda w, output: Path(output.record).parent,
            json=as_json({"seed": config["seed"], "threads": config["threads"],
                          **SCRNA["params"]}),
            code=CODE["scrna"],
        log:
            f"results/logs/scrna/{SCRNA['name']}.log",
        benchmark:
            f"results/benchmarks/scrna/{SCRNA['name']}.tsv"
        threads: config["threads"]
        resources:
            mem_mb=mem_request("scrna"),
            runtime=runtime_request("scrna"),
        conda:
            "../../envs/omics.yaml"
        shell:
            "helixflow scrna --input {params.matrix} --out-dir {params.out_dir} "
            "--figure-dir results/figures --params {params.json:q} 2> {log}"
