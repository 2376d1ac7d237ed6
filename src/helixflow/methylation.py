"""CpG methylation input: read Bismark / bedGraph / DSS tables, merge replicates, cut regions.

Every reader validates every line before any work and reports the first bad line as
``helixflow: FILE line N: WHAT; FIX`` (:class:`~helixflow.errors.InputError`). The output of
:func:`load_cpgs` is one row per CpG: chrom, pos (1-based), meth, total, beta.

Formats (``fmt``):

* ``bismark`` – Bismark coverage (``.cov``/``.cov.gz``): chrom, start, end, meth_percent,
  count_meth, count_unmeth; 1-based, pos = start. Strands are not merged (a CpG whose two
  strands were reported separately stays two rows, at pos and pos + 1).
* ``bedgraph`` – chrom, start (0-based), end, value; pos = start + 1. The value is methylation
  percent when any value exceeds 1, else a fraction. bedGraph carries no read counts, so a
  coverage must be assumed: ``bedgraph_coverage=N`` reads each CpG as N reads of which
  ``round(beta * N)`` are methylated (the likelihood metrics then rest on that assumption).
  Without it the reader refuses the file.
* ``dss`` – DSS count table with header ``chr pos N X`` (N = reads, X = methylated reads).

Files may be gzip-compressed (detected from the content). ``fmt="auto"`` picks the format from
the header (``chr pos N X`` → dss; ``track``/``browser`` → bedgraph) or the name (``.cov`` →
bismark; ``.bedGraph``/``.bedgraph``/``.bg``/``.bdg`` → bedgraph).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError
from .files import is_gzip, open_text

FORMATS = ("bismark", "bedgraph", "dss")
CPG_COLUMNS = ["chrom", "pos", "meth", "total", "beta"]
SPLITS = ("train", "valid", "test")
DSS_HEADER = ["chr", "pos", "N", "X"]
_INTEGER = re.compile(r"-?\d+")


@dataclass(frozen=True)
class _Layout:
    """Columns of one text format; ``sep=None`` splits on any whitespace."""

    columns: tuple[str, ...]
    ints: tuple[str, ...]
    floats: tuple[str, ...]
    sep: str | None


LAYOUTS = {
    "bismark": _Layout(("chrom", "start", "end", "meth_percent", "count_meth", "count_unmeth"),
                       ("start", "end", "count_meth", "count_unmeth"), ("meth_percent",), "\t"),
    "bedgraph": _Layout(("chrom", "start", "end", "value"), ("start", "end"), ("value",), "\t"),
    "dss": _Layout(("chr", "pos", "N", "X"), ("pos", "N", "X"), (), None),
}
_FIX_LINE = "fix or remove the line"


def _lines(path: Path) -> Iterator[str]:
    """Text lines of a plain or gzip file, streamed, without line endings."""
    with open_text(path) as handle:
        for line in handle:
            yield line.rstrip("\n")


def _first_lines(path: Path, n: int = 20) -> list[str]:
    out = []
    for line in _lines(path):
        out.append(line)
        if len(out) == n:
            break
    return out


def _is_track_line(line: str) -> bool:
    return line.startswith(("track", "browser", "#"))


def detect_format(path: str | Path) -> str:
    """``bismark``, ``bedgraph`` or ``dss`` from a file's header or name (see module doc)."""
    path = Path(path)
    first = next(iter(_first_lines(path, 1)), "")
    name = path.name.lower().removesuffix(".gz")
    if first.split() == DSS_HEADER:
        return "dss"
    if name.endswith(".cov"):
        return "bismark"
    if name.endswith((".bedgraph", ".bg", ".bdg")) or _is_track_line(first):
        return "bedgraph"
    raise InputError("cannot tell the methylation format from the file name or its first line",
                     path=path, line=1,
                     fix="name Bismark coverage files .cov(.gz) and bedGraph files "
                     ".bedGraph(.gz), give DSS tables the header 'chr pos N X', or name the "
                     f"format explicitly (one of {', '.join(FORMATS)})")


def _header_lines(path: Path, fmt: str) -> int:
    """How many leading lines are headers (DSS header; bedGraph track/browser/# lines)."""
    first = _first_lines(path)
    if fmt == "dss":
        return int(bool(first) and first[0].split() == DSS_HEADER)
    if fmt == "bedgraph":
        return next((i for i, line in enumerate(first) if not _is_track_line(line)), len(first))
    return 0


