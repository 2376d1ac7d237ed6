"""Paired data for sequence ↔ chromatin contrastive learning (issue 14, seed 000).

The genome is tiled into bins (``bin_bp``, stride = bin, the last partial bin of a chromosome
dropped); each bin pairs its DNA (token ids) with its *chromatin view*: the ChIP-exo occupancy
of the bin across every protein of a folder of peak files (Rossi et al. 2021: one BED6 file of
1-bp ChExMix summits per protein). A peak belongs to the bin holding its summit (the interval's
midpoint; a 1-bp peak's own base).

The view is ``log1p(count)`` of summits per protein and bin (``value="log1p"``), not presence:
17% of the (bin, protein) pairs that hold a summit hold several (general factors at divergent
promoters, nucleosome-bound factors), and that multiplicity is information a presence bit drops,
while log1p keeps a bin with 14 summits of one protein from dominating the MLP's input. Counts are
kept exactly (sparse); ``value="presence"`` gives 0/1 instead.

Kept bins: at least ``min_peaks`` summits over the selection proteins (every protein but those
named in ``ignore_for_selection``: the TFs a linear probe will score, so that the set of bins
does not depend on the probed TF's own peaks), at most ``max_n_fraction`` N, on a chromosome of
some split, plus a seeded random ``empty_fraction`` of the other (empty) bins. Empty bins all
share one view, the zero vector, so in a contrastive batch they are each other's false
negatives and no retrieval can tell them apart; the default keeps none (on sacCer3 48% of
500-bp bins hold a summit: 11,627 bins, 7,948 distinct sets of proteins).

Streaming: peak files are read line by line into per-file bin indices (memory follows the peaks,
not the genome); the genome is read one chromosome at a time. Splits are whole chromosomes
(:func:`helixflow.intervals.resolve_splits`), so no bin of a test chromosome reaches training.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd
from scipy import sparse

from .encode import base_indices
from .errors import InputError
from .files import bed_coordinates, open_text, sha256sum
from .genome import Genome, read_aliases
from .intervals import resolve_splits
from .tokenize import Tokenizer

VIEW_DEFAULTS = {"bin_bp": 500, "value": "log1p", "min_peaks": 1, "max_n_fraction": 0.1,
                 "empty_fraction": 0.0}
PEAK_SUFFIXES = (".bed", ".bed.gz", ".narrowpeak", ".narrowpeak.gz")
VALUES = ("log1p", "presence")
_NAME_PATTERNS = (re.compile(r"^\d+_(?P<p>.+?)_chexmix.*$", re.IGNORECASE),  # 11760_EAF3_chexmix..
                  re.compile(r"^(?P<p>.+?)_CX$", re.IGNORECASE))              # Reb1_CX


def protein_name(path: str | Path) -> str:
    """The protein a peak file is of, upper-case: ``Reb1_CX.bed`` → REB1,
    ``11760_EAF3_chexmix_filtered_new.bed`` → EAF3, any other ``NAME.bed`` → NAME."""
    stem = Path(path).name
    for suffix in sorted(PEAK_SUFFIXES, key=len, reverse=True):
        if stem.lower().endswith(suffix):
            stem = stem[:-len(suffix)]
            break
    for pattern in _NAME_PATTERNS:
        match = pattern.match(stem)
        if match:
            return match["p"].upper()
    return stem.upper()


@dataclass
class PeakFile:
    """One protein's peak file: its column name in the view, path and sha256."""

    protein: str
    path: Path
    sha256: str


