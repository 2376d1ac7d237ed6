"""Labelled windows: peaks → summit-centred windows, blacklist, GC-matched negatives, splits.

Every table here is a BED-like DataFrame with 0-based half-open coordinates and the
columns of ``WINDOW_COLUMNS``; interval arithmetic goes through bedtools (pybedtools).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pybedtools

from .errors import InputError
from .files import bed_coordinates, open_text
from .tiles import window_content

WINDOW_COLUMNS = ["chrom", "start", "end", "name", "score", "strand", "label", "split", "kind",
                  "gc"]
SPLITS = ("train", "valid", "test")
DUPLICATES_MERGED = "duplicate_peaks_merged"  # read_peaks' count, in the table's attrs


# ---------------------------------------------------------------- reading and checking peaks

def _data_lines(path: Path) -> Iterable[tuple[int, list[str]]]:
    with open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            yield number, line.rstrip("\n").split("\t")


def peak_format(path: str | Path, declared: str = "auto") -> str:
    """'narrowPeak' or 'bed': the declared format, or guessed from the name."""
    if declared != "auto":
        return declared
    name = Path(path).name.lower().removesuffix(".gz")
    return "narrowPeak" if name.endswith((".narrowpeak", ".np")) else "bed"


def rename_chrom(chrom: str, sizes: Mapping[str, int], aliases: Mapping[str, str],
                 path: Path, number: int) -> str:
    """The genome's name for ``chrom`` (itself, or its alias), or an error naming the line."""
    if chrom in sizes:
        return chrom
    if chrom in aliases and aliases[chrom] in sizes:
        return aliases[chrom]
    known = list(sizes)
    shown = ", ".join(known[:4]) + (f", ... {known[-1]}" if len(known) > 4 else "")
    raise InputError(f"chromosome '{chrom}' is not in the genome (known: {shown})", path=path,
                     line=number, fix="add it to the config's 'chrom_aliases' file or remove "
                     "the line")


def read_peaks(path: str | Path, sizes: Mapping[str, int], aliases: Mapping[str, str],
               fmt: str = "auto") -> pd.DataFrame:
    """Read peaks (BED or narrowPeak) into ``chrom, summit, name`` with genome chromosome names.

    The summit is narrowPeak's column 10 offset when given, otherwise the interval midpoint
    (so a 1-bp summit BED gives its own position). Every line is checked first: columns,
    integers, start < end, a known chromosome, inside the chromosome. Peaks with the same
    chromosome and summit are merged into the first; their number is printed to stderr and
    kept in ``table.attrs[DUPLICATES_MERGED]``.
    """
    path = Path(path)
    fmt = peak_format(path, fmt)
    rows = []
    for number, fields in _data_lines(path):
        if len(fields) < 3 or (fmt == "narrowPeak" and len(fields) < 10):
            need = 10 if fmt == "narrowPeak" else 3
            raise InputError(f"{len(fields)} columns, {fmt} needs at least {need}", path=path,
                             line=number, fix="check the separator is a tab and the format "
                             "('peak_format' in the sample sheet)")
        try:
            start, end = int(fields[1]), int(fields[2])
            offset = int(fields[9]) if fmt == "narrowPeak" else -1
        except ValueError as err:
            raise InputError(f"coordinates are not integers ({fields[1]!r}, {fields[2]!r})",
                             path=path, line=number, fix="fix or remove the line") from err
        if start < 0 or end <= start:
            raise InputError(f"bad interval start={start} end={end} (need 0 <= start < end)",
                             path=path, line=number, fix="fix or remove the line")
        chrom = rename_chrom(fields[0], sizes, aliases, path, number)
        if end > sizes[chrom]:
            raise InputError(f"end {end} is past the end of {chrom} ({sizes[chrom]} bp)",
                             path=path, line=number, fix="the peaks were called on another "
                             "genome assembly: use the matching genome or lift the peaks over")
        summit = start + offset if offset >= 0 else (start + end) // 2
        if not start <= summit < end:
            raise InputError(f"summit offset {offset} lies outside the peak", path=path,
                             line=number, fix="column 10 must be 0 <= offset < end - start")
        name = fields[3] if len(fields) > 3 and fields[3] not in ("", ".") else f"peak{number}"
        rows.append((chrom, summit, name))
    if not rows:
        raise InputError("the peaks file has no peaks", path=path,
                         fix="give a non-empty BED/narrowPeak file or drop the target from "
                         "the sample sheet")
    return _merge_duplicates(pd.DataFrame(rows, columns=["chrom", "summit", "name"]), path)