def _parse_fast(path: Path, layout: _Layout, skip: int,
                chunk_lines: int = 1_000_000) -> dict[str, np.ndarray] | None:
    """Columns via pandas' C parser, read in chunks; None when anything looks off (then the
    line-by-line :func:`_parse_slow` finds and explains the first bad line)."""
    chunks: list[dict[str, np.ndarray]] = []
    try:
        reader = pd.read_csv(path, sep=layout.sep if layout.sep else r"\s+", header=None,
                             skiprows=skip, skip_blank_lines=False, engine="c",
                             compression="gzip" if is_gzip(path) else None,
                             dtype={0: str}, chunksize=chunk_lines)
        with reader:
            for table in reader:
                cols = _typed_columns(table, layout)
                if cols is None:
                    return None
                chunks.append(cols)
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None
    if not chunks:
        return None
    return {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}


def _typed_columns(table: pd.DataFrame, layout: _Layout) -> dict[str, np.ndarray] | None:
    """One chunk's columns with the layout's types, or None if a column does not fit."""
    if table.shape[1] != len(layout.columns) or table.iloc[:, 0].isna().any():
        return None
    cols: dict[str, np.ndarray] = {"chrom": table.iloc[:, 0].to_numpy(dtype=str)}
    for i, name in enumerate(layout.columns[1:], start=1):
        values = table.iloc[:, i]
        if name in layout.ints:
            if not pd.api.types.is_integer_dtype(values):
                return None
            cols[name] = values.to_numpy(dtype=np.int64)
        else:
            if not pd.api.types.is_numeric_dtype(values) or not np.isfinite(values).all():
                return None
            cols[name] = values.to_numpy(dtype=np.float64)
    return cols


def _parse_slow(path: Path, layout: _Layout,
                skip: int) -> tuple[dict[str, np.ndarray], np.ndarray, InputError | None]:
    """Columns parsed line by line up to the first malformed line.

    Returns (columns, their line numbers, the error of the first malformed line or None).
    """
    rows: list[list] = []
    numbers: list[int] = []
    error = None
    ncol = len(layout.columns)
    for number, line in enumerate(_lines(path), start=1):
        if number <= skip:
            continue
        fields = line.split(layout.sep) if layout.sep else line.split()
        if len(fields) != ncol:
            sep = "tab-separated " if layout.sep == "\t" else ""
            error = InputError(f"{len(fields)} {sep}columns, expected {ncol} "
                               f"({', '.join(layout.columns)})", path=path, line=number,
                               fix=_FIX_LINE + " (empty lines are not allowed)")
            break
        row: list = [fields[0]]
        for name, text in zip(layout.columns[1:], fields[1:], strict=True):
            if name in layout.ints:
                if not _INTEGER.fullmatch(text):
                    error = InputError(f"{name} {text!r} is not an integer", path=path,
                                       line=number, fix=_FIX_LINE)
                    break
                row.append(int(text))
            else:
                try:
                    value = float(text)
                except ValueError:
                    value = float("nan")
                if not np.isfinite(value):
                    error = InputError(f"{name} {text!r} is not a number", path=path,
                                       line=number, fix=_FIX_LINE)
                    break
                row.append(value)
        if error is not None:
            break
        rows.append(row)
        numbers.append(number)
    cols = {"chrom": np.array([r[0] for r in rows], dtype=str)}
    for i, name in enumerate(layout.columns[1:], start=1):
        dtype = np.int64 if name in layout.ints else np.float64
        cols[name] = np.array([r[i] for r in rows], dtype=dtype)
    return cols, np.array(numbers, dtype=np.int64), error


def _problems(fmt: str, c: dict[str, np.ndarray]) -> list[tuple[np.ndarray, str, str]]:
    """(bad rows, message template, fix) per rule; templates format with the row's values."""
    empty = np.char.str_len(c["chrom"].astype(str)) == 0
    rules = [(empty, "the chromosome name is empty", _FIX_LINE)]
    if fmt == "bismark":
        m, u, pct = c["count_meth"], c["count_unmeth"], c["meth_percent"]
        total = m + u
        with np.errstate(invalid="ignore", divide="ignore"):
            implied = np.where(total > 0, 100.0 * m / np.maximum(total, 1), pct)
        rules += [
            (c["start"] < 1, "start {start} is below 1 (Bismark coverage is 1-based)", _FIX_LINE),
            (c["end"] < c["start"], "end {end} is before start {start}", _FIX_LINE),
            (m < 0, "count_meth {count_meth} is negative", _FIX_LINE),
            (u < 0, "count_unmeth {count_unmeth} is negative", _FIX_LINE),
            ((pct < 0) | (pct > 100), "meth_percent {meth_percent} is outside 0..100",
             _FIX_LINE),
            ((m >= 0) & (u >= 0) & (np.abs(implied - pct) > 1.0),
             "meth_percent {meth_percent} disagrees with the counts {count_meth} methylated / "
             "{count_unmeth} unmethylated",
             "check the columns are chrom, start, end, meth_percent, count_meth, count_unmeth"),
        ]
    elif fmt == "bedgraph":
        rules += [
            (c["start"] < 0, "start {start} is negative (bedGraph is 0-based)", _FIX_LINE),
            (c["end"] <= c["start"], "end {end} is not after start {start}", _FIX_LINE),
            ((c["value"] < 0) | (c["value"] > 100),
             "value {value} is not a methylation percent (0..100) or fraction (0..1)",
             _FIX_LINE),
        ]
    else:
        rules += [
            (c["pos"] < 1, "pos {pos} is below 1 (DSS positions are 1-based)", _FIX_LINE),
            (c["N"] < 0, "N {N} (reads) is negative", _FIX_LINE),
            (c["X"] < 0, "X {X} (methylated reads) is negative", _FIX_LINE),
            (c["X"] > c["N"], "X {X} methylated reads exceed N {N} reads",
             "X counts methylated reads among the N reads: check the column order"),
        ]
    return rules


