"""Figures with one shared look: ROC/PR curves, learning curves, bias–variance, metric summaries.

Every figure is built on a ``matplotlib.figure.Figure`` (no pyplot state, no GUI backend) inside
``matplotlib.rc_context(STYLE)``, so plotting never changes a caller's global settings; call
:func:`apply_style` to use the same look in your own pyplot figures. Each figure is written as PNG
(150 dpi) and SVG (same stem, text kept as editable text) by :func:`save_figure`.

Colours follow the Okabe–Ito colour-blind-safe palette; line style, not colour alone, separates
train from valid.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from helixflow.files import atomic_path

# Okabe & Ito (2008), ordered so the first colours are the most distinct on white; yellow last.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
           "#F0E442"]
GREY = "#7F7F7F"

STYLE: dict[str, object] = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "figure.titlesize": 12,
    "figure.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#DDDDDD",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "lines.linewidth": 1.6,
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.1,
    "savefig.facecolor": "white",
    "svg.fonttype": "none",  # editable text in SVG
    "svg.hashsalt": "helixflow",  # reproducible SVG element ids
}


def apply_style() -> None:
    """Use the Agg backend and the HelixFlow rc settings globally (for pyplot users)."""
    matplotlib.use("Agg")
    matplotlib.rcParams.update(STYLE)


def new_figure(width: float, height: float) -> Figure:
    """A constrained-layout figure on the Agg canvas, leaving pyplot's state alone."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # attach a renderer without touching pyplot's backend
    return fig


def save_figure(fig: Figure, path_png: str | Path) -> tuple[Path, Path]:
    """Save ``fig`` as ``path_png`` (PNG, 150 dpi) and the same stem ``.svg``, each atomically.

    The figure is closed afterwards. Returns (png_path, svg_path).
    """
    png = Path(path_png)
    svg = png.with_suffix(".svg")
    try:
        if png.suffix.lower() != ".png":
            raise ValueError(f"save_figure needs a .png path, got {png}")
        with matplotlib.rc_context(STYLE):
            with atomic_path(png) as tmp:
                fig.savefig(tmp, format="png", dpi=150)
            with atomic_path(svg) as tmp:
                fig.savefig(tmp, format="svg", metadata={"Date": None})
    finally:
        plt.close(fig)  # releases figures made through pyplot; a no-op for plain Figures
    return png, svg


def _interval_label(name: str, metric: str, values: Mapping) -> str:
    key = metric.lower()
    if key not in values:
        return name
    text = f"{name}  {metric} {values[key]:.2f}"
    if f"{key}_lo" in values and f"{key}_hi" in values:
        text += f" [{values[f'{key}_lo']:.2f}, {values[f'{key}_hi']:.2f}]"
    return text


def _positive_rate(values: Mapping) -> float | None:
    if "n_pos" in values and "n_neg" in values and values["n_pos"] + values["n_neg"] > 0:
        return values["n_pos"] / (values["n_pos"] + values["n_neg"])
    return None


def plot_roc_pr(path_png: str | Path, curves_by_model: Mapping[str, Mapping[str, np.ndarray]],
                metrics_by_model: Mapping[str, Mapping], title: str,
                level: float = 0.95) -> tuple[Path, Path]:
    """ROC (left) and precision–recall (right) curves of several models on one data set.

    curves_by_model: model → ``evaluate.curves`` dict (fpr, tpr, precision, recall).
    metrics_by_model: model → ``evaluate.bootstrap_metrics`` dict (legend values; n_pos/n_neg give
    the precision–recall baseline); ``level`` is their interval level, shown in the legend title.
    Legends sit below the panels so they never hide a curve.
    """
    with matplotlib.rc_context(STYLE):
        fig = new_figure(9.6, 6.6)  # roughly square panels above the legends
        ax_roc, ax_pr = fig.subplots(1, 2)
        rates: dict[str, float] = {}
        for i, (model, curve) in enumerate(curves_by_model.items()):
            colour = PALETTE[i % len(PALETTE)]
            values = metrics_by_model.get(model, {})
            ax_roc.plot(curve["fpr"], curve["tpr"], color=colour,
                        label=_interval_label(model, "AUROC", values))
            ax_pr.plot(curve["recall"], curve["precision"], color=colour, drawstyle="steps-post",
                       label=_interval_label(model, "AUPRC", values))
            rate = _positive_rate(values)
            if rate is not None:
                rates[model] = rate
        ax_roc.plot([0, 1], [0, 1], color=GREY, linestyle=":", linewidth=1.0, zorder=1,
                    label="chance  AUROC 0.50")
        distinct = sorted({round(rate, 6) for rate in rates.values()})
        if len(distinct) == 1:
            ax_pr.axhline(distinct[0], color=GREY, linestyle=":", linewidth=1.0, zorder=1,
                          label=f"chance  AUPRC {distinct[0]:.2f} (positive rate)")
        else:  # models evaluated on different windows: one baseline per model
            for i, (model, rate) in enumerate(rates.items()):
                ax_pr.axhline(rate, color=PALETTE[i % len(PALETTE)], linestyle=":",
                              linewidth=1.0, zorder=1, label=f"{model} chance  AUPRC {rate:.2f}")
        ax_roc.set(xlabel="False positive rate (1 − specificity)",
                   ylabel="True positive rate (sensitivity)", title="ROC curve")
        ax_pr.set(xlabel="Recall (sensitivity)", ylabel="Precision (positive predictive value)",
                  title="Precision–recall curve")
        for ax, metric in ((ax_roc, "AUROC"), (ax_pr, "AUPRC")):
            ax.set_xlim(-0.01, 1.01)
            ax.set_ylim(-0.01, 1.01)
            legend = ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=1,
                               handlelength=2.2, title=f"model  {metric} [{level:.0%} CI]")
            legend.get_title().set_fontsize(9)
        fig.suptitle(title)
        return save_figure(fig, path_png)