def peak_files(source: str | Path | Sequence[str | Path], log: TextIO = sys.stderr
               ) -> tuple[list[PeakFile], list[dict]]:
    """The peak files of a folder (``*.bed``, ``*.narrowPeak``, optionally gzipped) or a list,
    one per protein, sorted by protein. A file with the same bytes as an earlier one of the same
    protein is dropped (the Rossi folder holds 14 such copies); a different file of the same
    protein becomes its own column, ``NAME_2``. Returns (files, the dropped duplicates)."""
    if isinstance(source, str | Path):
        folder = Path(source)
        if not folder.is_dir():
            raise InputError("not a folder of peak files", path=folder,
                             fix="give the folder holding one BED file per protein")
        paths = sorted(p for p in folder.iterdir() if p.name.lower().endswith(PEAK_SUFFIXES))
        where: str | Path = folder
    else:
        paths, where = sorted(Path(p) for p in source), "the peak-file list"
    if not paths:
        raise InputError(f"no peak files ({', '.join(PEAK_SUFFIXES)})", path=where,
                         fix="give the folder of per-protein BED files (e.g. "
                         "yeast/chexmix_peaks)")
    files: list[PeakFile] = []
    dropped: list[dict] = []
    seen: dict[tuple[str, str], Path] = {}
    for path in sorted(paths, key=lambda p: (protein_name(p), p.name)):
        protein, digest = protein_name(path), sha256sum(path)
        if (protein, digest) in seen:
            dropped.append({"file": path.name, "same_as": seen[protein, digest].name})
            continue
        seen[protein, digest] = path
        taken = {f.protein for f in files}
        name, i = protein, 2
        while name in taken:
            name, i = f"{protein}_{i}", i + 1
        files.append(PeakFile(name, path, digest))
    if dropped:
        print(f"chromatin view: {len(dropped)} peak files repeat an earlier file of the same "
              "protein byte for byte and are counted once", file=log)
    return files, dropped


