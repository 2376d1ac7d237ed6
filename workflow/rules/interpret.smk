# Trained CNN → attributions (saliency, ISM, DeepLIFT/SHAP, IG) on the top test positives
# → TF-MoDISco patterns → Tomtom against JASPAR. Optional: `attributions: null`.

if ATTRIBUTIONS:

    rule attributions:
        input:
            shards=f"{DATA}/shards/{{target}}/manifest.json",
            weights="results/models/{target}/cnn/model.safetensors",
            config="results/models/{target}/cnn/config.json",
        output:
            summary="results/attributions/{target}/modisco_summary.tsv",
            tomtom="results/attributions/{target}/modisco_tomtom.tsv",
            meme="results/attributions/{target}/modisco.meme",
            record="results/attributions/{target}/record.json",
            arrays=multiext("results/attributions/{target}/", "saliency.npz", "ism.npz",
                            "deeplift_shap.npz", "integrated_gradients.npz"),
            logos=report("results/figures/{target}_attributions.png",
                         caption="../report/attributions.rst", category="7. Attributions",
                         subcategory="{target}"),
            logos_svg="results/figures/{target}_attributions.svg",
            saturation=report("results/figures/{target}_saturation.png",
                              caption="../report/saturation.rst", category="7. Attributions",
                              subcategory="{target}"),
            saturation_svg="results/figures/{target}_saturation.svg",
        params:
            model_dir=lambda w, input: Path(input.weights).parent,
            out_dir=lambda w, output: Path(output.record).parent,
            json=lambda w: as_json({
                "seed": config["seed"], **ATTRIBUTIONS,
                "jaspar_id": SAMPLES.loc[w.target, "jaspar_id"],
                "tax_group": SAMPLES.loc[w.target, "tax_group"],
                "jaspar_collection": config["motifs"]["jaspar_collection"],
                "jaspar_release": config["motifs"]["jaspar_release"],
                "q_threshold": config["motifs"]["q_threshold"]}),
            code=CODE["attributions"],
        log:
            "results/logs/attributions/{target}.log",
        benchmark:
            "results/benchmarks/attributions/{target}.tsv"
        threads: 1
        resources:
            mem_mb=mem_request("attributions"),
            runtime=runtime_request("attributions"),
        conda:
            "../../envs/interpret.yaml"
        shell:
            "helixflow attributions --target {wildcards.target} --model-dir {params.model_dir} "
            "--shards {input.shards} --out-dir {params.out_dir} --figure-dir results/figures "
            "--params {params.json:q} 2> {log}"

    rule attributions_summary:
        input:
            expand("results/attributions/{target}/modisco_summary.tsv", target=TARGETS),
        output:
            report("results/attributions/summary.tsv", caption="../report/modisco_summary.rst",
                   category="1. Summary"),
        params:
            code=CODE["summarize"],
        log:
            "results/logs/attributions_summary.log",
        benchmark:
            "results/benchmarks/attributions_summary.tsv"
        threads: 1
        resources:
            mem_mb=mem_request("attributions_summary"),
            runtime=runtime_request("attributions_summary"),
        conda:
            "../../envs/report.yaml"
        shell:
            "helixflow summarize --tables {input} --out {output} 2> {log}"