def _check_values(fmt: str, cols: dict[str, np.ndarray], numbers: np.ndarray,
                  path: Path) -> None:
    """Raise InputError at the first line breaking a value rule (vectorised)."""
    first = None
    for bad, message, fix in _problems(fmt, cols):
        hits = np.flatnonzero(bad)
        if len(hits) and (first is None or hits[0] < first[0]):
            first = (int(hits[0]), message, fix)
    if first is not None:
        row, message, fix = first
        values = {name: col[row] for name, col in cols.items()}
        raise InputError(message.format(**values), path=path, line=int(numbers[row]), fix=fix)


def _to_counts(fmt: str, cols: dict[str, np.ndarray], path: Path,
               bedgraph_coverage: int | None) -> pd.DataFrame:
    if fmt == "bismark":
        pos, meth = cols["start"], cols["count_meth"]
        total = cols["count_meth"] + cols["count_unmeth"]
    elif fmt == "dss":
        pos, meth, total = cols["pos"], cols["X"], cols["N"]
    else:
        if bedgraph_coverage is None or bedgraph_coverage < 1:
            raise InputError("a bedGraph holds methylation levels but no read counts", path=path,
                             fix="assume a coverage (bedgraph_coverage=N reads per CpG, e.g. "
                             "10) or give Bismark .cov / DSS count files instead")
        value = cols["value"]
        beta = value / 100.0 if (value > 1).any() else value
        pos = cols["start"] + 1
        total = np.full(len(beta), int(bedgraph_coverage), dtype=np.int64)
        meth = np.rint(beta * bedgraph_coverage).astype(np.int64)
    return pd.DataFrame({"chrom": cols["chrom"], "pos": pos.astype(np.int64),
                         "meth": meth.astype(np.int64), "total": total.astype(np.int64)})


def read_methylation(path: str | Path, fmt: str = "auto",
                     bedgraph_coverage: int | None = None) -> pd.DataFrame:
    """One file's CpGs: DataFrame chrom, pos (1-based), meth, total (file order, per row).

    ``fmt``: ``auto`` or one of :data:`FORMATS`. Every line is checked (column count, integer
    coordinates and counts, non-negative counts, methylated ≤ total, …) before the table is
    built; the first bad line raises :class:`InputError` naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("methylation file not found", path=path,
                         fix="check the path in the config")
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt not in FORMATS:
        raise InputError(f"unknown methylation format {fmt!r}", path=path,
                         fix=f"use one of auto, {', '.join(FORMATS)}")
    layout = LAYOUTS[fmt]
    skip = _header_lines(path, fmt)
    cols = _parse_fast(path, layout, skip)
    if cols is not None:
        numbers = np.arange(skip + 1, skip + 1 + len(cols["chrom"]), dtype=np.int64)
        _check_values(fmt, cols, numbers, path)
    else:
        cols, numbers, error = _parse_slow(path, layout, skip)
        _check_values(fmt, cols, numbers, path)  # a value error before the malformed line first
        if error is not None:
            raise error
    if len(cols["chrom"]) == 0:
        raise InputError(f"no data lines (read as {fmt})", path=path,
                         fix="give a non-empty methylation file")
    return _to_counts(fmt, cols, path, bedgraph_coverage)


def merge_replicates(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Sum meth and total per (chrom, pos) over replicates; add beta = meth / total.

    Rows are sorted by chromosome name, then position; beta is NaN where total is 0.
    """
    merged = (pd.concat(tables, ignore_index=True)
              .groupby(["chrom", "pos"], sort=True)[["meth", "total"]].sum().reset_index())
    total = merged["total"].to_numpy()
    merged["beta"] = np.divide(merged["meth"].to_numpy(dtype=float), total,
                               out=np.full(len(total), np.nan), where=total > 0)
    return merged[CPG_COLUMNS]


