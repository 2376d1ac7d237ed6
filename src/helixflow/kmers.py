"""k-mer logistic-regression baseline: strand-symmetric k-mer spectra + L2 logistic regression.

Sequences are one-hot arrays ``X: np.ndarray, shape=(n, 4, length)`` in A, C, G, T order; an
all-zero column is an N. A k-mer is encoded as the base-4 integer of its bases (A=0 ... T=3, first
base most significant), so column ``j`` of a count matrix is the k-mer ``kmer_names(k)[j]``.

Strand symmetry: :func:`kmer_counts` keeps all ``4**k`` columns and adds to every k-mer the count
of its reverse complement, so a k-mer and its reverse complement hold the same value (a palindrome
is counted once per strand, i.e. twice). The model itself uses only the canonical columns
(:func:`canonical_kmers`: the lexicographically smaller of each pair), which removes the duplicated
features without losing information.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

ALPHABET = "ACGT"
# Upper bound on histogram bins per block of sequences in kmer_counts (~64 MB of int64).
_BLOCK_BINS = 1 << 23


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


def kmer_counts(X: np.ndarray, k: int) -> np.ndarray:
    """Strand-merged counts of every overlapping k-mer.

    X: np.ndarray, shape=(n, 4, length) one-hot (any numeric dtype; all-zero column = N).
    Returns shape=(n, 4**k) float32 where column ``j`` = occurrences of k-mer ``j`` plus
    occurrences of its reverse complement, so ``counts(X) == counts(reverse_complement(X))``.
    Windows containing an N are skipped. Each valid window adds 2 to the row total.
    """
    X = _check_onehot(X)
    k = _check_k(k)
    n, _, length = X.shape
    n_kmers = 4**k
    counts = np.zeros((n, n_kmers), dtype=np.float32)
    n_windows = length - k + 1
    if n == 0 or n_windows <= 0:
        return counts
    block = int(max(1, min(n, _BLOCK_BINS // n_kmers)))
    for start in range(0, n, block):
        chunk = X[start:start + block]
        m = len(chunk)
        base = chunk.argmax(axis=1).astype(np.int64)  # (m, length)
        is_n = ~chunk.any(axis=1)
        forward = np.zeros((m, n_windows), dtype=np.int64)
        reverse = np.zeros((m, n_windows), dtype=np.int64)
        for position in range(k):
            window_base = base[:, position:position + n_windows]
            forward = forward * 4 + window_base
            reverse += (3 - window_base) * 4**position
        n_before = np.zeros((m, length + 1), dtype=np.int64)
        np.cumsum(is_n, axis=1, out=n_before[:, 1:])
        valid = (n_before[:, k:] - n_before[:, :n_windows]) == 0  # (m, n_windows)
        offsets = (np.arange(m, dtype=np.int64) * n_kmers)[:, None]
        bins = np.concatenate([(forward + offsets)[valid], (reverse + offsets)[valid]])
        counts[start:start + m] = np.bincount(bins, minlength=m * n_kmers).reshape(m, n_kmers)
    return counts


def kmer_features(X: np.ndarray, k: int) -> np.ndarray:
    """Canonical k-mer frequencies: strand-merged counts / number of valid k-mer windows.

    X: np.ndarray, shape=(n, 4, length). Returns shape=(n, len(canonical_kmers(k))) float32;
    a sequence with no valid window (all N, or shorter than k) gets an all-zero row.
    """
    counts = kmer_counts(X, k)
    n_windows = counts.sum(axis=1, keepdims=True) / 2.0
    return counts[:, canonical_kmers(k)] / np.maximum(n_windows, 1.0)


@dataclass
class KmerModel:
    """A fitted k-mer baseline: the chosen ``k`` and ``C`` and the scaler + logistic pipeline."""

    k: int
    C: float
    pipeline: Pipeline

    def features(self, X: np.ndarray) -> np.ndarray:
        """X: shape=(n, 4, length) → shape=(n, n_canonical_kmers) frequencies."""
        return kmer_features(X, self.k)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Scores (log-odds of the positive class), shape=(n,) float64; higher = more positive."""
        return self.pipeline.decision_function(self.features(X)).astype(np.float64)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probability of the positive class, shape=(n,) float64."""
        return self.pipeline.predict_proba(self.features(X))[:, 1].astype(np.float64)

    def top_kmers(self, n: int = 10) -> list[tuple[str, float]]:
        """The ``n`` canonical k-mers with the largest positive (standardised) coefficients."""
        names = kmer_names(self.k)
        columns = canonical_kmers(self.k)
        coef = self.pipeline[-1].coef_[0]
        order = np.argsort(-coef)[:n]
        return [(names[columns[i]], float(coef[i])) for i in order]


def _pipeline(C: float, seed: int) -> Pipeline:
    return Pipeline([
        ("scale", StandardScaler()),
        ("logreg", LogisticRegression(C=C, max_iter=2000, random_state=seed)),
    ])


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
        features_train = kmer_features(X_train, k)
        features_valid = kmer_features(X_valid, k)
        for C in sorted(C_values):
            pipeline = _pipeline(C, seed)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                pipeline.fit(features_train, y_train)
            converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
            train_auroc = roc_auc_score(y_train, pipeline.decision_function(features_train))
            valid_auroc = roc_auc_score(y_valid, pipeline.decision_function(features_valid))
            grid.append({"k": int(k), "C": float(C), "n_features": int(features_train.shape[1]),
                         "train_auroc": float(train_auroc), "valid_auroc": float(valid_auroc),
                         "converged": converged})
            if best is None or valid_auroc > best[0]:
                best = (float(valid_auroc), KmerModel(k=int(k), C=float(C), pipeline=pipeline))
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
