"""Tests for helixflow.encode: one-hot (N/IUPAC all-zero), decode, reverse complement, GC."""

from __future__ import annotations

import numpy as np
import pytest

from helixflow.encode import (
    base_indices,
    decode,
    gc_fraction,
    one_hot,
    one_hot_batch,
    reverse_complement,
)

COMPLEMENT = str.maketrans("ACGTNacgtn", "TGCANtgcan")
IUPAC = "RYSWKMBDHVNryswkmbdhvn-."


def revcomp(seq: str) -> str:
    return seq.translate(COMPLEMENT)[::-1]


def random_seq(length: int, seed: int, n_rate: float = 0.1) -> str:
    rng = np.random.default_rng(seed)
    letters = rng.choice(list("ACGT"), size=length)
    letters[rng.random(length) < n_rate] = "N"
    return "".join(letters)


def test_one_hot_acgtn_is_identity_plus_zero_column():
    X = one_hot("ACGTN")
    expected = np.zeros((4, 5), dtype=np.uint8)
    expected[[0, 1, 2, 3], [0, 1, 2, 3]] = 1
    assert X.dtype == np.uint8
    assert X.shape == (4, 5)
    np.testing.assert_array_equal(X, expected)


def test_one_hot_lowercase_equals_uppercase():
    np.testing.assert_array_equal(one_hot("acgtACGTgatc"), one_hot("ACGTACGTGATC"))


@pytest.mark.parametrize("code", list(IUPAC))
def test_iupac_and_n_give_all_zero_columns(code):
    X = one_hot(f"A{code}T")
    assert X[:, 1].sum() == 0
    np.testing.assert_array_equal(X[:, 0], [1, 0, 0, 0])
    np.testing.assert_array_equal(X[:, 2], [0, 0, 0, 1])


def test_every_column_has_at_most_one_hot():
    seq = "ACGTRYNacgtnSWKM" * 5
    X = one_hot(seq)
    called = np.array([b in "ACGTacgt" for b in seq])
    np.testing.assert_array_equal(X.sum(axis=0), called.astype(np.uint8))


def test_base_indices():
    np.testing.assert_array_equal(base_indices("AcGtNR"), [0, 1, 2, 3, 4, 4])


def test_one_hot_batch_stacks_one_hot():
    seqs = [random_seq(37, seed) for seed in range(5)]
    X = one_hot_batch(seqs)
    assert X.shape == (5, 4, 37)
    assert X.dtype == np.uint8
    assert X.flags["C_CONTIGUOUS"]
    for i, seq in enumerate(seqs):
        np.testing.assert_array_equal(X[i], one_hot(seq))


def test_one_hot_batch_empty():
    assert one_hot_batch([]).shape == (0, 4, 0)


@pytest.mark.parametrize("seq", ["ACGT", "N", "acgtnRY", random_seq(500, 1)])
def test_decode_round_trip(seq):
    expected = "".join(b if b in "ACGT" else "N" for b in seq.upper())
    assert decode(one_hot(seq)) == expected


@pytest.mark.parametrize("seed", range(4))
def test_reverse_complement_matches_string_revcomp(seed):
    seq = random_seq(101, seed)
    X = one_hot(seq)
    np.testing.assert_array_equal(reverse_complement(X), one_hot(revcomp(seq)))
    np.testing.assert_array_equal(reverse_complement(reverse_complement(X)), X)
    assert decode(reverse_complement(X)) == revcomp(seq)


def test_reverse_complement_batch():
    seqs = [random_seq(50, seed) for seed in range(6)]
    X = one_hot_batch(seqs)
    np.testing.assert_array_equal(reverse_complement(X), one_hot_batch([revcomp(s) for s in seqs]))
    np.testing.assert_array_equal(reverse_complement(reverse_complement(X)), X)


def test_reverse_complement_is_not_just_reverse():
    X = one_hot("AACG")
    assert decode(reverse_complement(X)) == "CGTT"


def test_gc_fraction_ignores_n():
    X = one_hot_batch(["GGCCAANN", "NNNNNNNN", "ATATATGC", "gcgcatnn"])
    np.testing.assert_allclose(gc_fraction(X), [4 / 6, 0.0, 2 / 8, 4 / 6])


def test_gc_fraction_matches_string_count():
    seqs = [random_seq(200, seed, n_rate=0.2) for seed in range(10)]
    X = one_hot_batch(seqs)
    expected = [sum(b in "GC" for b in s) / sum(b in "ACGT" for b in s) for s in seqs]
    np.testing.assert_allclose(gc_fraction(X), expected)
