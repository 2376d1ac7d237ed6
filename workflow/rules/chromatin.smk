# Each genome bin's DNA ↔ its ChIP-exo occupancy across every Rossi et al. protein: two
# encoders aligned by InfoNCE; retrieval both ways and TF-binding probes on the test
# chromosomes. Optional: `chromatin_contrastive: null`.

if CHROMATIN:

    rule chromatin_contrastive:
        input:
            fasta=f"{DATA}/genome.fa",
            fai=f"{DATA}/genome.fa.fai",
            peaks=CHROMATIN_PEAKS,
            aliases=resource("chrom_aliases"),
            encoder=("results/pretrain/model.safetensors"
                     if PRETRAINING and CHROMATIN["pretrained"] else []),
        output:
            metrics=report("results/chromatin/metrics.tsv",
                           caption="../report/chromatin_metrics.rst",
                           category="15. Sequence and chromatin"),
            probes="results/chromatin/probes.tsv",
            gain="results/chromatin/probe_gain.tsv",
            history="results/chromatin/history.tsv",
            proteins="results/chromatin/proteins.tsv",
            encoder="results/chromatin/encoder_all_proteins/model.safetensors",
            record="results/chromatin/record.json",
            figure=report("results/figures/chromatin_contrastive.png",
                          caption="../report/chromatin.rst",
                          category="15. Sequence and chromatin"),
            svg="results/figures/chromatin_contrastive.svg",
        params:
            device=DEVICE,
            out_dir=lambda w, output: Path(output.record).parent,
            peaks=lambda w, input: Path(input.peaks[0]).parent,
            aliases=lambda w, input: f"--aliases {input.aliases}" if input.aliases else "",
            encoder=lambda w, input: (f"--encoder-dir {Path(input.encoder).parent}"
                                      if input.encoder else ""),
            json=as_json({**CHROMATIN["params"], "seed": config["seed"],
                          "threads": config["threads"], "splits": config["splits"]}),
            code=CODE["chromatin-contrastive"],
        log:
            "results/logs/chromatin_contrastive.log",
        benchmark:
            "results/benchmarks/chromatin_contrastive.tsv"
        threads: config["threads"]
        resources:
            mem_mb=mem_request("chromatin_contrastive"),
            runtime=runtime_request("chromatin_contrastive"),
            gpu=GPU,
        conda:
            "../../envs/train.yaml"
        shell:
            "helixflow chromatin-contrastive --fasta {input.fasta} --peaks {params.peaks:q} "
            "{params.aliases} {params.encoder} --out-dir {params.out_dir} "
            "--figure {output.figure} --params {params.json:q} --device {params.device} "
            "2> {log}"
