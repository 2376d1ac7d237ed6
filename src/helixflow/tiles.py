"""Per-genome background tiles: every ``width`` tile of the genome with its GC and N fraction.

Computed once per genome and window width (rule ``genome_tiles``) by streaming the indexed
FASTA ``chunk_tiles`` tiles at a time — never a whole chromosome — and read by every stage
that draws GC-matched background windows (the spine's windows, multi-task, imbalance, MIL),
instead of each re-tiling and re-scanning its split per target.

Tiles start at 0 and step by ``width``; a chromosome's last partial tile is left out (as
``bedtools makewindows`` followed by a full-width filter). GC is over called bases
(A, C, G, T in either case), as ``bedtools nuc`` counts it; ``n_frac`` is everything else.
"""

from __future__ import annotations

import gzip
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pysam

from .files import atomic_path

TILE_COLUMNS = ["chrom", "start", "end", "gc", "n_frac"]

_IS_GC = np.zeros(256, dtype=np.uint8)
_IS_CALLED = np.zeros(256, dtype=np.uint8)
for _base in b"ACGTacgt":
    _IS_CALLED[_base] = 1
for _base in b"CGcg":
    _IS_GC[_base] = 1


def window_content(fasta: str | Path, windows: pd.DataFrame) -> pd.DataFrame:
    """GC over called bases and N fraction of each window (chrom, start, end; any widths), in
    row order. Reads only the windows' bases (faidx seeks), so memory follows one window:
    ``bedtools nuc`` maps the whole FASTA, and its touched pages count as the job's resident
    memory (2.1 GB for 60,000 windows of a 3.1-Gb genome, over the request)."""
    n = len(windows)
    gc, n_frac = np.zeros(n), np.zeros(n)
    with pysam.FastaFile(str(fasta)) as genome:
        rows = zip(windows["chrom"], windows["start"], windows["end"], strict=True)
        for i, (chrom, start, end) in enumerate(rows):
            codes = np.frombuffer(genome.fetch(chrom, int(start), int(end)).encode("ascii"),
                                  dtype=np.uint8)
            called = int(_IS_CALLED[codes].sum())
            gc[i] = int(_IS_GC[codes].sum()) / called if called else 0.0
            n_frac[i] = 1 - called / (int(end) - int(start))   # past the end counts as N
    return pd.DataFrame({"gc": gc, "n_frac": n_frac})


def chromosome_tiles(fasta: pysam.FastaFile, chrom: str, width: int,
                     chunk_tiles: int = 4096) -> Iterator[pd.DataFrame]:
    """Tiles of one chromosome, ``chunk_tiles`` at a time, columns ``TILE_COLUMNS``."""
    n_tiles = fasta.get_reference_length(chrom) // width
    for first in range(0, n_tiles, chunk_tiles):
        count = min(chunk_tiles, n_tiles - first)
        start = first * width
        seq = fasta.fetch(chrom, start, start + count * width).encode("ascii")
        codes = np.frombuffer(seq, dtype=np.uint8).reshape(count, width)
        called = _IS_CALLED[codes].sum(axis=1, dtype=np.int64)
        gc = _IS_GC[codes].sum(axis=1, dtype=np.int64)
        starts = start + width * np.arange(count, dtype=np.int64)
        yield pd.DataFrame({
            "chrom": chrom, "start": starts, "end": starts + width,
            "gc": np.round(np.divide(gc, called, out=np.zeros(count), where=called > 0), 4),
            "n_frac": np.round(1 - called / width, 4)})


def genome_tiles(fasta: str | Path, width: int, chroms: list[str] | None = None) -> pd.DataFrame:
    """The tile table of ``chroms`` (default all) in memory, for small genomes and tests."""
    with pysam.FastaFile(str(fasta)) as genome:
        parts = [part for chrom in (chroms or genome.references)
                 for part in chromosome_tiles(genome, chrom, width)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=TILE_COLUMNS)


def tiles_for(path: str | Path | None, fasta: str | Path, width: int) -> pd.DataFrame:
    """The precomputed tile table at ``path``, or (no path) the tiles computed from ``fasta``."""
    return read_genome_tiles(path) if path else genome_tiles(fasta, width)


def write_genome_tiles(fasta: str | Path, width: int, out: str | Path,
                       log=sys.stderr) -> dict:
    """Write the tile table of ``fasta`` (indexed) as a gzipped TSV; returns counts."""
    n_tiles = 0
    with pysam.FastaFile(str(fasta)) as genome, atomic_path(out) as tmp, \
            gzip.open(tmp, "wt", compresslevel=3) as handle:
        handle.write("\t".join(TILE_COLUMNS) + "\n")
        for chrom in genome.references:
            for part in chromosome_tiles(genome, chrom, width):
                part.to_csv(handle, sep="\t", header=False, index=False)
                n_tiles += len(part)
            print(f"tiles: {chrom} done ({n_tiles:,} tiles so far)", file=log, flush=True)
    return {"width": width, "tiles": n_tiles}


def read_genome_tiles(path: str | Path, chroms: list[str] | None = None) -> pd.DataFrame:
    """The tile table, optionally only the tiles on ``chroms``."""
    tiles = pd.read_csv(path, sep="\t", dtype={"chrom": str, "start": np.int64,
                                                 "end": np.int64, "gc": np.float64,
                                                 "n_frac": np.float64})
    if chroms is not None:
        tiles = tiles[tiles["chrom"].isin(chroms)].reset_index(drop=True)
    return tiles
