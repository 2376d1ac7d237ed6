"""Human-scale benchmark: the whole workflow on the synthetic hg38 at several sizes.

For each scale (a fraction of hg38's 3.1 Gb) it writes the synthetic genome, peaks and
blacklist (``helixflow.simulate_genome``), runs every default stage of
``config/examples/hg38_scale`` in a work directory of its own, and reads back per job: wall
time and peak RSS (Snakemake's ``benchmark:`` files) and the ``mem_mb`` the job asked for
(the run log). It prints per stage: total seconds, the largest peak RSS, the largest
request, whether any job used more than it asked for, and the growth of time and memory
from one scale to the next beside the growth of the input (linear = ratio ≈ size ratio).

    python benchmarks/bench_scale.py                       # 1/64, 1/8 and 1
    python benchmarks/bench_scale.py --scales 1/64 --cores 2 --workdir scale_runs
    python benchmarks/bench_scale.py --scales 1/8 --reference 1=benchmarks/records/scale_1.tsv

Each run's per-job table is written to ``{workdir}/scale_N_D/jobs.tsv``. ``--reference``
adds a run recorded that way (the same config and code, on a machine like this one) to the
growth table, so that a full-size run (hours) and a smaller one need not share a session.

Not part of CI (hours at full size on 2 cores); `make bench-scale` runs it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pandas as pd
import yaml
from snakemake.utils import update_config

from helixflow.resources import job_usage
from helixflow.simulate_genome import parse_scale, simulate

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "examples" / "hg38_scale" / "config.yaml"
DEFAULT_CONFIG = REPO / "config" / "config.yaml"
SHARED = REPO.parent / "shared" / "data"   # methylation and scRNA inputs of the config


def prepare(workdir: Path, scale: Fraction, seed: int, targets: list[str] | None) -> Path:
    """Simulate the genome into ``workdir/data`` (once) and write the run's config."""
    data = workdir / "data" / "hg38_scale"
    if not (data / "manifest.json").is_file():
        simulate(data, float(scale), seed, targets=targets)
    # merged over the default as `snakemake --configfile` from the repository would (the run
    # happens in its own directory, where the Snakefile's config/config.yaml is not found):
    # the default's methylation and single-cell stages stay on
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    update_config(config, yaml.safe_load(CONFIG.read_text()))   # Snakemake's own merge
    config["data_mirror"] = ["data/hg38_scale", str(SHARED)]   # methylation, scRNA inputs
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_workflow(workdir: Path, config: Path, cores: int) -> float:
    """Run Snakemake in ``workdir``; returns the wall time. The log is ``workdir/run.log``."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--configfile", str(config), "--profile", str(REPO / "profiles" / "local"),
           "--cores", str(cores)]
    tic = time.perf_counter()
    with open(workdir / "run.log", "w") as log:
        subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=True, cwd=workdir)
    return time.perf_counter() - tic


def stage_table(jobs: pd.DataFrame) -> pd.DataFrame:
    return jobs.groupby("rule").agg(
        jobs=("s", "size"), total_s=("s", "sum"), max_rss_mb=("max_rss_mb", "max"),
        max_mem_mb=("mem_mb", "max"),
        over_request=("max_rss_mb", lambda s: int((s > jobs.loc[s.index, "mem_mb"]).sum())))


def growth(stages: dict[str, pd.DataFrame], scales: list[Fraction]) -> pd.DataFrame:
    """Ratio of each stage's time and peak memory between consecutive scales."""
    rows = []
    for small, large in zip(scales, scales[1:], strict=False):
        a, b = stages[str(small)], stages[str(large)]
        for rule in a.index.intersection(b.index):
            rows.append({"rule": rule, "from": str(small), "to": str(large),
                         "size_ratio": float(large / small),
                         "time_ratio": b.loc[rule, "total_s"] / max(a.loc[rule, "total_s"],
                                                                    1e-3),
                         "rss_ratio": b.loc[rule, "max_rss_mb"] / a.loc[rule, "max_rss_mb"]})
    table = pd.DataFrame(rows)
    if len(table):
        table["time_vs_size"] = table["time_ratio"] / table["size_ratio"]
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", nargs="+", default=["1/64", "1/8", "1"])
    parser.add_argument("--workdir", type=Path, default=REPO / "scale_runs")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--targets", default=None, help="comma-separated subset of targets")
    parser.add_argument("--reference", nargs="*", default=[], metavar="SCALE=JOBS_TSV",
                        help="an earlier run's jobs.tsv to compare with, e.g. 1=path")
    a = parser.parse_args(argv)
    targets = [t.strip() for t in a.targets.split(",") if t.strip()] if a.targets else None
    stages = {}
    for item in a.reference:
        scale, _, path = item.partition("=")
        jobs = pd.read_csv(path, sep="\t")
        stages[str(parse_scale(scale))] = stage_table(jobs)
        print(f"== scale {parse_scale(scale)} (recorded, {path}): {len(jobs)} jobs")
    scales = sorted({parse_scale(s) for s in a.scales} | {Fraction(k) for k in stages})
    for scale in scales:
        if str(scale) in stages:
            continue
        workdir = a.workdir.resolve() / f"scale_{scale.numerator}_{scale.denominator}"
        workdir.mkdir(parents=True, exist_ok=True)
        config = prepare(workdir, scale, a.seed, targets)
        wall = run_workflow(workdir, config, a.cores)
        jobs = job_usage(workdir, (workdir / "run.log").read_text())
        jobs.to_csv(workdir / "jobs.tsv", sep="\t", index=False)
        stages[str(scale)] = stage_table(jobs)
        worst = jobs.loc[jobs["max_rss_mb"].idxmax()]
        print(f"\n== scale {scale}: wall {wall / 60:.1f} min, {len(jobs)} jobs, largest peak "
              f"RSS {worst['max_rss_mb']:.0f} MB ({worst['job']})")
        print(stages[str(scale)].round(1).to_string())
    table = growth(stages, scales)
    if len(table):
        print("\n== growth between scales (time_vs_size <= 1.3: at most 1.3x faster than "
              "the input)")
        print(table.round(2).to_string(index=False))


if __name__ == "__main__":
    main()