def _merge_duplicates(peaks: pd.DataFrame, path: Path) -> pd.DataFrame:
    """``peaks`` with one row per (chrom, summit), the first; the count merged in attrs."""
    unique = peaks.drop_duplicates(["chrom", "summit"], ignore_index=True)
    merged = len(peaks) - len(unique)
    if merged:
        print(f"helixflow: {path}: {merged} duplicate peaks (same chromosome and summit) "
              "merged", file=sys.stderr)
    unique.attrs[DUPLICATES_MERGED] = merged
    return unique


def read_blacklist(path: str | Path | None, sizes: Mapping[str, int],
                   aliases: Mapping[str, str]) -> pd.DataFrame:
    """Blacklist regions as ``chrom, start, end`` in genome names (unknown chromosomes dropped)."""
    rows = []
    if path:
        for number, fields in _data_lines(Path(path)):
            if len(fields) < 3:
                raise InputError(f"{len(fields)} columns, BED needs at least 3", path=path,
                                 line=number, fix="check the separator is a tab")
            chrom = fields[0] if fields[0] in sizes else aliases.get(fields[0])
            start, end = bed_coordinates(fields, path, number)
            if chrom in sizes:
                rows.append((chrom, start, end))
    return pd.DataFrame(rows, columns=["chrom", "start", "end"])


# ---------------------------------------------------------------- splits

def resolve_splits(sizes: Mapping[str, int], valid: list[str], test: list[str],
                   train: list[str] | None = None) -> dict[str, str]:
    """``{chrom: split}``: train is every other chromosome when not listed.

    Asserts up front what must never happen: a chromosome in two splits, an unknown
    chromosome, an empty split.
    """
    lists = {"valid": list(valid), "test": list(test)}
    lists["train"] = list(train) if train else [c for c in sizes if c not in {*valid, *test}]
    split_of: dict[str, str] = {}
    for split, chroms in lists.items():
        if not chroms:
            raise InputError(f"the {split} split has no chromosomes", fix=f"list chromosomes "
                             f"under 'splits: {split}' in the config")
        for chrom in chroms:
            if chrom not in sizes:
                raise InputError(f"split '{split}' names chromosome '{chrom}', which is not in "
                                 f"the genome", fix="use the genome's chromosome names in "
                                 "'splits'")
            if chrom in split_of:
                raise InputError(f"chromosome '{chrom}' is in both '{split_of[chrom]}' and "
                                 f"'{split}'", fix="each chromosome belongs to one split")
            split_of[chrom] = split
    return split_of


# ---------------------------------------------------------------- windows

def summit_windows(peaks: pd.DataFrame, width: int, sizes: Mapping[str, int]) -> pd.DataFrame:
    """Windows of ``width`` centred on each summit; windows running off a chromosome are dropped."""
    start = peaks["summit"].to_numpy() - width // 2
    out = pd.DataFrame({"chrom": peaks["chrom"], "start": start, "end": start + width,
                        "name": peaks["name"]})
    inside = (out["start"] >= 0) & (out["end"] <= out["chrom"].map(sizes))
    return out[inside].reset_index(drop=True)


def to_bedtool(df: pd.DataFrame) -> pybedtools.BedTool:
    cols = ["chrom", "start", "end", "name"] if "name" in df else ["chrom", "start", "end"]
    return pybedtools.BedTool.from_dataframe(df[cols]).sort()