def read_summits(path: str | Path, sizes: Mapping[str, int], aliases: Mapping[str, str]
                 ) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Summits of one peak file, streamed: chromosome index into ``sizes`` (int32) and position
    (int64), each shape=(n_peaks,), and ``{chromosome: lines}`` of lines on chromosomes the
    genome lacks (skipped). Every line is checked (columns, integers, 0 <= start < end, inside
    its chromosome); a file none of whose chromosomes the genome knows is an error."""
    path = Path(path)
    index = {c: i for i, c in enumerate(sizes)}
    chroms: list[int] = []
    summits: list[int] = []
    unknown: dict[str, int] = {}
    with open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 3:
                raise InputError(f"{len(fields)} column(s), BED needs at least 3 "
                                 "(chrom, start, end)", path=path, line=number,
                                 fix="separate the columns with tabs, or remove the line")
            start, end = bed_coordinates(fields, path, number)
            if start < 0 or end <= start:
                raise InputError(f"bad interval start={start} end={end} (need 0 <= start < "
                                 "end)", path=path, line=number, fix="fix or remove the line")
            chrom = fields[0] if fields[0] in index else aliases.get(fields[0])
            if chrom not in index:
                unknown[fields[0]] = unknown.get(fields[0], 0) + 1
                continue
            if end > sizes[chrom]:
                raise InputError(f"end {end} is past the end of {chrom} ({sizes[chrom]:,} bp)",
                                 path=path, line=number, fix="the peaks were called on another "
                                 "assembly: use the matching genome or lift the peaks over")
            chroms.append(index[chrom])
            summits.append((start + end) // 2)
    if unknown and not chroms:
        names = sorted(unknown)
        known = list(sizes)
        raise InputError(
            f"none of the file's chromosomes ({', '.join(names[:4])}"
            f"{' ...' if len(names) > 4 else ''}) is in the genome (known: "
            f"{', '.join(known[:4])}{' ...' if len(known) > 4 else ''})", path=path,
            fix="give the chromosome aliases (config 'chrom_aliases': name in peaks <TAB> "
            "name in genome), or the genome the peaks were called on")
    return np.asarray(chroms, np.int32), np.asarray(summits, np.int64), unknown


def bin_offsets(sizes: Mapping[str, int], bin_bp: int) -> dict[str, tuple[int, int]]:
    """``{chrom: (first global bin index, number of whole bins)}`` in ``sizes`` order."""
    out, at = {}, 0
    for chrom, length in sizes.items():
        out[chrom] = (at, length // bin_bp)
        at += length // bin_bp
    return out


def count_peaks(files: Sequence[PeakFile], sizes: Mapping[str, int],
                aliases: Mapping[str, str], bin_bp: int
                ) -> tuple[sparse.csr_matrix, pd.DataFrame]:
    """Summits per (genome bin, protein), exact, int32 sparse shape=(total bins, n_files); bins
    numbered by :func:`bin_offsets`. Also a per-file table: protein, file, sha256, peaks
    (counted), outside_bins (summits in a chromosome's last partial bin), unknown_chrom_lines."""
    offsets = bin_offsets(sizes, bin_bp)
    first = np.array([offsets[c][0] for c in sizes], np.int64)
    whole = np.array([offsets[c][1] for c in sizes], np.int64)
    n_bins = int(whole.sum())
    rows, cols, values, table = [], [], [], []
    for j, peak_file in enumerate(files):
        chrom, summit, unknown = read_summits(peak_file.path, sizes, aliases)
        local = summit // bin_bp
        inside = local < whole[chrom]
        bins, counts = np.unique(first[chrom[inside]] + local[inside], return_counts=True)
        rows.append(bins)
        cols.append(np.full(len(bins), j, np.int64))
        values.append(counts.astype(np.int32))
        table.append({"protein": peak_file.protein, "file": peak_file.path.name,
                      "sha256": peak_file.sha256, "peaks": int(inside.sum()),
                      "outside_bins": int((~inside).sum()),
                      "unknown_chrom_lines": int(sum(unknown.values()))})
    counts = sparse.csr_matrix(
        (np.concatenate(values) if values else np.zeros(0, np.int32),
         (np.concatenate(rows) if rows else np.zeros(0, np.int64),
          np.concatenate(cols) if cols else np.zeros(0, np.int64))),
        shape=(n_bins, len(files)), dtype=np.int32)
    return counts, pd.DataFrame(table)


def chromatin_values(counts: sparse.spmatrix | np.ndarray, value: str = "log1p") -> np.ndarray:
    """The view from summit counts shape=(n, P): log1p(count) or presence, float32 (n, P)."""
    if value not in VALUES:
        raise ValueError(f"unknown view value {value!r}; choose one of {VALUES}")
    dense = counts.toarray() if sparse.issparse(counts) else np.asarray(counts)
    dense = dense.astype(np.float32)
    return np.log1p(dense) if value == "log1p" else (dense > 0).astype(np.float32)


@dataclass
class ChromatinPairs:
    """Kept bins and their two views.

    ``bins``: chrom, start, end, split, n_peaks (all proteins), n_n (N bases); ``tokens``: token
    ids shape=(n, n_tokens(bin_bp)) in the tokenizer's dtype; ``counts``: exact summits per
    protein, int32 sparse shape=(n, P); ``proteins``: the P column names; ``peak_table``: one row
    per peak file (:func:`count_peaks`) with peaks per split added.
    """

    bins: pd.DataFrame
    tokens: np.ndarray
    counts: sparse.csr_matrix
    proteins: list[str]
    peak_table: pd.DataFrame = field(default_factory=pd.DataFrame)
    stats: dict = field(default_factory=dict)

    def rows(self, split: str) -> np.ndarray:
        """Row indices of the bins of one split, shape=(m,)."""
        return np.flatnonzero(self.bins["split"].to_numpy() == split)

    def view(self, value: str = "log1p", drop: Sequence[str] = ()) -> tuple[np.ndarray,
                                                                            list[str]]:
        """The chromatin view float32 shape=(n, P - len(drop)) without the ``drop`` proteins,
        and its column names."""
        dropped = set(drop)
        keep = [j for j, p in enumerate(self.proteins) if p not in dropped]
        return chromatin_values(self.counts[:, keep], value), [self.proteins[j] for j in keep]

    def labels(self, protein: str) -> np.ndarray:
        """Whether each bin holds at least one summit of ``protein``, bool shape=(n,)."""
        j = self.proteins.index(protein)
        return np.asarray(self.counts[:, j].toarray()).ravel() > 0


def build_pairs(fasta: str | Path, peaks: str | Path | Sequence[str | Path],
                splits: Mapping[str, list[str]], aliases: str | Path | Mapping[str, str] | None
                = None, tokenizer: Tokenizer | None = None, bin_bp: int = 500,
                min_peaks: int = 1, max_n_fraction: float = 0.1, empty_fraction: float = 0.0,
                ignore_for_selection: Sequence[str] = (), seed: int = 0,
                log: TextIO = sys.stderr, **_unused) -> ChromatinPairs:
    """Tile, count and pair (module doc). ``splits``: valid, test and optionally train
    chromosome lists (genome names; train empty = every other chromosome); ``aliases``: a
    2-column TSV path or a mapping, name in peaks → name in genome. Extra keyword arguments
    (e.g. ``value``) are ignored, so a whole ``view`` settings dict can be passed."""
    if bin_bp < 1 or min_peaks < 0 or not 0 <= empty_fraction <= 1:
        raise ValueError(f"need bin_bp >= 1, min_peaks >= 0 and 0 <= empty_fraction <= 1, "
                         f"got {bin_bp}, {min_peaks}, {empty_fraction}")
    tokenizer = tokenizer or Tokenizer()
    alias_map = dict(aliases) if isinstance(aliases, Mapping) else read_aliases(aliases)
    genome = Genome(fasta)
    try:
        sizes = genome.sizes
        split_of = resolve_splits(sizes, splits["valid"], splits["test"], splits.get("train"))
        files, duplicates = peak_files(peaks, log)
        counts, table = count_peaks(files, sizes, alias_map, bin_bp)
        empty = table.loc[table["peaks"] == 0, "protein"].tolist()
        if len(empty) == len(files):
            raise InputError("no peak falls in any whole bin of the genome", path=str(peaks),
                             fix="check the peak files are non-empty and match the genome")
        ignored = set(ignore_for_selection)
        select = np.array([p not in ignored for p in table["protein"]])
        n_select = np.asarray(counts[:, select].sum(1)).ravel()
        n_all = np.asarray(counts.sum(1)).ravel()
        rng = np.random.default_rng(seed)
        parts, token_parts, dropped_n = [], [], 0
        for chrom, (first, n_whole) in bin_offsets(sizes, bin_bp).items():
            if chrom not in split_of or n_whole == 0:
                continue
            span = slice(first, first + n_whole)
            keep = n_select[span] >= min_peaks
            if empty_fraction:
                keep |= (n_select[span] == 0) & (rng.random(n_whole) < empty_fraction)
            if not keep.any():
                continue
            idx = base_indices(genome.fetch(chrom, 0, n_whole * bin_bp))   # one chromosome
            n_n = (idx.reshape(n_whole, bin_bp) > 3).sum(1)
            ok = keep & (n_n <= max_n_fraction * bin_bp)
            dropped_n += int((keep & ~ok).sum())
            local = np.flatnonzero(ok)
            starts = local * bin_bp
            token_parts.append(tokenizer.encode_windows(idx, starts, bin_bp))
            parts.append(pd.DataFrame({"chrom": chrom, "start": starts, "end": starts + bin_bp,
                                       "split": split_of[chrom],
                                       "n_peaks": n_all[first + local],
                                       "n_n": n_n[local], "_global": first + local}))
    finally:
        genome.close()
    if not parts:
        raise InputError(f"no {bin_bp}-bp bin with >= {min_peaks} summits on the split "
                         "chromosomes", path=str(peaks), fix="check the splits and the "
                         "chromosome aliases, or lower 'min_peaks'")
    bins = pd.concat(parts, ignore_index=True)
    rows = bins.pop("_global").to_numpy()
    pairs = ChromatinPairs(bins, np.concatenate(token_parts), counts[rows].tocsr(),
                           table["protein"].tolist())
    per_split = {s: np.asarray(counts[rows[pairs.rows(s)]].sum(0)).ravel()
                 for s in ("train", "valid", "test")}
    pairs.peak_table = table.assign(**{f"peaks_{s}_bins": v for s, v in per_split.items()})
    pairs.stats = {"bin_bp": bin_bp, "genome_bins": int(counts.shape[0]),
                   "genome_bins_with_peaks": int((n_all > 0).sum()),
                   "kept_bins": {s: int(len(pairs.rows(s))) for s in ("train", "valid", "test")},
                   "dropped_for_n": dropped_n, "proteins": len(files),
                   "proteins_without_peaks": empty, "duplicate_files": duplicates,
                   "ignored_for_selection": [p for p in ignore_for_selection
                                             if p in pairs.proteins],
                   "unknown_chrom_lines": int(table["unknown_chrom_lines"].sum())}
    print(f"chromatin view: {len(files)} proteins, {bins.shape[0]:,} bins of {bin_bp} bp kept "
          f"(train {pairs.stats['kept_bins']['train']:,}, valid "
          f"{pairs.stats['kept_bins']['valid']:,}, test {pairs.stats['kept_bins']['test']:,})",
          file=log, flush=True)
    return pairs
