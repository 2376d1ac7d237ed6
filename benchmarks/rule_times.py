"""Where a workflow run spent its time: Snakemake's per-job benchmark files, summed by rule.

    python benchmarks/rule_times.py [results/benchmarks]
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd


def rule_times(root: Path) -> pd.DataFrame:
    rows = []
    for path in sorted(root.rglob("*.tsv")):
        table = pd.read_csv(path, sep="\t")
        rule = path.relative_to(root).parts[0].removesuffix(".tsv")
        rows.append({"rule": rule, "s": table["s"].iloc[0],
                     "max_rss_mb": pd.to_numeric(table["max_rss"], errors="coerce").iloc[0]})
    jobs = pd.DataFrame(rows)
    return (jobs.groupby("rule").agg(jobs=("s", "size"), total_s=("s", "sum"),
                                     max_s=("s", "max"), max_rss_mb=("max_rss_mb", "max"))
            .sort_values("total_s", ascending=False))


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "results/benchmarks")
    table = rule_times(root)
    print(table.round(1).to_string())
    print(f"\nsum of job times: {table['total_s'].sum():.0f} s over {table['jobs'].sum()} jobs "
          "(jobs run in parallel, so wall time is shorter)")
