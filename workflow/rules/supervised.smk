# The harder supervised settings (seed 002): class imbalance (BCE, weighted BCE, focal loss
# from 1:1 to 1:50) on one target, and multiple-instance learning (a peak as a bag of
# sub-windows, attention pooling) on every target with a JASPAR motif.

if IMBALANCE:

    rule imbalance:
        input:
            checked=f"{DATA}/checked/{{target}}.json",
            peaks=peaks_of,
            fasta=f"{DATA}/genome.fa",
            tiles=tiles_file(config["windows"]["width"]),
            sizes=f"{DATA}/chrom.sizes",
            aliases=resource("chrom_aliases"),
            blacklist=resource("blacklist"),
        output:
            table=report("results/imbalance/{target}/imbalance.tsv",
                         caption="../report/imbalance_table.rst", category="10. Imbalance"),
            record="results/imbalance/{target}/record.json",
            figure=report("results/figures/{target}_imbalance.png",
                          caption="../report/imbalance.rst", category="10. Imbalance"),
            svg="results/figures/{target}_imbalance.svg",
        params:
            device=DEVICE,
            aliases=lambda w, input: f"--aliases {input.aliases}" if input.aliases else "",
            blacklist=lambda w, input: f"--blacklist {input.blacklist}" if input.blacklist else "",
            out_dir=lambda w, output: Path(output.table).parent,
            json=as_json({**IMBALANCE["params"], "seed": config["seed"],
                          "splits": config["splits"], "width": config["windows"]["width"],
                          "gc_bins": config["windows"]["gc_bins"],
                          "max_n_fraction": config["windows"]["max_n_fraction"]}),
            code=CODE["imbalance"],
        wildcard_constraints:
            target=IMBALANCE_TARGET,
        log:
            "results/logs/imbalance/{target}.log",
        benchmark:
            "results/benchmarks/imbalance/{target}.tsv"
        threads: 1
        resources:
            mem_mb=mem_request("imbalance"),
            runtime=runtime_request("imbalance"),
            gpu=GPU,
        conda:
            "../../envs/train.yaml"
        shell:
            "helixflow imbalance --target {wildcards.target} --peaks {input.peaks} "
            "--fasta {input.fasta} --tiles {input.tiles} --sizes {input.sizes} {params.aliases} "
            "{params.blacklist} --out-dir {params.out_dir} --figure {output.figure} "
            "--params {params.json:q} --device {params.device} 2> {log}"


if MIL:

    MIL_TARGETS = [t for t in PEAK_TARGETS if has_jaspar(t)]
    MIL_BAG = MIL["params"].get("bag", MIL_BAG_BP)   # bp

    rule mil:
        input:
            checked=f"{DATA}/checked/{{target}}.json",
            peaks=peaks_of,
            fasta=f"{DATA}/genome.fa",
            tiles=tiles_file(MIL_BAG),
            sizes=f"{DATA}/chrom.sizes",
            aliases=resource("chrom_aliases"),
            blacklist=resource("blacklist"),
        output:
            table="results/mil/{target}/mil.tsv",
            record="results/mil/{target}/record.json",
            figure=report("results/figures/{target}_mil.png", caption="../report/mil.rst",
                          category="11. Multiple-instance learning", subcategory="{target}"),
            svg="results/figures/{target}_mil.svg",
        params:
            device=DEVICE,
            aliases=lambda w, input: f"--aliases {input.aliases}" if input.aliases else "",
            blacklist=lambda w, input: f"--blacklist {input.blacklist}" if input.blacklist else "",
            out_dir=lambda w, output: Path(output.table).parent,
            jaspar_id=lambda w: SAMPLES.loc[w.target, "jaspar_id"],
            json=as_json({**MIL["params"], "seed": config["seed"], "splits": config["splits"],
                          "jaspar_release": config["motifs"]["jaspar_release"]}),
            code=CODE["mil"],
        log:
            "results/logs/mil/{target}.log",
        benchmark:
            "results/benchmarks/mil/{target}.tsv"
        threads: 1
        resources:
            mem_mb=mem_request("mil"),
            runtime=runtime_request("mil"),
            gpu=GPU,
        conda:
            "../../envs/train.yaml"
        shell:
            "helixflow mil --target {wildcards.target} --jaspar-id {params.jaspar_id} "
            "--peaks {input.peaks} --fasta {input.fasta} --tiles {input.tiles} "
            "--sizes {input.sizes} "
            "{params.aliases} {params.blacklist} --out-dir {params.out_dir} "
            "--figure {output.figure} --params {params.json:q} --device {params.device} 2> {log}"

    rule mil_summary:
        input:
            expand("results/mil/{target}/mil.tsv", target=MIL_TARGETS),
        output:
            report("results/mil/summary.tsv", caption="../report/mil_summary.rst",
                   category="11. Multiple-instance learning"),
        params:
            code=CODE["summarize"],
        log:
            "results/logs/mil_summary.log",
        benchmark:
            "results/benchmarks/mil_summary.tsv"
        threads: 1
        resources:
            mem_mb=mem_request("mil_summary"),
            runtime=runtime_request("mil_summary"),
        conda:
            "../../envs/report.yaml"
        shell:
            "helixflow summarize --tables {input} --out {output} 2> {log}"
