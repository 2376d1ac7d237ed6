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
            mem_mb=4000,
            runtime=30,
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
        log:
            "results/logs/attributions_summary.log",
        benchmark:
            "results/benchmarks/attributions_summary.tsv"
        threads: 1
        resources:
            mem_mb=500,
            runtime=5,
        conda:
            "../../envs/report.yaml"
        shell:
            "helixflow summarize --tables {input} --out {output} 2> {log}"
