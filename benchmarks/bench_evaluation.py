"""Bootstrap metrics and k-mer counting: our vectorised code vs the naive loops, one run.

    python benchmarks/bench_evaluation.py [--n 3000] [--n-boot 1000]

Prints wall times and speed-up ratios measured in this one run on this machine, and
checks that both ways give the same numbers.
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from helixflow.evaluate import bootstrap_replicates
from helixflow.kmers import kmer_counts


def naive_bootstrap(y: np.ndarray, score: np.ndarray, n_boot: int, seed: int):
    """The textbook loop: resample positives and negatives, call sklearn each time."""
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    out = []
    for _ in range(n_boot):
        idx = np.concatenate([pos[rng.integers(0, len(pos), len(pos))],
                              neg[rng.integers(0, len(neg), len(neg))]])
        out.append((roc_auc_score(y[idx], score[idx]),
                    average_precision_score(y[idx], score[idx])))
    return np.array(out)


def naive_kmers(seqs: list[str], k: int) -> np.ndarray:
    index = {"".join(p): i for i, p in enumerate(itertools.product("ACGT", repeat=k))}
    rc = str.maketrans("ACGT", "TGCA")
    counts = np.zeros((len(seqs), 4**k), dtype=np.float32)
    for row, seq in enumerate(seqs):
        for i in range(len(seq) - k + 1):
            word = seq[i:i + k]
            if word in index:
                counts[row, index[word]] += 1
                counts[row, index[word.translate(rc)[::-1]]] += 1
    return counts


def timed(func, *args):
    tic = time.perf_counter()
    result = func(*args)
    return result, time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--k", type=int, default=6)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    y = (rng.random(args.n) < 0.5).astype(int)
    score = y + rng.normal(0, 1, args.n)

    (fast_roc, fast_prc), t_fast = timed(bootstrap_replicates, y, score, args.n_boot, 1)
    naive, t_naive = timed(naive_bootstrap, y, score, args.n_boot, 1)
    print(f"bootstrap AUROC+AUPRC, {args.n} windows x {args.n_boot} resamples")
    print(f"  vectorised {t_fast:.3f} s   naive sklearn loop {t_naive:.3f} s   "
          f"ratio {t_naive / t_fast:.1f}x")
    print(f"  mean AUROC {fast_roc.mean():.4f} vs {naive[:, 0].mean():.4f}; "
          f"mean AUPRC {fast_prc.mean():.4f} vs {naive[:, 1].mean():.4f} "
          "(same distribution, different draws)")

    seqs = ["".join(rng.choice(list("ACGT"), 200)) for _ in range(args.n)]
    X = np.stack([np.eye(4, dtype=np.uint8)[["ACGT".index(c) for c in s]].T for s in seqs])
    fast, t_fast = timed(kmer_counts, X, args.k)
    slow, t_naive = timed(naive_kmers, seqs, args.k)
    same = np.array_equal(fast, slow)
    print(f"k-mer counts (k={args.k}, both strands), {args.n} x 200 bp")
    print(f"  vectorised {t_fast:.3f} s   naive Python loop {t_naive:.3f} s   "
          f"ratio {t_naive / t_fast:.1f}x   identical: {same}")


if __name__ == "__main__":
    main()