def load_cpgs(paths: Sequence[str | Path], fmt: str = "auto",
              bedgraph_coverage: int | None = None) -> pd.DataFrame:
    """Read and validate every file, then merge them (:func:`merge_replicates`)."""
    if not paths:
        raise InputError("no methylation files given", fix="list at least one input file")
    return merge_replicates([read_methylation(p, fmt, bedgraph_coverage) for p in paths])


@dataclass
class Regions:
    """Tiles of ``L`` consecutive CpGs. Arrays have shape (n, L) unless noted.

    chrom: (n,) str; pos: int64 1-based positions; meth, total: int64 read counts.
    """

    chrom: np.ndarray
    pos: np.ndarray
    meth: np.ndarray
    total: np.ndarray

    def __len__(self) -> int:
        return len(self.chrom)

    @property
    def covered(self) -> np.ndarray:
        """bool (n, L): at least one read."""
        return self.total > 0

    @property
    def beta(self) -> np.ndarray:
        """float (n, L): meth / total, NaN where uncovered."""
        return np.divide(self.meth, self.total, out=np.full(self.meth.shape, np.nan),
                         where=self.total > 0)

    def subset(self, index: np.ndarray) -> Regions:
        return Regions(self.chrom[index], self.pos[index], self.meth[index], self.total[index])


def make_regions(cpgs: pd.DataFrame, region_cpgs: int) -> Regions:
    """Cut each chromosome's CpGs (in position order) into tiles of ``region_cpgs`` CpGs.

    The last < ``region_cpgs`` CpGs of each chromosome are dropped. Regions are ordered along
    each chromosome, so neighbouring indices are neighbouring tiles.
    """
    parts: dict[str, list[np.ndarray]] = {"chrom": [], "pos": [], "meth": [], "total": []}
    for chrom, table in cpgs.groupby("chrom", sort=False):
        table = table.sort_values("pos")
        n = len(table) // region_cpgs
        if n == 0:
            continue
        keep = n * region_cpgs
        parts["chrom"].append(np.full(n, chrom, dtype=object))
        for name in ("pos", "meth", "total"):
            parts[name].append(table[name].to_numpy(dtype=np.int64)[:keep]
                               .reshape(n, region_cpgs))
    if not parts["chrom"]:
        return Regions(np.zeros(0, dtype=object), *(np.zeros((0, region_cpgs), np.int64)
                                                     for _ in range(3)))
    return Regions(*(np.concatenate(parts[k]) for k in ("chrom", "pos", "meth", "total")))


def block_split(n_regions: int, block_regions: int, valid_fraction: float,
                test_fraction: float, seed: int) -> np.ndarray:
    """Split label ("train"/"valid"/"test") per region, shape (n_regions,).

    Consecutive runs of ``block_regions`` regions form blocks; a seeded permutation of the
    blocks gives the first ``round(test_fraction * blocks)`` (at least 1) to test, the next
    ``round(valid_fraction * blocks)`` (at least 1) to valid, the rest to train. Whole blocks
    move together, so a test region's neighbours are test regions (except at block edges).
    """
    n_blocks = -(-n_regions // block_regions)
    n_test = max(1, round(test_fraction * n_blocks))
    n_valid = max(1, round(valid_fraction * n_blocks))
    if n_blocks < n_test + n_valid + 1:
        raise ValueError(f"{n_regions} regions make {n_blocks} blocks of {block_regions}; "
                         "too few for train, valid and test: use more data, fewer CpGs per "
                         "region or fewer regions per block")
    order = np.random.default_rng(seed).permutation(n_blocks)
    block_label = np.empty(n_blocks, dtype=object)
    block_label[order[:n_test]] = "test"
    block_label[order[n_test:n_test + n_valid]] = "valid"
    block_label[order[n_test + n_valid:]] = "train"
    return block_label[np.arange(n_regions) // block_regions].astype(str)


def subsample_regions(split: np.ndarray, max_regions: int | None, seed: int) -> np.ndarray:
    """Sorted indices of at most ``max_regions`` regions, each split cut in proportion.

    ``None`` or 0 keeps all. Draws are seeded and uniform within each split.
    """
    n = len(split)
    if not max_regions or n <= max_regions:
        return np.arange(n)
    rng = np.random.default_rng([seed, 1])
    keep = []
    for name in SPLITS:
        idx = np.flatnonzero(split == name)
        size = max(1, round(len(idx) * max_regions / n))
        keep.append(rng.choice(idx, size=min(size, len(idx)), replace=False))
    return np.sort(np.concatenate(keep))
