# Inputs → staged files → indexed genome → checked peaks → labelled windows → leak check
# → one-hot shards; a target given as a table of labelled sequences → its shards directly.


rule stage_input:
    input:
        mirror_copy,
    output:
        "resources/{relpath}",
    params:
        mirror=lambda w: mirror_of(w.relpath),
        url=lambda w: INPUTS[w.relpath][0],
        sha256=lambda w: INPUTS[w.relpath][1],
        code=CODE["stage"],
    wildcard_constraints:
        relpath="|".join(map(lambda p: p.replace(".", r"\."), INPUTS)),
    log:
        "results/logs/stage/{relpath}.log",
    benchmark:
        "results/benchmarks/stage/{relpath}.tsv"
    threads: 1
    resources:
        mem_mb=mem_request("stage_input"),
        runtime=runtime_request("stage_input"),
    conda:
        "../../envs/data.yaml"
    shell:
        "helixflow stage --relpath {wildcards.relpath:q} --out {output:q} "
        "--mirror={params.mirror:q} --url={params.url:q} --sha256={params.sha256:q} 2> {log}"


rule index_genome:
    input:
        fasta=resource("fasta"),
    output:
        fasta=f"{DATA}/genome.fa",
        fai=f"{DATA}/genome.fa.fai",
        sizes=f"{DATA}/chrom.sizes",
        record=f"{DATA}/genome.record.json",
    params:
        code=CODE["index-genome"],
    log:
        f"results/logs/index_genome/{GENOME}.log",
    benchmark:
        f"results/benchmarks/index_genome/{GENOME}.tsv"
    threads: 1
    resources:
        mem_mb=mem_request("index_genome"),
        runtime=runtime_request("index_genome"),
    conda:
        "../../envs/data.yaml"
    shell:
        "helixflow index-genome --fasta {input.fasta} --out {output.fasta} --sizes {output.sizes} "
        "--record {output.record} 2> {log}"


# A target given as ChIP alignments: MACS3 callpeak (control optional) → narrowPeak with
# summits, read by the windows rule like any peaks file.
rule call_peaks:
    input:
        treatment=lambda w: bams_of(w.target, "treatment_bam"),
        control=lambda w: bams_of(w.target, "control_bam"),
        indexes=lambda w: [f"{b}.bai" for b in bams_of(w.target, "treatment_bam")
                           + bams_of(w.target, "control_bam")],
        sizes=f"{DATA}/chrom.sizes",
        aliases=resource("chrom_aliases"),
    output:
        peaks=f"{DATA}/peaks/{{target}}.narrowPeak",
        record=f"{DATA}/peaks/{{target}}.record.json",
    params:
        control=lambda w, input: f"--control {' '.join(input.control)}" if input.control else "",
        aliases=lambda w, input: f"--aliases {input.aliases}" if input.aliases else "",
        json=as_json(config["peak_calling"]),
        code=CODE["call-peaks"],
    priority: 100
    log:
        "results/logs/call_peaks/{target}.log",
    benchmark:
        "results/benchmarks/call_peaks/{target}.tsv"
    threads: 1
    resources:
        mem_mb=mem_request("call_peaks"),
        runtime=runtime_request("call_peaks"),
    conda:
        "../../envs/data.yaml"
    shell:
        "helixflow call-peaks --treatment {input.treatment} {params.control} "
        "--sizes {input.sizes} {params.aliases} --out {output.peaks} --record {output.record} "
        "--params {params.json:q} 2> {log}"


# Every peaks file is checked against the genome first (highest priority: all checks run
# before any window is made, and the first failure stops the run before any training).
rule check_peaks:
    input:
        sizes=f"{DATA}/chrom.sizes",
        aliases=resource("chrom_aliases"),
        blacklist=resource("blacklist"),
        peaks=peaks_of,
    output:
        f"{DATA}/checked/{{target}}.json",
    wildcard_constraints:
        target=one_of(PEAK_TARGETS),
    params:
        aliases=lambda w, input: f"--aliases {input.aliases}" if input.aliases else "",
        blacklist=lambda w, input: f"--blacklist {input.blacklist}" if input.blacklist else "",
        fmt=peak_format_of,
        splits=as_json(config["splits"]),
        code=CODE["check-inputs"],
    priority: 100
    log:
        "results/logs/check_peaks/{target}.log",
    benchmark:
        "results/benchmarks/check_peaks/{target}.tsv"
    threads: 1
    resources:
        mem_mb=mem_request("check_peaks"),
        runtime=runtime_request("check_peaks"),
    conda:
        "../../envs/data.yaml"
    shell:
        "helixflow check-inputs --sizes {input.sizes} {params.aliases} {params.blacklist} "
        "--peaks {wildcards.target}:{params.fmt}:{input.peaks} --splits {params.splits:q} "
        "--out {output} 2> {log}"


