"""Motif grammar from first-layer activation maps: co-activation of two filters at spacing Δ.

Seed 002 ("The Grammar of the Genome"): a first-layer activation map ``A_i(p)`` says where
filter i's motif sits; counting how often filter j is active ``Δ`` bases after filter i — a
cross-correlation of the two maps — measures whether the two motifs keep a preferred spacing.

Definitions (all arrays are per window ``n`` and conv position ``p``; ``P = L - kernel + 1``):

* windows: overlapping windows of one locus (peaks a few bases apart) are merged first, or
  one tandem locus would count once per window covering it: by coordinates
  (:func:`distinct_loci`, from the windows BED) or, without them, by sequence
  (:func:`distinct_windows`).

Everything below is a sum over windows, or a per-filter maximum, so :func:`run_grammar`
streams the activation maps a chunk at a time in two passes (:func:`filter_peaks` for the
cuts, then :class:`SiteSums`) and never holds more than one chunk of maps.

* a *site* of filter i is a position where ``A_i(n, p) > cut_i`` and ``A_i`` is the largest
  value within ``±radius`` positions (non-maximum suppression, so one motif instance is one
  site and not a smear of neighbouring positions). ``cut_i = threshold × max A_i`` over the
  positive and negative windows together, so both classes use the same cut.
* observed ``O_ij(Δ) = Σ_n Σ_p s_i(n, p) · s_j(n, p + Δ)`` for signed ``Δ`` in
  ``[-max_spacing, max_spacing]``: filter j's window starts Δ bases after filter i's
  (negative Δ: before). ``s`` is 0/1 (``weighted=False``) or the activation at a site.
* expected ``E_ij(Δ)``: the same sum with filter j's map taken from a *different* window,
  averaged over every choice — exactly ``(Σ_p S_i(p) S_j(p + Δ) − O_ij(Δ)) / (N − 1)`` with
  ``S`` the sum of ``s`` over windows. This keeps each filter's positional profile (e.g. sites
  piled up at the peak summit) and its site count, and breaks only the within-window pairing.
* score ``(O + c) / (E + c)`` with pseudocount ``c`` (default 1): > 1 means more pairs at Δ
  than the positional profiles predict; empty bins score 1 and a handful of pairs is shrunk
  towards 1. A window holding both motifs at *any* spacing lifts every Δ alike (co-occurrence);
  a preferred spacing is a peak above the other Δ.

Which filter pairs (:func:`choose_pairs`): the anchor is the filter that best matches the
target's own JASPAR motif (Tomtom q < ``q_threshold``); its partners are, for each *other*
JASPAR motif that is some filter's best significant match, the filter matching it best
(lowest q), most significant first, at most ``max_partners``. When no filter matches another
motif, the filters most active on positives stand in as partners. Two more pairs are always
added: the anchor with itself (homotypic spacing, e.g. tandem sites) and the anchor with the
best own-motif filter on the other strand, when there is one (inverted/everted repeats; for a
palindrome its overlap peak is the same site seen by both filters). Δ where the two filters'
motif cores overlap are the same site, not grammar: they are flagged ``overlap`` and shaded
in the figure, and never chosen as a pair's preferred spacing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats
from scipy.ndimage import maximum_filter1d

from .errors import InputError
from .files import read_json, write_tsv
from .motifs import pfm_to_ppm, trim_ppm
from .records import write_record
from .shards import load_split

SPACING_COLUMNS = ["target", "filter_a", "motif_a", "filter_b", "motif_b", "spacing",
                   "core_spacing", "overlap", "score_pos", "score_neg", "n_pos_pairs",
                   "expected_pos", "n_neg_pairs", "expected_neg", "p_pos"]
PAIR_COLUMNS = ["target", "role", "filter_a", "motif_a", "strand_a", "filter_b", "motif_b",
                "strand_b", "n_sites_a_pos", "n_sites_b_pos", "n_pos_near", "expected_pos_near",
                "score_pos_near", "score_neg_near", "p_near", "best_spacing", "best_core_spacing",
                "score_pos", "score_neg", "n_pos_pairs", "expected_pos", "p_pos", "p_bonferroni"]
DEFAULTS = {"split": "test", "threshold": 0.5, "max_spacing": 80, "nms_radius": 2,
            "distinct_overlap": 50,
            "weighted": False, "pseudocount": 1.0, "q_threshold": 0.05, "max_partners": 4,
            "min_pairs": 5, "n_plot": 6}
UNMATCHED = "unmatched"
# First-layer activation maps held at once by the grammar step (float32 bytes), and the
# one-hot bytes read at once by the sequence de-duplication.
CHUNK_BYTES = 1 << 27
_SCAN_BYTES = 1 << 24


# ----------------------------------------------------------------------------- maps → sites

@torch.no_grad()
def first_layer_activations(model: torch.nn.Module, X: np.ndarray,
                            batch: int = 512) -> np.ndarray:
    """First-layer activation maps, float32 shape=(n, F, P), of one-hot X, shape=(n, C, L).

    Uses ``model.activations`` (BindingCNN: ReLU of the first conv, valid convolution) when
    the model has it, otherwise ReLU of its first ``Conv1d``.
    """
    layer = getattr(model, "activations", None)
    if layer is None:
        conv = next((m for m in model.modules() if isinstance(m, torch.nn.Conv1d)), None)
        if conv is None:
            raise ValueError("model has no Conv1d layer")
        layer = lambda x: torch.relu(conv(x))  # noqa: E731
    was = model.training
    model.eval()
    try:
        parts = [layer(torch.from_numpy(np.asarray(X[i:i + batch], dtype=np.float32))).numpy()
                 for i in range(0, len(X), batch)]
    finally:
        model.train(was)
    return np.concatenate(parts) if parts else np.zeros((0, 0, 0), np.float32)


def active_sites(A: np.ndarray, cut: float, radius: int = 0) -> np.ndarray:
    """Sites of one filter: A (n, P) → bool (n, P), ``A > cut`` and A is the largest value
    within ``±radius`` positions of the same window (ties keep every tied position)."""
    acts = np.asarray(A, dtype=np.float64)
    above = acts > cut
    if radius <= 0 or acts.size == 0:
        return above
    local_max = maximum_filter1d(acts, size=2 * radius + 1, axis=1, mode="constant",
                                 cval=-np.inf)
    return above & (acts >= local_max)


def _observed(s_i: np.ndarray, s_j: np.ndarray, max_spacing: int) -> np.ndarray:
    """Σ_n Σ_p s_i[n, p] s_j[n, p + Δ] for Δ = -max_spacing..max_spacing, float64."""
    P = s_i.shape[1]
    observed = np.zeros(2 * max_spacing + 1)
    for k, delta in enumerate(range(-max_spacing, max_spacing + 1)):
        lo, hi = max(0, -delta), min(P, P - delta)  # p with both p and p + Δ inside
        if hi > lo:
            observed[k] = np.einsum("np,np->", s_i[:, lo:hi], s_j[:, lo + delta:hi + delta])
    return observed


def _expected(S_i: np.ndarray, S_j: np.ndarray, observed: np.ndarray, n: int) -> np.ndarray:
    """Expected pairs with j's map from another window: (Σ_p S_i(p) S_j(p + Δ) − O) / (n − 1);
    S_i, S_j: site maps summed over the n windows, shape=(P,). NaN when n < 2."""
    max_spacing, P = (len(observed) - 1) // 2, len(S_i)
    if n < 2:
        return np.full(len(observed), np.nan)
    across = np.zeros(len(observed))
    for k, delta in enumerate(range(-max_spacing, max_spacing + 1)):
        lo, hi = max(0, -delta), min(P, P - delta)
        if hi > lo:
            across[k] = S_i[lo:hi] @ S_j[lo + delta:hi + delta]
    return (across - observed) / (n - 1)


def pair_counts(s_i: np.ndarray, s_j: np.ndarray, max_spacing: int) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """Observed and expected pair counts at every Δ = -max_spacing..max_spacing.

    s_i, s_j: shape=(n, P), site weights (0/1 or activations) of filters i and j.
    observed[Δ + max_spacing] = Σ_n Σ_p s_i[n, p] s_j[n, p + Δ]; expected: the same with s_j
    from a different window, averaged over all n − 1 choices (module docstring). With fewer
    than 2 windows the expectation is NaN. Returns two float64 arrays of shape (2·max_spacing+1,).
    """
    s_i, s_j = np.asarray(s_i, dtype=np.float64), np.asarray(s_j, dtype=np.float64)
    if s_i.shape != s_j.shape or s_i.ndim != 2:
        raise ValueError(f"need two maps of one shape (n, P); got {s_i.shape} and {s_j.shape}")
    observed = _observed(s_i, s_j, max_spacing)
    return observed, _expected(s_i.sum(axis=0), s_j.sum(axis=0), observed, len(s_i))


def _profile(n_pairs: np.ndarray, expected: np.ndarray, obs_w: np.ndarray, exp_w: np.ndarray,
             pseudocount: float) -> dict[str, np.ndarray]:
    """Score, counts and Poisson p over Δ from 0/1 and chosen-weighting pair counts."""
    max_spacing = (len(n_pairs) - 1) // 2
    return {"spacing": np.arange(-max_spacing, max_spacing + 1),
            "score": (obs_w + pseudocount) / (exp_w + pseudocount),
            "n_pairs": n_pairs, "expected": expected,
            "p": stats.poisson.sf(n_pairs - 1, np.maximum(expected, 1e-12))}


def coactivation_profile(A_i: np.ndarray, A_j: np.ndarray, max_spacing: int,
                         threshold: float = 0.5, *, cut_i: float | None = None,
                         cut_j: float | None = None, radius: int = 0, weighted: bool = False,
                         pseudocount: float = 1.0) -> dict[str, np.ndarray]:
    """Co-activation of filter j at Δ after filter i, for maps A_i, A_j of shape (n, P).

    The cuts default to ``threshold × max`` of each map. Returns arrays over
    Δ = -max_spacing..max_spacing: ``spacing``, ``score`` ((O + c) / (E + c) of the chosen
    weighting), ``n_pairs`` and ``expected`` (0/1 site counts whatever the weighting) and
    ``p`` (Poisson upper tail of ``n_pairs`` given ``expected``).
    """
    A_i, A_j = np.asarray(A_i), np.asarray(A_j)
    cut_i = threshold * float(A_i.max()) if cut_i is None else cut_i
    cut_j = threshold * float(A_j.max()) if cut_j is None else cut_j
    site_i, site_j = active_sites(A_i, cut_i, radius), active_sites(A_j, cut_j, radius)
    n_pairs, expected = pair_counts(site_i, site_j, max_spacing)
    if weighted:
        obs_w, exp_w = pair_counts(np.where(site_i, A_i, 0.0), np.where(site_j, A_j, 0.0),
                                   max_spacing)
    else:
        obs_w, exp_w = n_pairs, expected
    return _profile(n_pairs, expected, obs_w, exp_w, pseudocount)


def coactivation(A_i: np.ndarray, A_j: np.ndarray, max_spacing: int,
                 threshold: float = 0.5, **options) -> np.ndarray:
    """Co-activation score over Δ = -max_spacing..max_spacing, shape=(2·max_spacing+1,).

    A_i, A_j: shape=(n, P), activation maps of two filters over the same windows.
    ``options`` as for :func:`coactivation_profile` (cuts, radius, weighted, pseudocount).
    """
    return coactivation_profile(A_i, A_j, max_spacing, threshold, **options)["score"]


# ----------------------------------------------------------------------------- windows

def distinct_loci(windows: pd.DataFrame, min_overlap: int = 50) -> np.ndarray:
    """Indices of windows to keep so that no two kept windows share a locus, from coordinates.

    windows: one row per window with ``chrom``, ``start``, ``end`` (one width, as in shards)
    and optionally ``kind``. Windows on one chromosome overlapping by ``>= min_overlap`` bp
    are one locus, chained (a–b and b–c make one locus of a, b, c); the first row of each
    locus is kept. Rows of kind "shuffle" (dinucleotide shuffles: no locus) are all kept, as
    is everything when ``min_overlap`` <= 0 or > the width. Returns sorted int64 indices.
    """
    n = len(windows)
    if n == 0 or min_overlap <= 0:
        return np.arange(n, dtype=np.int64)
    start = windows["start"].to_numpy(dtype=np.int64)
    widths = np.unique(windows["end"].to_numpy(dtype=np.int64) - start)
    if len(widths) != 1:
        raise ValueError(f"windows must have one width, got {widths[:5].tolist()}")
    shuffle = (windows["kind"].to_numpy() == "shuffle") if "kind" in windows else np.zeros(n, bool)
    rows = np.flatnonzero(~shuffle)
    chrom = pd.factorize(windows["chrom"].to_numpy()[rows])[0]
    order = np.lexsort((rows, start[rows], chrom))  # by chrom, start, then row
    rows, chrom, start = rows[order], chrom[order], start[rows][order]
    # sorted by start, two windows of one width overlap by >= min_overlap exactly when their
    # starts differ by <= width - min_overlap, so each locus is a run of neighbours that do
    first = np.ones(len(rows), dtype=bool)
    first[1:] = (chrom[1:] != chrom[:-1]) | (np.diff(start) > widths[0] - min_overlap)
    kept = np.minimum.reduceat(rows, np.flatnonzero(first)) if len(rows) else rows
    return np.sort(np.concatenate([kept, np.flatnonzero(shuffle)])).astype(np.int64)


def _base_codes(X: np.ndarray) -> np.ndarray:
    """One-hot (n, 4, L) → uint8 (n, L): 0..3 for A, C, G, T and 4 for N."""
    return np.where(X.sum(axis=1) > 0, X.argmax(axis=1), 4).astype(np.uint8)


def _code_blocks(X: np.ndarray, block: int) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, uint8 base codes) of ``block`` windows of X at a time."""
    for start in range(0, len(X), block):
        yield start, _base_codes(np.asarray(X[start:start + block]))


