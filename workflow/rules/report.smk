# Results → the report's summary page (headline numbers and provenance).
# The HTML report itself: snakemake --report results/report.html


rule report_summary:
    input:
        metrics="results/metrics/summary.tsv",
        paired="results/metrics/paired_summary.tsv",
        selection="results/metrics/selection.tsv",
        motifs="results/motifs/summary.tsv",
        sweep="results/metrics/sweep.tsv" if SWEEP_ARMS else [],
        inputs=expand(f"{DATA}/checked/{{target}}.json", target=TARGETS),
        records=expand("results/models/{target}/cnn/record.json", target=TARGETS),
        modisco="results/attributions/summary.tsv" if ATTRIBUTIONS else [],
        methylation=f"results/methylation/{METHYLATION['name']}/metrics.tsv"
        if METHYLATION else [],
        scrna=multiext(f"results/scrna/{SCRNA['name']}/", "denoise_metrics.tsv",
                       "batch_metrics.tsv") if SCRNA else [],
        sections=report_sections().values(),
    output:
        report("results/summary.html", caption="../report/summary.rst",
               category="1. Summary", labels={"page": "headline numbers and provenance"}),
    params:
        sweep=lambda w, input: input.sweep or "none",
        omics=lambda w, input: " ".join(
            ([f"--modisco {input.modisco}"] if input.modisco else [])
            + ([f"--methylation {input.methylation}"] if input.methylation else [])
            + ([f"--scrna-denoise {input.scrna[0]} --scrna-batch {input.scrna[1]}"]
               if input.scrna else [])
            + ["--section"] + [f"{k}={v}" for k, v in report_sections().items()]),
        config=as_json(config),
        code=CODE["report-summary"],
    log:
        "results/logs/report_summary.log",
    benchmark:
        "results/benchmarks/report_summary.tsv"
    threads: 1
    resources:
        mem_mb=mem_request("report_summary"),
        runtime=runtime_request("report_summary"),
    conda:
        "../../envs/report.yaml"
    shell:
        "helixflow report-summary --metrics {input.metrics} --paired {input.paired} --motifs {input.motifs} "
        "--sweep {params.sweep} --inputs {input.inputs} --config {params.config:q} "
        "--records {input.records} --selection {input.selection} {params.omics} --out {output} "
        "2> {log}"
