"""Resource requests that follow the input: each rule's ``mem_mb`` and ``runtime``.

Snakemake evaluates a rule's resource callables again just before it starts or submits
the job, when every input exists, so a request can read them. Each stage has a linear
cost model in the size of what it loads:

    peak memory (MB)  ≈ base_mb  + mb_per_mb  × load_mb
    runtime (minutes) ≈ base_min + min_per_mb × load_mb

``load_mb`` is the size of the stage's scaling inputs (``Cost.inputs``, named inputs of the
rule): a file counts by its size, a gzipped file by ``GZIP_RATIO`` × its size, and a JSON
manifest of arrays (shards, token corpora) by the arrays it lists — the bytes a job may
page in. The request is ``MARGIN`` × the model, rounded up, and doubles with every
Snakemake retry (``attempt``), so a job that the cluster killed for memory comes back
with more.

The coefficients come from peak RSS and wall time measured per job (Snakemake's
``benchmark:`` files) on the yeast default and on the synthetic human genome
(``benchmarks/bench_scale.py`` prints each job's peak beside its request).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MARGIN = 1.5          # requested = MARGIN × modelled peak (memory) or time
GZIP_RATIO = 4.0      # bytes in memory per byte of a gzipped text input (peaks, tiles)
MIN_MEM_MB = 500
MIN_RUNTIME = 5       # minutes


@dataclass(frozen=True)
class Cost:
    """Linear cost model of one stage in the MB it loads (see the module docstring)."""

    base_mb: float
    mb_per_mb: float = 0.0
    base_min: float = 5.0
    min_per_mb: float = 0.0
    inputs: tuple[str, ...] = ()     # names of the rule's inputs that the cost scales with


TORCH_MB = 900        # interpreter + numpy/pandas/torch imported, model and buffers

COSTS: dict[str, Cost] = {
    # data layer: streamed, memory independent of the genome
    "stage_input": Cost(300, base_min=30),
    "index_genome": Cost(300, base_min=10, min_per_mb=0.02, inputs=("fasta",)),
    "genome_tiles": Cost(400, base_min=5, min_per_mb=0.01, inputs=("fasta",)),
    "call_peaks": Cost(1000, 3.0, 30, 0.2, inputs=("treatment", "control")),
    "check_peaks": Cost(400, 3.0, 10, 0.05, inputs=("peaks",)),
    "windows": Cost(600, 3.0, 10, 0.1, inputs=("peaks", "tiles")),
    "check_splits": Cost(500, 3.0, 5, 0.05, inputs=("windows",)),
    "shards": Cost(600, 1.0, 10, 0.05, inputs=("windows",)),
    # a table of sequences is read whole: its strings, then one byte per base × 4 (one-hot)
    "sequence_shards": Cost(600, 8.0, 10, 0.1, inputs=("sequences",)),
    # models on shards (memory-mapped: the pages read count towards RSS)
    "train_cnn": Cost(TORCH_MB, 2.0, 30, 0.5, inputs=("shards",)),
    "sweep_arm": Cost(TORCH_MB, 2.0, 30, 0.5, inputs=("shards",)),
    "kmer_baseline": Cost(600, 2.5, 10, 0.5, inputs=("shards",)),   # sparse counts
    "pwm_baseline": Cost(600, 2.0, 5, 0.1, inputs=("shards",)),
    "motifs": Cost(1200, 2.0, 15, 0.2, inputs=("shards",)),
    "attributions": Cost(1500, 1.5, 30, 0.2, inputs=("shards",)),
    "grammar": Cost(1200, 1.5, 15, 0.3, inputs=("shards",)),
    "transfer": Cost(1500, 2.0, 60, 2.0, inputs=("shards",)),
    "multitask": Cost(1500, 1.5, 60, 1.0, inputs=("shards",)),
    "imbalance": Cost(1500, 40.0, 30, 5.0, inputs=("peaks",)),
    "mil": Cost(1500, 40.0, 30, 5.0, inputs=("peaks",)),
    # pretraining: the corpus is streamed; pretraining's cost is its step budget
    "corpus": Cost(800, base_min=10, min_per_mb=0.02, inputs=("fasta",)),
    "pretrain": Cost(2500, base_min=240),
    # counts at most diagnostics.max_train_windows (50,000) training windows
    "pretrain_diagnostics": Cost(3500, base_min=60),
    # gene finding: tiles streamed from the FASTA; the test chromosomes are held whole
    "gene_finding": Cost(1500, 1.0, 30, 0.5, inputs=("fasta",)),
    "gene_finding_prokaryote": Cost(1500, base_min=30),    # a fixed 870-kb contig
    # splice sites: one chromosome in memory at a time; sites and decoys are a few thousand
    "splice": Cost(1500, 1.0, 30, 0.5, inputs=("fasta",)),
    # sequence <-> chromatin: one chromatin view per bin (bins × proteins floats) and the bins'
    # tokens; the yeast genome's 11,565 bins × 377 proteins are 17 MB
    "chromatin_contrastive": Cost(2500, 1.0, 60, 1.0, inputs=("fasta",)),
    # omics stages: fixed inputs (not genome-sized); peaks measured on the default's
    # inputs: scRNA 1,727 MB (over the 1,500 MB default request), methylation 603 MB, 11 min
    "scrna": Cost(1800, base_min=20),
    "methylation_mae": Cost(1000, base_min=20),
    # evaluation and figures: tables of predictions
    "evaluate": Cost(600, 5.0, 10, 0.5),
    "choose_model": Cost(600, 5.0, 10, 0.5),     # reads the same predictions as evaluate
    "plot_roc_pr": Cost(600, 5.0, 5, 0.2),
}
DEFAULT = Cost(1000, base_min=10)   # summaries, figures, the report, omics stages


def array_bytes(manifest: dict | list) -> int:
    """Bytes of every array listed in a manifest (entries with ``shape`` and ``dtype``)."""
    if isinstance(manifest, dict):
        if "shape" in manifest and "dtype" in manifest:
            return int(np.prod(manifest["shape"])) * np.dtype(manifest["dtype"]).itemsize
        return sum(array_bytes(value) for value in manifest.values())
    if isinstance(manifest, list):
        return sum(array_bytes(value) for value in manifest)
    return 0


def load_mb(paths: Iterable[str | Path]) -> float:
    """MB a stage loads from ``paths`` (missing files count 0: the DAG is still being built)."""
    total = 0.0
    for path in map(Path, paths):
        if not path.is_file():
            continue
        if path.name == "manifest.json":
            try:
                total += array_bytes(json.loads(path.read_text()))
            except (json.JSONDecodeError, ValueError, TypeError):   # not a manifest of arrays
                total += path.stat().st_size
        elif path.suffix == ".gz":
            total += GZIP_RATIO * path.stat().st_size
        else:
            total += path.stat().st_size
    return total / 1e6


def _scaling_inputs(input, names: tuple[str, ...]) -> list[str]:
    paths: list[str] = []
    for name in names:
        value = getattr(input, name, [])
        paths += [value] if isinstance(value, str) else list(value)
    return paths


def request(stage: str, input=(), attempt: int = 1) -> tuple[int, int]:
    """(mem_mb, runtime minutes) to ask for ``stage`` given its Snakemake ``input``."""
    cost = COSTS.get(stage, DEFAULT)
    size = load_mb(_scaling_inputs(input, cost.inputs))
    scale = MARGIN * 2 ** (attempt - 1)
    mem = max(MIN_MEM_MB, math.ceil(scale * (cost.base_mb + cost.mb_per_mb * size)))
    minutes = max(MIN_RUNTIME, math.ceil(scale * (cost.base_min + cost.min_per_mb * size)))
    return mem, minutes


def mem_request(stage: str) -> Callable:
    """A ``resources: mem_mb=`` callable for ``stage``."""
    def requested(wildcards, input, attempt):
        return request(stage, input, attempt)[0]
    return requested


def runtime_request(stage: str) -> Callable:
    """A ``resources: runtime=`` callable (minutes) for ``stage``."""
    def requested(wildcards, input, attempt):
        return request(stage, input, attempt)[1]
    return requested


# ---------------------------------------------------------------- requested vs used


def requested_mem(log_text: str) -> dict[str, float]:
    """{benchmark file: mem_mb the job asked for}, from the job blocks of a Snakemake log."""
    requested = {}
    for block in log_text.split("\n\n"):
        bench = re.search(r"benchmark: (\S+)", block)
        mem = re.search(r"resources: .*?\bmem_mb=(\d+)", block)
        if bench and mem:
            requested[bench.group(1)] = float(mem.group(1))
    return requested


def job_usage(workdir: str | Path, log_text: str):
    """One row per finished job of the run in ``workdir``: rule, job (its benchmark file),
    s (wall seconds), max_rss_mb (peak RSS) and mem_mb (what it asked for)."""
    import pandas as pd

    workdir = Path(workdir)
    requested = requested_mem(log_text)
    root = workdir / "results" / "benchmarks"
    rows = []
    for path in sorted(root.rglob("*.tsv")):
        bench = pd.read_csv(path, sep="\t")
        rel = str(path.relative_to(workdir))
        rows.append({"rule": path.relative_to(root).parts[0].removesuffix(".tsv"), "job": rel,
                     "s": float(bench["s"].iloc[0]),
                     "max_rss_mb": float(pd.to_numeric(bench["max_rss"],
                                                       errors="coerce").iloc[0]),
                     "mem_mb": requested.get(rel, float("nan"))})
    return pd.DataFrame(rows, columns=["rule", "job", "s", "max_rss_mb", "mem_mb"])
