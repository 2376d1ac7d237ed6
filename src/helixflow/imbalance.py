"""Class imbalance: how BCE, class-weighted BCE and focal loss behave from 1:1 to 1:50.

For one target, positives are summit windows and negatives GC-matched genomic background
windows from the same split's chromosomes, drawn once at the largest ratio and ordered so
that every prefix keeps the GC mix (the negatives of a smaller ratio are a subset of those
of a larger one). For each ratio × loss a small :class:`~helixflow.models.cnn.BindingCNN`
is trained per training seed (early stopping on the valid split's AUROC, as
:func:`helixflow.train.train_cnn` does) and scored on the held-out test split at the same
ratio: AUROC, AUPRC (chance level = the positive rate) and precision at fixed recall.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

from .config import overlay
from .errors import InputError
from .evaluate import bootstrap_metrics, precision_at_recall
from .files import write_tsv
from .genome import one_hot_windows
from .intervals import (
    background_negatives,
    check_no_leak,
    read_blacklist,
    read_peaks,
    resolve_splits,
    summit_windows,
    usable_windows,
)
from .losses import LOSSES
from .models.cnn import CNNConfig
from .plots import GREY, PALETTE, STYLE, new_figure, save_figure
from .records import write_record
from .tiles import tiles_for
from .train import TrainConfig, predict, train_cnn

DEFAULTS: dict = {
    "ratios": [1, 5, 20, 50],           # negatives per positive, in every split
    "losses": ["bce", "weighted_bce", "focal"],
    "width": 200,
    # positives kept per split (a seeded random subset; 0 = all): the CPU budget
    "max_positives": {"train": 300, "valid": 150, "test": 0},
    "splits": {"valid": ["chrVII", "chrX"], "test": ["chrIV", "chrXV"], "train": []},
    "gc_bins": 20,
    "max_n_fraction": 0.01,
    "architecture": {"filters": 16, "kernel": 19, "pool": 0, "dense": 16, "dropout": 0.2},
    "training": {"epochs": 20, "batch_size": 64, "lr": 0.003, "weight_decay": 1e-4,
                 "patience": 4, "rc_augment": True, "rc_average": True},
    "focal_gamma": 2.0,
    "focal_alpha": 0.25,
    "pos_weight": None,                  # weighted_bce: None = n_neg / n_pos of the train set
    "recalls": [0.5, 0.8],
    "n_boot": 200,
    "seed": 42,                          # negatives, positive subsets, bootstrap
    "train_seeds": [1, 2],               # one run per seed per ratio × loss; None = [seed]
    "threads": 1,
}
TABLE_COLUMNS = ["target", "ratio", "loss", "seed", "n_pos", "n_neg", "auroc", "auroc_lo",
                 "auroc_hi", "auprc", "auprc_lo", "auprc_hi", "auprc_chance",
                 "precision_at_recall_50", "precision_at_recall_80", "best_epoch",
                 "epochs_run", "valid_auroc", "n_train", "seconds"]
LOSS_LABELS = {"bce": "BCE", "weighted_bce": "weighted BCE", "focal": "focal"}


# ----------------------------------------------------------------------------- data

def nested_order(gc: np.ndarray, n_bins: int, rng: np.random.Generator) -> np.ndarray:
    """A permutation of ``gc`` (shape=(n,)) whose every prefix keeps the GC-bin mix.

    Within each of ``n_bins`` equal GC bins the windows are shuffled; the ``i``-th of a bin
    with ``c`` windows gets the key ``(i + u) / c`` (``u`` uniform), and sorting by the key
    interleaves the bins in proportion, so the first ``m`` windows hold ``≈ m·c/n`` of each.
    """
    gc = np.asarray(gc, dtype=np.float64)
    edges = np.linspace(0, 1, n_bins + 1)
    bins = np.clip(np.digitize(gc, edges[1:-1]), 0, n_bins - 1)
    key = np.empty(len(gc))
    for b in np.unique(bins):
        members = rng.permutation(np.flatnonzero(bins == b))
        key[members] = (np.arange(len(members)) + rng.random(len(members))) / len(members)
    return np.argsort(key, kind="stable")


def _cap(df: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    if n <= 0 or len(df) <= n:
        return df
    return df.iloc[np.sort(rng.choice(len(df), n, replace=False))].reset_index(drop=True)


def imbalance_windows(peaks: pd.DataFrame, blacklist: pd.DataFrame, fasta: str | Path,
                      sizes: Mapping[str, int], split_of: Mapping[str, str], width: int,
                      max_ratio: float, max_positives: Mapping[str, int], gc_bins: int,
                      max_n_fraction: float, seed: int, tiles: pd.DataFrame) -> pd.DataFrame:
    """Positive and negative windows of every split, drawn once at ``max_ratio``.

    Columns: chrom, start, end, name, label, split, gc, rank — ``rank`` orders each split's
    negatives (:func:`nested_order`), so ratio ``r`` takes the ``r · n_pos`` lowest ranks;
    positives have rank -1. Negatives overlap no peak window (of any peak, kept or not) and
    no blacklisted region. A split may get fewer than ``max_ratio · n_pos`` negatives where
    its chromosomes run out of GC-matched background.
    """
    rng = np.random.default_rng(seed)
    windows = summit_windows(peaks, width, sizes)
    exclude = pd.concat([windows[["chrom", "start", "end"]], blacklist], ignore_index=True)
    positives, _ = usable_windows(windows, blacklist, fasta, split_of, max_n_fraction)
    parts = []
    for split in ("train", "valid", "test"):
        chroms = [c for c, s in split_of.items() if s == split]
        pos = _cap(positives[positives["split"] == split].reset_index(drop=True),
                   int(max_positives.get(split, 0)), rng)
        if pos.empty:
            raise InputError(f"no positive windows on the {split} chromosomes "
                             f"({', '.join(chroms)})", fix="choose a target with peaks there "
                             "or change 'splits'")
        neg = background_negatives(pos, exclude, tiles, chroms, max_ratio, gc_bins,
                                   max_n_fraction, rng)
        rank = np.empty(len(neg), dtype=np.int64)
        rank[nested_order(neg["gc"].to_numpy(), gc_bins, rng)] = np.arange(len(neg))
        names = "bg:" + neg["chrom"].astype(str) + ":" + neg["start"].astype(str)
        parts.append(pos.assign(label=1, rank=-1))
        parts.append(neg.assign(name=names, label=0, split=split, rank=rank))
    table = pd.concat(parts, ignore_index=True)
    table["gc"] = table["gc"].astype(float).round(4)
    check_no_leak(table, split_of, "imbalance windows")
    return table[["chrom", "start", "end", "name", "label", "split", "gc", "rank"]]


def at_ratio(table: pd.DataFrame, split: str, ratio: float) -> pd.DataFrame:
    """The split's positives plus its ``round(ratio · n_pos)`` lowest-ranked negatives."""
    rows = table[table["split"] == split]
    n_pos = int((rows["label"] == 1).sum())
    need = int(round(ratio * n_pos))
    return rows[(rows["label"] == 1) | ((rows["label"] == 0) & (rows["rank"] < need))]


