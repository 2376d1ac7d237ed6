"""Simulated single-end ChIP-seq alignments with planted peaks, for testing peak calling.

Reads are taken from a real genome (pyfaidx), so a peak caller sees a normal BAM: each
read is the 5' end of a fragment on the fragment's strand, as sequencing produces it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyfaidx
import pysam

from .files import atomic_path


def simulate_chip_reads(fasta: str | Path, summits: Sequence[tuple[str, int]],
                        out_bam: str | Path, n_reads_per_peak: int, n_background: int,
                        fragment: int = 150, read_length: int = 50, seed: int = 0,
                        jitter_sd: float = 30.0,
                        bam_names: Mapping[str, str] | None = None) -> dict:
    """Write a coordinate-sorted, indexed BAM of simulated single-end reads.

    For each summit ``(chrom, pos)`` (0-based, genome names), ``n_reads_per_peak`` fragments
    of length ``fragment`` are centred at ``pos + N(0, jitter_sd)``, each on a random strand;
    ``n_background`` more fragments start uniformly over the genome (a control is
    ``summits=[]``). A read is the first ``read_length`` bases of its fragment on the
    fragment's strand (stored, as BAM does, as the forward-strand sequence with flag 16 on
    the minus strand). ``bam_names`` renames chromosomes in the BAM (e.g. ``{"chrI":
    "chr1"}``) to mimic alignments made against another naming. Writes ``out_bam`` and
    ``out_bam.bai`` atomically; returns ``{"reads": n, "peak_reads": n, "background": n}``.
    """
    if read_length > fragment:
        raise ValueError(f"read_length {read_length} is longer than the fragment {fragment}")
    rng = np.random.default_rng(seed)
    genome = pyfaidx.Fasta(str(fasta), as_raw=True, sequence_always_upper=True, rebuild=False)
    try:
        sizes = {name: len(record) for name, record in genome.items()}
        chroms = list(sizes)
        frags = _peak_fragments(summits, n_reads_per_peak, fragment, jitter_sd, sizes, rng)
        frags += _background_fragments(n_background, fragment, sizes, chroms, rng)
        reads = []
        for chrom, start, minus in frags:
            pos = start + fragment - read_length if minus else start
            reads.append((chroms.index(chrom), pos, minus,
                          genome[chrom][pos:pos + read_length]))
    finally:
        genome.close()
    reads.sort(key=lambda r: (r[0], r[1], r[2]))
    names = bam_names or {}
    header = {"HD": {"VN": "1.6", "SO": "coordinate"},
              "SQ": [{"SN": names.get(c, c), "LN": sizes[c]} for c in chroms],
              "PG": [{"ID": "helixflow.simulate_reads", "PN": "helixflow"}]}
    out_bam = Path(out_bam)
    with atomic_path(out_bam) as tmp:
        with pysam.AlignmentFile(str(tmp), "wb", header=header) as bam:
            quality = pysam.qualitystring_to_array("I" * read_length)
            for i, (tid, pos, minus, seq) in enumerate(reads):
                seg = pysam.AlignedSegment(bam.header)
                seg.query_name = f"sim{i:08d}"
                seg.reference_id, seg.reference_start = tid, pos
                seg.flag = 16 if minus else 0
                seg.mapping_quality = 60
                seg.cigarstring = f"{read_length}M"
                seg.query_sequence = seq
                seg.query_qualities = quality
                bam.write(seg)
        with atomic_path(f"{out_bam}.bai") as tmp_bai:
            pysam.index("-o", str(tmp_bai), str(tmp))
    n_peak = len(summits) * n_reads_per_peak
    return {"reads": len(reads), "peak_reads": n_peak, "background": len(reads) - n_peak}


def _peak_fragments(summits: Sequence[tuple[str, int]], n: int, fragment: int,
                    jitter_sd: float, sizes: Mapping[str, int],
                    rng: np.random.Generator) -> list[tuple[str, int, bool]]:
    frags = []
    for chrom, pos in summits:
        if chrom not in sizes:
            raise ValueError(f"summit chromosome {chrom!r} is not in the FASTA")
        centres = np.rint(pos + rng.normal(0.0, jitter_sd, n)).astype(int)
        starts = np.clip(centres - fragment // 2, 0, sizes[chrom] - fragment)
        minus = rng.random(n) < 0.5
        frags += [(chrom, int(s), bool(m)) for s, m in zip(starts, minus, strict=True)]
    return frags


def _background_fragments(n: int, fragment: int, sizes: Mapping[str, int], chroms: list[str],
                          rng: np.random.Generator) -> list[tuple[str, int, bool]]:
    usable = np.array([sizes[c] - fragment + 1 for c in chroms], dtype=float)
    which = rng.choice(len(chroms), size=n, p=usable / usable.sum())
    starts = (rng.random(n) * usable[which]).astype(int)
    minus = rng.random(n) < 0.5
    return [(chroms[w], int(s), bool(m)) for w, s, m in zip(which, starts, minus, strict=True)]
