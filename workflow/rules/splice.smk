# Annotation (GFF3 exons) + genome + the pretrained encoder → splice-site masked pretext
# (predicted PWMs vs the annotated sites and the yeast consensus) and donor/acceptor
# classifiers vs a PWM, on the test chromosomes. Optional: `splice: null`.

if SPLICE:

    rule splice:
        input:
            fasta=f"{DATA}/genome.fa",
            fai=f"{DATA}/genome.fa.fai",
            annotation=f"resources/{SPLICE['annotation']['path']}",
            pretrained=SPLICE_ENCODER,
        output:
            classifiers=report("results/splice/classifier_metrics.tsv",
                               caption="../report/splice_classifiers.rst",
                               category="14. Splice sites"),
            pretext="results/splice/pretext_metrics.tsv",
            pwm="results/splice/pwm.tsv",
            sites="results/splice/sites.tsv",
            history="results/splice/history.tsv",
            predictions="results/splice/test_predictions.tsv",
            record="results/splice/record.json",
            figure=report("results/figures/splice_sites.png",
                          caption="../report/splice.rst", category="14. Splice sites"),
            svg="results/figures/splice_sites.svg",
        params:
            device=DEVICE,
            out_dir=lambda w, output: Path(output.record).parent,
            pretrained=lambda w, input: (f"--pretrained {Path(input.pretrained[0]).parent}"
                                         if input.pretrained else ""),
            json=as_json({**SPLICE["params"], "seed": config["seed"],
                          "threads": config["threads"], "splits": config["splits"]}),
            code=CODE["splice"],
        log:
            "results/logs/splice.log",
        benchmark:
            "results/benchmarks/splice.tsv"
        threads: config["threads"]
        resources:
            mem_mb=mem_request("splice"),
            runtime=runtime_request("splice"),
            gpu=GPU,
        conda:
            "../../envs/train.yaml"
        shell:
            "helixflow splice --fasta {input.fasta} --annotation {input.annotation} "
            "{params.pretrained} --out-dir {params.out_dir} --figure {output.figure} "
            "--params {params.json:q} --device {params.device} 2> {log}"