# ----------------------------------------------------------------------------- experiment

def _check_params(params: dict) -> None:
    bad = [loss for loss in params["losses"] if loss not in LOSSES]
    if bad:
        raise InputError(f"unknown loss(es) {', '.join(map(str, bad))} in 'imbalance: losses'",
                         fix="use " + ", ".join(LOSSES))
    if not params["ratios"] or any(float(r) <= 0 for r in params["ratios"]):
        raise InputError(f"'imbalance: ratios' must be positive numbers, got "
                         f"{params['ratios']}", fix="e.g. [1, 5, 20, 50]")
    if any(not 0 < float(r) <= 1 for r in params["recalls"]):
        raise InputError(f"'imbalance: recalls' must lie in (0, 1], got {params['recalls']}",
                         fix="e.g. [0.5, 0.8]")


def _train_seeds(params: dict) -> list[int]:
    seeds = params.get("train_seeds")
    return [int(params["seed"])] if seeds is None else [int(s) for s in seeds]


def ratio_metrics(y: np.ndarray, score: np.ndarray, recalls: list[float], n_boot: int,
                 seed: int) -> dict:
    """AUROC/AUPRC (bootstrap intervals), the AUPRC chance level and precision at recalls."""
    row = bootstrap_metrics(y, score, n_boot=n_boot, seed=seed)
    row["auprc_chance"] = row["n_pos"] / (row["n_pos"] + row["n_neg"])
    for recall in recalls:
        row[f"precision_at_recall_{round(100 * recall)}"] = precision_at_recall(y, score, recall)
    return row


