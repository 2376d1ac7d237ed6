"""Motifs from first-layer filters, JASPAR look-ups, Tomtom matching and PWM scans.

Every matrix is ``(4, w)`` with rows in the order A, C, G, T; a stack of
motifs is ``(F, 4, w)``. One-hot sequences are ``(n, 4, L)`` and an ``N`` is an
all-zero column.

Tomtom conventions (memelite 0.5, verified in ``tests/test_motifs.py``)
----------------------------------------------------------------------
``memelite.tomtom`` reports for each (query, target) an ``offset``, a
``strand`` (0 or 1) and an ``overlap``:

* strand 0 (``"+"``): the query is compared with the target as given;
  strand 1 (``"-"``): with the target's reverse complement.
* offset: query column ``j`` lies on column ``j + offset`` of the target *as
  oriented on that strand* (the target itself for ``"+"``, its reverse
  complement for ``"-"``). A query that is columns 2..7 of a target gets
  offset 2 on ``"+"``; a query sticking out 3 columns on the left gets -3.
* Equivalently, for ``"-"`` the reverse-complemented query starts on column
  ``w_target - w_query - offset`` of the target as given; ``aligned_kl`` uses
  this form.

``plot_filter_logos`` draws the match reverse complemented on ``"-"`` and
shifted by ``offset``, which is exactly the frame above.
"""

from __future__ import annotations

import functools
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from helixflow.errors import InputError
from helixflow.files import atomic_path

ALPHABET = "ACGT"
TOMTOM_COLUMNS = ["query", "target_id", "target_name", "p", "q", "offset", "strand", "score",
                  "overlap"]
JASPAR_PSEUDOCOUNT = 0.1  # per cell, in counts, when a JASPAR count matrix becomes a ppm
_MEME_SUM_TOLERANCE = 0.02
_JASPAR_ID = re.compile(r"^[A-Z]{2}\d{4}(\.\d+)?$")


# ----------------------------------------------------------------------------- filters → PFMs

