# Annotation (GFF3 CDS) + genome → CNN + BiGRU gene finder vs Prodigal and a longest-ORF scan,
# genes called and scored on the test chromosomes. Optional: `gene_finding: null`.

if GENE_FINDING:

    rule gene_finding:
        input:
            fasta=f"{DATA}/genome.fa",
            fai=f"{DATA}/genome.fa.fai",
            annotation=f"resources/{GENE_FINDING['annotation']['path']}",
        output:
            metrics=report("results/genefind/metrics.tsv",
                           caption="../report/genefind_metrics.rst",
                           category="13. Gene finding"),
            periodicity="results/genefind/periodicity.tsv",
            history="results/genefind/history.tsv",
            thresholds="results/genefind/thresholds.tsv",
            calls="results/genefind/calls.gff3",
            weights="results/genefind/model.safetensors",
            record="results/genefind/record.json",
            figure=report("results/figures/gene_finding.png",
                          caption="../report/genefind.rst", category="13. Gene finding"),
            svg="results/figures/gene_finding.svg",
        params:
            device=DEVICE,
            out_dir=lambda w, output: Path(output.record).parent,
            json=as_json({**GENE_FINDING["params"], "seed": config["seed"],
                          "threads": config["threads"], "splits": config["splits"]}),
            code=CODE["gene-finding"],
        log:
            "results/logs/gene_finding.log",
        benchmark:
            "results/benchmarks/gene_finding.tsv"
        threads: config["threads"]
        resources:
            mem_mb=mem_request("gene_finding"),
            runtime=runtime_request("gene_finding"),
            gpu=GPU,
        conda:
            "../../envs/train.yaml"
        shell:
            "helixflow gene-finding --fasta {input.fasta} --annotation {input.annotation} "
            "--out-dir {params.out_dir} --figure {output.figure} --params {params.json:q} "
            "--device {params.device} 2> {log}"

    rule gene_finding_prokaryote:
        input:
            weights="results/genefind/model.safetensors",
            record="results/genefind/record.json",
        output:
            table=report("results/genefind/prokaryote.tsv",
                         caption="../report/genefind_prokaryote.rst",
                         category="13. Gene finding"),
            record="results/genefind/prokaryote.json",
        params:
            device=DEVICE,
            model_dir=lambda w, input: Path(input.weights).parent,
            json=as_json({**GENE_FINDING["params"], "seed": config["seed"],
                          "threads": config["threads"]}),
            code=CODE["gene-finding-prokaryote"],
        log:
            "results/logs/gene_finding_prokaryote.log",
        benchmark:
            "results/benchmarks/gene_finding_prokaryote.tsv"
        threads: config["threads"]
        resources:
            mem_mb=mem_request("gene_finding_prokaryote"),
            runtime=runtime_request("gene_finding_prokaryote"),
            gpu=GPU,
        conda:
            "../../envs/train.yaml"
        shell:
            "helixflow gene-finding-prokaryote --yeast-model {params.model_dir} "
            "--out {output.table} --params {params.json:q} --device {params.device} 2> {log}"