def distinct_windows(X: np.ndarray, min_overlap: int = 50) -> np.ndarray:
    """Indices of windows to keep so that no two kept windows share a locus, from sequence.

    Fallback of :func:`distinct_loci` when the windows' coordinates are unknown.
    X: shape=(n, 4, L), one-hot (an array, memory map or :class:`Rows`; read in blocks).
    Windows i < j are taken as one locus when the first ``min_overlap`` bases of one occur
    exactly inside the other (ChIP-seq peaks a few bases apart give overlapping windows;
    without this their motif pairs would be counted once per window). Exact repeat copies
    collapse the same way. Keeps the first window of each group; ``min_overlap`` <= 0 or > L
    keeps all. Holds the ``n`` prefixes. Returns sorted int64 indices.
    """
    n, _, L = X.shape
    if n == 0 or min_overlap <= 0 or min_overlap > L:
        return np.arange(n, dtype=np.int64)
    block = max(1, _SCAN_BYTES // (4 * L))
    prefix: dict[bytes, list[int]] = {}
    for first, codes in _code_blocks(X, block):
        for i, row in enumerate(codes[:, :min_overlap], start=first):
            if (row < 4).all():  # a prefix with N bases matches nothing
                prefix.setdefault(row.tobytes(), []).append(i)
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for first, codes in _code_blocks(X, block):
        for i, row in enumerate(codes, start=first):
            text = row.tobytes()
            for start in range(L - min_overlap + 1):
                for j in prefix.get(text[start:start + min_overlap], ()):
                    if j != i:
                        a, b = root(i), root(j)
                        parent[max(a, b)] = min(a, b)
    return np.array([i for i in range(n) if root(i) == i], dtype=np.int64)


class Rows:
    """Chosen rows of several arrays of shape (n_k, 4, L) (e.g. the memory-mapped splits),
    read as one array: ``len``, ``shape`` and ``rows[a:b]`` (loads only those rows)."""

    def __init__(self, arrays: list[np.ndarray], index: np.ndarray) -> None:
        self.arrays = arrays
        self.index = np.asarray(index, dtype=np.int64)
        self.offsets = np.cumsum([0] + [len(a) for a in arrays])
        if np.any(np.diff(self.index) < 0):
            raise ValueError("row index must be ascending")
        if len(self.index) and (self.index[0] < 0 or self.index[-1] >= self.offsets[-1]):
            raise IndexError("row index outside the arrays")

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self), *self.arrays[0].shape[1:])

    def __getitem__(self, key: slice) -> np.ndarray:
        index = self.index[key]
        part = np.searchsorted(self.offsets, index, side="right") - 1
        if len(index) == 0:
            return np.zeros((0, *self.shape[1:]), dtype=self.arrays[0].dtype)
        return np.concatenate([self.arrays[k][index[part == k] - self.offsets[k]]
                               for k in np.unique(part)])