def activation_pfms(activations: np.ndarray, X: np.ndarray, kernel: int,
                    threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Count matrices of the input segments that strongly activate each filter.

    activations: np.ndarray, shape=(n, F, L - kernel + 1), first conv layer output (valid
        convolution, after ReLU). X: np.ndarray, shape=(n, 4, L), one-hot (N = zero column).
    A site is every (i, p) with ``activations[i, f, p] > threshold * max(activations[:, f])``;
    its segment ``X[i, :, p:p + kernel]`` is added to filter f's counts. A filter whose
    maximum is <= 0 gets no sites and an all-zero matrix.
    Returns (pfms, shape=(F, 4, kernel), float64 counts; nsites, shape=(F,), int64).
    """
    activations = np.asarray(activations)
    X = np.asarray(X)
    if activations.ndim != 3 or X.ndim != 3 or X.shape[1] != 4:
        raise ValueError(f"need activations (n, F, P) and X (n, 4, L); got "
                         f"{activations.shape} and {X.shape}")
    n, F, P = activations.shape
    if X.shape[0] != n or X.shape[2] - kernel + 1 != P:
        raise ValueError(f"activations {activations.shape} do not fit X {X.shape} with a "
                         f"valid convolution of kernel {kernel}")
    peak = activations.max(axis=(0, 2)) if n and P else np.zeros(F)
    cut = np.where(peak > 0, threshold * peak, np.inf)
    pfms = np.zeros((F, 4 * kernel), dtype=np.float64)
    nsites = np.zeros(F, dtype=np.int64)
    # counts[f, (a, t)] = sum over (i, p) of site[i, f, p] * X[i, a, p + t]: one matmul per
    # chunk of sequences, chunked so the copies stay a few MB.
    chunk = max(1, 4_000_000 // max(1, F * P + P * 4 * kernel))
    for start in range(0, n, chunk):
        sites = activations[start:start + chunk] > cut[None, :, None]  # (c, F, P)
        nsites += sites.sum(axis=(0, 2))
        c = sites.shape[0]
        S = sites.transpose(1, 0, 2).reshape(F, c * P).astype(np.float32)
        windows = np.lib.stride_tricks.sliding_window_view(
            X[start:start + chunk], kernel, axis=2)  # (c, 4, P, kernel)
        W = windows.transpose(0, 2, 1, 3).reshape(c * P, 4 * kernel).astype(np.float32)
        pfms += S @ W
    return pfms.reshape(F, 4, kernel), nsites


def pfm_to_ppm(pfm: np.ndarray, pseudocount: float = 0.5) -> np.ndarray:
    """Counts, shape=(4, w) or (F, 4, w), to column probabilities of the same shape.

    ``pseudocount`` is added to every cell; a column with no counts becomes uniform.
    """
    counts = np.asarray(pfm, dtype=np.float64) + pseudocount
    totals = counts.sum(axis=-2, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        ppm = counts / totals
    return np.where(totals > 0, ppm, 0.25)


def information_content(ppm: np.ndarray) -> np.ndarray:
    """Bits per column against a uniform background: ppm (..., 4, w) → (..., w)."""
    p = np.asarray(ppm, dtype=np.float64)
    plogp = np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0)
    return 2.0 + plogp.sum(axis=-2)


def trim_ppm(ppm: np.ndarray, min_ic: float = 0.3) -> tuple[np.ndarray, int]:
    """Drop flanking columns below ``min_ic`` bits: ppm (4, w) → (ppm (4, w'), columns cut left).

    Inner low-information columns are kept. When no column reaches ``min_ic`` the single
    most informative column is returned, so the result always has at least one column.
    """
    ic = information_content(ppm)
    keep = np.flatnonzero(ic >= min_ic)
    if keep.size == 0:
        left = int(np.argmax(ic))
        return np.asarray(ppm)[:, left:left + 1].copy(), left
    left, right = int(keep[0]), int(keep[-1]) + 1
    return np.asarray(ppm)[:, left:right].copy(), left


def reverse_complement_ppm(ppm: np.ndarray) -> np.ndarray:
    """Reverse complement of (..., 4, w): flip letters (A↔T, C↔G) and positions."""
    return np.ascontiguousarray(np.asarray(ppm)[..., ::-1, ::-1])


# ----------------------------------------------------------------------------- MEME format

def write_meme(path: str | Path, motifs: dict[str, np.ndarray],
               nsites: dict[str, int] | None = None,
               background: np.ndarray | None = None) -> None:
    """Write ppms, each shape=(4, w), as a MEME version 4 minimal motif file, atomically.

    Names must be non-empty without whitespace. ``nsites`` missing for a motif is written
    as 20 (MEME's convention for unknown); ``background`` (4,) defaults to uniform.
    """
    bg = np.full(4, 0.25) if background is None else np.asarray(background, dtype=np.float64)
    if bg.shape != (4,) or abs(bg.sum() - 1) > 1e-6:
        raise ValueError(f"background must be 4 probabilities summing to 1, got {bg}")
    nsites = nsites or {}
    lines = ["MEME version 4", "", "ALPHABET= ACGT", "", "strands: + -", "",
             "Background letter frequencies",
             " ".join(f"{a} {v:.6f}" for a, v in zip(ALPHABET, bg, strict=True)), ""]
    for name, ppm in motifs.items():
        ppm = np.asarray(ppm, dtype=np.float64)
        if not name or any(ch.isspace() for ch in name):
            raise ValueError(f"MEME motif name must be non-empty without spaces: {name!r}")
        if ppm.ndim != 2 or ppm.shape[0] != 4 or ppm.shape[1] == 0:
            raise ValueError(f"motif {name}: need a (4, w) ppm, got shape {ppm.shape}")
        lines.append(f"MOTIF {name}")
        lines.append(f"letter-probability matrix: alength= 4 w= {ppm.shape[1]} "
                     f"nsites= {int(nsites.get(name, 20))} E= 0")
        lines.extend(" ".join(f"{v:.6f}" for v in column) for column in ppm.T)
        lines.append("")
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def _floats(line: str) -> list[float] | None:
    """The line's whitespace-separated numbers, or None when any token is not a number."""
    try:
        return [float(tok) for tok in line.split()]
    except ValueError:
        return None


def read_meme(path: str | Path) -> dict[str, np.ndarray]:
    """Read a MEME (version 4 minimal) DNA motif file → {name: ppm, shape=(4, w)}.

    Raises InputError naming the file and line for an alphabet other than ACGT, a matrix
    row without exactly 4 numbers, a matrix whose rows disagree with its ``w=``, a row not
    summing to ~1, or a repeated motif name.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"cannot read MEME file ({exc.strerror})", path=path,
                         fix="check the path") from exc
    motifs: dict[str, np.ndarray] = {}
    name: str | None = None
    rows: list[list[float]] = []
    want_w: int | None = None
    header_line = 0
    in_matrix = False
    fix_rows = "each matrix row needs 4 probabilities (A C G T) summing to 1"

    def finish(lineno: int) -> None:
        nonlocal in_matrix
        if in_matrix:
            if want_w is not None and len(rows) != want_w:
                raise InputError(f"motif {name} declares w= {want_w} but has {len(rows)} rows",
                                 path=path, line=lineno, fix="make w= match the matrix rows")
            if not rows:
                raise InputError(f"motif {name} has an empty matrix", path=path,
                                 line=header_line, fix=fix_rows)
            if name in motifs:
                raise InputError(f"motif {name} has two matrices", path=path, line=header_line,
                                 fix="give every matrix its own MOTIF line")
            motifs[name] = np.array(rows, dtype=np.float64).T
        in_matrix = False

    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if in_matrix:
            if not line:
                if not rows:
                    continue
            elif line[0] in "-+.0123456789":
                values = _floats(line)
                if values is None or len(values) != 4:
                    got = "non-numbers" if values is None else f"{len(values)} values"
                    raise InputError(f"matrix row has {got}, expected 4 numbers", path=path,
                                     line=lineno, fix=fix_rows)
                if want_w is not None and len(rows) == want_w:
                    raise InputError(f"motif {name} declares w= {want_w} but has more rows",
                                     path=path, line=lineno, fix="make w= match the matrix rows")
                if abs(sum(values) - 1) > _MEME_SUM_TOLERANCE or min(values) < 0:
                    raise InputError(f"matrix row sums to {sum(values):.4f}, not 1",
                                     path=path, line=lineno, fix=fix_rows)
                rows.append(values)
                continue
            finish(lineno)
        if line.startswith("ALPHABET"):
            letters = line.split("=", 1)[1].strip() if "=" in line else ""
            if letters.upper() != ALPHABET:
                raise InputError(f"alphabet {letters!r} is not ACGT", path=path, line=lineno,
                                 fix="only DNA motifs (ALPHABET= ACGT) are supported")
        elif line.startswith("MOTIF"):
            parts = line.split()
            if len(parts) < 2:
                raise InputError("MOTIF line without a name", path=path, line=lineno,
                                 fix="write 'MOTIF name'")
            name = parts[1]
            if name in motifs:
                raise InputError(f"motif name {name} appears twice", path=path, line=lineno,
                                 fix="give every motif a unique name")
        elif line.startswith("letter-probability matrix"):
            if name is None:
                raise InputError("matrix before any MOTIF line", path=path, line=lineno,
                                 fix="start each motif with 'MOTIF name'")
            keys = dict(re.findall(r"(\w+)=\s*(\S+)", line))
            if keys.get("alength", "4") != "4":
                raise InputError(f"alength= {keys['alength']}, expected 4", path=path,
                                 line=lineno, fix="only DNA motifs are supported")
            try:
                want_w = int(keys["w"]) if "w" in keys else None
            except ValueError:
                raise InputError(f"w= {keys['w']} is not an integer", path=path, line=lineno,
                                 fix="write w= followed by the number of rows") from None
            rows, header_line, in_matrix = [], lineno, True
    finish(len(text.splitlines()) + 1)
    if not motifs:
        raise InputError("no motifs (no 'letter-probability matrix' blocks)", path=path,
                         fix="write motifs in MEME minimal format")
    return motifs


# ----------------------------------------------------------------------------- JASPAR

@dataclass(frozen=True)
class JasparMotif:
    """One JASPAR matrix: ``ppm`` shape=(4, w), read-only, from the counts + a pseudocount."""

    matrix_id: str
    name: str
    ppm: np.ndarray = field(compare=False, repr=False)
    release: str = ""
    nsites: int = 0


def jaspar_release(release: str | None = None) -> str:
    """The JASPAR release name that ``release`` resolves to (None → newest shipped)."""
    import pyjaspar

    if release is None:
        return pyjaspar.JASPAR_LATEST_RELEASE
    if release not in pyjaspar.jaspar_releases:
        raise InputError(f"unknown JASPAR release {release!r}",
                         fix="use one of " + ", ".join(sorted(pyjaspar.jaspar_releases))
                         + " or leave it empty for the newest")
    return release


def _connect(release: str | None) -> Any:
    from pyjaspar import jaspardb

    return jaspardb(release=jaspar_release(release))


def _to_motif(motif: Any, release: str) -> JasparMotif:
    counts = np.array([motif.counts[a] for a in ALPHABET], dtype=np.float64)
    ppm = pfm_to_ppm(counts, JASPAR_PSEUDOCOUNT)
    ppm.setflags(write=False)
    return JasparMotif(matrix_id=motif.matrix_id, name=motif.name, ppm=ppm, release=release,
                       nsites=int(round(counts[:, 0].sum())))


@functools.lru_cache(maxsize=16)
def _fetch(tax_group: str | None, collection: str, release: str) -> tuple[JasparMotif, ...]:
    db = _connect(release)
    groups = None if tax_group is None else [tax_group]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyjaspar warns on an empty selection; raised below
        found = db.fetch_motifs(collection=collection, tax_group=groups, all_versions=False)
    motifs = tuple(_to_motif(m, db.release) for m in found)
    if not motifs:
        known = db.conn.execute("SELECT DISTINCT VAL FROM MATRIX_ANNOTATION "
                                "WHERE TAG = 'tax_group'").fetchall()
        raise InputError(f"no JASPAR {release} {collection} motifs for tax group {tax_group!r}",
                         fix="use a collection such as CORE and one of the tax groups "
                         + ", ".join(sorted(v for (v,) in known)))
    return motifs


def jaspar_motifs(tax_group: str | None = "fungi", collection: str = "CORE",
                  release: str | None = None) -> list[JasparMotif]:
    """Latest version of every JASPAR motif in ``collection`` for ``tax_group`` (None = all)."""
    return list(_fetch(tax_group, collection, jaspar_release(release)))


def jaspar_motif(matrix_id: str, release: str | None = None) -> JasparMotif:
    """One JASPAR motif by ID: versioned ("MA0363.3") or base ("MA0363" → latest version)."""
    release = jaspar_release(release)
    fix = f"use a matrix ID that exists in {release}, e.g. MA0363 or MA0363.3"
    if not isinstance(matrix_id, str) or not _JASPAR_ID.match(matrix_id.strip()):
        raise InputError(f"{matrix_id!r} is not a JASPAR matrix ID", fix=fix)
    db = _connect(release)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyjaspar warns, then returns None, for unknown IDs
        motif = db.fetch_motif_by_id(matrix_id.strip())
    if motif is None:
        raise InputError(f"JASPAR matrix {matrix_id} not found in {release}", fix=fix)
    return _to_motif(motif, db.release)


# ----------------------------------------------------------------------------- Tomtom

def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg q-values of p-values, shape=(m,) → (m,), monotone, capped at 1."""
    p = np.asarray(p, dtype=np.float64)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum.accumulate(scaled[::-1])[::-1]
    q = np.empty(m)
    q[order] = np.minimum(q_sorted, 1.0)
    return q


def tomtom_matches(queries: dict[str, np.ndarray], targets: list[JasparMotif]) -> pd.DataFrame:
    """Tomtom every query ppm (4, w) against every target; one row per (query, target).

    Columns: query, target_id, target_name, p, q (Benjamini–Hochberg over the targets of
    that query), offset, strand ("+"/"-"), score, overlap. For offset and strand see the
    module docstring. Queries keep their dict order; within a query rows go by p.
    """
    from memelite import tomtom

    if not queries or not targets:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
            TOMTOM_COLUMNS, [str, str, str, float, float, int, str, float, int], strict=True)})
    names = list(queries)
    Qs = [np.ascontiguousarray(queries[k], dtype=np.float64) for k in names]
    Ts = [np.ascontiguousarray(t.ppm, dtype=np.float64) for t in targets]
    for k, Q in zip(names, Qs, strict=True):
        if Q.ndim != 2 or Q.shape[0] != 4:
            raise ValueError(f"query {k}: need a (4, w) ppm, got {Q.shape}")
    p, score, offset, overlap, strand = tomtom(Qs, Ts, n_jobs=1)
    n_t = len(targets)
    table = pd.DataFrame({
        "query": np.repeat(names, n_t),
        "target_id": np.tile([t.matrix_id for t in targets], len(names)),
        "target_name": np.tile([t.name for t in targets], len(names)),
        "p": p.ravel(),
        "q": np.concatenate([benjamini_hochberg(row) for row in p]),
        "offset": offset.ravel().astype(np.int64),
        "strand": np.where(strand.ravel() > 0, "-", "+"),
        "score": score.ravel(),
        "overlap": overlap.ravel().astype(np.int64),
    })
    table["_order"] = np.repeat(np.arange(len(names)), n_t)
    table = table.sort_values(["_order", "p", "target_id"], kind="stable")
    return table.drop(columns="_order").reset_index(drop=True)


# ----------------------------------------------------------------------------- KL

def kl_columns(target: np.ndarray, query: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """D(target_col || query_col) in bits for paired columns, both shape=(4, k) → (k,)."""
    t = np.clip(np.asarray(target, dtype=np.float64), eps, None)
    q = np.clip(np.asarray(query, dtype=np.float64), eps, None)
    t, q = t / t.sum(axis=0), q / q.sum(axis=0)
    return (t * np.log2(t / q)).sum(axis=0)


def aligned_kl(query: np.ndarray, target: np.ndarray, offset: int, strand: str) -> float:
    """Mean per-column D(target || query) in bits where query (4, wq) overlaps target (4, wt).

    Tomtom's frame: query column j faces column j + offset of the target, reverse
    complemented on strand "-" — computed here as the reverse-complemented query at
    ``wt - wq - offset`` on the target as given. Raises ValueError without overlap.
    """
    query, target = np.asarray(query), np.asarray(target)
    wq, wt = query.shape[1], target.shape[1]
    if strand == "-":
        query, offset = reverse_complement_ppm(query), wt - wq - offset
    elif strand != "+":
        raise ValueError(f"strand must be '+' or '-', got {strand!r}")
    lo, hi = max(0, offset), min(wt, offset + wq)
    if hi <= lo:
        raise ValueError(f"no overlap at offset {offset} (query w={wq}, target w={wt})")
    return float(kl_columns(target[:, lo:hi], query[:, lo - offset:hi - offset]).mean())


def best_kl_to(query: np.ndarray, target: np.ndarray) -> tuple[float, int, str]:
    """Smallest ``aligned_kl`` over both strands and every offset with overlap >= min(w)//2.

    Returns (mean KL in bits, offset, strand) in Tomtom's frame; ties keep the first found
    ("+" before "-", offsets ascending).
    """
    wq, wt = np.asarray(query).shape[1], np.asarray(target).shape[1]
    need = max(1, min(wq, wt) // 2)
    best = (math.inf, 0, "+")
    for strand in ("+", "-"):
        for offset in range(need - wq, wt - need + 1):
            kl = aligned_kl(query, target, offset, strand)
            if kl < best[0]:
                best = (kl, offset, strand)
    return best


# ----------------------------------------------------------------------------- PWM baseline

def pwm_logodds(ppm: np.ndarray, background: np.ndarray | None = None,
                pseudocount: float = 1e-3) -> np.ndarray:
    """log2(ppm / background) for ppm (4, w) → (4, w); ``pseudocount`` is added to each
    probability (columns renormalised) so no score is -inf. Background defaults to uniform."""
    p = np.asarray(ppm, dtype=np.float64) + pseudocount
    p = p / p.sum(axis=0, keepdims=True)
    bg = np.full(4, 0.25) if background is None else np.asarray(background, dtype=np.float64)
    return np.log2(p / bg[:, None])


def max_pwm_score(X: np.ndarray, logodds: np.ndarray, batch: int = 4096) -> np.ndarray:
    """Best log-odds score per sequence over all positions and both strands.

    X: np.ndarray, shape=(n, 4, L), one-hot (N columns score 0); logodds: shape=(4, w), w <= L.
    Returns shape=(n,), float64 (computed in float32). The score of :func:`best_hits`.
    """
    X = np.asarray(X)
    logodds = np.asarray(logodds, dtype=np.float32)
    if X.ndim != 3 or X.shape[1] != 4 or logodds.ndim != 2 or logodds.shape[0] != 4:
        raise ValueError(f"need X (n, 4, L) and logodds (4, w); got {X.shape}, {logodds.shape}")
    if logodds.shape[1] > X.shape[2]:
        raise ValueError(f"motif width {logodds.shape[1]} exceeds sequence length {X.shape[2]}")
    return best_hits(X, logodds, batch)[0].astype(np.float64)


def best_hits(X: np.ndarray, logodds: np.ndarray,
              batch: int = 1024) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best log-odds hit per sequence over both strands: (score, start, strand).

    X: one-hot shape=(n, 4, L); logodds: shape=(4, w). ``start`` (shape=(n,)) is the hit's
    first position on the forward strand (it covers ``start .. start + w - 1``), ``strand``
    is +1 or -1. Ties go to the leftmost forward-strand position.
    """
    import torch

    X = np.asarray(X)
    logodds = np.asarray(logodds, dtype=np.float32)
    w = logodds.shape[1]
    if X.ndim != 3 or X.shape[1] != 4 or logodds.shape[0] != 4 or w > X.shape[2]:
        raise ValueError(f"need X (n, 4, L) and logodds (4, w <= L); got {X.shape}, "
                         f"{logodds.shape}")
    weight = torch.from_numpy(np.stack([logodds, reverse_complement_ppm(logodds)]))
    scores, starts, strands = [], [], []
    with torch.no_grad():
        for i in range(0, len(X), batch):
            xb = torch.from_numpy(np.asarray(X[i:i + batch], dtype=np.float32))
            s = torch.nn.functional.conv1d(xb, weight).double().numpy()   # (b, 2, L - w + 1)
            flat = s.reshape(len(s), -1)
            best = flat.argmax(axis=1)
            scores.append(flat[np.arange(len(s)), best])
            strands.append(np.where(best < s.shape[2], 1, -1))
            starts.append(best % s.shape[2])
    if not scores:
        return np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(scores), np.concatenate(starts), np.concatenate(strands)


# ----------------------------------------------------------------------------- logos

def _ic_frame(ppm: np.ndarray, start: int = 0) -> pd.DataFrame:
    """Per-letter heights (bits) of ppm (4, w), indexed by x position ``start..start+w-1``."""
    p = np.asarray(ppm, dtype=np.float64)
    p = p / p.sum(axis=0, keepdims=True)
    heights = p * information_content(p)[None, :]
    return pd.DataFrame(heights.T, columns=list(ALPHABET),
                        index=np.arange(start, start + p.shape[1]))


def plot_filter_logos(path_png: str | Path, panels: list[dict], title: str = "") -> None:
    """Filter logos (left) beside their JASPAR matches (right), one row per panel.

    Panel keys: ``title``, ``query`` (4, w) ppm; optional ``match`` (4, w) ppm,
    ``match_title``, ``offset`` (int, default 0) and ``strand`` ("+"/"-", default "+").
    The match is reverse complemented on "-" and shifted so that query column j sits above
    match column j + offset (Tomtom's frame). Writes ``path_png`` (dpi 150) and the SVG with
    the same stem, each atomically. ``title`` heads the figure.
    """
    import logomaker
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path_png = Path(path_png)
    rows = max(1, len(panels))
    fig = Figure(figsize=(11, 2.1 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 2, squeeze=False)
    if title:
        fig.suptitle(title, fontsize=12, fontweight="bold")
    axes[0, 0].annotate("learned filter (PWM from activating sites)", (0, 1.32),
                        xycoords="axes fraction", fontsize=10, color="#444")
    axes[0, 1].annotate("best JASPAR match, aligned by Tomtom", (0, 1.32),
                        xycoords="axes fraction", fontsize=10, color="#444")
    for (ax_q, ax_m), panel in zip(axes, panels, strict=False):
        query = np.asarray(panel["query"], dtype=np.float64)
        match = panel.get("match")
        offset = int(panel.get("offset", 0) or 0)
        lo, hi = 0, query.shape[1]
        if match is not None:
            match = np.asarray(match, dtype=np.float64)
            if panel.get("strand", "+") == "-":
                match = reverse_complement_ppm(match)
            lo, hi = min(lo, -offset), max(hi, match.shape[1] - offset)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an all-zero logo (uniform ppm) warns on ylim
            logomaker.Logo(_ic_frame(query), ax=ax_q, color_scheme="classic")
        ax_q.set_title(str(panel.get("title", "")), fontsize=10, loc="left")
        if match is not None:
            logomaker.Logo(_ic_frame(match, start=-offset), ax=ax_m, color_scheme="classic")
            strand = panel.get("strand", "+")
            ax_m.set_title(f"{panel.get('match_title', 'match')} ({strand})", fontsize=10,
                           loc="left")
        else:
            ax_m.text(0.5, 0.5, "no match", ha="center", va="center", transform=ax_m.transAxes)
            ax_m.set_title(str(panel.get("match_title", "")), fontsize=10, loc="left")
        for ax in (ax_q, ax_m):
            ax.set_xlim(lo - 0.5, hi - 0.5)
            ax.set_ylim(0, 2)
            ax.set_ylabel("bits")
            ax.set_xticks([])
            ax.spines[["top", "right"]].set_visible(False)
    for ax_q, ax_m in axes[len(panels):]:
        ax_q.set_axis_off()
        ax_m.set_axis_off()
    with atomic_path(path_png) as tmp:
        fig.savefig(tmp, format="png", dpi=150)
    with atomic_path(path_png.with_suffix(".svg")) as tmp:
        fig.savefig(tmp, format="svg")
