"""The sequence ↔ chromatin figure: (a) test retrieval top-k in fixed pools, both directions,
against chance and the ties' ceiling; (b) linear-probe test AUROC per TF for each encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .plots import PALETTE, new_figure, save_figure

DIRECTION_LABELS = {"sequence_to_chromatin": "seq → chrom",
                    "chromatin_to_sequence": "chrom → seq"}


def _retrieval(ax, metrics: pd.DataFrame) -> None:
    table = metrics[metrics["pool"] == "pools"]
    ks = sorted(table["k"].unique())
    arms = list(dict.fromkeys(zip(table["variant"], table["model"], strict=True)))
    groups = [(d, k) for d in DIRECTION_LABELS for k in ks]
    x = np.arange(len(groups))
    width = 0.8 / max(len(arms), 1)
    for a, (variant, model) in enumerate(arms):
        rows = table[(table["variant"] == variant) & (table["model"] == model)]
        rows = rows.set_index(["direction", "k"]).reindex(groups)
        value = rows["accuracy"].to_numpy(float)
        bounds = np.clip(rows[["accuracy_lo", "accuracy_hi"]].to_numpy(float).T, 1e-4, 1)
        value = np.clip(value, 1e-4, 1)
        err = np.abs(bounds - value)
        ax.bar(x - 0.4 + width * (a + 0.5), value, width, yerr=err, capsize=2,
               color=PALETTE[a % len(PALETTE)], label=f"{variant}, {model}")
    first = table.set_index(["direction", "k"])
    first = first[~first.index.duplicated()].reindex(groups)
    ax.scatter(x, first["chance"], marker="_", s=300, color="black", zorder=3,
               label="chance (k / pool)")
    ax.scatter(x, first["ceiling"], marker="_", s=300, color="grey", zorder=3,
               label="ceiling (identical views tie)")
    ax.set_xticks(x, [f"{DIRECTION_LABELS[d]}\ntop-{k}" for d, k in groups], fontsize=7)
    ax.set_yscale("log")      # chance (k / 256) and a perfect model lie decades apart
    ax.set_ylim(1e-3, 10)
    pool = int(table["pool_size"].iloc[0]) if len(table) else 0
    ax.set_ylabel("test top-k accuracy (Wilson 95%, log scale)")
    ax.set_title(f"a  Retrieval in pools of {pool} test bins")
    ax.legend(fontsize=6, frameon=False, loc="upper center", ncol=3)


def _probes(ax, probes: pd.DataFrame) -> None:
    if probes.empty:
        ax.text(0.5, 0.5, "no probe target had enough bins", ha="center", va="center")
        ax.set_axis_off()
        return
    targets = list(dict.fromkeys(probes["target"]))
    encoders = list(dict.fromkeys(probes["encoder"]))
    x = np.arange(len(targets))
    width = 0.8 / len(encoders)
    for e, encoder in enumerate(encoders):
        rows = probes[probes["encoder"] == encoder].set_index("target").reindex(targets)
        value = rows["auroc"].to_numpy(float)
        err = np.abs(rows[["auroc_lo", "auroc_hi"]].to_numpy(float).T - value)
        hatch = "//" if rows["track_in_view"].fillna(False).astype(bool).any() else None
        ax.bar(x - 0.4 + width * (e + 0.5), value, width, yerr=err, capsize=2, hatch=hatch,
               color=PALETTE[e % len(PALETTE)], label=encoder)
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    ax.set_xticks(x, targets)
    ax.set_ylim(0.3, 1.12)
    ax.set_ylabel("test AUROC (bootstrap 95%)")
    ax.set_title("b  Linear probe of TF binding on frozen embeddings\n(hatched: the TF's own "
                 "track was in the aligned view)")
    ax.legend(fontsize=7, frameon=False, loc="upper left", ncol=2)


def plot_chromatin_contrastive(path_png: str | Path, metrics: pd.DataFrame,
                               probes: pd.DataFrame) -> tuple[Path, Path]:
    """Write the two-panel figure (PNG + SVG); ``metrics`` and ``probes`` as the stage writes
    them (:func:`helixflow.chromatin_contrastive.run_chromatin_contrastive`)."""
    fig = new_figure(12.0, 4.2)
    left, right = fig.subplots(1, 2, width_ratios=[1.3, 1.0])
    _retrieval(left, metrics)
    _probes(right, probes)
    return save_figure(fig, path_png)
