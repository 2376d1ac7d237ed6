"""Peak calling from alignments: simulated ChIP reads on the real yeast genome, MACS3, checks."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyfaidx
import pysam
import pytest

from helixflow import peak_calling as pc
from helixflow.errors import InputError
from helixflow.genome import read_aliases, read_fai
from helixflow.intervals import read_peaks
from helixflow.simulate_reads import simulate_chip_reads

CHROMS = ("chrI", "chrII", "chrIII")   # 1.36 Mb of the real genome keeps MACS fast


def _have_macs3() -> bool:
    try:
        pc.macs3_executable()
    except InputError:
        return False
    return True


needs_macs3 = pytest.mark.skipif(not _have_macs3(),
                                 reason="macs3 is not installed (pip install macs3==3.0.4)")


@pytest.fixture(scope="module")
def yeast(data_mirror) -> Path:
    """The yeast part of the data mirror (a missing mirror fails the tests that need it)."""
    return data_mirror / "yeast"


@pytest.fixture(scope="module")
def genome(yeast, tmp_path_factory) -> Path:
    """chrI..chrIII of sacCer3, decompressed and faidx-indexed."""
    fasta = tmp_path_factory.mktemp("genome") / "yeast3.fa"
    keep = False
    with gzip.open(yeast / "sacCer3_R64.fa.gz", "rt") as src, open(fasta, "w") as dst:
        for line in src:
            if line.startswith(">"):
                keep = line[1:].split()[0] in CHROMS
            if keep:
                dst.write(line)
    pysam.faidx(str(fasta))
    return fasta


@pytest.fixture(scope="module")
def aliases(yeast) -> dict[str, str]:
    return read_aliases(yeast / "chrom_aliases.tsv")


@pytest.fixture(scope="module")
def truth(yeast, aliases) -> list[tuple[str, int]]:
    """40 Reb1 ChIP-exo summits on chrI..chrIII, at least 1 kb apart (mapped via aliases)."""
    bed = pd.read_csv(yeast / "chexmix_peaks" / "Reb1_CX.bed", sep="\t", header=None)
    bed[0] = bed[0].map(aliases)
    bed = bed[bed[0].isin(CHROMS)].sort_values([0, 1])
    picked: list[tuple[str, int]] = []
    for chrom, group in bed.groupby(0, sort=False):
        last = -10**9
        for pos in group[1]:
            if pos - last >= 1000 and pos >= 1000:
                picked.append((chrom, int(pos)))
                last = pos
    assert len(picked) >= 40
    return picked[:40]


@pytest.fixture(scope="module")
def bams(genome, truth, aliases, tmp_path_factory) -> tuple[Path, Path]:
    """ChIP (40 reads per summit + 20,000 background) and control (20,000 background).

    The BAMs name chromosomes chr1..chr3 (as the peaks files do), so calling must go
    through the aliases to give genome names.
    """
    out = tmp_path_factory.mktemp("bams")
    to_bam = {genome_name: bam_name for bam_name, genome_name in aliases.items()}
    simulate_chip_reads(genome, truth, out / "chip.bam", 40, 20_000, seed=1, bam_names=to_bam)
    simulate_chip_reads(genome, [], out / "control.bam", 0, 20_000, seed=2, bam_names=to_bam)
    return out / "chip.bam", out / "control.bam"


# ---------------------------------------------------------------- simulation

def test_simulated_reads_are_the_genome_at_fragment_ends(genome, truth, tmp_path):
    """Reads carry the genome's sequence; fragments centre on the summits with sd ~ 30 bp."""
    bam_path = tmp_path / "peaks_only.bam"
    simulate_chip_reads(genome, truth, bam_path, 200, 0, fragment=150, read_length=50, seed=7)
    fasta = pyfaidx.Fasta(str(genome), as_raw=True, sequence_always_upper=True)
    offsets, minus = [], []
    with pysam.AlignmentFile(str(bam_path)) as bam:
        assert bam.has_index()
        for read in bam:
            start, end = read.reference_start, read.reference_end
            assert read.query_sequence == fasta[read.reference_name][start:end]
            centre = end - 75 if read.is_reverse else start + 75
            nearest = min((abs(centre - p), centre - p) for c, p in truth
                          if c == read.reference_name)
            offsets.append(nearest[1])
            minus.append(read.is_reverse)
    assert len(offsets) == 200 * len(truth)
    assert abs(np.mean(offsets)) < 3 and 27 < np.std(offsets) < 33
    assert 0.45 < np.mean(minus) < 0.55