# ----------------------------------------------------------------------------- running sums

def _segment_counts(A: np.ndarray, X: np.ndarray, kernel: int, cut: np.ndarray) -> np.ndarray:
    """Per filter, counts of the input segments ``X[n, :, p:p + kernel]`` at every
    ``A[n, f, p] > cut[f]``, float64 (F, 4·kernel); the sums of
    :func:`helixflow.motifs.activation_pfms`, with the cut given instead of taken from A."""
    n, F, P = A.shape
    counts = np.zeros((F, 4 * kernel))
    block = max(1, 4_000_000 // max(1, F * P + P * 4 * kernel))
    for start in range(0, n, block):
        sites = A[start:start + block] > cut[None, :, None]  # (c, F, P)
        c = len(sites)
        S = sites.transpose(1, 0, 2).reshape(F, c * P).astype(np.float32)
        windows = np.lib.stride_tricks.sliding_window_view(X[start:start + block], kernel,
                                                           axis=2)  # (c, 4, P, kernel)
        W = windows.transpose(0, 2, 1, 3).reshape(c * P, 4 * kernel).astype(np.float32)
        counts += S @ W
    return counts


class SiteSums:
    """Running sums over the windows of one class, fed chunk by chunk (:meth:`add`).

    For the filters asked for: site counts; for the filters of ``pairs``: site maps summed over
    windows ``S_i(p)`` (0/1 and, with ``weighted``, activation-weighted) and per pair the
    observed pair counts ``O_ij(Δ)``; with ``pfm_cut``: the activating-segment counts of every
    filter (for the cores). Everything is a sum over windows, so the totals do not depend on
    the chunking and only one chunk of activation maps is ever held.
    """

    def __init__(self, cut: np.ndarray, filters: list[int], pairs: list[tuple[int, int]], *,
                 radius: int, max_spacing: int, weighted: bool,
                 pfm_cut: np.ndarray | None = None, kernel: int = 0) -> None:
        self.cut, self.radius, self.max_spacing = cut, radius, max_spacing
        self.weighted, self.pfm_cut, self.kernel = weighted, pfm_cut, kernel
        self.pairs = list(dict.fromkeys(pairs))
        self.paired = sorted({f for pair in self.pairs for f in pair})
        self.filters = sorted(set(filters) | set(self.paired))
        self.n = 0
        self.sites = dict.fromkeys(self.filters, 0)
        self.maps: dict[int, np.ndarray] = {}
        self.maps_w: dict[int, np.ndarray] = {}
        zeros = np.zeros(2 * max_spacing + 1)
        self.observed = {pair: zeros.copy() for pair in self.pairs}
        self.observed_w = {pair: zeros.copy() for pair in self.pairs}
        self.segments: np.ndarray | None = None

    def add(self, A: np.ndarray, X: np.ndarray | None = None) -> None:
        """Add the maps A, shape=(c, F, P), of c more windows (and their one-hot X for the
        segment counts)."""
        self.n += len(A)
        site01, site_w = {}, {}
        for f in self.filters:
            site = active_sites(A[:, f], self.cut[f], self.radius)
            self.sites[f] += int(site.sum())
            if f in self.paired:
                site01[f] = site.astype(np.float64)
                self.maps[f] = self.maps.get(f, 0) + site01[f].sum(axis=0)
            if f in self.paired and self.weighted:
                site_w[f] = np.where(site, A[:, f], 0.0).astype(np.float64)
                self.maps_w[f] = self.maps_w.get(f, 0) + site_w[f].sum(axis=0)
        for a, b in self.pairs:
            self.observed[a, b] += _observed(site01[a], site01[b], self.max_spacing)
            if self.weighted:
                self.observed_w[a, b] += _observed(site_w[a], site_w[b], self.max_spacing)
        if self.pfm_cut is not None and X is not None:
            counts = _segment_counts(A, X, self.kernel, self.pfm_cut)
            self.segments = counts if self.segments is None else self.segments + counts

    def profile(self, a: int, b: int, pseudocount: float) -> dict[str, np.ndarray]:
        """:func:`coactivation_profile` of filters a, b over every window added."""
        n_pairs = self.observed[a, b]
        expected = _expected(self.maps[a], self.maps[b], n_pairs, self.n)
        if not self.weighted:
            return _profile(n_pairs, expected, n_pairs, expected, pseudocount)
        obs_w = self.observed_w[a, b]
        exp_w = _expected(self.maps_w[a], self.maps_w[b], obs_w, self.n)
        return _profile(n_pairs, expected, obs_w, exp_w, pseudocount)


def _maps(model: torch.nn.Module, windows: Rows | np.ndarray,
          chunk: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(one-hot X, first-layer maps) of ``chunk`` windows at a time."""
    for start in range(0, len(windows), chunk):
        X = np.asarray(windows[start:start + chunk])
        yield X, first_layer_activations(model, X)


def chunk_windows(model: torch.nn.Module, windows: Rows | np.ndarray,
                  chunk_bytes: int = CHUNK_BYTES) -> int:
    """Windows per chunk so one chunk of float32 first-layer maps takes <= ``chunk_bytes``."""
    one = first_layer_activations(model, np.asarray(windows[0:1]))
    return max(1, int(chunk_bytes // max(1, one.nbytes)))


def filter_peaks(model: torch.nn.Module, windows: Rows | np.ndarray,
                 chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Pass 1 over the windows: per filter, the largest activation anywhere (float32 (F,);
    zeros without windows) and the sum over windows of each window's largest (float64 (F,))."""
    peak, top_sum = np.zeros(0, np.float32), np.zeros(0)
    for _, A in _maps(model, windows, chunk):
        top = A.max(axis=2)  # (c, F)
        peak = top.max(axis=0) if not len(peak) else np.maximum(peak, top.max(axis=0))
        top_sum = top.sum(axis=0, dtype=np.float64) + (top_sum if len(top_sum) else 0)
    return peak, top_sum


def window_sums(model: torch.nn.Module, pos: Rows | np.ndarray, neg: Rows | np.ndarray,
                pairs: list[tuple[int, int]], peak_pos: np.ndarray, peak: np.ndarray,
                params: dict, chunk: int) -> tuple[SiteSums, SiteSums]:
    """Pass 2 over the windows: :class:`SiteSums` of the positives (every filter's sites and
    activating segments) and of the negatives, for the filter ``pairs`` (indices).

    peak_pos, peak: per-filter maxima over the positives and over both classes (pass 1,
    :func:`filter_peaks`): the site cut is ``threshold × peak`` for both classes, the segment
    cut ``threshold × peak_pos`` (as the motif step's PWMs).
    """
    params = DEFAULTS | dict(params)
    cut = params["threshold"] * peak
    options = {"radius": int(params["nms_radius"]), "max_spacing": int(params["max_spacing"]),
               "weighted": bool(params["weighted"])}
    kernel = int(model.conv.kernel_size[0])
    sums_pos = SiteSums(cut, list(range(len(peak))), pairs, kernel=kernel, **options,
                        pfm_cut=np.where(peak_pos > 0, params["threshold"] * peak_pos, np.inf))
    sums_neg = SiteSums(cut, [], pairs, **options)
    for sums, rows in ((sums_pos, pos), (sums_neg, neg)):
        for X, A in _maps(model, rows, chunk):
            sums.add(A, X)
    return sums_pos, sums_neg


# ----------------------------------------------------------------------------- pairs

def filter_matches(tomtom: pd.DataFrame, own_id: str, q_threshold: float) -> pd.DataFrame:
    """Per filter (Tomtom query): best JASPAR match and its q, strand; q and strand of the
    match to ``own_id``. Index = query; columns best_id, best_name, best_q, best_strand,
    motif (best name, or "unmatched" when best_q >= q_threshold), own_q, own_strand."""
    if tomtom.empty:
        return pd.DataFrame(columns=["best_id", "best_name", "best_q", "best_strand", "motif",
                                     "own_q", "own_strand"])
    best = tomtom.sort_values(["q", "p"], kind="stable").drop_duplicates("query")
    table = pd.DataFrame({"best_id": best["target_id"].to_numpy(),
                          "best_name": best["target_name"].to_numpy(),
                          "best_q": best["q"].to_numpy(dtype=float),
                          "best_strand": best["strand"].to_numpy()},
                         index=pd.Index(best["query"].to_numpy(), name="query"))
    table["motif"] = np.where(table["best_q"] < q_threshold, table["best_name"], UNMATCHED)
    own = tomtom[tomtom["target_id"] == own_id].sort_values(["q", "p"]).drop_duplicates("query")
    own = own.set_index("query")
    table["own_q"] = own["q"].reindex(table.index).astype(float)
    table["own_strand"] = own["strand"].reindex(table.index)
    return table


def choose_pairs(matches: pd.DataFrame, q_threshold: float, max_partners: int,
                 activity: pd.Series | None = None) -> list[dict]:
    """Filter pairs to score (module docstring): dicts with role, filter_a, filter_b.

    matches: :func:`filter_matches` output. activity: mean peak activation per filter on
    positives (index = filter name), for the fallback anchor (no own-motif filter) and the
    fallback partners (no filter matching another motif). Roles: "homotypic",
    "own_other_strand", "partner" (another JASPAR motif), "top_active" (fallback).
    """
    own = matches[matches["own_q"] < q_threshold].sort_values("own_q", kind="stable")
    if len(own):
        anchor = own.index[0]
    elif activity is not None and len(activity):
        anchor = activity.sort_values(ascending=False, kind="stable").index[0]
    else:
        return []
    pairs = [{"role": "homotypic", "filter_a": anchor, "filter_b": anchor}]
    strand = own["own_strand"].get(anchor)
    other = own[(own["own_strand"] != strand) & (own.index != anchor)]
    if len(other):
        pairs.append({"role": "own_other_strand", "filter_a": anchor,
                      "filter_b": other.index[0]})
    own_names = set(matches.loc[own.index, "best_name"]) if len(own) else set()
    own_name = matches.loc[anchor, "best_name"] if anchor in matches.index else ""
    partners = matches[(matches["motif"] != UNMATCHED) & (matches["own_q"].isna()
                                                          | (matches["own_q"] >= q_threshold))]
    partners = partners[~partners["best_name"].isin(own_names | {own_name})]
    partners = partners.sort_values("best_q", kind="stable").drop_duplicates("best_name")
    chosen = [{"role": "partner", "filter_a": anchor, "filter_b": name}
              for name in partners.index[:max_partners]]
    if not chosen and activity is not None:
        taken = set(own.index) | {anchor}
        rest = activity.drop(labels=[f for f in taken if f in activity.index])
        chosen = [{"role": "top_active", "filter_a": anchor, "filter_b": name}
                  for name in rest.sort_values(ascending=False, kind="stable").index[
                      :max_partners]]
    return pairs + chosen


# ----------------------------------------------------------------------------- table, figure

def _cores(segments: np.ndarray, kernel: int) -> tuple[np.ndarray, np.ndarray]:
    """Left column and width of each filter's trimmed core from its activating-segment
    counts, shape=(F, 4·kernel) (as the motif step builds the PWMs)."""
    cores = [trim_ppm(ppm) for ppm in pfm_to_ppm(segments.reshape(len(segments), 4, kernel))]
    return (np.array([left for _, left in cores]),
            np.array([ppm.shape[1] for ppm, _ in cores]))


def _pair_index(pairs: list[dict], names: list[str]) -> list[tuple[int, int]]:
    index = {name: k for k, name in enumerate(names)}
    return [(index[pair["filter_a"]], index[pair["filter_b"]]) for pair in pairs]


def spacing_table_from_sums(target: str, pairs: list[dict], pos: SiteSums, neg: SiteSums,
                            names: list[str], matches: pd.DataFrame,
                            cores: tuple[np.ndarray, np.ndarray],
                            params: dict) -> pd.DataFrame:
    """One row per (pair, Δ) with ``SPACING_COLUMNS``, from the running sums of the positive
    and negative windows. names: filter name per map row ("filter000", ...); cores: (left,
    width) per filter. ``spacing`` is between the starts of the two filters' windows,
    ``core_spacing`` between the starts of their trimmed cores; ``overlap``: the cores overlap
    at this Δ."""
    params = DEFAULTS | dict(params)
    left, width = cores
    frames = []
    for pair, (a, b) in zip(pairs, _pair_index(pairs, names), strict=True):
        prof_pos = pos.profile(a, b, float(params["pseudocount"]))
        prof_neg = neg.profile(a, b, float(params["pseudocount"]))
        core = prof_pos["spacing"] + left[b] - left[a]
        frames.append(pd.DataFrame({
            "target": target, "filter_a": pair["filter_a"],
            "motif_a": _motif(matches, pair["filter_a"]), "filter_b": pair["filter_b"],
            "motif_b": _motif(matches, pair["filter_b"]), "spacing": prof_pos["spacing"],
            "core_spacing": core, "overlap": (core < width[a]) & (-core < width[b]),
            "score_pos": prof_pos["score"], "score_neg": prof_neg["score"],
            "n_pos_pairs": prof_pos["n_pairs"].astype(np.int64),
            "expected_pos": prof_pos["expected"],
            "n_neg_pairs": prof_neg["n_pairs"].astype(np.int64),
            "expected_neg": prof_neg["expected"], "p_pos": prof_pos["p"]}))
    if not frames:
        return pd.DataFrame(columns=SPACING_COLUMNS)
    return pd.concat(frames, ignore_index=True)[SPACING_COLUMNS]


def _motif(matches: pd.DataFrame, name: str) -> str:
    return str(matches.loc[name, "motif"]) if name in matches.index else UNMATCHED


def best_spacings(table: pd.DataFrame, pairs: list[dict], matches: pd.DataFrame,
                  sites_pos: dict[str, int], min_pairs: int,
                  pseudocount: float = 1.0) -> pd.DataFrame:
    """Per pair (columns ``PAIR_COLUMNS``): ``*_near``, the 0/1 pair counts summed over every
    non-overlapping Δ (does b sit near a more often than across windows, at any spacing?),
    with score (O + c) / (E + c) and Poisson p; and ``best_*``, the non-overlapping Δ with the
    highest positive score among those with at least ``min_pairs`` positive pairs (none:
    empty), whose p_bonferroni multiplies p by the number of non-overlapping Δ tested.
    A filter paired with itself is read at Δ > 0 only (its profile is symmetric)."""
    rows = []
    for pair in pairs:
        a, b = pair["filter_a"], pair["filter_b"]
        rows_ab = table[(table["filter_a"] == a) & (table["filter_b"] == b)]
        free = rows_ab[~rows_ab["overlap"]]
        if a == b:  # a filter with itself counts each pair at +Δ and -Δ: keep Δ > 0 only
            free = free[free["spacing"] > 0]
        ok = free[free["n_pos_pairs"] >= min_pairs]
        row = {"target": rows_ab["target"].iloc[0] if len(rows_ab) else "", "role": pair["role"],
               "filter_a": a, "motif_a": _motif(matches, a),
               "strand_a": matches["best_strand"].get(a, ""), "filter_b": b,
               "motif_b": _motif(matches, b), "strand_b": matches["best_strand"].get(b, ""),
               "n_sites_a_pos": sites_pos.get(a, 0), "n_sites_b_pos": sites_pos.get(b, 0)}
        if len(free):
            o_pos, e_pos = free["n_pos_pairs"].sum(), free["expected_pos"].sum()
            o_neg, e_neg = free["n_neg_pairs"].sum(), free["expected_neg"].sum()
            row |= {"n_pos_near": int(o_pos), "expected_pos_near": float(e_pos),
                    "score_pos_near": (o_pos + pseudocount) / (e_pos + pseudocount),
                    "score_neg_near": (o_neg + pseudocount) / (e_neg + pseudocount),
                    "p_near": float(stats.poisson.sf(o_pos - 1, max(e_pos, 1e-12)))}
        if len(ok):
            top = ok.sort_values(["score_pos", "p_pos"], ascending=[False, True],
                                 kind="stable").iloc[0]
            row |= {"best_spacing": int(top["spacing"]),
                    "best_core_spacing": int(top["core_spacing"]),
                    "score_pos": float(top["score_pos"]), "score_neg": float(top["score_neg"]),
                    "n_pos_pairs": int(top["n_pos_pairs"]),
                    "expected_pos": float(top["expected_pos"]), "p_pos": float(top["p_pos"]),
                    "p_bonferroni": min(1.0, float(top["p_pos"]) * len(free))}
        rows.append(row)
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def plot_spacing(path_png: str | Path, table: pd.DataFrame, best: pd.DataFrame, title: str,
                 kernel: int, n_pairs: int = 6) -> None:
    """Score vs Δ, positives (solid) and negatives (dashed), one panel per pair (the first
    ``n_pairs`` rows of ``best``), with the positive pair counts as grey bars (right axis).
    Shaded: Δ where the motif cores overlap (the same site, darker) and where the filter
    windows overlap (|Δ| < kernel, lighter); the y axis is scaled to the scores outside the
    core overlap, and a taller overlap peak is clipped and labelled. A dot marks the pair's
    preferred non-overlapping spacing; each title gives the any-spacing enrichment (near)."""
    import matplotlib

    from .plots import GREY, PALETTE, STYLE, new_figure, save_figure

    shown = best.head(n_pairs)
    with matplotlib.rc_context(STYLE):
        fig = new_figure(10.0, 1.2 + 2.2 * max(1, len(shown)))
        axes = fig.subplots(max(1, len(shown)), 1, squeeze=False, sharex=True)[:, 0]
        for ax, row in zip(axes, shown.itertuples(index=False), strict=False):
            rows = table[(table["filter_a"] == row.filter_a) & (table["filter_b"] == row.filter_b)]
            x = rows["spacing"].to_numpy()
            inside = rows["overlap"].to_numpy(dtype=bool)
            pos, neg = rows["score_pos"].to_numpy(), rows["score_neg"].to_numpy()
            bars = ax.twinx()
            bars.bar(x, rows["n_pos_pairs"], width=0.8, color="#BBBBBB", zorder=0)
            bars.set_ylim(0, max(4.0, 3.0 * rows["n_pos_pairs"].to_numpy()[~inside].max(initial=0)))
            bars.set_ylabel("pairs in positives", color="#888888", fontsize=8)
            bars.tick_params(axis="y", labelsize=7, colors="#888888")
            bars.grid(False)
            ax.set_zorder(bars.get_zorder() + 1)
            ax.patch.set_visible(False)
            ax.axvspan(-kernel + 0.5, kernel - 0.5, color="#F2F2F2", lw=0, zorder=0)
            if inside.any():
                ax.axvspan(x[inside].min() - 0.5, x[inside].max() + 0.5, color="#DDDDDD", lw=0,
                           zorder=0)
            ax.axhline(1, color=GREY, linestyle=":", linewidth=1.0)
            ax.plot(x, pos, color=PALETTE[0], linewidth=1.3, label="positives")
            ax.plot(x, neg, color=PALETTE[1], linewidth=1.1, linestyle="--", label="negatives")
            top = max(2.0, 1.15 * np.nanmax(np.concatenate([pos[~inside], neg[~inside], [1.0]])))
            ax.set_ylim(0, top)
            if inside.any() and np.nanmax(pos[inside]) > top:
                k = int(np.nanargmax(np.where(inside, pos, -np.inf)))
                ax.annotate(f"overlap peak {pos[k]:.1f} at Δ={x[k]} (clipped)", (x[k], top),
                            xytext=(4, -10), textcoords="offset points", fontsize=7.5,
                            color="#555555")
            if pd.notna(row.best_spacing):
                ax.plot(row.best_spacing, row.score_pos, "o", color=PALETTE[0], markersize=5)
                ax.annotate(f"Δ={int(row.best_spacing)}: {int(row.n_pos_pairs)} pairs vs "
                            f"{row.expected_pos:.1f} expected, p_Bonf={row.p_bonferroni:.2g}",
                            (row.best_spacing, row.score_pos), xytext=(6, 2),
                            textcoords="offset points", fontsize=8)
            near = (f"; near (all non-overlapping Δ): {int(row.n_pos_near)} pairs vs "
                    f"{row.expected_pos_near:.1f} expected, p={row.p_near:.2g}"
                    if pd.notna(row.n_pos_near) else "")
            ax.set_title(f"{row.role}: {row.filter_a} {row.motif_a} ({row.strand_a}) → "
                         f"{row.filter_b} {row.motif_b} ({row.strand_b}); sites "
                         f"{row.n_sites_a_pos} / {row.n_sites_b_pos}{near}", fontsize=8.5,
                         loc="left")
            ax.set_ylabel("observed / expected")
        if not len(shown):
            axes[0].text(0.5, 0.5, "no filter pair to score", ha="center", va="center",
                         transform=axes[0].transAxes)
        axes[-1].set_xlabel("Δ = start of filter b − start of filter a (bp); shaded: filter "
                            "windows overlap (light), motif cores overlap (dark)")
        axes[0].legend(loc="upper left", ncols=2)
        fig.suptitle(title)
        save_figure(fig, path_png)


# ----------------------------------------------------------------------------- step

def _load_model(model_dir: Path):
    config = read_json(model_dir / "config.json")
    if config.get("architecture", "BindingCNN") != "BindingCNN":
        raise InputError(f"architecture {config.get('architecture')!r} is not BindingCNN",
                         path=model_dir / "config.json",
                         fix="run the grammar step on a BindingCNN model directory")
    from .models.cnn import load_model

    return load_model(model_dir)


def _read_table(path: Path, **kwargs) -> pd.DataFrame:
    try:
        return pd.read_csv(path, sep="\t", **kwargs)
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror})", path=path,
                         fix="run the motif step for this target first") from exc


