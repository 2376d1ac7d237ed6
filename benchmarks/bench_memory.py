"""Peak memory vs number of windows: k-mer features and fit, grammar statistics.

    python benchmarks/bench_memory.py [--n 1000] [--factor 8] [--chunk-mb 16]

Every case runs in its own child process on random one-hot 1-kb windows, at n and factor × n
windows. Peak = the child's high-water RSS (VmHWM) above its RSS once the input windows exist
(the mark is reset through /proc/self/clear_refs; where that is not allowed, tracemalloc's
peak of the numpy allocations). Cases:

- ``kmer_features``: 6-mer features of n windows; ``expected`` = the float32 output matrix.
- ``kmer_fit``: :func:`helixflow.kmers.fit_kmer_logreg`, k in (5, 6), one C, n train and
  n/4 valid windows; ``expected`` = the train + valid float32 6-mer matrices (what it keeps).
- ``grammar_streamed``: the grammar statistics (two passes: filter maxima, then sites and
  running sums of three filter pairs) with a 32-filter BindingCNN, maps ``--chunk-mb`` at a
  time; ``expected`` = nothing that grows with n.
- ``grammar_whole_maps``: every first-layer map at once (what the grammar step held before),
  for comparison; ``expected`` = the float32 maps.

Printed: peak per size, the growth (large − small), the growth expected, and growth / expected
(about 1 for the k-mer cases; the streamed grammar's growth should be ~0). Also the share of
non-zero 6-mer features at 1 kb and 200 bp, and what a CSR matrix would take against dense.
Every number comes from this one run on this machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator

import numpy as np
from proc_memory import reset_peak, status_kb

WINDOW = 1000
CASES = ("kmer_features", "kmer_fit", "grammar_streamed", "grammar_whole_maps")
N_CANONICAL_6 = 2080  # canonical 6-mers
FILTERS, KERNEL = 32, 19


def one_hot(n: int, length: int, seed: int) -> np.ndarray:
    """Random one-hot windows, uint8 (n, 4, length)."""
    X = np.zeros((n, 4, length), dtype=np.uint8)
    codes = np.random.default_rng(seed).integers(0, 4, (n, 1, length))
    np.put_along_axis(X, codes, 1, axis=1)
    return X


def labels(n: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < 0.5).astype(np.int64)


# ---------------------------------------------------------------- in the child process



def _model(seed: int = 0):
    import torch

    from helixflow.models.cnn import BindingCNN, CNNConfig

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    return BindingCNN(CNNConfig(window=WINDOW, filters=FILTERS, kernel=KERNEL)).eval()


def _grammar_streamed(n: int, chunk_mb: float) -> Iterator[None]:
    from helixflow import grammar as gr

    X, y = one_hot(n, WINDOW, 1), labels(n, 2)
    model = _model()
    pos, neg = gr.Rows([X], np.flatnonzero(y == 1)), gr.Rows([X], np.flatnonzero(y == 0))
    yield  # inputs made: measured from here
    chunk = gr.chunk_windows(model, pos, int(chunk_mb * 2**20))
    peak_pos, _ = gr.filter_peaks(model, pos, chunk)
    peak = np.maximum(peak_pos, gr.filter_peaks(model, neg, chunk)[0])
    gr.window_sums(model, pos, neg, [(0, 0), (0, 1), (2, 3)], peak_pos, peak, {}, chunk)


def _grammar_whole_maps(n: int, chunk_mb: float) -> Iterator[None]:
    from helixflow import grammar as gr

    X = one_hot(n, WINDOW, 1)
    model = _model()
    yield
    gr.first_layer_activations(model, X)


def _kmer_features(n: int, chunk_mb: float) -> Iterator[None]:
    from helixflow.kmers import kmer_features

    X = one_hot(n, WINDOW, 1)
    yield
    kmer_features(X, 6)


def _kmer_fit(n: int, chunk_mb: float) -> Iterator[None]:
    from helixflow.kmers import fit_kmer_logreg

    X_train, y_train = one_hot(n, WINDOW, 1), labels(n, 2)
    X_valid, y_valid = one_hot(n // 4, WINDOW, 3), labels(n // 4, 4)
    yield
    fit_kmer_logreg(X_train, y_train, X_valid, y_valid, k_values=(5, 6), C_values=(0.1,))


def run_child(case: str, n: int, chunk_mb: float) -> dict:
    """Run one case; its peak memory above the RSS once the inputs exist."""
    steps = globals()[f"_{case}"](n, chunk_mb)
    next(steps)  # make the inputs
    exact = reset_peak()
    base_kb = status_kb("VmRSS")
    if not exact:
        tracemalloc.start()
    tic = time.perf_counter()
    for _ in steps:
        pass
    seconds = time.perf_counter() - tic
    peak = ((status_kb("VmHWM") - base_kb) * 1024 if exact
            else tracemalloc.get_traced_memory()[1])
    return {"case": case, "n": n, "peak_bytes": peak, "seconds": seconds,
            "method": "VmHWM" if exact else "tracemalloc"}


# ---------------------------------------------------------------- in the parent process

def expected_bytes(case: str, n: int) -> int:
    """What a case should hold that grows with n."""
    if case == "kmer_features":
        return n * N_CANONICAL_6 * 4
    if case == "kmer_fit":
        return (n + n // 4) * N_CANONICAL_6 * 4
    if case == "grammar_whole_maps":
        return n * FILTERS * (WINDOW - KERNEL + 1) * 4
    return 0


def measure(case: str, n: int, chunk_mb: float) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", case, "--n", str(n),
                          "--chunk-mb", str(chunk_mb)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def csr_share(length: int, n: int = 300) -> tuple[float, float]:
    """Share of non-zero canonical 6-mer features, and CSR bytes (float32 + int32 index) over
    dense float32 bytes, on random windows of ``length``."""
    from helixflow.kmers import kmer_features

    share = float((kmer_features(one_hot(n, length, 5), 6) > 0).mean())
    return share, share * 8 / 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="windows at the small size")
    parser.add_argument("--factor", type=int, default=8, help="large size = factor × n")
    parser.add_argument("--chunk-mb", type=float, default=16.0,
                        help="activation maps held at once by the streamed grammar")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, args.n, args.chunk_mb)))
        return
    sizes = (args.n, args.factor * args.n)
    print(f"{'case':<20}{'n':>8}{'peak MB':>10}{'s':>8}")
    rows = []
    for case in args.cases:
        small, large = (measure(case, n, args.chunk_mb) for n in sizes)
        for result in (small, large):
            print(f"{case:<20}{result['n']:>8}{result['peak_bytes'] / 1e6:>10.1f}"
                  f"{result['seconds']:>8.1f}")
        growth = large["peak_bytes"] - small["peak_bytes"]
        expected = expected_bytes(case, sizes[1]) - expected_bytes(case, sizes[0])
        rows.append((case, small["peak_bytes"], large["peak_bytes"], growth, expected,
                     small["method"]))
    print(f"\n{'case':<20}{'peak ratio':>11}{'growth MB':>11}{'expected MB':>13}"
          f"{'growth/expected':>17}  ({sizes[1]} vs {sizes[0]} windows of {WINDOW} bp)")
    for case, small, large, growth, expected, method in rows:
        ratio = f"{growth / expected:.2f}" if expected else "n/a"
        print(f"{case:<20}{large / max(small, 1):>11.2f}{growth / 1e6:>11.1f}"
              f"{expected / 1e6:>13.1f}{ratio:>17}  [{method}]")
    for length in (WINDOW, 200):
        share, csr = csr_share(length)
        print(f"6-mers, {length:>4} bp windows: {share:.0%} of features non-zero; CSR "
              f"(float32 + int32 index) = {csr:.2f}x dense float32")


if __name__ == "__main__":
    main()
