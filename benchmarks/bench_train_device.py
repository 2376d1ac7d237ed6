"""CNN training throughput through the shared loop (helixflow.fit) on the CPU and on a GPU.

The same memory-mapped one-hot shards (seeded random windows with a planted motif, width and
count as given) are trained with ``helixflow.train.train_cnn`` on each device: same model,
batch size and epochs. Prints windows/s of the training epochs (the valid split is kept small
so that scoring it is a small share) and the GPU/CPU ratio measured in this run. Without a
GPU it measures the CPU alone and says so.

    python benchmarks/bench_train_device.py                          # 20k x 1 kb windows
    python benchmarks/bench_train_device.py --windows 80000 --batch-size 256 --epochs 3
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from helixflow.models.cnn import CNNConfig
from helixflow.train import TrainConfig, train_cnn

MOTIF = "TTACCCGG"


def synthetic_shards(directory: Path, n: int, width: int, seed: int) -> tuple:
    """(X memmap uint8 (n, 4, width), y) with the motif planted in half of the windows."""
    rng = np.random.default_rng(seed)
    X = np.lib.format.open_memmap(directory / "X.npy", mode="w+", dtype=np.uint8,
                                  shape=(n, 4, width))
    y = (rng.random(n) < 0.5).astype(np.uint8)
    motif = np.array(["ACGT".index(b) for b in MOTIF])
    for start in range(0, n, 4096):
        rows = slice(start, min(n, start + 4096))
        bases = rng.integers(0, 4, size=(rows.stop - rows.start, width))
        for i in np.flatnonzero(y[rows]):
            at = rng.integers(0, width - len(motif))
            bases[i, at:at + len(motif)] = motif
        X[rows] = np.eye(4, dtype=np.uint8)[bases].transpose(0, 2, 1)
    X.flush()
    return np.load(directory / "X.npy", mmap_mode="r"), y


def measure(device: str, X, y, n_valid: int, args) -> dict:
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=1e-3, patience=0,
                      threads=args.threads, device=device, train_eval_max=1000,
                      model=CNNConfig(window=X.shape[2], filters=args.filters))
    tic = time.perf_counter()
    _, history, summary = train_cnn(X[n_valid:], y[n_valid:], X[:n_valid], y[:n_valid], cfg,
                                    log=io.StringIO())
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - tic
    n_train = len(y) - n_valid
    return {"device": summary["device"], "seconds": seconds,
            "windows_per_s": n_train * args.epochs / seconds,
            "valid_auroc": summary["valid_auroc"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=20_000)
    parser.add_argument("--width", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--filters", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n_valid = max(200, args.windows // 50)
    with tempfile.TemporaryDirectory() as tmp:
        X, y = synthetic_shards(Path(tmp), args.windows, args.width, args.seed)
        print(f"{args.windows:,} windows x {args.width} bp, batch {args.batch_size}, "
              f"{args.epochs} epochs, {args.filters} filters; torch {torch.__version__}",
              flush=True)
        results = [measure("cpu", X, y, n_valid, args)]
        if torch.cuda.is_available():
            results.append(measure("cuda", X, y, n_valid, args))
            print(f"GPU: {torch.cuda.get_device_name()}")
        for r in results:
            print(f"{r['device']:>7}: {r['windows_per_s']:10,.0f} windows/s  "
                  f"({r['seconds']:.1f} s, valid AUROC {r['valid_auroc']:.3f})")
        if len(results) == 2:
            ratio = results[1]["windows_per_s"] / results[0]["windows_per_s"]
            print(f"GPU / CPU throughput: {ratio:.1f}x")
        else:
            print("no GPU seen by torch: CPU only", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
