# Many ChIP targets → one CNN with a shared trunk and a head per target (masked loss) →
# each sample-sheet target scored on its own single-task test windows (model cnn_multitask),
# shared filters matched to JASPAR. Optional: `multitask: null`.

if MULTITASK:

    rule multitask:
        input:
            peaks=multitask_peaks().values(),
            shards=expand(f"{DATA}/shards/{{target}}/manifest.json", target=PEAK_TARGETS),
            predictions=expand("results/models/{target}/cnn/test_predictions.tsv",
                               target=PEAK_TARGETS),
            metrics=expand("results/metrics/{target}.tsv", target=PEAK_TARGETS),
            fasta=f"{DATA}/genome.fa",
            tiles=tiles_file(config["windows"]["width"]),
            sizes=f"{DATA}/chrom.sizes",
            aliases=resource("chrom_aliases"),
            blacklist=resource("blacklist"),
        output:
            auroc="results/multitask/auroc.tsv",
            metrics="results/multitask/metrics.tsv",
            masked=report("results/multitask/test_masked.tsv",
                          caption="../report/multitask_masked.rst", category="9. Multi-task"),
            filters=report("results/multitask/filters_tomtom.tsv",
                           caption="../report/multitask_filters_table.rst",
                           category="9. Multi-task"),
            record="results/multitask/record.json",
            predictions=expand("results/multitask/predictions/{target}.tsv",
                               target=PEAK_TARGETS),
            figures=report(multiext("results/figures/multitask_", "auroc.png", "filters.png",
                                    "learning_curves.png"),
                           caption="../report/multitask.rst", category="9. Multi-task"),
            svgs=multiext("results/figures/multitask_", "auroc.svg", "filters.svg",
                          "learning_curves.svg"),
        params:
            device=DEVICE,
            peaks=lambda w: " ".join(f"{t}={p}" for t, p in multitask_peaks().items()),
            shards=lambda w, input: " ".join(
                f"{t}={p}" for t, p in zip(PEAK_TARGETS, input.shards)),
            predictions=lambda w, input: " ".join(
                f"{t}={p}" for t, p in zip(PEAK_TARGETS, input.predictions)),
            aliases=lambda w, input: f"--aliases {input.aliases}" if input.aliases else "",
            blacklist=lambda w, input: f"--blacklist {input.blacklist}" if input.blacklist else "",
            json=as_json({**MULTITASK["params"], "seed": config["seed"],
                          "splits": config["splits"], "width": config["windows"]["width"],
                          "threads": config["threads"]}),
            code=CODE["multitask"],
        log:
            "results/logs/multitask.log",
        benchmark:
            "results/benchmarks/multitask.tsv"
        threads: config["threads"]
        resources:
            mem_mb=mem_request("multitask"),
            runtime=runtime_request("multitask"),
            gpu=GPU,
        conda:
            "../../envs/train.yaml"
        shell:
            "helixflow multitask --peaks {params.peaks} --shards {params.shards} "
            "--predictions {params.predictions} --metrics {input.metrics} "
            "--fasta {input.fasta} --tiles {input.tiles} --sizes {input.sizes} {params.aliases} "
            "{params.blacklist} --out-dir results/multitask --figure-dir results/figures "
            "--params {params.json:q} --device {params.device} 2> {log}"
