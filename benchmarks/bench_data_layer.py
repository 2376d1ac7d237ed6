"""Data layer for pretraining: corpus build, loader vs model consumption, memory vs genome size.

    python benchmarks/bench_data_layer.py [--genome FASTA(.gz)] [--parts a b c] [--device cpu]

(a) shard build throughput (genome Mbp/s): helixflow.corpus vs a naive per-window pyfaidx +
    Python one-hot loop (the naive loop runs on the first chromosomes, >= --naive-bp);
(b) loader throughput (windows/s) vs the training consumption (windows/s) of the BindingCNN
    (200-bp one-hot) and a small transformer MLM (512 single-nucleotide tokens), plus a GPU
    estimate from the FLOPs counted per training window (--device cuda measures it instead);
(c) peak memory (ru_maxrss of a child process) building the corpus of the genome, of 4 renamed
    copies of every chromosome, and of one chromosome made of those 4 copies end to end.

Every ratio printed is measured in this one run on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from proc_memory import reset_peak, status_kb

from helixflow.corpus import build_corpus, read_fai_records
from helixflow.genome import Genome, index_genome
from helixflow.tokenize import Tokenizer

# The data mirror: $HELIXFLOW_DATA, else ../shared/data beside the repository
MIRROR = Path(os.environ.get("HELIXFLOW_DATA") or Path(__file__).resolve().parents[1].parent
              / "shared" / "data")
YEAST = str(MIRROR / "yeast" / "sacCer3_R64.fa.gz")
WINDOW, STRIDE, MAX_N = 512, 256, 0.1
H100_BF16_DENSE = 989e12          # FLOP/s, NVIDIA's published H100 SXM bf16 dense peak


def timed(func, *args, **kwargs):
    tic = time.perf_counter()
    result = func(*args, **kwargs)
    return result, time.perf_counter() - tic


# ---------------------------------------------------------------- (a) build


def naive_build(fasta: Path, chroms: list[str], window: int, stride: int,
                max_n_fraction: float) -> tuple[int, int]:
    """The textbook loop: fetch each window with pyfaidx, one-hot it base by base in Python."""
    import pyfaidx
    genome = pyfaidx.Fasta(str(fasta))
    code = {"A": (1, 0, 0, 0), "C": (0, 1, 0, 0), "G": (0, 0, 1, 0), "T": (0, 0, 0, 1)}
    kept, bp = [], 0
    for chrom in chroms:
        length = len(genome[chrom])
        bp += length
        for start in range(0, length - window + 1, stride):
            seq = str(genome[chrom][start:start + window]).upper()
            if seq.count("N") / window > max_n_fraction:
                continue
            onehot = [code.get(base, (0, 0, 0, 0)) for base in seq]
            kept.append(np.array(onehot, dtype=np.uint8).T)
    genome.close()
    return len(kept), bp


def part_a(fasta: Path, work: Path, naive_bp: int) -> dict:
    records = read_fai_records(fasta)
    chroms, genome_bp = list(records), sum(r[0] for r in records.values())
    print(f"(a) shard build: {len(chroms)} chromosomes, {genome_bp / 1e6:.2f} Mbp, "
          f"{WINDOW}-bp windows every {STRIDE} bp, k=1")
    ours = {}
    for workers in (1, 2):
        manifest, seconds = timed(build_corpus, fasta, chroms, work / f"a_w{workers}",
                                  Tokenizer(1), WINDOW, STRIDE, MAX_N, 65536, workers=workers)
        ours[workers] = genome_bp / 1e6 / seconds
        print(f"    ours, {workers} worker(s): {seconds:6.2f} s  {ours[workers]:7.1f} Mbp/s  "
              f"({manifest['counts']['windows_kept']} windows, {len(manifest['shards'])} "
              "shards, sha256 included)")
    subset, total = [], 0
    for chrom in chroms:
        subset.append(chrom)
        total += records[chrom][0]
        if total >= naive_bp:
            break
    (n_naive, bp), seconds = timed(naive_build, fasta, subset, WINDOW, STRIDE, MAX_N)
    naive = bp / 1e6 / seconds
    print(f"    naive pyfaidx + Python one-hot on {', '.join(subset)} ({bp / 1e6:.2f} Mbp, "
          f"{n_naive} windows): {seconds:6.2f} s  {naive:7.2f} Mbp/s")
    best = max(ours.values())
    print(f"    ratio ours/naive: {ours[1] / naive:.1f}x (1 worker), {ours[2] / naive:.1f}x "
          f"(2 workers); acceptance >= 20x: {'PASS' if best / naive >= 20 else 'FAIL'}")
    return {"ours_mbp_s": ours, "naive_mbp_s": naive}


# ---------------------------------------------------------------- (b) loader vs models


def loader_rate(manifest: Path, output: str, workers: int, max_windows: int,
                repeats: int) -> float:
    """Windows/s of the loader (RC augmentation on), the best of ``repeats`` passes.

    Steady state: the clock starts when the first batch has arrived (worker start-up is
    excluded) and the rate counts the batches after it.
    """
    from helixflow.loader import make_loader
    best = 0.0
    for epoch in range(repeats):
        loader = make_loader(manifest, 64, seed=0, epoch=epoch, rc_prob=0.5, output=output,
                             num_workers=workers, pin_memory=False)
        batches = iter(loader)
        next(batches)
        seen, tic = 0, time.perf_counter()
        for batch in batches:
            seen += len(batch["coords"])
            if seen >= max_windows:
                break
        best = max(best, seen / (time.perf_counter() - tic))
        del batches, loader
    return best


def tiny_transformer(vocab: int, length: int):
    """d_model 128, 2 layers, 4 heads over single-nucleotide tokens, with a linear MLM head."""
    import torch
    from torch import nn

    class TinyMLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(vocab, 128)
            self.pos = nn.Parameter(torch.zeros(1, length, 128))
            layer = nn.TransformerEncoderLayer(128, 4, dim_feedforward=512, dropout=0.1,
                                               batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.head = nn.Linear(128, vocab)

        def forward(self, tokens):
            return self.head(self.encoder(self.embed(tokens) + self.pos))

    return TinyMLM()


def model_steps(kind: str, batch: dict, device: str):
    """A training step closure (forward, backward, Adam) on one fixed batch, and the model."""
    import torch

    from helixflow.models.cnn import BindingCNN, CNNConfig
    from helixflow.tokenize import MASK
    gen = torch.Generator().manual_seed(0)
    if kind == "cnn":
        model = BindingCNN(CNNConfig()).to(device)
        x = batch["x"].to(device)
        y = torch.randint(0, 2, (len(x),), generator=gen).float().to(device)

        def loss_fn():
            return torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
    else:
        tokens = batch["tokens"].to(device)
        model = tiny_transformer(Tokenizer(1).vocab_size, tokens.shape[1]).to(device)
        masked = (torch.rand(tokens.shape, generator=gen) < 0.15).to(device)
        inputs = torch.where(masked, torch.full_like(tokens, MASK), tokens)

        def loss_fn():
            logits = model(inputs)
            return torch.nn.functional.cross_entropy(logits[masked], tokens[masked])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = loss_fn()
        loss.backward()
        optimizer.step()
    return step


def consumption_rate(step, batch_size: int, steps: int, device: str, repeats: int) -> float:
    """Training windows/s, the best of ``repeats`` timings of ``steps`` steps (after warm-up)."""
    import torch
    for _ in range(3):
        step()
    best = 0.0
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        tic = time.perf_counter()
        for _ in range(steps):
            step()
        if device == "cuda":
            torch.cuda.synchronize()
        best = max(best, steps * batch_size / (time.perf_counter() - tic))
    return best


def flops_per_window(kind: str, batch: dict) -> float:
    """Forward + backward FLOPs of one training step / batch size (torch's FLOP counter)."""
    from torch.utils.flop_counter import FlopCounterMode
    step = model_steps(kind, batch, "cpu")
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops() / len(batch["coords"])


def part_b(fasta: Path, work: Path, steps: list[int], device: str, mfu: float,
           loader_workers: list[int], max_windows: int, threads: int, repeats: int) -> dict:
    import torch

    from helixflow.loader import make_loader
    chroms = list(read_fai_records(fasta))
    corpora = {"cnn": (work / "b_cnn", 200, 100, "onehot", "x"),
               "transformer": (work / "b_mlm", 512, 256, "tokens", "tokens")}
    torch.set_num_threads(threads)
    print(f"(b) loader vs training consumption (batch 64; torch threads {threads}; models on "
          f"{device}; best of {repeats} timings each)")
    results = {}
    for kind, (out, window, stride, output, key) in corpora.items():
        if kind == "transformer" and steps[1] == 0:
            continue
        build_corpus(fasta, chroms, out, Tokenizer(1), window, stride, MAX_N, 65536, workers=1)
        manifest = out / "manifest.json"
        rates = {w: loader_rate(manifest, output, w, max_windows, repeats)
                 for w in loader_workers}
        batch = next(iter(make_loader(manifest, 64, seed=0, output=output, pin_memory=False)))
        consume = consumption_rate(model_steps(kind, batch, device), 64,
                                   steps[0 if kind == "cnn" else 1], device, repeats)
        flops = flops_per_window(kind, batch)
        best = max(rates.values())
        shape = tuple(batch[key].shape)
        print(f"    {kind}: batches {shape}; loader " + ", ".join(
            f"{r:,.0f} windows/s ({w} workers)" for w, r in rates.items()))
        print(f"      training consumption on {device}: {consume:,.1f} windows/s; best loader / "
              f"consumption {best / consume:,.1f}x; acceptance >= 10x: "
              f"{'PASS' if best / consume >= 10 else 'FAIL'}")
        gpu = H100_BF16_DENSE * mfu / flops
        print(f"      GPU estimate: {flops / 1e6:,.1f} MFLOP per training window (fwd + bwd, "
              f"counted) -> an H100 at 989 TFLOP/s x assumed MFU {mfu} would consume "
              f"~{gpu:,.0f} windows/s; best loader here / that = {best / gpu:.3g}")
        results[kind] = {"loader": rates, "consumption": consume, "flops_per_window": flops,
                         "gpu_estimate": gpu}
    return results


# ---------------------------------------------------------------- (c) memory




def memory_child(fasta: str, out: str, workers: int) -> None:
    """Run in a child process: build a corpus and print its peak memory as JSON.

    The peak is reset after the imports, so ``peak_kb`` is the highest RSS while building
    (it includes the interpreter and imports, ``start_kb``). It is VmHWM, the high-water mark
    that ru_maxrss reports for the process's own memory: on Linux ru_maxrss(RUSAGE_SELF) of an
    exec'd child also carries the launching parent's peak (kept as ``ru_maxrss_self_kb``).
    Worker processes: ru_maxrss(RUSAGE_CHILDREN), the largest worker.
    """
    chroms = list(read_fai_records(fasta))
    reset = reset_peak()
    start = status_kb("VmRSS")
    manifest, seconds = timed(build_corpus, fasta, chroms, out, Tokenizer(1), WINDOW, STRIDE,
                              MAX_N, 65536, workers=workers)
    print(json.dumps({"start_kb": start, "peak_reset": reset, "peak_kb": status_kb("VmHWM"),
                      "ru_maxrss_self_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "worker_peak_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                      "seconds": seconds, "bp": manifest["counts"]["bp"],
                      "chromosomes": len(chroms)}))


def write_genome(path: Path, seqs: list[tuple[str, str]]) -> Path:
    with open(path, "w") as handle:
        for name, seq in seqs:
            handle.write(f">{name}\n")
            for i in range(0, len(seq), 60):
                handle.write(seq[i:i + 60] + "\n")
    out = path.with_name(path.stem + ".indexed.fa")
    index_genome(path, out, path.with_suffix(".sizes"))
    path.unlink()
    return out


def part_c(fasta: Path, work: Path) -> dict:
    genome = Genome(fasta)
    seqs = [(c, genome.fetch(c, 0, n)) for c, n in genome.sizes.items()]
    genome.close()
    genomes = {
        "1x": fasta,
        "4x copies": write_genome(work / "copies.fa", [(f"{c}_copy{j}", s) for j in range(4)
                                                       for c, s in seqs]),
        "1x one chromosome": write_genome(work / "concat1.fa",
                                          [("chrAll", "".join(s for _, s in seqs))]),
        "4x one chromosome": write_genome(work / "concat4.fa",
                                          [("chrAll4x", "".join(s for _, s in seqs) * 4)]),
    }
    del seqs
    print("(c) peak memory of a child process building the corpus (VmHWM, reset after its "
          "imports; worker processes: ru_maxrss of the largest;\n    k=1, "
          f"{WINDOW}-bp windows every {STRIDE} bp, 1-Mbp chunks)")
    rows = {}
    for workers in (1, 2):
        for name, path in genomes.items():
            out = subprocess.run([sys.executable, __file__, "--memory-child", str(path),
                                  str(work / f"c_{workers}_{name.replace(' ', '_')}"),
                                  str(workers)], capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            peak = max(row["peak_kb"], row["worker_peak_kb"])
            rows[(workers, name)] = row | {"max_process_kb": peak}
            print(f"    {workers} worker(s), {name:18s} {row['bp'] / 1e6:5.1f} Mbp "
                  f"{row['chromosomes']:2d} chrom: peak {peak / 1024:6.1f} MiB (main "
                  f"{row['peak_kb'] / 1024:.1f}, of which {row['start_kb'] / 1024:.1f} before "
                  f"building; largest worker {row['worker_peak_kb'] / 1024:.1f}), "
                  f"{row['seconds']:.2f} s")
        for small, name in (("1x", "4x copies"), ("1x one chromosome", "4x one chromosome")):
            one, big = rows[(workers, small)], rows[(workers, name)]
            ratio = big["max_process_kb"] / one["max_process_kb"]
            growth = (big["max_process_kb"] - one["max_process_kb"]) / 1024
            print(f"    {workers} worker(s): {name} / {small} peak = {ratio:.3f} "
                  f"({growth:+.1f} MiB); within 10%: "
                  f"{'PASS' if abs(ratio - 1) <= 0.10 else 'FAIL'}")
    return {f"{w} {n}": r for (w, n), r in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genome", default=YEAST, help="FASTA or FASTA.gz (default: yeast)")
    parser.add_argument("--parts", nargs="+", default=["a", "b", "c"], choices="abc")
    parser.add_argument("--naive-bp", type=int, default=1_000_000)
    parser.add_argument("--steps", type=int, nargs=2, default=[50, 4], metavar=("CNN", "MLM"),
                        help="timed training steps of the CNN and of the transformer")
    parser.add_argument("--device", default="cpu", help="where the models train (cpu, cuda)")
    parser.add_argument("--mfu", type=float, default=0.3, help="assumed GPU MFU")
    parser.add_argument("--loader-workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--loader-windows", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="torch threads for the models (default: the cores)")
    parser.add_argument("--repeats", type=int, default=3, help="timings; the best counts")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child[0], args.memory_child[1], int(args.memory_child[2]))
        return
    print(f"machine: {os.cpu_count()} CPU cores; genome {args.genome}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_data_layer_") as tmp:
        work = Path(tmp)
        fasta = work / "genome.fa"
        index_genome(args.genome, fasta, work / "genome.sizes")
        if "a" in args.parts:
            results["a"] = part_a(fasta, work, args.naive_bp)
        if "b" in args.parts:
            results["b"] = part_b(fasta, work, args.steps, args.device, args.mfu,
                                  args.loader_workers, args.loader_windows, args.threads,
                                  args.repeats)
        if "c" in args.parts:
            results["c"] = part_c(fasta, work)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