def test_control_is_uniform_background(genome, tmp_path):
    simulate_chip_reads(genome, [], tmp_path / "c.bam", 0, 3000, seed=3)
    sizes = read_fai(f"{genome}.fai")
    with pysam.AlignmentFile(str(tmp_path / "c.bam")) as bam:
        counts = {s.contig: s.mapped for s in bam.get_index_statistics()}
    expected = {c: 3000 * n / sum(sizes.values()) for c, n in sizes.items()}
    assert sum(counts.values()) == 3000
    for chrom in sizes:   # within 5 sd of the binomial expectation
        assert abs(counts[chrom] - expected[chrom]) < 5 * np.sqrt(expected[chrom])


# ---------------------------------------------------------------- scoring

def test_summit_recall_and_unmatched_by_hand():
    called = pd.DataFrame({"chrom": ["a", "a", "b"], "start": [100, 1000, 0],
                           "summit_offset": [50, 0, 500]})   # summits a:150, a:1000, b:500
    truth = [("a", 120), ("a", 1051), ("b", 700), ("c", 5)]
    # distances: 30 (hit), 51 (miss at 50, hit at 51), 200 (miss), no chromosome (miss)
    assert pc.summit_recall(called, truth, 50) == 0.25
    assert pc.summit_recall(called, truth, 51) == 0.5
    assert pc.unmatched_calls(called, truth, 50) == 2   # a:1000 and b:500
    assert pc.unmatched_calls(called, truth, 200) == 0


# ---------------------------------------------------------------- MACS3 end to end

@needs_macs3
def test_macs3_recovers_planted_summits(yeast, genome, truth, bams, tmp_path, capsys):
    chip, control = bams
    out = tmp_path / "calls" / "chip.narrowPeak"
    summary = pc.run_call_peaks([chip], [control], f"{genome}.fai", yeast / "chrom_aliases.tsv",
                                out, tmp_path / "calls" / "record.json")
    recall = pc.summit_recall(out, truth, tolerance=50)
    false_peaks = pc.unmatched_calls(out, truth, tolerance=50)
    called = pc.read_narrowpeak(out)
    errors = [min(abs(s - p) for c, p in truth if c == chrom)
              for chrom, s in zip(called["chrom"], called["start"] + called["summit_offset"],
                                  strict=True)]
    with capsys.disabled():
        print(f"\nMACS3 {summary['macs_version']}: {summary['peaks']} peaks for {len(truth)} "
              f"planted, recall@50bp={recall:.3f}, unmatched calls={false_peaks}, median "
              f"|summit error|={np.median(errors):.0f} bp, macs3 took "
              f"{summary['macs_seconds']} s", file=sys.stderr)
    assert recall >= 0.9
    assert false_peaks <= 2
    # a control the metric must fail: the same number of random positions
    rng = np.random.default_rng(0)
    sizes = read_fai(f"{genome}.fai")
    decoys = [(c, int(rng.integers(0, sizes[c]))) for c, _ in truth]
    assert pc.summit_recall(out, decoys, tolerance=50) < 0.2
    # genome names (via aliases), sorted, and readable by the windows step as they are
    assert set(called["chrom"]) <= set(CHROMS)
    order = called[["chrom", "start"]].apply(tuple, axis=1).tolist()
    assert order == sorted(order)
    peaks = read_peaks(out, sizes, {})
    assert len(peaks) == summary["peaks"] == len(called)
    assert summary["treatment_tags"] == 20_000 + 40 * len(truth)
    assert summary["control_tags"] == 20_000
    assert summary["fragment_size_from"] == "extsize (the model could not be built)"
    record = json.loads((tmp_path / "calls" / "record.json").read_text())
    assert record["results"]["peaks"] == summary["peaks"]
    assert record["inputs"]["treatment0"]["sha256"]
    assert not list(out.parent.glob(".macs3.*")), "MACS's work directory was left behind"


