# Results → figures. Every figure is drawn from result tables alone, so
#   snakemake figures --forcerun plot_roc_pr plot_logos plot_sweep plot_metrics
# (make figures) redraws them all without retraining anything.


rule plot_roc_pr:
    input:
        unpack(lambda w: {m: f"results/models/{w.target}/{m}/test_predictions.tsv"
                          for m in models_of(w.target)}),
        metrics="results/metrics/{target}.tsv",
    output:
        png=report("results/figures/{target}_roc_pr.png", caption="../report/roc_pr.rst",
                   category="2. Held-out evaluation", subcategory="{target}"),
        svg="results/figures/{target}_roc_pr.svg",
    params:
        predictions=lambda w, input: [f"{m}={input[m]}" for m in models_of(w.target)],
        level=config["evaluate"]["level"],
        code=CODE["plot-roc-pr"],
    log:
        "results/logs/plot_roc_pr/{target}.log",
    benchmark:
        "results/benchmarks/plot_roc_pr/{target}.tsv"
    threads: 1
    resources:
        mem_mb=mem_request("plot_roc_pr"),
        runtime=runtime_request("plot_roc_pr"),
    conda:
        "../../envs/report.yaml"
    shell:
        "helixflow plot-roc-pr --target {wildcards.target} --predictions {params.predictions} "
        "--metrics {input.metrics} --level {params.level} --figure {output.png} 2> {log}"


rule plot_logos:
    input:
        meme="results/motifs/{target}/filters.meme",
        tomtom="results/motifs/{target}/tomtom.tsv",
        recovery="results/motifs/{target}/recovery.tsv",
        record="results/motifs/{target}/record.json",
    output:
        png=report("results/figures/{target}_filter_logos.png",
                   caption="../report/filter_logos.rst", category="4. Motifs",
                   subcategory="{target}"),
        svg="results/figures/{target}_filter_logos.svg",
    params:
        motif_dir=lambda w: f"results/motifs/{w.target}",
        n_logos=config["motifs"]["n_logos"],
        code=CODE["plot-logos"],
    log:
        "results/logs/plot_logos/{target}.log",
    benchmark:
        "results/benchmarks/plot_logos/{target}.tsv"
    threads: 1
    resources:
        mem_mb=mem_request("plot_logos"),
        runtime=runtime_request("plot_logos"),
    conda:
        "../../envs/motifs.yaml"
    shell:
        "helixflow plot-logos --motif-dir {params.motif_dir} --n-logos {params.n_logos} "
        "--figure {output.png} 2> {log}"


rule plot_sweep:
    input:
        table="results/metrics/sweep.tsv",
        histories=expand("results/models/{target}/sweep/{arm}/history.tsv",
                         target=SWEEP_TARGET, arm=SWEEP_ARMS),
    output:
        curves=report("results/figures/sweep_learning_curves.png",
                      caption="../report/sweep_learning_curves.rst",
                      category="3. Overfitting experiment"),
        curves_svg="results/figures/sweep_learning_curves.svg",
        bias_variance=report("results/figures/sweep_bias_variance.png",
                             caption="../report/sweep_bias_variance.rst",
                             category="3. Overfitting experiment"),
        bias_variance_svg="results/figures/sweep_bias_variance.svg",
    params:
        arm_dirs=[f"results/models/{SWEEP_TARGET}/sweep/{arm}" for arm in SWEEP_ARMS],
        target=SWEEP_TARGET,
        code=CODE["plot-sweep"],
    log:
        "results/logs/plot_sweep.log",
    benchmark:
        "results/benchmarks/plot_sweep.tsv"
    threads: 1
    resources:
        mem_mb=mem_request("plot_sweep"),
        runtime=runtime_request("plot_sweep"),
    conda:
        "../../envs/report.yaml"
    shell:
        "helixflow plot-sweep --target {params.target} --arm-dirs {params.arm_dirs} "
        "--table {input.table} --curves {output.curves} "
        "--bias-variance {output.bias_variance} 2> {log}"


rule plot_metrics:
    input:
        "results/metrics/summary.tsv",
    output:
        png=report("results/figures/metrics_summary.png",
                   caption="../report/metrics_figure.rst", category="1. Summary"),
        svg="results/figures/metrics_summary.svg",
    params:
        level=config["evaluate"]["level"],
        code=CODE["plot-metrics"],
    log:
        "results/logs/plot_metrics.log",
    benchmark:
        "results/benchmarks/plot_metrics.tsv"
    threads: 1
    resources:
        mem_mb=mem_request("plot_metrics"),
        runtime=runtime_request("plot_metrics"),
    conda:
        "../../envs/report.yaml"
    shell:
        "helixflow plot-metrics --table {input} --level {params.level} --figure {output.png} "
        "2> {log}"


rule figures:
    input:
        figure_outputs(),