# Every tile of the genome with its GC and N fraction, once per genome and width: the pool
# that every stage draws GC-matched background windows from.
rule genome_tiles:
    input:
        fasta=f"{DATA}/genome.fa",
        fai=f"{DATA}/genome.fa.fai",
    output:
        f"{DATA}/tiles/{{width}}.tsv.gz",
    wildcard_constraints:
        width=r"\d+",
    params:
        code=CODE["genome-tiles"],
    log:
        f"results/logs/genome_tiles/{GENOME}_{{width}}.log",
    benchmark:
        f"results/benchmarks/genome_tiles/{GENOME}_{{width}}.tsv"
    threads: 1
    resources:
        mem_mb=mem_request("genome_tiles"),
        runtime=runtime_request("genome_tiles"),
    conda:
        "../../envs/data.yaml"
    shell:
        "helixflow genome-tiles --fasta {input.fasta} --width {wildcards.width} "
        "--out {output} 2> {log}"


rule windows:
    input:
        checked=f"{DATA}/checked/{{target}}.json",
        peaks=peaks_of,
        fasta=f"{DATA}/genome.fa",
        tiles=tiles_file(config["windows"]["width"]),
        sizes=f"{DATA}/chrom.sizes",
        aliases=resource("chrom_aliases"),
        blacklist=resource("blacklist"),
    output:
        bed=f"{DATA}/windows/{{target}}.bed",
        record=f"{DATA}/windows/{{target}}.record.json",
    wildcard_constraints:
        target=one_of(PEAK_TARGETS),
    params:
        fmt=peak_format_of,
        aliases=lambda w, input: f"--aliases {input.aliases}" if input.aliases else "",
        blacklist=lambda w, input: f"--blacklist {input.blacklist}" if input.blacklist else "",
        json=as_json({"seed": config["seed"], "splits": config["splits"],
                      "windows": config["windows"]}),
        code=CODE["windows"],
    log:
        "results/logs/windows/{target}.log",
    benchmark:
        "results/benchmarks/windows/{target}.tsv"
    threads: 1
    resources:
        mem_mb=mem_request("windows"),
        runtime=runtime_request("windows"),
    conda:
        "../../envs/data.yaml"
    shell:
        "helixflow windows --peaks {input.peaks} --format {params.fmt} --sizes {input.sizes} "
        "--fasta {input.fasta} --tiles {input.tiles} {params.aliases} {params.blacklist} "
        "--params {params.json:q} "
        "--out {output.bed} --record {output.record} 2> {log}"


rule check_splits:
    input:
        windows=f"{DATA}/windows/{{target}}.bed",
        sizes=f"{DATA}/chrom.sizes",
    output:
        f"{DATA}/windows/{{target}}.splits_ok.json",
    wildcard_constraints:
        target=one_of(PEAK_TARGETS),
    params:
        json=as_json(config["splits"]),
        code=CODE["check-splits"],
    log:
        "results/logs/check_splits/{target}.log",
    benchmark:
        "results/benchmarks/check_splits/{target}.tsv"
    threads: 1
    resources:
        mem_mb=mem_request("check_splits"),
        runtime=runtime_request("check_splits"),
    conda:
        "../../envs/data.yaml"
    shell:
        "helixflow check-splits --windows {input.windows} --sizes {input.sizes} "
        "--params {params.json:q} --out {output} 2> {log}"


rule shards:
    input:
        windows=f"{DATA}/windows/{{target}}.bed",
        splits_ok=f"{DATA}/windows/{{target}}.splits_ok.json",
        fasta=f"{DATA}/genome.fa",
    output:
        f"{DATA}/shards/{{target}}/manifest.json",
    wildcard_constraints:
        target=one_of(PEAK_TARGETS),
    params:
        out_dir=lambda w: f"{DATA}/shards/{w.target}",
        seed=config["seed"],
        code=CODE["shards"],
    log:
        "results/logs/shards/{target}.log",
    benchmark:
        "results/benchmarks/shards/{target}.tsv"
    threads: 1
    resources:
        mem_mb=mem_request("shards"),
        runtime=runtime_request("shards"),
    conda:
        "../../envs/data.yaml"
    shell:
        "helixflow shards --windows {input.windows} --fasta {input.fasta} "
        "--out-dir {params.out_dir} --seed {params.seed} 2> {log}"


# A target given as labelled sequences (sample sheet 'sequences': a table, or a FASTA of
# positives with shuffled negatives): checked and written as shards in one step; splits
# from its 'split' column or the fold rule (helixflow.sequence_table).
rule sequence_shards:
    input:
        sequences=lambda w: f"resources/{SAMPLES.loc[w.target, 'sequences']}",
    output:
        manifest=f"{DATA}/shards/{{target}}/manifest.json",
        checked=f"{DATA}/checked/{{target}}.json",
    wildcard_constraints:
        target=one_of(SEQUENCE_TARGETS),
    params:
        out_dir=lambda w: f"{DATA}/shards/{w.target}",
        seed=config["seed"],
        code=CODE["sequence-shards"],
    priority: 100
    log:
        "results/logs/sequence_shards/{target}.log",
    benchmark:
        "results/benchmarks/sequence_shards/{target}.tsv"
    threads: 1
    resources:
        mem_mb=mem_request("sequence_shards"),
        runtime=runtime_request("sequence_shards"),
    conda:
        "../../envs/data.yaml"
    shell:
        "helixflow sequence-shards --target {wildcards.target} --sequences {input.sequences} "
        "--out-dir {params.out_dir} --checked {output.checked} --seed {params.seed} 2> {log}"