@needs_macs3
def test_no_enrichment_gives_an_empty_narrowpeak(genome, tmp_path):
    chip, control = tmp_path / "flat.bam", tmp_path / "control.bam"
    simulate_chip_reads(genome, [], chip, 0, 5000, seed=11)
    simulate_chip_reads(genome, [], control, 0, 5000, seed=12)
    out = tmp_path / "flat.narrowPeak"
    summary = pc.run_call_peaks([chip], [control], f"{genome}.fai", None, out,
                                params={"nomodel": True, "extsize": 150})
    assert summary["peaks"] == 0 and out.read_text() == ""
    assert summary["fragment_d"] == 150 and summary["fragment_size_from"] == "extsize (nomodel)"


# ---------------------------------------------------------------- bad input, caught first

@pytest.fixture(scope="module")
def small_bam(genome, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("small") / "small.bam"
    simulate_chip_reads(genome, [], path, 0, 300, seed=5)
    return path


def test_missing_bam_is_named(genome, tmp_path):
    sizes = read_fai(f"{genome}.fai")
    missing = tmp_path / "nowhere.bam"
    with pytest.raises(InputError, match="nowhere.bam.*not found"):
        pc.check_alignments([missing], sizes, {})


def test_not_a_bam_is_named(genome, tmp_path):
    text = tmp_path / "reads.bam"
    text.write_text("this is not an alignment file\n")
    with pytest.raises(InputError, match="reads.bam.*not a BAM"):
        pc.check_alignments([text], read_fai(f"{genome}.fai"), {})


def test_bam_without_index_is_named_with_the_fix(genome, small_bam, tmp_path):
    bare = tmp_path / "bare.bam"
    bare.write_bytes(small_bam.read_bytes())
    with pytest.raises(InputError, match=r"bare\.bam.*no index.*samtools index"):
        pc.check_alignments([bare], read_fai(f"{genome}.fai"), {})


def test_chromosome_missing_from_genome_is_named(genome, tmp_path):
    odd = tmp_path / "odd.bam"
    simulate_chip_reads(genome, [], odd, 0, 300, seed=6, bam_names={"chrII": "chrZ"})
    sizes = read_fai(f"{genome}.fai")
    with pytest.raises(InputError, match=r"odd\.bam.*'chrZ'.*chrom_aliases"):
        pc.check_alignments([odd], sizes, {})
    pc.check_alignments([odd], sizes, {"chrZ": "chrII"})     # an alias fixes it
    pc.check_alignments([odd], sizes, {}, ignore=["chrZ"])   # and so does ignoring it


def test_other_assembly_length_is_an_error(genome, small_bam):
    sizes = read_fai(f"{genome}.fai")
    sizes["chrI"] += 1
    with pytest.raises(InputError, match=r"small\.bam.*'chrI' is \d+ bp.*another assembly"):
        pc.check_alignments([small_bam], sizes, {})


def test_treatment_and_control_must_name_chromosomes_alike(genome, small_bam, aliases,
                                                           tmp_path):
    renamed = tmp_path / "renamed.bam"
    to_bam = {g: b for b, g in aliases.items()}
    simulate_chip_reads(genome, [], renamed, 0, 300, seed=8, bam_names=to_bam)
    with pytest.raises(InputError, match=r"renamed\.bam.*'chrI' is called 'chr1' here"):
        pc.check_alignments([small_bam, renamed], read_fai(f"{genome}.fai"), aliases)


def test_unknown_param_and_missing_macs3_are_clear(genome, small_bam, tmp_path, monkeypatch):
    with pytest.raises(InputError, match="unknown peak-calling parameter"):
        pc.run_call_peaks([small_bam], [], f"{genome}.fai", None, tmp_path / "x.narrowPeak",
                          params={"qvalue": 0.05})
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(InputError, match="macs3 program was not found.*pip install macs3"):
        pc.run_call_peaks([small_bam], [], f"{genome}.fai", None, tmp_path / "x.narrowPeak")
    assert not (tmp_path / "x.narrowPeak").exists()