def _own_id(motif_dir: Path) -> str:
    recovery = _read_table(motif_dir / "recovery.tsv", keep_default_na=False)
    return str(recovery["jaspar_id"].iloc[0]) if len(recovery) else ""


def window_coordinates(windows: str | Path | pd.DataFrame, shards_manifest: str | Path,
                       splits: list[str], names: list[list[str]]) -> pd.DataFrame:
    """Coordinates (chrom, start, end, kind) of the shard rows of ``splits``, in shard order.

    windows: the windows BED the shards were built from (checked against the manifest's
    sha256 and the shard's window names), or a table with chrom, start, end (optionally
    kind, name) aligned with the rows of the splits concatenated. names: window names per split.
    """
    n = sum(len(part) for part in names)
    if isinstance(windows, pd.DataFrame):
        table = windows.reset_index(drop=True)
        if len(table) != n:
            raise ValueError(f"{len(table)} window coordinates for {n} shard rows")
    else:
        from .files import sha256sum
        from .intervals import read_windows

        expected = read_json(shards_manifest).get("sources", {}).get("windows")
        if expected and sha256sum(windows) != expected:
            raise InputError("not the windows BED these shards were built from", path=windows,
                             fix="pass the windows BED named in the shards' rule")
        bed = read_windows(windows)
        table = pd.concat([bed[bed["split"] == split] for split in splits], ignore_index=True)
    if "name" in table and table["name"].astype(str).tolist() != [w for part in names
                                                                  for w in part]:
        raise InputError("window names differ from the shards' names", path=shards_manifest,
                         fix="pass the windows of these shards, in shard order")
    return table[[c for c in ("chrom", "start", "end", "kind") if c in table]]