# Motif grammar: first-layer filter co-activation by spacing (seed 002) and the receptive
# field of every layer, read off the architecture. Optional: `grammar: null`.
if GRAMMAR:

    rule grammar:
        input:
            # a sequence-table target has no coordinates: de-duplicated by sequence instead
            windows=lambda w: [] if w.target in SEQUENCE_TARGETS
            else f"{DATA}/windows/{w.target}.bed",
            shards=f"{DATA}/shards/{{target}}/manifest.json",
            weights="results/models/{target}/cnn/model.safetensors",
            tomtom="results/motifs/{target}/tomtom.tsv",
            recovery="results/motifs/{target}/recovery.tsv",
        output:
            spacing="results/grammar/{target}/spacing.tsv",
            pairs="results/grammar/{target}/pairs.tsv",
            fields=report("results/grammar/{target}/receptive_field.tsv",
                          caption="../report/receptive_field.rst", category="8. Motif grammar",
                          subcategory="{target}"),
            record="results/grammar/{target}/record.json",
            figure=report("results/figures/{target}_grammar.png",
                          caption="../report/grammar.rst", category="8. Motif grammar",
                          subcategory="{target}"),
            svg="results/figures/{target}_grammar.svg",
        params:
            model_dir=lambda w, input: Path(input.weights).parent,
            motif_dir=lambda w, input: Path(input.tomtom).parent,
            out_dir=lambda w, output: Path(output.record).parent,
            windows=lambda w, input: f"--windows {input.windows}" if input.windows else "",
            json=as_json(GRAMMAR),
            code=CODE["grammar"],
        log:
            "results/logs/grammar/{target}.log",
        benchmark:
            "results/benchmarks/grammar/{target}.tsv"
        threads: 1
        resources:
            mem_mb=mem_request("grammar"),
            runtime=runtime_request("grammar"),
        conda:
            "../../envs/interpret.yaml"
        shell:
            "helixflow grammar --target {wildcards.target} --model-dir {params.model_dir} "
            "--shards {input.shards} {params.windows} --motif-dir {params.motif_dir} "
            "--out-dir {params.out_dir} --figure {output.figure} --params {params.json:q} "
            "2> {log}"

    rule grammar_summary:
        input:
            expand("results/grammar/{target}/pairs.tsv", target=TARGETS),
        output:
            report("results/grammar/pairs_summary.tsv", caption="../report/grammar_summary.rst",
                   category="8. Motif grammar"),
        params:
            code=CODE["summarize"],
        log:
            "results/logs/grammar_summary.log",
        benchmark:
            "results/benchmarks/grammar_summary.tsv"
        threads: 1
        resources:
            mem_mb=mem_request("grammar_summary"),
            runtime=runtime_request("grammar_summary"),
        conda:
            "../../envs/report.yaml"
        shell:
            "helixflow summarize --tables {input} --out {output} 2> {log}"


# Filter-derived motifs beside TF-MoDISco patterns, each with its best JASPAR match.
if ATTRIBUTIONS:

    rule motif_compare:
        input:
            tomtom="results/motifs/{target}/tomtom.tsv",
            recovery="results/motifs/{target}/recovery.tsv",
            modisco="results/attributions/{target}/modisco_tomtom.tsv",
        output:
            table="results/motifs/{target}/compare/motif_sources.tsv",
            figure=report("results/figures/{target}_motifs_beside.png",
                          caption="../report/motifs_beside.rst", category="4. Motifs",
                          subcategory="{target}"),
            svg="results/figures/{target}_motifs_beside.svg",
        params:
            motif_dir=lambda w, input: Path(input.tomtom).parent,
            attribution_dir=lambda w, input: Path(input.modisco).parent,
            out_dir=lambda w, output: Path(output.table).parent,
            jaspar_id=lambda w: SAMPLES.loc[w.target, "jaspar_id"],
            json=lambda w: as_json({"q_threshold": config["motifs"]["q_threshold"],
                                    "jaspar_release": config["motifs"]["jaspar_release"]}),
            code=CODE["motif-compare"],
        log:
            "results/logs/motif_compare/{target}.log",
        benchmark:
            "results/benchmarks/motif_compare/{target}.tsv"
        threads: 1
        resources:
            mem_mb=mem_request("motif_compare"),
            runtime=runtime_request("motif_compare"),
        conda:
            "../../envs/motifs.yaml"
        shell:
            "helixflow motif-compare --target {wildcards.target} --motif-dir {params.motif_dir} "
            "--attribution-dir {params.attribution_dir} --jaspar-id={params.jaspar_id:q} "
            "--out-dir {params.out_dir} --figure {output.figure} --params {params.json:q} "
            "2> {log}"

    rule motif_compare_summary:
        input:
            expand("results/motifs/{target}/compare/motif_sources.tsv", target=TARGETS),
        output:
            report("results/motifs/sources_summary.tsv", caption="../report/motif_sources.rst",
                   category="4. Motifs"),
        params:
            code=CODE["summarize"],
        log:
            "results/logs/motif_compare_summary.log",
        benchmark:
            "results/benchmarks/motif_compare_summary.tsv"
        threads: 1
        resources:
            mem_mb=mem_request("motif_compare_summary"),
            runtime=runtime_request("motif_compare_summary"),
        conda:
            "../../envs/report.yaml"
        shell:
            "helixflow summarize --tables {input} --out {output} 2> {log}"
