"""Sequence encodings: one-hot (ACGT; N and IUPAC codes all-zero) and reverse complement."""

from __future__ import annotations

import numpy as np

ALPHABET = "ACGT"
BASE_LOOKUP = np.full(256, 4, dtype=np.uint8)     # byte -> 0..3 for ACGT (either case), else 4
for _i, _base in enumerate(ALPHABET):
    BASE_LOOKUP[ord(_base)] = _i
    BASE_LOOKUP[ord(_base.lower())] = _i
_EYE = np.vstack([np.eye(4, dtype=np.uint8), np.zeros((1, 4), dtype=np.uint8)])


def base_indices(seq: str) -> np.ndarray:
    """Indices 0..3 for A, C, G, T (either case) and 4 for anything else; shape=(len,)."""
    return BASE_LOOKUP[np.frombuffer(seq.encode("ascii"), dtype=np.uint8)]


def one_hot(seq: str) -> np.ndarray:
    """One-hot encode a sequence: uint8, shape=(4, len); N and IUPAC codes are all-zero."""
    return _EYE[base_indices(seq)].T.copy()


def one_hot_batch(seqs: list[str]) -> np.ndarray:
    """One-hot encode equal-length sequences: uint8, shape=(n, 4, length)."""
    if not seqs:
        return np.zeros((0, 4, 0), dtype=np.uint8)
    idx = np.stack([base_indices(s) for s in seqs])
    return np.ascontiguousarray(_EYE[idx].transpose(0, 2, 1))


def reverse_complement(X: np.ndarray) -> np.ndarray:
    """Reverse complement one-hot arrays, shape=(..., 4, length) (ACGT order: flip both axes)."""
    return X[..., ::-1, ::-1]


def decode(X: np.ndarray) -> str:
    """One-hot (4, length) back to a string; all-zero columns become N."""
    idx = np.where(X.sum(axis=0) > 0, X.argmax(axis=0), 4)
    return "".join(np.array(list(ALPHABET + "N"))[idx])


def gc_fraction(X: np.ndarray) -> np.ndarray:
    """GC fraction over called bases, shape=(n,), for X shape=(n, 4, length)."""
    called = X.sum(axis=(1, 2)).astype(float)
    gc = X[:, 1:3, :].sum(axis=(1, 2)).astype(float)
    return np.divide(gc, called, out=np.zeros_like(gc), where=called > 0)