def distinct_rows(y: np.ndarray, min_overlap: int, coordinates: pd.DataFrame | None,
                  X: Rows) -> tuple[np.ndarray, np.ndarray]:
    """Rows kept per class, (negatives, positives), each sorted: :func:`distinct_loci` of the
    coordinates, or :func:`distinct_windows` of the sequences when there are none. Classes
    are merged separately, so a positive never gives way to a negative."""
    kept = []
    for label in (0, 1):
        rows = np.flatnonzero(y == label)
        if coordinates is not None:
            keep = distinct_loci(coordinates.iloc[rows], min_overlap)
        else:
            keep = distinct_windows(Rows(X.arrays, X.index[rows]), min_overlap)
        kept.append(rows[keep])
    return kept[0], kept[1]


def run_grammar(target: str, model_dir: str | Path, shards_manifest: str | Path,
                motif_dir: str | Path, out_dir: str | Path, figure_png: str | Path,
                params: dict | None = None, windows: str | Path | pd.DataFrame | None = None,
                chunk_bytes: int = CHUNK_BYTES) -> dict:
    """Motif spacing preferences and receptive fields for one target.

    Reads the model (BindingCNN), the ``params["split"]`` windows of the shards (a split name
    or a list of them) and the motif step's ``tomtom.tsv`` / ``recovery.tsv``. Windows of one
    locus are merged by coordinates when ``windows`` (the windows BED of the shards, or a
    table aligned with the split rows: :func:`window_coordinates`) is given, else by sequence
    (:func:`distinct_windows`). Activation maps are computed ``chunk_bytes`` at a time, in two
    passes (filter maxima for the cuts, then running sums), so memory does not grow with the
    number of windows. Writes into
    ``out_dir``: ``spacing.tsv`` (``SPACING_COLUMNS``, one row per pair and Δ),
    ``pairs.tsv`` (``PAIR_COLUMNS``, each pair's preferred spacing), ``receptive_field.tsv``
    (:mod:`helixflow.receptive_field`) and ``record.json``; the figure at ``figure_png``
    (+ .svg). Returns a summary dict.
    """
    from .receptive_field import model_receptive_fields

    params = DEFAULTS | dict(params or {})
    model_dir, motif_dir, out_dir = Path(model_dir), Path(motif_dir), Path(out_dir)
    t0 = time.perf_counter()
    model = _load_model(model_dir)
    splits = [params["split"]] if isinstance(params["split"], str) else list(params["split"])
    parts = [load_split(shards_manifest, s) for s in splits]
    y = np.concatenate([np.asarray(p.y) for p in parts])
    every = Rows([p.X for p in parts], np.arange(len(y)))
    coordinates = None if windows is None else window_coordinates(
        windows, shards_manifest, splits, [p.names for p in parts])
    keep_neg, keep_pos = distinct_rows(y, int(params["distinct_overlap"]), coordinates, every)
    if not len(keep_pos) or not len(keep_neg):
        raise InputError(f"split(s) {', '.join(splits)} need positive and negative windows "
                         f"(found {int((y == 1).sum())} and {int((y == 0).sum())})",
                         path=shards_manifest, fix="choose a split with both classes in "
                         "the grammar params ('split')")
    pos, neg = Rows(every.arrays, keep_pos), Rows(every.arrays, keep_neg)
    chunk = chunk_windows(model, pos, chunk_bytes)
    # pass 1: per-filter maxima (the cuts) and mean peak activation on positives
    peak_pos, top_sum = filter_peaks(model, pos, chunk)
    peak = np.maximum(peak_pos, filter_peaks(model, neg, chunk)[0])
    names = [f"filter{i:03d}" for i in range(len(peak))]
    kernel = int(model.conv.kernel_size[0])

    own_id = _own_id(motif_dir)
    tomtom = _read_table(motif_dir / "tomtom.tsv")
    matches = filter_matches(tomtom, own_id, float(params["q_threshold"]))
    activity = pd.Series((top_sum / len(pos)).astype(np.float32), index=names)
    activity = activity[activity.index.isin(matches.index)]  # filters with enough sites
    pairs = choose_pairs(matches, float(params["q_threshold"]), int(params["max_partners"]),
                         activity)
    sums_pos, sums_neg = window_sums(model, pos, neg, _pair_index(pairs, names), peak_pos,
                                     peak, params, chunk)
    cores = _cores(sums_pos.segments, kernel)
    table = spacing_table_from_sums(target, pairs, sums_pos, sums_neg, names, matches, cores,
                                    params)
    sites_pos = {name: sums_pos.sites[k] for k, name in enumerate(names)}
    best = best_spacings(table, pairs, matches, sites_pos, int(params["min_pairs"]),
                         float(params["pseudocount"]))
    fields = model_receptive_fields(model)

    write_tsv(out_dir / "spacing.tsv", table.round(6))
    write_tsv(out_dir / "pairs.tsv", best.round(6))
    write_tsv(out_dir / "receptive_field.tsv", fields)
    split_text = "+".join(splits)
    plot_spacing(figure_png, table, best,
                 f"{target}: first-layer co-activation at spacing Δ ({split_text} split, "
                 f"{len(pos)} positive / {len(neg)} negative distinct windows)", kernel,
                 int(params["n_plot"]))
    seconds = time.perf_counter() - t0
    grammar_layers = fields[fields["position_specific"]]
    summary = {"target": target, "jaspar_id": own_id, "split": split_text,
               "n_pos": int(len(pos)), "n_neg": int(len(neg)), "n_pairs": len(pairs),
               "n_windows_merged": int(len(y) - len(pos) - len(neg)),
               "dedup": "coordinates" if coordinates is not None else "sequence",
               "receptive_field_bp": int(fields["receptive_field_bp"].iloc[-1]),
               "max_learnable_spacing_bp": int(grammar_layers["max_spacing_bp"].max())
               if len(grammar_layers) else 0,
               "pairs": best.replace({np.nan: None}).to_dict(orient="records"),
               "seconds": round(seconds, 3)}
    inputs = {"shards": shards_manifest, "weights": model_dir / "model.safetensors",
              "tomtom": motif_dir / "tomtom.tsv"}
    if windows is not None and not isinstance(windows, pd.DataFrame):
        inputs["windows"] = windows
    write_record(out_dir / "record.json", "grammar", params, inputs, summary)
    print(f"{target}: {len(pairs)} filter pairs scored in {seconds:.1f} s", file=sys.stderr)
    return summary
