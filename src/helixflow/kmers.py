"""k-mer logistic-regression baseline: strand-symmetric k-mer spectra + L2 logistic regression.

Sequences are one-hot arrays ``X: np.ndarray, shape=(n, 4, length)`` in A, C, G, T order; an
all-zero column is an N. A k-mer is encoded as the base-4 integer of its bases (A=0 ... T=3, first
base most significant), so column ``j`` of a count matrix is the k-mer ``kmer_names(k)[j]``.

Strand symmetry: :func:`kmer_counts` keeps all ``4**k`` columns and adds to every k-mer the count
of its reverse complement, so a k-mer and its reverse complement hold the same value (a palindrome
is counted once per strand, i.e. twice). The model itself uses only the canonical columns
(:func:`canonical_kmers`: the lexicographically smaller of each pair), which removes the duplicated
features without losing information.

Memory: :func:`kmer_features` counts blocks of sequences of bounded size straight into the
canonical columns, and :func:`fit_kmer_logreg` keeps one standardised float32
``(n, n_canonical)`` matrix per split (scaled in place), so peak memory grows with n by those
matrices only.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

ALPHABET = "ACGT"
# Per block of sequences: at most this many histogram bins (8 MB of int64) and this many
# coded k-mer positions (4 MB per int64 array), so memory does not grow with n.
_BLOCK_BINS = 1 << 20
_BLOCK_POSITIONS = 1 << 19
# Rows of features scaled or scored at a time.
_ROW_BLOCK = 1024


def _check_onehot(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 3 or X.shape[1] != 4:
        raise ValueError(f"X must have shape (n, 4, length), got {X.shape}")
    return X


def _check_k(k: int) -> int:
    if int(k) != k or k < 1 or k > 12:
        raise ValueError(f"k must be an integer in 1..12, got {k}")
    return int(k)


def kmer_names(k: int) -> list[str]:
    """The ``4**k`` k-mers in column order of :func:`kmer_counts` (AAA..., AAC..., ..., TTT...)."""
    k = _check_k(k)
    codes = np.arange(4**k)
    digits = (codes[:, None] // 4 ** np.arange(k - 1, -1, -1)) % 4
    return ["".join(ALPHABET[d] for d in row) for row in digits]


def reverse_complement_index(k: int) -> np.ndarray:
    """Column of each k-mer's reverse complement, shape=(4**k,) int64."""
    k = _check_k(k)
    codes = np.arange(4**k, dtype=np.int64)
    rc = np.zeros_like(codes)
    for position in range(k):
        base = (codes // 4**position) % 4  # base `position` places from the right
        rc = rc * 4 + (3 - base)
    return rc


def canonical_kmers(k: int) -> np.ndarray:
    """Columns of the canonical k-mers (k-mer <= its reverse complement), ascending.

    Returns shape=(m,) int64 with ``m = (4**k + 4**(k//2) * (k % 2 == 0)) / 2``.
    """
    codes = np.arange(4**k, dtype=np.int64)
    return codes[codes <= reverse_complement_index(k)]


def _block_rows(n: int, n_bins: int, length: int) -> int:
    """Sequences per block: bounds the histogram bins and the coded positions of one block."""
    return int(max(1, min(n, _BLOCK_BINS // max(1, n_bins),
                          _BLOCK_POSITIONS // max(1, length))))


def _forward_codes(chunk: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Code of every k-mer window of a block, shape=(m, length - k + 1) int64, and a bool mask
    of the windows without an N. Requires length >= k."""
    length = chunk.shape[2]
    n_windows = length - k + 1
    base = chunk.argmax(axis=1).astype(np.int64)  # (m, length)
    codes = np.zeros((len(chunk), n_windows), dtype=np.int64)
    for position in range(k):
        codes *= 4
        codes += base[:, position:position + n_windows]
    n_before = np.zeros((len(chunk), length + 1), dtype=np.int64)
    np.cumsum(~chunk.any(axis=1), axis=1, out=n_before[:, 1:])
    return codes, (n_before[:, k:] - n_before[:, :n_windows]) == 0


def _row_histogram(codes: np.ndarray, valid: np.ndarray, n_bins: int) -> np.ndarray:
    """Per-row bincount of the valid ``codes`` (each < n_bins), shape=(m, n_bins) int64."""
    m = len(codes)
    bins = (codes + (np.arange(m, dtype=np.int64) * n_bins)[:, None])[valid]
    return np.bincount(bins, minlength=m * n_bins).reshape(m, n_bins)


def kmer_counts(X: np.ndarray, k: int) -> np.ndarray:
    """Strand-merged counts of every overlapping k-mer.

    X: np.ndarray, shape=(n, 4, length) one-hot (any numeric dtype; all-zero column = N).
    Returns shape=(n, 4**k) float32 where column ``j`` = occurrences of k-mer ``j`` plus
    occurrences of its reverse complement, so ``counts(X) == counts(reverse_complement(X))``.
    Windows containing an N are skipped. Each valid window adds 2 to the row total.
    Dense over all ``4**k`` columns: for model features use :func:`kmer_features`.
    """
    X = _check_onehot(X)
    k = _check_k(k)
    n, _, length = X.shape
    n_kmers = 4**k
    counts = np.zeros((n, n_kmers), dtype=np.float32)
    if n == 0 or length < k:
        return counts
    rc = reverse_complement_index(k)
    block = _block_rows(n, n_kmers, length)
    for start in range(0, n, block):
        codes, valid = _forward_codes(X[start:start + block], k)
        both = np.concatenate([codes, rc[codes]], axis=1)  # each window on both strands
        counts[start:start + block] = _row_histogram(both, np.tile(valid, 2), n_kmers)
    return counts


def _canonical_lookup(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per k-mer code: its canonical column (position in :func:`canonical_kmers`) and whether
    it is a palindrome (its own reverse complement, counted once per strand)."""
    rc = reverse_complement_index(k)
    codes = np.arange(4**k, dtype=np.int64)
    column = np.searchsorted(canonical_kmers(k), np.minimum(codes, rc))
    return column, codes == rc


def kmer_features(X: np.ndarray, k: int, out: np.ndarray | None = None) -> np.ndarray:
    """Canonical k-mer frequencies: strand-merged counts / number of valid k-mer windows.

    X: np.ndarray, shape=(n, 4, length) (an array or a memory map; read block by block).
    Returns shape=(n, len(canonical_kmers(k))) float32, written into ``out`` when given;
    a sequence with no valid window (all N, or shorter than k) gets an all-zero row.
    Equals ``kmer_counts(X, k)[:, canonical_kmers(k)] / windows``, counted block by block
    straight into the canonical columns (no ``(n, 4**k)`` array).
    """
    X = _check_onehot(X)
    k = _check_k(k)
    n, _, length = X.shape
    column, palindrome = _canonical_lookup(k)
    n_columns = int(column.max()) + 1
    if out is None:
        out = np.empty((n, n_columns), dtype=np.float32)
    if out.shape != (n, n_columns) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 of shape {(n, n_columns)}, got "
                         f"{out.dtype} {out.shape}")
    if n == 0 or length < k:
        out[:] = 0.0
        return out
    block = _block_rows(n, n_columns, length)
    for start in range(0, n, block):
        codes, valid = _forward_codes(X[start:start + block], k)
        # both strands land in the canonical column: count a palindrome's reverse strand too
        columns = column[codes]
        both = np.concatenate([columns, columns], axis=1)
        counts = _row_histogram(both, np.concatenate([valid, valid & palindrome[codes]], axis=1),
                                n_columns)
        n_valid = np.maximum(valid.sum(axis=1), 1).astype(np.float32)
        np.divide(counts.astype(np.float32), n_valid[:, None], out=out[start:start + block])
    return out


@dataclass
class KmerModel:
    """A fitted k-mer baseline: the chosen ``k`` and ``C`` and the scaler + logistic pipeline."""

    k: int
    C: float
    pipeline: Pipeline

    def _by_block(self, score: Callable[[np.ndarray], np.ndarray],
                  X: np.ndarray) -> np.ndarray:
        """``score`` of the features of ``_ROW_BLOCK`` sequences at a time, float64 (n,)."""
        X = _check_onehot(X)
        parts = [score(kmer_features(X[i:i + _ROW_BLOCK], self.k))
                 for i in range(0, len(X), _ROW_BLOCK)]
        return np.concatenate(parts).astype(np.float64) if parts else np.zeros(0)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Scores (log-odds of the positive class), shape=(n,) float64; higher = more positive."""
        return self._by_block(self.pipeline.decision_function, X)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probability of the positive class, shape=(n,) float64."""
        return self._by_block(lambda F: self.pipeline.predict_proba(F)[:, 1], X)

    def top_kmers(self, n: int = 10) -> list[tuple[str, float]]:
        """The ``n`` canonical k-mers with the largest positive (standardised) coefficients."""
        names = kmer_names(self.k)
        columns = canonical_kmers(self.k)
        coef = self.pipeline[-1].coef_[0]
        order = np.argsort(-coef)[:n]
        return [(names[columns[i]], float(coef[i])) for i in order]


def _row_blocks(n: int) -> list[slice]:
    return [slice(i, min(n, i + _ROW_BLOCK)) for i in range(0, n, _ROW_BLOCK)]


def fit_scaler(features: np.ndarray) -> StandardScaler:
    """``StandardScaler().fit(features)`` computed block by block.

    features: float32 shape=(n, m). scikit-learn's float64 corrected two-pass mean and variance
    and its near-constant rule (equal to its own fit up to float64 summation order), without
    its ``(n, m)`` float64 and mask temporaries.
    """
    n, m = features.shape
    count = np.float64(n)
    mean = sum((features[rows].sum(axis=0, dtype=np.float64) for rows in _row_blocks(n)),
               np.zeros(m)) / count
    correction, squares = np.zeros(m), np.zeros(m)
    for rows in _row_blocks(n):
        centred = features[rows] - mean
        correction += centred.sum(axis=0)
        squares += (centred**2).sum(axis=0)
    var = (squares - correction**2 / count) / count
    eps = np.finfo(np.float64).eps
    constant = var <= count * eps * var + (count * mean * eps) ** 2
    scale = np.sqrt(var)
    scale[constant] = 1.0
    scaler = StandardScaler()
    scaler.n_features_in_, scaler.n_samples_seen_ = m, count
    scaler.mean_, scaler.var_, scaler.scale_ = mean, var, scale
    return scaler


def _scale_in_place(scaler: StandardScaler, features: np.ndarray) -> np.ndarray:
    """``features[:] = scaler.transform(features)``, one block of rows at a time."""
    for rows in _row_blocks(len(features)):
        features[rows] = scaler.transform(features[rows])
    return features


def _scaled_features(X: np.ndarray, k: int, scaler: StandardScaler | None = None
                     ) -> tuple[np.ndarray, StandardScaler]:
    """Standardised k-mer features, float32 (n, m), and the scaler (fitted here when None)."""
    features = kmer_features(X, k)
    scaler = fit_scaler(features) if scaler is None else scaler
    return _scale_in_place(scaler, features), scaler


def _fit_logreg(features: np.ndarray, y: np.ndarray, C: float,
                seed: int) -> tuple[LogisticRegression, bool]:
    """L2 logistic regression on standardised features; returns it and whether it converged."""
    logreg = LogisticRegression(C=C, max_iter=2000, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        logreg.fit(features, y)
    return logreg, not any(issubclass(w.category, ConvergenceWarning) for w in caught)


def fit_kmer_logreg(X_train: np.ndarray, y_train: np.ndarray, X_valid: np.ndarray,
                    y_valid: np.ndarray, k_values: tuple[int, ...] = (4, 5, 6),
                    C_values: tuple[float, ...] = (0.01, 0.1, 1.0),
                    seed: int = 0) -> tuple[KmerModel, dict]:
    """Fit the k-mer baseline on the train split, choosing ``k`` and ``C`` by valid-split AUROC.

    X_train: shape=(n_train, 4, length), y_train: shape=(n_train,) 0/1; X_valid, y_valid likewise.
    Every (k, C) pipeline is fitted on the train split only and scored on the valid split; the best
    valid AUROC wins (ties → smaller k, then smaller C, i.e. the simpler model). There is no test
    argument: the test split is never seen. Returns the chosen :class:`KmerModel` (fitted on train)
    and a JSON-ready dict with the whole grid (k, C, train/valid AUROC, convergence) and the choice.

    Memory: one standardised float32 ``(n, n_canonical)`` matrix per split for the current k
    (scaled in place, shared by every C), plus blocks of bounded size.
    """
    y_train = np.asarray(y_train).astype(np.int64)
    y_valid = np.asarray(y_valid).astype(np.int64)
    for name, y in (("y_train", y_train), ("y_valid", y_valid)):
        if len(np.unique(y)) != 2:
            raise ValueError(f"{name} must contain both classes 0 and 1")
    if len(X_train) != len(y_train) or len(X_valid) != len(y_valid):
        raise ValueError("X and y of each split must have the same number of windows")
    grid: list[dict] = []
    best: tuple[float, KmerModel] | None = None
    for k in sorted(k_values):
        features_train, scaler = _scaled_features(X_train, k)
        features_valid, _ = _scaled_features(X_valid, k, scaler)
        for C in sorted(C_values):
            logreg, converged = _fit_logreg(features_train, y_train, C, seed)
            train_auroc = roc_auc_score(y_train, logreg.decision_function(features_train))
            valid_auroc = roc_auc_score(y_valid, logreg.decision_function(features_valid))
            grid.append({"k": int(k), "C": float(C), "n_features": int(features_train.shape[1]),
                         "train_auroc": float(train_auroc), "valid_auroc": float(valid_auroc),
                         "converged": converged})
            if best is None or valid_auroc > best[0]:
                pipeline = Pipeline([("scale", copy.deepcopy(scaler)), ("logreg", logreg)])
                best = (float(valid_auroc), KmerModel(k=int(k), C=float(C), pipeline=pipeline))
        del features_train, features_valid  # free before the next k allocates its own
    if best is None:
        raise ValueError("k_values and C_values must not be empty")
    valid_auroc, model = best
    selection = {
        "criterion": "valid_auroc",
        "splits_used": ["train", "valid"],
        "n_train": int(len(y_train)),
        "n_valid": int(len(y_valid)),
        "seed": int(seed),
        "grid": grid,
        "chosen": {"k": model.k, "C": model.C, "valid_auroc": valid_auroc},
    }
    return model, selection