def overlaps_any(windows: pd.DataFrame, regions: pd.DataFrame) -> np.ndarray:
    """Whether each window shares at least one base with any of ``regions`` (both BED-like,
    0-based half-open), shape=(n,) bool; sorted-interval arithmetic per chromosome."""
    hit = np.zeros(len(windows), dtype=bool)
    if windows.empty or regions.empty:
        return hit
    for chrom, rows in windows.groupby("chrom", sort=False).indices.items():
        merged_start, merged_end = _merged(regions[regions["chrom"] == chrom])
        if not len(merged_start):
            continue
        start = windows["start"].to_numpy()[rows]
        end = windows["end"].to_numpy()[rows]
        last = np.searchsorted(merged_start, end, side="left") - 1  # last region starting < end
        hit[rows] = (last >= 0) & (merged_end[np.maximum(last, 0)] > start)
    return hit


def _merged(regions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Sorted, disjoint (start, end) arrays covering the same bases as ``regions``."""
    if regions.empty:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    order = np.argsort(regions["start"].to_numpy(), kind="stable")
    start = regions["start"].to_numpy(dtype=np.int64)[order]
    end = np.maximum.accumulate(regions["end"].to_numpy(dtype=np.int64)[order])
    new_block = np.ones(len(start), dtype=bool)
    new_block[1:] = start[1:] >= end[:-1]          # no shared base with everything before
    first = np.flatnonzero(new_block)
    last = np.append(first[1:], len(start)) - 1
    return start[first], end[last]


def drop_overlapping(windows: pd.DataFrame, regions: pd.DataFrame) -> pd.DataFrame:
    """Windows that overlap none of ``regions`` (like bedtools intersect -v)."""
    return windows[~overlaps_any(windows, regions)].reset_index(drop=True)


def nucleotide_content(windows: pd.DataFrame, fasta: str | Path) -> pd.DataFrame:
    """GC fraction over called bases and N fraction per window, same row order (as
    ``bedtools nuc`` counts them; :func:`helixflow.tiles.window_content`)."""
    if windows.empty:
        return pd.DataFrame({"gc": [], "n_frac": []})
    return window_content(fasta, windows)


def gc_matched_sample(pos_gc: np.ndarray, cand_gc: np.ndarray, ratio: float, n_bins: int,
                      rng: np.random.Generator) -> np.ndarray:
    """Indices into ``cand_gc`` whose GC histogram matches ``ratio`` × that of ``pos_gc``.

    GC is binned into ``n_bins`` equal bins on [0, 1]; each bin draws without replacement;
    a bin without enough candidates takes the rest from the nearest bins.
    """
    edges = np.linspace(0, 1, n_bins + 1)
    pos_bin = np.clip(np.digitize(pos_gc, edges[1:-1]), 0, n_bins - 1)
    cand_bin = np.clip(np.digitize(cand_gc, edges[1:-1]), 0, n_bins - 1)
    need = np.round(np.bincount(pos_bin, minlength=n_bins) * ratio).astype(int)
    pools = [rng.permutation(np.flatnonzero(cand_bin == b)) for b in range(n_bins)]
    used = np.zeros(n_bins, dtype=int)
    chosen: list[np.ndarray] = []
    for b in np.argsort(-need, kind="stable"):
        remaining = need[b]
        for other in sorted(range(n_bins), key=lambda o, b=b: (abs(o - b), o)):
            if remaining == 0:
                break
            take = min(remaining, len(pools[other]) - used[other])
            chosen.append(pools[other][used[other]:used[other] + take])
            used[other] += take
            remaining -= take
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=int)


def background_negatives(positives: pd.DataFrame, exclude: pd.DataFrame, tiles: pd.DataFrame,
                         chroms: list[str], ratio: float, n_bins: int, max_n_fraction: float,
                         rng: np.random.Generator) -> pd.DataFrame:
    """GC-matched genomic background windows on ``chroms`` overlapping nothing in ``exclude``.

    ``tiles`` is the genome's tile table (:mod:`helixflow.tiles`, one width). Candidates are
    the tiles of ``chroms`` with few N, subsampled to 50 × the need first (at least 20,000),
    then those overlapping ``exclude`` are removed and a GC-matched set is drawn: the cost
    follows the number of positives, not the size of the split.
    """
    if positives.empty or ratio <= 0:
        return pd.DataFrame(columns=["chrom", "start", "end", "gc"])
    tile_width = int(tiles["end"].iloc[0] - tiles["start"].iloc[0]) if len(tiles) else None
    window = int(positives["end"].iloc[0] - positives["start"].iloc[0])
    if tile_width not in (None, window):
        raise InputError(f"background tiles are {tile_width} bp but the windows {window} bp",
                         fix="pass the genome_tiles table of the window width")
    usable = tiles["chrom"].isin(chroms).to_numpy() & (tiles["n_frac"].to_numpy()
                                                       <= max_n_fraction)
    candidates = tiles[usable]
    cap = max(int(50 * ratio * len(positives)), 20_000)
    if len(candidates) > cap:
        candidates = candidates.iloc[np.sort(rng.choice(len(candidates), cap, replace=False))]
    candidates = drop_overlapping(candidates, exclude)
    picked = gc_matched_sample(positives["gc"].to_numpy(), candidates["gc"].to_numpy(), ratio,
                               n_bins, rng)
    return candidates.iloc[picked][["chrom", "start", "end", "gc"]].reset_index(drop=True)


def usable_windows(windows: pd.DataFrame, blacklist: pd.DataFrame, fasta: str | Path,
                   split_of: Mapping[str, str], max_n_fraction: float
                   ) -> tuple[pd.DataFrame, dict]:
    """The windows a stage may use, in their order: off the blacklist, on a chromosome of a
    split, with at most ``max_n_fraction`` N; with ``gc`` and ``split`` columns added.

    The one filter every stage's positives pass (summit windows, multi-task centres, MIL
    bags); returns them and the counts dropped (``blacklisted``, ``not_in_split``,
    ``too_many_n``).
    """
    n_before = len(windows)
    windows = drop_overlapping(windows, blacklist)
    stats = {"blacklisted": n_before - len(windows)}
    n_before = len(windows)
    windows = windows[windows["chrom"].isin(split_of.keys())].reset_index(drop=True)
    stats["not_in_split"] = n_before - len(windows)
    content = nucleotide_content(windows, fasta)
    keep = content["n_frac"].to_numpy() <= max_n_fraction
    stats["too_many_n"] = int((~keep).sum())
    usable = windows[keep].assign(gc=content["gc"].to_numpy()[keep]).reset_index(drop=True)
    return usable.assign(split=usable["chrom"].map(split_of)), stats


def labelled_windows(peaks: pd.DataFrame, blacklist: pd.DataFrame, fasta: str | Path,
                     sizes: Mapping[str, int], split_of: Mapping[str, str], width: int,
                     negative_ratio: float, shuffled_ratio: float, gc_bins: int,
                     max_n_fraction: float, seed: int,
                     tiles: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Positives at summits and negatives per split; returns the table and what was dropped.

    ``tiles``: the genome's tile table at ``width`` (:mod:`helixflow.tiles`).
    """
    rng = np.random.default_rng(seed)
    windows = summit_windows(peaks, width, sizes)
    stats = {"peaks": len(peaks), "off_chromosome_end": len(peaks) - len(windows)}
    exclude = pd.concat([windows[["chrom", "start", "end"]], blacklist], ignore_index=True)
    positives, dropped = usable_windows(windows, blacklist, fasta, split_of, max_n_fraction)
    stats |= dropped
    positives = positives.assign(label=1, kind="peak")
    parts = [positives]
    for split in SPLITS:
        chroms = [c for c, s in split_of.items() if s == split]
        pos = positives[positives["split"] == split]
        neg = background_negatives(pos, exclude, tiles, chroms, negative_ratio, gc_bins,
                                   max_n_fraction, rng)
        if len(neg):
            names = "bg:" + neg["chrom"].astype(str) + ":" + neg["start"].astype(str)
            parts.append(neg.assign(name=names, label=0, kind="background", split=split))
        n_shuffled = int(round(shuffled_ratio * len(pos)))
        if n_shuffled:
            source = pos.iloc[rng.choice(len(pos), n_shuffled, replace=n_shuffled > len(pos))]
            parts.append(source.assign(name=[f"shuf{i}:{n}" for i, n in
                                             enumerate(source["name"])],
                                       label=0, kind="shuffle"))
    table = pd.concat(parts, ignore_index=True).assign(score=0, strand=".")
    table["gc"] = table["gc"].astype(float).round(4)
    table = table.sort_values(["chrom", "start", "label", "name"], kind="stable")
    return table[WINDOW_COLUMNS].reset_index(drop=True), stats


