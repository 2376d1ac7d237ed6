"""Tests for helixflow.kmers: strand-merged k-mer counts and the logistic-regression baseline."""

from __future__ import annotations

import inspect
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


def test_counts_of_many_windows_in_blocks():
    rng = np.random.default_rng(0)
    X = np.zeros((10_000, 4, 200), dtype=np.uint8)
    np.put_along_axis(X, rng.integers(0, 4, (10_000, 1, 200)), 1, axis=1)
    counts = kmers.kmer_counts(X, 6)
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


# ---------------------------------------------------------------- block-wise = dense reference
# The dense implementation the block-wise one replaced, kept as the reference: all 4**k counts
# for every sequence, canonical columns, then scaler + logistic regression in one pipeline.

def ref_features(X: np.ndarray, k: int) -> np.ndarray:
    counts = np.stack([brute_force(seq, k) for seq in to_strings(X)])
    n_windows = counts.sum(axis=1, keepdims=True) / 2.0
    return counts[:, kmers.canonical_kmers(k)] / np.maximum(n_windows, 1.0)


def to_strings(X: np.ndarray) -> list[str]:
    codes = np.where(X.sum(axis=1) > 0, X.argmax(axis=1), 4)
    return ["".join("ACGTN"[c] for c in row) for row in codes]


def ref_fit(X_train, y_train, X_valid, y_valid, k_values, C_values, seed=0):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    grid, best = [], None
    for k in sorted(k_values):
        f_train, f_valid = ref_features(X_train, k), ref_features(X_valid, k)
        for C in sorted(C_values):
            pipeline = Pipeline([("scale", StandardScaler()), (
                "logreg", LogisticRegression(C=C, max_iter=2000, random_state=seed))])
            pipeline.fit(f_train, y_train)
            valid_auroc = roc_auc_score(y_valid, pipeline.decision_function(f_valid))
            grid.append({"k": k, "C": C, "n_features": f_train.shape[1],
                         "train_auroc": roc_auc_score(y_train,
                                                      pipeline.decision_function(f_train)),
                         "valid_auroc": valid_auroc})
            if best is None or valid_auroc > best[0]:
                best = (valid_auroc, k, C, pipeline)
    return grid, best


def planted_windows(n: int, seed: int, length: int = 300):
    """Random windows with N runs; positives carry a GATA site and the palindrome GAATTC."""
    X, y = planted_data(n, seed, length=length)
    rng = np.random.default_rng(seed + 100)
    seqs = to_strings(X)
    for i in np.flatnonzero(y):
        pos = rng.integers(0, length - 6)
        seqs[i] = seqs[i][:pos] + "GAATTC" + seqs[i][pos + 6:]
    for i in rng.choice(n, n // 10, replace=False):
        pos = rng.integers(0, length - 20)
        seqs[i] = seqs[i][:pos] + "N" * int(rng.integers(1, 20)) + seqs[i][pos + 20:]
    return one_hot(seqs), y


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of a few sequences, so every path crosses many block boundaries."""
    monkeypatch.setattr(kmers, "_BLOCK_BINS", 4 * 4**6)
    monkeypatch.setattr(kmers, "_BLOCK_POSITIONS", 7 * 300)
    monkeypatch.setattr(kmers, "_ROW_BLOCK", 29)


@pytest.mark.parametrize("k", [1, 2, 4, 5, 6])
def test_features_equal_the_dense_reference(k, small_blocks):
    X, _ = planted_windows(120, seed=k)
    X[0] = 0  # all N: a zero row
    got = kmers.kmer_features(X, k)
    want = ref_features(X, k)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    assert got[0].sum() == 0
    out = np.full_like(got, np.nan)
    assert np.shares_memory(kmers.kmer_features(X[:50], k, out=out[:50]), out)
    np.testing.assert_array_equal(out[:50], want[:50])


def test_palindromes_count_once_per_strand():
    features = kmers.kmer_features(one_hot(["GAATTCAAAA"]), 6)
    names = np.array(kmers.kmer_names(6))[kmers.canonical_kmers(6)].tolist()
    # 5 windows; the palindrome GAATTC is read on both strands
    assert features[0, names.index("GAATTC")] == pytest.approx(2 / 5)
    assert features[0].sum() == pytest.approx(6 / 5)


def test_features_never_hold_all_four_to_the_k_columns(monkeypatch):
    import tracemalloc

    monkeypatch.setattr(kmers, "_BLOCK_BINS", 1 << 16)
    monkeypatch.setattr(kmers, "_BLOCK_POSITIONS", 1 << 16)
    rng = np.random.default_rng(0)
    X = np.zeros((2000, 4, 500), dtype=np.uint8)
    np.put_along_axis(X, rng.integers(0, 4, (2000, 1, 500)), 1, axis=1)
    tracemalloc.start()
    features = kmers.kmer_features(X, 6)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    dense = 2000 * 4**6 * 4  # what one float32 (n, 4**k) array takes
    assert features.nbytes < peak < features.nbytes + 4_000_000 < dense


def test_fit_scaler_equals_standard_scaler(small_blocks):
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(3)
    features = (rng.random((500, 40)) * rng.random(40) ** 3).astype(np.float32)
    features[:, 3] = 0.25  # constant: scale 1
    features[:, 7] = 0.0
    want, got = StandardScaler().fit(features), kmers.fit_scaler(features)
    assert vars(got).keys() == vars(want).keys()
    for name in ("mean_", "var_", "scale_"):
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=1e-12,
                                   atol=1e-300)
    assert got.scale_[3] == got.scale_[7] == 1.0
    assert got.n_samples_seen_ == want.n_samples_seen_ and got.n_features_in_ == 40
    np.testing.assert_allclose(got.transform(features), want.transform(features), rtol=1e-6,
                               atol=1e-6)


def test_fit_equals_the_dense_reference(small_blocks):
    X_train, y_train = planted_windows(400, seed=20)
    X_valid, y_valid = planted_windows(200, seed=21)
    X_test, _ = planted_windows(150, seed=22)
    model, selection = kmers.fit_kmer_logreg(X_train, y_train, X_valid, y_valid,
                                             k_values=(3, 4, 6), C_values=(0.01, 1.0))
    grid, (valid_auroc, k, C, pipeline) = ref_fit(X_train, y_train, X_valid, y_valid,
                                                  (3, 4, 6), (0.01, 1.0))
    assert (model.k, model.C) == (k, C) and selection["chosen"]["valid_auroc"] == valid_auroc
    for got, want in zip(selection["grid"], grid, strict=True):
        assert {key: got[key] for key in want} == want  # AUROCs bit for bit
    np.testing.assert_allclose(model.pipeline[-1].coef_, pipeline[-1].coef_, rtol=1e-6)
    reference = pipeline.decision_function(ref_features(X_test, k))
    # float32 dot products in another memory layout: equal to float32 rounding
    np.testing.assert_allclose(model.predict(X_test), reference, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(model.predict_proba(X_test),
                               pipeline.predict_proba(ref_features(X_test, k))[:, 1], atol=1e-6)
    assert model.top_kmers(3) == [(name, pytest.approx(value, rel=1e-6)) for name, value in
                                  kmers.KmerModel(k, C, pipeline).top_kmers(3)]
    assert model.predict(X_test[:0]).shape == (0,)
