"""The gene-finding stage end to end on a planted genome (FASTA + GFF3), and the prokaryotic
check's reading of the contig and Prodigal calls that ship with pyrodigal."""

from __future__ import annotations

import pandas as pd
import pyfaidx
import pytest
from test_genefind import planted_genome

from helixflow.errors import InputError
from helixflow.files import read_json
from helixflow.genefind import STOPS, reverse_complement
from helixflow.genefind_prokaryote import (
    PARTS,
    bundled_contig,
    run_prokaryote_check,
    split_contig,
)
from helixflow.genefind_run import DEFAULTS, run_gene_finding
from helixflow.report import gene_finding_section

SPLITS = {"train": [], "valid": ["chr5"], "test": ["chr6"]}
SMALL = {"training": {"tile": 600, "batch_size": 4, "epochs": 6, "tiles_per_epoch": 120,
                      "patience": 0, "valid_tiles": 40},
         "architecture": {"channels": 32, "hidden": 32}, "periodicity_genes": 10}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A 6-chromosome genome with planted genes, its GFF3 (CDS lines with Name) and .fai."""
    root = tmp_path_factory.mktemp("genes")
    seqs, genes = planted_genome(n_chroms=6, length=30_000, seed=5)
    fasta = root / "genome.fa"
    fasta.write_text("".join(f">{c}\n{s}\n" for c, s in seqs.items()))
    pyfaidx.Faidx(str(fasta)).close()
    gff = root / "genes.gff3"
    gff.write_text("##gff-version 3\n" + "".join(
        f"{g.chrom}\tplanted\tCDS\t{g.start + 1}\t{g.end}\t.\t{g.strand}\t0\t"
        f"ID=cds{i};Name=G{i}\n" for i, g in enumerate(genes)))
    return root, fasta, gff, genes


@pytest.fixture(scope="module")
def stage(planted):
    root, fasta, gff, _ = planted
    metrics = run_gene_finding(str(fasta), str(gff), SPLITS, root / "out",
                               root / "gene_finding.png", SMALL, seed=0,
                               log=open("/dev/null", "w"))  # noqa: SIM115
    return root, metrics


def test_the_network_and_the_baselines_find_the_planted_genes_on_the_test_chromosome(stage,
                                                                                      planted):
    root, metrics = stage
    genes = planted[3]
    by_method = metrics.set_index("method")
    assert list(by_method.index) == ["cnn_bigru", "prodigal", "longest_orf"]
    assert (by_method["n_true"] == sum(g.chrom == "chr6" for g in genes)).all()
    assert by_method.loc["cnn_bigru", "sensitivity_stop"] > 0.7
    assert by_method.loc["cnn_bigru", "base_f1"] > 0.8
    assert by_method.loc["longest_orf", "sensitivity_stop"] > 0.8
    assert by_method.loc["prodigal", "n_called"] > 0
    for m in by_method.index:         # the intervals hold the rate
        row = by_method.loc[m]
        assert row["sensitivity_stop_lo"] <= row["sensitivity_stop"] <= row["sensitivity_stop_hi"]


def test_the_stage_writes_its_layout_and_the_learned_features_are_codon_periodic(stage):
    root, _ = stage
    out = root / "out"
    for name in ("metrics.tsv", "periodicity.tsv", "history.tsv", "calls.gff3", "record.json",
                 "model.safetensors", "config.json"):
        assert (out / name).is_file(), name
    assert (root / "gene_finding.png").is_file() and (root / "gene_finding.svg").is_file()
    record = read_json(out / "record.json")["results"]
    assert record["train_chromosomes"] == ["chr1", "chr2", "chr3", "chr4"]
    peak = record["periodicity_best_channel"]
    assert peak["coding"] > 3 * peak["noncoding"]
    calls = pd.read_csv(out / "calls.gff3", sep="\t", comment="#", header=None)
    assert set(calls[1]) == {"cnn_bigru", "prodigal", "longest_orf"}
    assert set(calls[0]) == {"chr6"}                 # calls on the test chromosome only
    page = gene_finding_section(out / "metrics.tsv")
    assert "CNN + BiGRU" in page and "Prodigal" in page


def test_an_annotation_of_another_genome_is_refused_before_training(planted, tmp_path):
    _, fasta, _, _ = planted
    gff = tmp_path / "other.gff3"
    gff.write_text("chrI\tx\tCDS\t1\t300\t.\t+\t0\tName=A\n")
    with pytest.raises(InputError, match="no CDS lines on the train"):
        run_gene_finding(str(fasta), str(gff), SPLITS, tmp_path / "out", tmp_path / "f.png",
                         SMALL)
    assert not (tmp_path / "out" / "metrics.tsv").exists()


def test_prodigal_calls_shipped_with_pyrodigal_read_as_complete_orfs():
    seq, genes = bundled_contig()
    assert len(seq) == 383_781 and "N" not in seq and len(genes) > 300
    complete = 0
    for g in genes:
        cds = seq[g.start:g.end] if g.strand == "+" else reverse_complement(seq[g.start:g.end])
        if g.start > 0 and g.end < len(seq):      # partial genes run off the contig's ends
            assert len(cds) % 3 == 0 and cds[-3:] in STOPS, g
            complete += 1
    assert complete > 0.95 * len(genes)


def test_the_contig_is_cut_between_genes_into_its_parts():
    seq, genes = bundled_contig()
    seqs, parts = split_contig(seq, genes)
    assert "".join(seqs[p] for p in PARTS) == seq
    assert sum(len(v) for v in parts.values()) == len(genes)      # no gene cut
    for name, fraction in PARTS.items():
        assert abs(len(seqs[name]) / len(seq) - fraction) < 0.01


def test_prokaryote_check_scores_every_method_against_prodigal(stage, tmp_path):
    root, _ = stage
    params = {**DEFAULTS, **SMALL, "training": {**SMALL["training"], "epochs": 2}}
    table = run_prokaryote_check(root / "out", tmp_path / "prokaryote.tsv", params,
                                 log=open("/dev/null", "w"))  # noqa: SIM115
    by_method = table.set_index("method")
    assert list(by_method.index) == ["cnn_bigru_contig", "cnn_bigru_yeast", "longest_orf",
                                     "pyrodigal"]
    # our run of the same program reproduces nearly all of the shipped calls: the contig,
    # its cut and the coordinates are read right
    assert by_method.loc["pyrodigal", "sensitivity_stop"] > 0.95
    assert by_method.loc["longest_orf", "sensitivity_stop"] > 0.5
    record = read_json(tmp_path / "prokaryote.json")["results"]
    assert record["contig"] == "MIIJ01000039" and record["length"] == 383_781
