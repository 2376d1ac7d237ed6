"""The splice figure: logos of the annotated test sites beside the pretext's and the zero-shot
MLM's predicted PWMs at masked cores; bits per core base of each predictor; the site
classifiers' test AUROC against the PWM baseline."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .motifs import information_content
from .plots import new_figure, save_figure
from .splice import KINDS

LOGOS = {"annotated_test": "annotated test sites", "splice_pretext": "pretext prediction",
         "mlm_zero_shot": "MLM before the pretext"}
PREDICTORS = {"splice_pretext": "pretext", "mlm_zero_shot": "MLM zero-shot",
              "training_pwm": "training PWM", "background": "composition"}
CLASSIFIERS = {"from_pretext": "from pretext", "from_pretrained": "from MLM",
               "scratch": "scratch", "pwm": "PWM"}
SHADES = {"donor": "#4c72b0", "acceptor": "#c44e52"}


def _logo(ax, matrix: np.ndarray, start: int, title: str) -> None:
    import logomaker
    heights = pd.DataFrame((matrix * information_content(matrix)[None, :]).T,
                           columns=list("ACGT"), index=np.arange(matrix.shape[1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # an all-uniform logo warns on its y limits
        logomaker.Logo(heights, ax=ax, color_scheme="classic")
    labels = [f"{p + 1:+d}" if p >= 0 else f"{p:d}" for p in range(start,
                                                                   start + matrix.shape[1])]
    ax.set_xticks(np.arange(matrix.shape[1]), labels, fontsize=8)
    ax.set_ylim(0, 2)
    ax.set_ylabel("bits")
    ax.set_title(title, fontsize=9, loc="left")
    ax.spines[["top", "right"]].set_visible(False)


def _bars(ax, table: pd.DataFrame, names: dict[str, str], value: str, lo: str, hi: str) -> None:
    width = 0.38
    for j, kind in enumerate(KINDS):
        rows = table[table["kind"] == kind].set_index("model").reindex(
            [m for m in names if m in set(table["model"])])
        x = np.arange(len(rows)) + (j - 0.5) * width
        errors = np.abs(rows[[lo, hi]].to_numpy().T - rows[value].to_numpy())
        ax.bar(x, rows[value], width, yerr=errors, capsize=2, color=SHADES[kind], label=kind)
        for xi, v in zip(x, rows[value], strict=True):
            ax.text(xi, v, f"{v:.2f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(np.arange(len(rows)), [names[m] for m in rows.index], fontsize=8,
                  rotation=15)
    ax.legend(fontsize=8, frameon=False, loc="upper center", ncol=2)
    ax.spines[["top", "right"]].set_visible(False)


def plot_splice(path_png: str | Path, matrices: dict[tuple[str, str], np.ndarray],
                pretext: pd.DataFrame, classifiers: pd.DataFrame,
                offsets: dict[str, int]) -> None:
    """Write the figure (PNG + SVG) from the stage's PWMs and metric tables."""
    fig = new_figure(14, 6.4)
    grid = fig.add_gridspec(2, 4, width_ratios=[1, 1, 1, 1.5])
    for i, kind in enumerate(KINDS):
        for j, (source, title) in enumerate(LOGOS.items()):
            ax = fig.add_subplot(grid[i, j])
            _logo(ax, matrices[(kind, source)], offsets[kind],
                  f"{'abc'[j]}{i + 1}  {kind}: {title}")
    bits = fig.add_subplot(grid[0, 3])
    _bars(bits, pretext, PREDICTORS, "bits_per_base", "bits_lo", "bits_hi")
    bits.set_ylabel("bits per core base (lower = better)")
    bits.set_ylim(0, 1.3 * float(pretext["bits_hi"].max()))
    bits.set_title("d  Filling masked cores, test sites (95% bootstrap)", fontsize=9, loc="left")
    auroc = fig.add_subplot(grid[1, 3])
    _bars(auroc, classifiers, CLASSIFIERS, "auroc", "auroc_lo", "auroc_hi")
    auroc.axhline(0.5, color="#999", lw=0.8, ls="--")
    auroc.set_ylim(0.4, 1.15)
    auroc.set_ylabel("test AUROC, site vs GT/AG decoy")
    auroc.set_title("e  Site classifiers, test chromosomes (95% bootstrap)", fontsize=9,
                    loc="left")
    fig.suptitle("Splice sites: masked-core pretext and site classifiers (held-out chromosomes)",
                 fontsize=11, fontweight="bold")
    save_figure(fig, path_png)