# why a peak's window was dropped (labelled_windows' stats) and what to do about it
DROP_REASONS = {
    "off_chromosome_end": ("ran off a chromosome end", "use a smaller 'windows: width'"),
    "blacklisted": ("overlap the blacklist", "check that the blacklist belongs to the genome "
                    "assembly of the peaks"),
    "not_in_split": ("lie on chromosomes in no split", "list the peaks' chromosomes under "
                     "'splits' in the config (an empty 'train' takes every other one)"),
    "too_many_n": ("have too many N (or other non-ACGT letters)", "check the genome FASTA "
                   "under the peaks, or raise 'windows: max_n_fraction' in the config"),
}


def require_windows(table: pd.DataFrame, stats: Mapping[str, int], peaks: str | Path) -> None:
    """Raise :class:`InputError` when no peak window is left, naming every drop reason."""
    if (table["label"] == 1).any():
        return
    dropped = {key: stats.get(key, 0) for key in DROP_REASONS}
    shown = ", ".join(f"{n} {DROP_REASONS[key][0]}" for key, n in dropped.items() if n)
    raise InputError(f"no peak window is left of {stats['peaks']} peaks ({shown})", path=peaks,
                     fix=DROP_REASONS[max(dropped, key=dropped.get)][1])


# ---------------------------------------------------------------- leakage check

