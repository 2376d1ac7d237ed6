"""Tests for helixflow.plots: every figure is written as non-empty PNG + SVG, atomically."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from helixflow import evaluate, plots

TARGETS = ["CTCF", "REST", "GATA1", "HNF4A", "MAX"]
MODELS = ["cnn", "kmer_logreg", "pwm_scan"]


def example_scores(model_index: int, n: int = 1500, seed: int = 0):
    """Same labels for every model of one data set; better models have larger score shifts."""
    y = (np.random.default_rng(seed).random(n) < 0.2).astype(np.int64)
    noise = np.random.default_rng([seed, model_index]).normal(size=n)
    score = noise + (2.0 - 0.6 * model_index) * y
    return y, score


def example_roc_inputs():
    curves, metrics = {}, {}
    for i, model in enumerate(MODELS):
        y, score = example_scores(i)
        curves[model] = evaluate.curves(y, score)
        metrics[model] = evaluate.bootstrap_metrics(y, score, n_boot=200)
    return curves, metrics


def example_histories(n_runs: int = 8, n_epochs: int = 30) -> dict[str, pd.DataFrame]:
    histories = {}
    epoch = np.arange(1, n_epochs + 1)
    for r in range(n_runs):
        rate = 0.08 + 0.03 * r
        train_loss = 0.35 + 0.35 * np.exp(-rate * epoch)
        valid_loss = 0.42 + 0.3 * np.exp(-rate * epoch) + 0.002 * r * epoch
        histories[f"run{r + 1}_width{16 * 2 ** (r % 4)}"] = pd.DataFrame({
            "epoch": epoch, "train_loss": train_loss, "valid_loss": valid_loss,
            "train_auroc": 0.95 - 0.4 * np.exp(-rate * epoch),
            "valid_auroc": 0.88 - 0.35 * np.exp(-rate * epoch) - 0.001 * r * epoch,
        })
    return histories


def example_bias_variance() -> pd.DataFrame:
    rows = [
        ("tiny", 1_200, False, 0.78, 0.76, 0.77),
        ("small", 9_800, False, 0.86, 0.83, 0.84),
        ("medium", 74_000, False, 0.95, 0.85, 0.87),
        ("medium_dropout", 74_000, True, 0.90, 0.87, 0.875),
        ("large", 610_000, False, 0.997, 0.81, 0.86),
        ("large_dropout", 610_000, True, 0.93, 0.88, 0.885),
        ("large_weight_decay", 610_000, True, 0.94, 0.875, 0.88),
        ("huge", 4_900_000, False, 1.0, 0.79, 0.85),
    ]
    return pd.DataFrame(rows, columns=["arm", "n_params", "regularized", "final_train_auroc",
                                       "final_valid_auroc", "best_valid_auroc"])


def example_summary() -> pd.DataFrame:
    rows = []
    for t, target in enumerate(TARGETS):
        for m, model in enumerate(MODELS):
            y, score = example_scores(m, n=600 + 200 * t, seed=10 * t)
            y[:5] = 1
            for split in ("valid", "test"):
                rows.append(evaluate.metrics_row(target, model, split, y, score, n_boot=100))
    return pd.DataFrame(rows, columns=evaluate.METRIC_COLUMNS)


def make_all(out: Path) -> list[Path]:
    """Draw every figure type into ``out``; returns the PNG paths (used by the tests and demos)."""
    curves, metrics = example_roc_inputs()
    written = [
        plots.plot_roc_pr(out / "roc_pr.png", curves, metrics, "CTCF, test split (chr8, chr9)"),
        plots.plot_learning_curves(out / "learning.png", example_histories(),
                                   "CTCF CNN: width sweep"),
        plots.plot_bias_variance(out / "bias_variance.png", example_bias_variance(),
                                 "CTCF: model size vs. train–valid gap"),
        plots.plot_metric_summary(out / "summary.png", example_summary(),
                                  "All targets and models", split="test"),
    ]
    return [png for png, _ in written]


def test_every_plot_writes_png_and_svg_without_temp_files(tmp_path):
    pngs = make_all(tmp_path)
    expected = set()
    for png in pngs:
        svg = png.with_suffix(".svg")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 10_000
        assert svg.stat().st_size > 10_000 and b"<svg" in svg.read_bytes()[:2000]
        expected |= {png.name, svg.name}
    assert {p.name for p in tmp_path.iterdir()} == expected  # no leftover temp files
    assert plt.get_fignums() == []


def test_plots_leave_global_rc_alone(tmp_path):
    before = matplotlib.rcParams["axes.spines.top"], matplotlib.rcParams["font.size"]
    curves, metrics = example_roc_inputs()
    plots.plot_roc_pr(tmp_path / "a.png", curves, metrics, "t")
    assert (matplotlib.rcParams["axes.spines.top"], matplotlib.rcParams["font.size"]) == before


def test_svg_is_reproducible(tmp_path):
    table = example_bias_variance()
    plots.plot_bias_variance(tmp_path / "a.png", table, "t")
    plots.plot_bias_variance(tmp_path / "b.png", table, "t")
    assert (tmp_path / "a.svg").read_bytes() == (tmp_path / "b.svg").read_bytes()


def test_save_figure_closes_pyplot_figure_and_rejects_non_png(tmp_path):
    plots.apply_style()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    png, svg = plots.save_figure(fig, tmp_path / "x.png")
    assert png.exists() and svg.exists()
    assert plt.get_fignums() == []
    fig, _ = plt.subplots()
    with pytest.raises(ValueError):
        plots.save_figure(fig, tmp_path / "x.pdf")
    assert plt.get_fignums() == []
    matplotlib.rcdefaults()


def test_failed_plot_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="valid_auroc"):
        plots.plot_learning_curves(tmp_path / "l.png",
                                   {"r": pd.DataFrame({"epoch": [1], "train_loss": [1.0]})}, "t")
    assert list(tmp_path.iterdir()) == []


def test_bias_variance_reads_flags_from_tsv_text(tmp_path):
    table = example_bias_variance().astype({"regularized": str})  # "True" / "False"
    assert plots._truthy("False") is False and plots._truthy("True") is True
    plots.plot_bias_variance(tmp_path / "bv.png", table, "t")
    assert (tmp_path / "bv.svg").exists()


def test_metric_summary_needs_a_split_choice(tmp_path):
    with pytest.raises(ValueError, match="split"):
        plots.plot_metric_summary(tmp_path / "s.png", example_summary(), "t")
