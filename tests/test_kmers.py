"""Tests for helixflow.kmers: strand-merged k-mer counts and the logistic-regression baseline."""

from __future__ import annotations

import inspect
import time
from collections import Counter

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from helixflow import kmers

COMPLEMENT = str.maketrans("ACGTN", "TGCAN")


def one_hot(seqs: list[str]) -> np.ndarray:
    X = np.zeros((len(seqs), 4, len(seqs[0])), dtype=np.uint8)
    for i, seq in enumerate(seqs):
        for j, base in enumerate(seq):
            if base in "ACGT":
                X[i, "ACGT".index(base), j] = 1
    return X


def random_seqs(n: int, length: int, seed: int, n_rate: float = 0.0) -> list[str]:
    rng = np.random.default_rng(seed)
    letters = rng.choice(list("ACGT"), size=(n, length))
    letters[rng.random((n, length)) < n_rate] = "N"
    return ["".join(row) for row in letters]


def brute_force(seq: str, k: int) -> np.ndarray:
    names = kmers.kmer_names(k)
    counts = Counter(seq[i:i + k] for i in range(len(seq) - k + 1))
    rc = seq.translate(COMPLEMENT)[::-1]
    counts.update(rc[i:i + k] for i in range(len(rc) - k + 1))
    return np.array([counts.get(name, 0) for name in names], dtype=np.float32)


def test_kmer_names_order():
    assert kmers.kmer_names(1) == ["A", "C", "G", "T"]
    names = kmers.kmer_names(2)
    assert names[:5] == ["AA", "AC", "AG", "AT", "CA"] and names[-1] == "TT"


def test_reverse_complement_index_and_canonical():
    names = kmers.kmer_names(3)
    rc = kmers.reverse_complement_index(3)
    for code, name in enumerate(names):
        assert names[rc[code]] == name.translate(COMPLEMENT)[::-1]
    assert len(kmers.canonical_kmers(3)) == 32  # odd k: no palindromes
    assert len(kmers.canonical_kmers(4)) == (256 + 16) // 2


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_counts_equal_brute_force_with_n(k):
    seqs = random_seqs(12, 40, seed=k, n_rate=0.08)
    seqs[0] = "N" * 40
    counts = kmers.kmer_counts(one_hot(seqs), k)
    assert counts.shape == (12, 4**k) and counts.dtype == np.float32
    for i, seq in enumerate(seqs):
        np.testing.assert_array_equal(counts[i], brute_force(seq, k))
    assert counts[0].sum() == 0  # all-N sequence: nothing counted


def test_counts_skip_windows_with_n():
    counts = kmers.kmer_counts(one_hot(["ACGNACG"]), 3)
    names = kmers.kmer_names(3)
    nonzero = {names[j]: counts[0, j] for j in np.flatnonzero(counts[0])}
    # windows ACG and ACG (twice), reverse complement CGT (twice); nothing spanning the N
    assert nonzero == {"ACG": 2.0, "CGT": 2.0}


def test_counts_reverse_complement_symmetric():
    X = one_hot(random_seqs(30, 101, seed=1, n_rate=0.05))
    for k in (1, 4, 6):
        counts = kmers.kmer_counts(X, k)
        np.testing.assert_array_equal(counts, kmers.kmer_counts(X[:, ::-1, ::-1], k))
        np.testing.assert_array_equal(counts, counts[:, kmers.reverse_complement_index(k)])


def test_counts_short_sequences_and_bad_shape():
    assert kmers.kmer_counts(one_hot(["ACG"]), 4).sum() == 0
    with pytest.raises(ValueError):
        kmers.kmer_counts(np.zeros((2, 5, 10)), 3)
    with pytest.raises(ValueError):
        kmers.kmer_counts(np.zeros((2, 4, 10)), 0)


def test_counts_fast():
    rng = np.random.default_rng(0)
    X = np.zeros((10_000, 4, 200), dtype=np.uint8)
    np.put_along_axis(X, rng.integers(0, 4, (10_000, 1, 200)), 1, axis=1)
    start = time.perf_counter()
    counts = kmers.kmer_counts(X, 6)
    assert time.perf_counter() - start < 2.0
    np.testing.assert_array_equal(counts.sum(axis=1), 2 * 195)


def test_features_are_frequencies():
    X = one_hot(random_seqs(5, 60, seed=2, n_rate=0.05))
    features = kmers.kmer_features(X, 3)
    assert features.shape == (5, 32)
    counts = kmers.kmer_counts(X, 3)
    n_windows = counts.sum(axis=1) / 2
    # odd k (no palindromes): each window adds 1 to exactly one canonical column
    np.testing.assert_allclose(features.sum(axis=1), 1.0, rtol=1e-6)
    assert (n_windows > 0).all()


def planted_data(n: int, seed: int, motif: str = "GATAAG", length: int = 100):
    rng = np.random.default_rng(seed)
    seqs = random_seqs(n, length, seed=seed)
    y = (rng.random(n) < 0.5).astype(np.int64)
    for i in np.flatnonzero(y):
        for _ in range(2):
            pos = rng.integers(0, length - len(motif))
            site = motif if rng.random() < 0.5 else motif.translate(COMPLEMENT)[::-1]
            seqs[i] = seqs[i][:pos] + site + seqs[i][pos + len(motif):]
    return one_hot(seqs), y


def test_fit_kmer_logreg_finds_planted_motif():
    X_train, y_train = planted_data(500, seed=10)
    X_valid, y_valid = planted_data(300, seed=11)
    model, selection = kmers.fit_kmer_logreg(X_train, y_train, X_valid, y_valid,
                                             k_values=(4, 6), C_values=(0.01, 0.1))
    assert not any("test" in name for name in inspect.signature(kmers.fit_kmer_logreg).parameters)
    assert selection["criterion"] == "valid_auroc"
    assert selection["splits_used"] == ["train", "valid"]
    assert (selection["n_train"], selection["n_valid"]) == (500, 300)
    assert len(selection["grid"]) == 4
    best = max(selection["grid"], key=lambda row: row["valid_auroc"])
    assert selection["chosen"] == {"k": best["k"], "C": best["C"],
                                   "valid_auroc": best["valid_auroc"]}
    assert selection["chosen"]["valid_auroc"] > 0.9
    assert (model.k, model.C) == (best["k"], best["C"])
    scores = model.predict(X_valid)
    assert scores.shape == (300,)
    assert roc_auc_score(y_valid, scores) == pytest.approx(selection["chosen"]["valid_auroc"])
    proba = model.predict_proba(X_valid)
    assert ((proba >= 0) & (proba <= 1)).all()


def test_top_kmer_is_the_planted_motif():
    X_train, y_train = planted_data(500, seed=10)
    X_valid, y_valid = planted_data(300, seed=11)
    model, _ = kmers.fit_kmer_logreg(X_train, y_train, X_valid, y_valid, k_values=(6,),
                                     C_values=(0.01,))
    # GATAAG and its reverse complement CTTATC share one canonical column: CTTATC
    assert model.top_kmers(1)[0][0] == "CTTATC"


def test_fit_kmer_logreg_needs_both_classes():
    X, y = planted_data(40, seed=1)
    with pytest.raises(ValueError):
        kmers.fit_kmer_logreg(X, np.zeros_like(y), X, y, k_values=(3,), C_values=(1.0,))
