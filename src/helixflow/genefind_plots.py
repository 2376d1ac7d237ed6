"""The gene-finding figure: gene-level and base-level scores of each method on the test
chromosomes, the 3-periodicity of the network's features, and one test locus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .genefind import Gene
from .genefind_model import FastaTiles, GeneFinderNet, predict_probabilities
from .plots import new_figure, save_figure

COLOURS = {"annotation": "#333333", "cnn_bigru": "#1b9e77", "prodigal": "#7570b3",
           "longest_orf": "#d95f02"}
LABELS = {"cnn_bigru": "CNN + BiGRU", "prodigal": "Prodigal", "longest_orf": "longest ORF"}


def busiest_window(truth: list[Gene], chrom: str, size: int, width: int) -> int:
    """Start of the ``width``-bp window of ``chrom`` (5-kb steps) holding most annotated genes."""
    starts = np.array([g.start for g in truth if g.chrom == chrom])
    best, where = -1, 0
    for s in range(0, max(size - width, 1), 5000):
        n = int(((starts >= s) & (starts < s + width)).sum())
        if n > best:
            best, where = n, s
    return where


def _rates(ax, metrics: pd.DataFrame) -> None:
    methods = list(metrics["method"])
    x = np.arange(len(methods))
    bars = [("sensitivity_stop", "sensitivity (stop)", -0.3),
            ("precision_stop", "precision (stop)", -0.1),
            ("sensitivity_exact", "sensitivity (exact)", 0.1),
            ("precision_exact", "precision (exact)", 0.3)]
    for (column, label, shift), shade in zip(bars, ("#4c72b0", "#8fb0de", "#c44e52", "#e8a3a5"),
                                             strict=True):
        values = metrics[column].to_numpy()
        errors = np.abs(metrics[[f"{column}_lo", f"{column}_hi"]].to_numpy().T - values)
        ax.bar(x + shift, values, 0.2, yerr=errors, color=shade, label=label, capsize=2)
    ax.set_xticks(x, [LABELS.get(m, m) for m in methods])
    ax.set_ylim(0, 1.22)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("fraction of genes")
    ax.set_title("a  Gene level, test chromosomes (95% Wilson)")
    ax.legend(fontsize=7, ncol=4, loc="upper center", frameon=False)


def _bases(ax, metrics: pd.DataFrame) -> None:
    methods = list(metrics["method"])
    values = metrics["nucleotide_f1"].to_numpy()
    ax.bar(np.arange(len(methods)), values, color=[COLOURS[m] for m in methods])
    for i, v in enumerate(values):
        ax.text(i, v + 0.01, f"{v:.3f}", ha="center", fontsize=8)
    ax.set_xticks(np.arange(len(methods)), [LABELS.get(m, m) for m in methods])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("coding-base F1 (from gene calls)")
    ax.set_title("b  Base level, test chromosomes")


def _spectrum(ax, spectrum: dict[str, np.ndarray]) -> None:
    freq = spectrum["frequency"]
    ax.plot(freq[1:], spectrum["noncoding"][1:], color="#999999", lw=1,
            label="non-coding stretches")
    ax.plot(freq[1:], spectrum["coding"][1:], color=COLOURS["cnn_bigru"], lw=1,
            label="annotated genes (first 900 bp)")
    ax.set_yscale("log")
    ax.axvline(1 / 3, color="black", ls=":", lw=0.8, zorder=0)
    ax.text(1 / 3, ax.get_ylim()[1] * 0.7, " 1/3", fontsize=8, va="top")
    ax.set_xlabel("frequency (cycles per base)")
    ax.set_ylabel("power / mean power")
    ax.set_title("c  Most periodic front-end feature (test genes)")
    ax.legend(fontsize=7)


def _locus(ax, tiles: FastaTiles, model: GeneFinderNet, calls: dict[str, list[Gene]],
           truth: list[Gene], chrom: str, start: int, end: int,
           device: torch.device | None) -> None:
    probs = predict_probabilities(model, tiles, chrom, start, end, device=device)
    x = np.arange(start, end) / 1000
    ax.fill_between(x, 0, probs[:, 1:4].sum(1), color=COLOURS["cnn_bigru"], alpha=0.5, lw=0)
    ax.fill_between(x, 0, -probs[:, 4:7].sum(1), color=COLOURS["cnn_bigru"], alpha=0.5, lw=0)
    rows = [("annotation", truth)] + [(m, calls[m]) for m in ("cnn_bigru", "prodigal",
                                                                 "longest_orf")]
    for i, (name, genes) in enumerate(rows):
        y = -1.4 - 0.45 * i
        for g in genes:
            if g.chrom == chrom and g.end > start and g.start < end:
                ax.annotate("", xy=((g.end if g.strand == "+" else g.start) / 1000, y),
                            xytext=((g.start if g.strand == "+" else g.end) / 1000, y),
                            arrowprops={"arrowstyle": "-|>", "color": COLOURS[name], "lw": 2})
        ax.text(start / 1000, y + 0.12, "annotation" if name == "annotation" else
                LABELS[name], fontsize=7, color=COLOURS[name])
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xlim(start / 1000, end / 1000)
    ax.set_ylim(-1.4 - 0.45 * len(rows), 1.05)
    ax.set_yticks([-1, 0, 1], ["1 (−)", "0", "1 (+)"])
    ax.set_xlabel(f"{chrom} position (kb)")
    ax.set_ylabel("P(coding)")
    ax.set_title("d  A test locus: network's coding probability per strand, and gene calls")


def plot_gene_finding(path_png: str | Path, metrics: pd.DataFrame,
                      spectrum: dict[str, np.ndarray], tiles: FastaTiles, model: GeneFinderNet,
                      calls: dict[str, list[Gene]], truth: list[Gene], params: dict,
                      device: torch.device | None = None, width: int = 20_000) -> None:
    """Write the four-panel figure (PNG and SVG)."""
    fig = new_figure(12, 8.5)
    grid = fig.add_gridspec(2, 3)
    _rates(fig.add_subplot(grid[0, 0:2]), metrics)
    _bases(fig.add_subplot(grid[0, 2]), metrics)
    _spectrum(fig.add_subplot(grid[1, 0]), spectrum)
    chrom = truth[0].chrom if truth else next(iter(tiles.sizes))
    size = tiles.sizes[chrom]
    start = busiest_window(truth, chrom, size, min(width, size))
    _locus(fig.add_subplot(grid[1, 1:3]), tiles, model, calls, truth, chrom, start,
           min(start + width, size), device)
    fig.suptitle("Gene finding on held-out chromosomes: CNN + BiGRU vs Prodigal and a "
                 "longest-ORF scan")
    save_figure(fig, path_png)