HISTORY_COLUMNS = ["epoch", "train_loss", "valid_loss", "train_auroc", "valid_auroc"]


def plot_learning_curves(path_png: str | Path, histories: Mapping[str, pd.DataFrame], title: str,
                         loss_label: str = "Loss (binary cross-entropy)") -> tuple[Path, Path]:
    """Loss (left) and AUROC (right) per epoch for one or more training runs.

    histories: run name → DataFrame with columns epoch, train_loss, valid_loss, train_auroc,
    valid_auroc (one row per epoch). Solid = train, dashed = valid, one colour per run; a dot marks
    each run's best valid AUROC. The legend sits below both panels.
    """
    for name, history in histories.items():
        missing = [c for c in HISTORY_COLUMNS if c not in history.columns]
        if missing:
            raise ValueError(f"history {name!r} lacks column(s): {', '.join(missing)}")
    with matplotlib.rc_context(STYLE):
        fig = new_figure(10.0, 4.6)
        ax_loss, ax_auc = fig.subplots(1, 2)
        handles: list[Line2D] = []
        for i, (name, history) in enumerate(histories.items()):
            colour = PALETTE[i % len(PALETTE)]
            epoch = history["epoch"].to_numpy()
            for ax, metric in ((ax_loss, "loss"), (ax_auc, "auroc")):
                ax.plot(epoch, history[f"train_{metric}"], color=colour, linestyle="-")
                ax.plot(epoch, history[f"valid_{metric}"], color=colour, linestyle="--")
            valid = history["valid_auroc"].to_numpy(dtype=float)
            if np.isfinite(valid).any():
                best = int(np.nanargmax(valid))
                ax_auc.plot(epoch[best], valid[best], marker="o", markersize=5, color=colour,
                            linestyle="none")
            handles.append(Line2D([], [], color=colour, linewidth=3, label=name))
        n_rows = 3 if len(handles) <= 9 else -(-len(handles) // 4)
        blank = Line2D([], [], linestyle="none", label=" ")
        handles += [blank] * (-len(handles) % n_rows)  # style key starts a fresh column
        handles += [
            Line2D([], [], color="#333333", linestyle="-", label="train"),
            Line2D([], [], color="#333333", linestyle="--", label="valid"),
            Line2D([], [], color="#333333", marker="o", linestyle="none", markersize=5,
                   label="best valid AUROC"),
        ]
        ax_loss.set(xlabel="Epoch", ylabel=loss_label, title="Loss")
        ax_auc.set(xlabel="Epoch", ylabel="AUROC", title="AUROC")
        for ax in (ax_loss, ax_auc):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        fig.legend(handles=handles, loc="outside lower center", ncols=-(-len(handles) // n_rows))
        fig.suptitle(title)
        return save_figure(fig, path_png)


def _dodge(log_params: np.ndarray, width: float) -> np.ndarray:
    """Spread points closer than ``width`` (log10 units) side by side; returns log10 positions."""
    positions = log_params.astype(float).copy()
    order = np.argsort(log_params, kind="stable")
    groups: list[list[int]] = []
    for i in order:
        if groups and log_params[i] - log_params[groups[-1][-1]] < width:
            groups[-1].append(int(i))
        else:
            groups.append([int(i)])
    for group in groups:
        centre = log_params[group].mean()
        for j, i in enumerate(group):
            positions[i] = centre + width * (j - (len(group) - 1) / 2)
    return positions


def _truthy(value: object) -> bool:
    """bool of a flag that may have come back from a TSV as text ("False" must be False)."""
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes"}
    return bool(value)


BIAS_VARIANCE_COLUMNS = ["arm", "n_params", "regularized", "final_train_auroc",
                         "final_valid_auroc"]


def plot_bias_variance(path_png: str | Path, table: pd.DataFrame, title: str) -> tuple[Path, Path]:
    """Train vs valid AUROC against model size, one vertical bar per arm showing the gap.

    table: one row per arm with columns arm, n_params, regularized (bool), final_train_auroc,
    final_valid_auroc and optionally best_valid_auroc. x = trainable parameters (log scale).
    Filled markers = regularized arm, open markers = unregularized; arms of (nearly) equal size are
    spread slightly sideways so none hides another. A large train–valid gap is
    variance (overfitting); low train and valid AUROC together is bias (underfitting).
    """
    missing = [c for c in BIAS_VARIANCE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"bias–variance table lacks column(s): {', '.join(missing)}")
    if (table["n_params"] <= 0).any():
        raise ValueError("n_params must be positive (the x axis is logarithmic)")
    train_colour, valid_colour = PALETTE[0], PALETTE[1]
    has_best = "best_valid_auroc" in table.columns
    with matplotlib.rc_context(STYLE):
        fig = new_figure(7.5, 5.2)
        ax = fig.subplots()
        log_params = np.log10(table["n_params"].to_numpy(dtype=float))
        log_x = _dodge(log_params, width=0.04 + 0.025 * np.ptp(log_params))
        dodged = not np.allclose(log_x, log_params)
        xs = 10.0**log_x
        for x, row in zip(xs, table.itertuples(index=False), strict=True):
            train, valid = float(row.final_train_auroc), float(row.final_valid_auroc)
            filled = _truthy(row.regularized)
            ax.plot([x, x], [valid, train], color=GREY, linewidth=0.9, zorder=1)
            for y, colour, marker in ((train, train_colour, "o"), (valid, valid_colour, "s")):
                ax.plot(x, y, marker=marker, markersize=7, linestyle="none", zorder=3,
                        markeredgecolor=colour, markeredgewidth=1.5,
                        markerfacecolor=colour if filled else "white")
            if has_best and pd.notna(row.best_valid_auroc):
                ax.plot(x, float(row.best_valid_auroc), marker="_", markersize=10,
                        markeredgewidth=1.5, color=valid_colour, linestyle="none", zorder=2)
            # name written downwards under the lower marker: dodged arms never share that space
            ax.annotate(str(row.arm), xy=(x, min(train, valid)), xytext=(0, -7),
                        textcoords="offset points", rotation=90, fontsize=7.5, ha="center",
                        va="top", color="#333333", zorder=4)
        ax.set_xscale("log")
        margin = max(0.3, 0.08 * np.ptp(log_x))
        ax.set_xlim(10 ** (log_x.min() - margin), 10 ** (log_x.max() + margin))
        low = np.nanmin(table[["final_train_auroc", "final_valid_auroc"]].to_numpy(dtype=float))
        ax.set_ylim(max(0.0, min(0.5, low) - 0.03), 1.01)
        ax.axhline(0.5, color=GREY, linestyle=":", linewidth=1.0)
        ax.set(xlabel="Trainable parameters (count, log scale)", ylabel="AUROC (final model)")
        fig.suptitle(title)
        handles = [
            Line2D([], [], marker="o", color=train_colour, linestyle="none", markersize=7,
                   label="train"),
            Line2D([], [], marker="s", color=valid_colour, linestyle="none", markersize=7,
                   label="valid"),
        ]
        if has_best:
            handles.append(Line2D([], [], marker="_", color=valid_colour, linestyle="none",
                                  markersize=10, markeredgewidth=1.5,
                                  label="best valid (any epoch)"))
        handles += [
            Line2D([], [], marker="o", color="#333333", markerfacecolor="#333333",
                   linestyle="none", markersize=7, label="regularized (filled)"),
            Line2D([], [], marker="o", color="#333333", markerfacecolor="white",
                   linestyle="none", markersize=7, label="unregularized (open)"),
            Line2D([], [], color=GREY, linewidth=0.9, label="train–valid gap"),
            Line2D([], [], color=GREY, linestyle=":", linewidth=1.0, label="chance (0.5)"),
        ]
        if dodged:
            handles.append(Line2D([], [], linestyle="none",
                                  label="(arms of about equal size\n are drawn side by side)"))
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0))
        return save_figure(fig, path_png)


def plot_metric_summary(path_png: str | Path, summary: pd.DataFrame, title: str,
                        split: str | None = None, level: float = 0.95) -> tuple[Path, Path]:
    """AUROC (left) and AUPRC (right) with bootstrap intervals for every target × model.

    summary: a metrics table with ``evaluate.METRIC_COLUMNS`` (one row per target, model, split).
    ``split`` picks one split when the table holds several; ``level`` (the bootstrap interval
    level, for the axis label) defaults to that of ``bootstrap_metrics``. Targets are rows
    (shaded bands, in table order), models are colours; a grey tick marks each target's AUPRC
    baseline (positive rate), the dotted line AUROC chance (0.5).
    """
    table = summary
    if split is not None:
        table = table[table["split"] == split]
    splits = table["split"].unique()
    if len(splits) != 1:
        raise ValueError(f"summary holds split(s) {list(splits)}; pass split= to pick one")
    targets = list(dict.fromkeys(table["target"]))
    models = list(dict.fromkeys(table["model"]))
    n_models = len(models)
    band = 0.8  # fraction of a target row used by its models
    step = band / n_models
    with matplotlib.rc_context(STYLE):
        fig = new_figure(10.0, 1.3 + 0.22 * len(targets) * max(n_models, 2) + 0.6)
        axes = fig.subplots(1, 2, sharey=True)
        for ax, metric in zip(axes, ("auroc", "auprc"), strict=True):
            for t, _target in enumerate(targets):
                if t % 2 == 0:
                    ax.axhspan(t - 0.5, t + 0.5, color="#F2F2F2", zorder=0, linewidth=0)
            for m, model in enumerate(models):
                colour = PALETTE[m % len(PALETTE)]
                rows = table[table["model"] == model].set_index("target")
                rows = rows.loc[[t for t in targets if t in rows.index]]
                y = np.array([targets.index(t) for t in rows.index]) - band / 2 + step * (m + 0.5)
                value = rows[metric].to_numpy(dtype=float)
                err = np.vstack([value - rows[f"{metric}_lo"].to_numpy(dtype=float),
                                 rows[f"{metric}_hi"].to_numpy(dtype=float) - value])
                ax.errorbar(value, y, xerr=np.clip(err, 0, None), fmt="o", color=colour,
                            markersize=5, elinewidth=1.4, capsize=2.5, label=model, zorder=3)
            if metric == "auroc":
                ax.axvline(0.5, color=GREY, linestyle=":", linewidth=1.0, zorder=1)
                ax.set(xlabel=f"AUROC ({level:.0%} bootstrap CI)", title="AUROC")
            else:
                base = table.groupby("target", sort=False)[["n_pos", "n_neg"]].first()
                rate = base["n_pos"] / (base["n_pos"] + base["n_neg"])
                for t, target in enumerate(targets):
                    ax.plot([rate[target]] * 2, [t - band / 2, t + band / 2], color=GREY,
                            linewidth=1.6, zorder=2)
                ax.set(xlabel=f"AUPRC ({level:.0%} bootstrap CI)", title="AUPRC")
            lows = table[f"{metric}_lo"].min()
            floor = 0.5 if metric == "auroc" else 0.0
            ax.set_xlim(max(0.0, min(floor, lows) - 0.03), 1.01)
            ax.grid(axis="y", visible=False)
        axes[0].set_yticks(range(len(targets)), targets)
        axes[0].set_ylim(len(targets) - 0.5, -0.5)  # first target on top
        axes[0].set_ylabel("Target")
        handles, labels = axes[0].get_legend_handles_labels()
        handles.append(Line2D([], [], color=GREY, linestyle=":", linewidth=1.0))
        labels.append("AUROC chance (0.5)")
        handles.append(Line2D([], [], color=GREY, linewidth=1.6))
        labels.append("AUPRC chance (positive rate)")
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(handles), 5))
        fig.suptitle(f"{title} ({splits[0]} split)")
        return save_figure(fig, path_png)