def run_ratio_losses(table: pd.DataFrame, X: np.ndarray, target: str, params: dict,
                     log=sys.stderr) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and test every ratio × loss; returns (results table, per-epoch histories)."""
    rows, histories = [], []
    model_cfg = CNNConfig(window=int(params["width"]), **params["architecture"])
    for ratio in params["ratios"]:
        parts = {split: at_ratio(table, split, float(ratio)) for split in
                 ("train", "valid", "test")}
        data = {split: (X[rows.index.to_numpy()], rows["label"].to_numpy(np.uint8))
                for split, rows in parts.items()}
        for loss, seed in itertools.product(params["losses"], _train_seeds(params)):
            tic = time.perf_counter()
            cfg = TrainConfig(**params["training"], seed=seed,
                              threads=int(params["threads"]), model=model_cfg, loss=loss,
                              pos_weight=params["pos_weight"],
                              focal_gamma=float(params["focal_gamma"]),
                              focal_alpha=params["focal_alpha"])
            print(f"{target} 1:{ratio} {loss} seed {seed}: {len(data['train'][1])} train "
                  "windows",
                  file=log, flush=True)
            model, history, summary = train_cnn(*data["train"], *data["valid"], cfg, log=log)
            y_test = data["test"][1]
            score = predict(model, data["test"][0], rc_average=cfg.rc_average)
            metrics = ratio_metrics(y_test, score, list(params["recalls"]),
                                   int(params["n_boot"]), int(params["seed"]))
            rows.append({"target": target, "ratio": ratio, "loss": loss, "seed": seed,
                         **metrics,
                         "best_epoch": summary["best_epoch"],
                         "epochs_run": summary["epochs_run"],
                         "valid_auroc": summary["valid_auroc"],
                         "n_train": len(data["train"][1]),
                         "seconds": round(time.perf_counter() - tic, 2)})
            histories.append(history.assign(target=target, ratio=ratio, loss=loss,
                                            seed=seed))
    result = pd.DataFrame(rows)
    columns = [c for c in TABLE_COLUMNS if c in result] + [c for c in result
                                                             if c not in TABLE_COLUMNS]
    return result[columns], pd.concat(histories, ignore_index=True)


# ----------------------------------------------------------------------------- figure

def plot_imbalance(path_png: str | Path, table: pd.DataFrame, title: str) -> None:
    """AUROC, AUPRC and precision at recall against the negative ratio, one line per loss.

    Grey dotted lines are chance: AUROC 0.5; the positive rate for AUPRC and precision.
    With one training seed the error bars are the test bootstrap intervals; with several,
    the line is the mean over seeds and each seed is a dot.
    """
    metrics = [("auroc", "Test AUROC"), ("auprc", "Test AUPRC")]
    metrics += [(c, f"Test precision at recall {c.rsplit('_', 1)[1]}%") for c in table.columns
                if c.startswith("precision_at_recall_")]
    one_seed = table.get("seed", pd.Series([0])).nunique() == 1
    with matplotlib.rc_context(STYLE):
        fig = new_figure(3.2 * len(metrics), 3.9)
        axes = fig.subplots(1, len(metrics), squeeze=False)[0]
        ratios = np.sort(table["ratio"].unique()).astype(float)
        chance = table.groupby("ratio")["auprc_chance"].mean().reindex(ratios)
        for ax, (metric, label) in zip(axes, metrics, strict=True):
            for i, (loss, rows) in enumerate(table.groupby("loss", sort=False)):
                colour = PALETTE[i % len(PALETTE)]
                dodge = 1 + 0.04 * (i - 1)  # separate the losses a little on the log axis
                mean = rows.groupby("ratio")[metric].mean()
                x = mean.index.to_numpy(float) * dodge
                err = None
                if one_seed and f"{metric}_lo" in rows:
                    rows = rows.set_index("ratio").loc[mean.index]
                    err = np.vstack([mean - rows[f"{metric}_lo"], rows[f"{metric}_hi"] - mean])
                ax.errorbar(x, mean.to_numpy(), yerr=err, color=colour, marker="o",
                            markersize=4, capsize=2, label=LOSS_LABELS.get(loss, loss))
                if not one_seed:
                    ax.scatter(rows["ratio"].to_numpy(float) * dodge, rows[metric], s=9,
                               color=colour, alpha=0.5, linewidths=0)
            if metric == "auroc":
                ax.axhline(0.5, color=GREY, linestyle=":", linewidth=1.2, label="chance")
            else:
                ax.plot(ratios, chance.to_numpy(), color=GREY, linestyle=":", linewidth=1.2,
                        label="chance")
            ax.set_xscale("log")
            ax.set_xticks(ratios, [f"1:{r:g}" for r in ratios])
            ax.minorticks_off()
            ax.set(xlabel="Positives : negatives", ylabel=label, ylim=(0, 1.02))
        handles, labels = axes[1].get_legend_handles_labels()
        labels = [f"{t} (AUROC 0.5; otherwise the positive rate)" if t == "chance" else t
                  for t in labels]
        note = ("error bars: 95% bootstrap interval over test windows" if one_seed else
                "line: mean over training seeds; dots: one seed each")
        fig.legend(handles, labels, loc="outside lower center", ncols=len(labels),
                   title=note)
        fig.suptitle(title)
        save_figure(fig, path_png)


# ----------------------------------------------------------------------------- step

def run_imbalance(target: str, fasta: str | Path, sizes: Mapping[str, int],
                  aliases: Mapping[str, str], blacklist: str | Path | None,
                  peaks: str | Path, out_dir: str | Path, figure_png: str | Path,
                  params: dict | None = None, log=sys.stderr,
                  tiles: str | Path | None = None) -> dict:
    """The imbalance experiment for one target; see the module docstring.

    Writes into ``out_dir``: ``imbalance.tsv`` (one row per ratio × loss, ``TABLE_COLUMNS``),
    ``histories.tsv`` (per-epoch train/valid loss and AUROC of every run), ``windows.tsv``
    (every window used, with its split and negative rank) and ``record.json``; the figure
    ``figure_png`` (+ ``.svg``). Returns a summary dict.
    """
    params = overlay(DEFAULTS, params, "imbalance setting")
    _check_params(params)
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sizes = dict(sizes)
    splits = params["splits"]
    split_of = resolve_splits(sizes, splits["valid"], splits["test"], splits.get("train"))
    peak_table = read_peaks(peaks, sizes, aliases)
    black = read_blacklist(blacklist, sizes, aliases)
    table = imbalance_windows(peak_table, black, fasta, sizes, split_of, int(params["width"]),
                              max(float(r) for r in params["ratios"]),
                              params["max_positives"], int(params["gc_bins"]),
                              float(params["max_n_fraction"]), int(params["seed"]),
                              tiles_for(tiles, fasta, int(params["width"])))
    X = one_hot_windows(fasta, table)
    prepared = time.perf_counter() - started
    result, histories = run_ratio_losses(table, X, target, params, log=log)
    write_tsv(out_dir / "windows.tsv", table)
    write_tsv(out_dir / "histories.tsv", histories)
    write_tsv(out_dir / "imbalance.tsv", result)
    plot_imbalance(figure_png, result, f"{target}: losses under class imbalance")
    counts = table.groupby(["split", "label"]).size()
    shown = ["auroc", "auprc"] + [c for c in result if c.startswith("precision_at_recall_")]
    means = result.groupby(["ratio", "loss"], sort=False)[shown].mean().round(4).reset_index()
    summary = {
        "target": target,
        "n_positives": {s: int(counts.get((s, 1), 0)) for s in ("train", "valid", "test")},
        "n_negatives_drawn": {s: int(counts.get((s, 0), 0)) for s in ("train", "valid",
                                                                      "test")},
        "early_stopping": "valid AUROC",
        "mean_over_seeds": means.to_dict("records"),
        "best_auprc_loss": {str(r): rows.loc[rows["auprc"].idxmax(), "loss"]
                            for r, rows in means.groupby("ratio")},
        "seconds": {"prepare": round(prepared, 2),
                    "total": round(time.perf_counter() - started, 2)},
        "model": asdict(CNNConfig(window=int(params["width"]), **params["architecture"])),
    }
    write_record(out_dir / "record.json", "imbalance", params,
                 {"fasta": fasta, "peaks": peaks, **({"blacklist": blacklist} if blacklist
                                                     else {})}, summary)
    return summary
