"""Methylation as a fifth input channel beside one-hot DNA (seed 002).

Encoding of the track (channel 4, after A, C, G, T): the methylation level beta (0..1) of a CpG
sits at the position of its C (the + strand cytosine); every other position is 0. CpGs without
reads (beta NaN) are 0 too, so in this channel alone an unmethylated CpG, an uncovered CpG and a
non-CpG base look the same; the sequence channels say where the CpGs are. Use it with
``CNNConfig(in_channels=5)``.

Reverse-complement augmentation in :mod:`helixflow.train` (``X.flip(1).flip(2)``) is wrong for
such input: flipping the channel axis swaps the track with A. Train with ``rc_augment=False``
and ``rc_average=False``.
"""

from __future__ import annotations

import numpy as np

from .encode import one_hot_batch


def methylation_track(positions: np.ndarray, betas: np.ndarray, start: int,
                      length: int) -> np.ndarray:
    """Track of one window, float32 shape (length,).

    positions: (k,) CpG C positions in the same coordinates as ``start`` (index = pos - start);
    betas: (k,) in 0..1 or NaN (no reads → 0). CpGs outside the window are ignored.
    """
    positions = np.asarray(positions, dtype=np.int64)
    betas = np.asarray(betas, dtype=np.float64)
    if positions.shape != betas.shape:
        raise ValueError(f"positions {positions.shape} and betas {betas.shape} differ in shape")
    if np.any((betas < 0) | (betas > 1)):
        raise ValueError("betas must lie in 0..1 (methylated fraction)")
    track = np.zeros(length, dtype=np.float32)
    offset = positions - start
    inside = (offset >= 0) & (offset < length)
    track[offset[inside]] = np.nan_to_num(betas[inside], nan=0.0)
    return track


def with_methylation(X: np.ndarray, M: np.ndarray) -> np.ndarray:
    """Stack one-hot X (n, 4, L) and tracks M (n, L) into float32 (n, 5, L)."""
    if X.ndim != 3 or X.shape[1] != 4 or M.shape != (X.shape[0], X.shape[2]):
        raise ValueError(f"need X (n, 4, L) and M (n, L), got {X.shape} and {M.shape}")
    return np.concatenate([X.astype(np.float32), M[:, None, :].astype(np.float32)], axis=1)


def cpg_positions(seq: str) -> np.ndarray:
    """0-based positions of the C of every CpG in ``seq``, shape (k,)."""
    return np.array([i for i in range(len(seq) - 1) if seq[i:i + 2] == "CG"], dtype=np.int64)


def _count(text: str, motif: str) -> int:
    """Occurrences of ``motif`` in ``text``, overlapping ones included."""
    return sum(text.startswith(motif, i) for i in range(len(text) - len(motif) + 1))


def planted_methylation_data(n: int, length: int = 100, seed: int = 0, motif: str = "CACGTG",
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Made-up set where binding needs an *unmethylated* motif CpG: X (n, 5, L), y (n,).

    Every sequence is random DNA carrying ``motif`` (which must contain a CG) exactly once, at a
    random place, so sequence alone cannot tell the classes apart. Every CpG gets a beta: background
    CpGs uniform on 0..1; the motif's CpG 0..0.2 in positives (y = 1, odd indices) and 0.8..1
    in negatives. Only sequence + methylation together separate the classes.
    """
    at_cg = motif.find("CG")
    if at_cg < 0:
        raise ValueError(f"motif {motif!r} has no CpG")
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    seqs, tracks = [], np.zeros((n, length), dtype=np.float32)
    for i, label in enumerate(y):
        text = ""
        while _count(text, motif) != 1:  # a chance second copy would blur the label
            seq = list(rng.choice(list("ACGT"), length))
            place = int(rng.integers(0, length - len(motif) + 1))
            seq[place:place + len(motif)] = motif
            text = "".join(seq)
        cpgs = cpg_positions(text)
        betas = rng.uniform(0, 1, len(cpgs))
        motif_beta = rng.uniform(0.0, 0.2) if label else rng.uniform(0.8, 1.0)
        betas[cpgs == place + at_cg] = motif_beta
        tracks[i] = methylation_track(cpgs, betas, 0, length)
        seqs.append(text)
    return with_methylation(one_hot_batch(seqs), tracks), y