def split_problems(windows: pd.DataFrame, split_of: Mapping[str, str]) -> list[str]:
    """Every way ``windows`` leak across splits; empty when the splits are clean.

    A window must lie on a chromosome of its own split, and no window of one split may
    overlap a window of another split.
    """
    problems = []
    expected = windows["chrom"].map(split_of)
    for row in windows[expected != windows["split"]].itertuples():
        problems.append(f"window {row.name} ({row.chrom}:{row.start}-{row.end}) is in split "
                        f"'{row.split}' but {row.chrom} belongs to "
                        f"'{split_of.get(row.chrom, 'no split')}'")
    for i, first in enumerate(SPLITS):
        for second in SPLITS[i + 1:]:
            a = windows[windows["split"] == first]
            b = windows[windows["split"] == second]
            if a.empty or b.empty:
                continue
            hits = to_bedtool(a).intersect(to_bedtool(b), u=True)
            for f in hits:
                problems.append(f"window {f.name} ({f.chrom}:{f.start}-{f.end}) of split "
                                f"'{first}' overlaps a window of split '{second}'")
    return problems


def check_no_leak(windows: pd.DataFrame, split_of: Mapping[str, str], what: str) -> None:
    """Stop when ``windows`` (chrom, start, end, name, split) leak across splits: the check
    every stage's windows pass before they are used."""
    problems = split_problems(windows, split_of)
    if problems:
        shown = "\n  ".join(problems[:10])
        raise InputError(f"{len(problems)} {what} leak across splits:\n  {shown}",
                         fix="fix 'splits' in the config")


def read_windows(path: str | Path) -> pd.DataFrame:
    """Read a labelled-windows BED written by this module."""
    return pd.read_csv(path, sep="\t", header=None, names=WINDOW_COLUMNS,
                       dtype={"chrom": str, "name": str, "split": str, "kind": str})


def nearest_distance(centres: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """|centre - nearest position| for each centre (inf when ``positions`` is empty)."""
    centres = np.asarray(centres, dtype=np.int64)
    positions = np.sort(np.asarray(positions, dtype=np.int64))
    if positions.size == 0:
        return np.full(centres.shape, np.inf)
    right = np.searchsorted(positions, centres)
    after = positions[np.minimum(right, positions.size - 1)]
    before = positions[np.maximum(right - 1, 0)]
    return np.minimum(np.abs(after - centres), np.abs(centres - before)).astype(np.float64)
