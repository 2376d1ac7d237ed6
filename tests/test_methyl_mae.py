"""Tests for helixflow.methyl_mae: block masks, likelihood, baselines, training, the whole run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import binom

from helixflow.errors import InputError
from helixflow.methyl_mae import (
    METRIC_COLUMNS,
    binom_loglik,
    binom_loglik_logits,
    block_mask,
    evaluate_setting,
    interpolation_baseline,
    regional_mean_baseline,
    resolve_params,
    run_lengths,
    run_methylation_mae,
    train_mae,
)
from helixflow.methylation import Regions


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(("coverage", "span"), [(0.15, 1), (0.3, 4), (0.5, 16), (0.15, 16),
                                                (0.5, 1)])
def test_block_mask_coverage_and_span(coverage, span):
    mask = block_mask(4000, 64, coverage, span, np.random.default_rng(0))
    assert mask.shape == (4000, 64) and mask.dtype == bool
    assert mask.mean() == pytest.approx(coverage, abs=0.01)  # realised coverage
    # every position, edges included, is hidden about equally often
    assert mask.mean(axis=0) == pytest.approx(np.full(64, coverage), abs=0.04)
    assert (mask.sum(axis=1) % span == 0).all()  # whole blocks only
    runs = run_lengths(mask, circular=True)
    assert (runs % span == 0).all()  # touching blocks merge into multiples of span
    if coverage <= 0.3 or span == 1:
        # blocks rarely touch at low coverage: runs are mostly exactly one block
        assert np.mean(runs == span) > (0.7 if span > 1 else 0.4)


def test_block_mask_is_seeded():
    a = block_mask(10, 64, 0.3, 4, np.random.default_rng(5))
    b = block_mask(10, 64, 0.3, 4, np.random.default_rng(5))
    c = block_mask(10, 64, 0.3, 4, np.random.default_rng(6))
    assert (a == b).all() and (a != c).any()


def test_run_lengths():
    mask = np.array([[1, 1, 0, 1, 0, 0, 1, 1, 1]], dtype=bool)
    assert run_lengths(mask).tolist() == [2, 1, 3]
    assert sorted(run_lengths(mask, circular=True).tolist()) == [1, 5]


def test_binomial_loglik_matches_scipy():
    rng = np.random.default_rng(0)
    total = rng.integers(1, 60, 200)
    meth = rng.integers(0, total + 1)
    p = rng.uniform(0.01, 0.99, 200)
    expected = binom.logpmf(meth, total, p)
    assert binom_loglik(p, meth, total) == pytest.approx(expected, rel=1e-9, abs=1e-9)
    logits = torch.from_numpy(np.log(p / (1 - p)))
    got = binom_loglik_logits(logits, torch.from_numpy(meth.astype(float)),
                              torch.from_numpy(total.astype(float))).numpy()
    assert got == pytest.approx(expected, rel=1e-7, abs=1e-7)


def test_interpolation_exact_on_linear_toy():
    pos = np.sort(np.random.default_rng(1).choice(10_000, (3, 20), replace=False), axis=1)
    beta = 0.1 + 0.8 * (pos - pos[:, :1]) / (pos[:, -1:] - pos[:, :1])
    visible = np.ones_like(pos, dtype=bool)
    visible[:, [3, 4, 5, 10, 15]] = False  # interior CpGs hidden
    pred = interpolation_baseline(pos, np.where(visible, beta, 0), visible, fallback=0.5)
    assert pred == pytest.approx(beta, abs=1e-12)
    visible[2] = False
    assert (interpolation_baseline(pos, beta, visible, 0.5)[2] == 0.5).all()


def test_regional_mean():
    beta = np.array([[0.0, 1.0, 0.5, 0.2], [0.3, 0.3, 0.3, 0.3]])
    visible = np.array([[True, True, False, False], [False] * 4])
    pred = regional_mean_baseline(beta, visible, fallback=0.9)
    assert pred.tolist() == [[0.5] * 4, [0.9] * 4]


def smooth_regions(n: int, length: int = 32, seed: int = 0) -> Regions:
    """Methylation varying smoothly along each region (a sine of random phase); binomial reads."""
    rng = np.random.default_rng(seed)
    pos = np.cumsum(rng.integers(20, 200, (n, length)), axis=1) + 1000
    span = pos[:, -1:] - pos[:, :1]
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    p = 0.5 + 0.45 * np.sin(2 * np.pi * (pos - pos[:, :1]) / span + phase)
    total = rng.poisson(15, (n, length))
    meth = rng.binomial(total, p)
    return Regions(np.array(["chrT"] * n, dtype=object), pos, meth, total)


def test_masked_ae_beats_regional_mean_on_smooth_toy():
    params = {**resolve_params({}), "epochs": 8, "batch_size": 64, "lr": 5e-3, "hidden": 16,
              "patience": 0}
    torch.set_num_threads(1)
    model, history = train_mae(smooth_regions(600, seed=0), smooth_regions(100, seed=1),
                               [0.3], 4, params, log=open("/dev/null", "w"))  # noqa: SIM115
    assert history.columns.tolist() == ["epoch", "train_loss", "valid_loss", "seconds"]
    assert history["valid_loss"].iloc[-1] < history["valid_loss"].iloc[0]
    rows, preds = evaluate_setting(model, smooth_regions(200, seed=2), 0.3, 4, 0.5, seed=0)
    mae = {row["model"]: row["mae_beta"] for row in rows}
    assert mae["masked_ae"] < 0.5 * mae["regional_mean"]
    assert preds["masked_ae"].shape == (200, 32)


def write_cov(path, n: int, seed: int) -> None:
    regions = smooth_regions(n // 32, seed=seed)
    pos = (regions.pos + 100_000 * np.arange(len(regions))[:, None]).ravel()  # one chromosome
    meth, total = regions.meth.ravel(), regions.total.ravel()
    keep = total > 0
    table = pd.DataFrame({"chrom": "chrT", "start": pos, "end": pos,
                          "pct": 100 * meth / np.maximum(total, 1), "m": meth,
                          "u": total - meth})[keep]
    table.to_csv(path, sep="\t", header=False, index=False, float_format="%.4f",
                 compression="gzip")


SMALL = {"region_cpgs": 16, "block_regions": 4, "coverages": [0.2, 0.4], "spans": [1, 4],
         "epochs": 2, "batch_size": 32, "hidden": 8, "threads": 1, "max_regions": 120}


def test_run_end_to_end(tmp_path):
    inputs = [tmp_path / "r1.cov.gz", tmp_path / "r2.cov.gz"]
    write_cov(inputs[0], 32 * 120, seed=0)
    write_cov(inputs[1], 32 * 120, seed=0)  # same positions, other draws would also do
    out, figs = tmp_path / "out", tmp_path / "figs"
    headline = run_methylation_mae(inputs, out, figs, SMALL, log=open("/dev/null", "w"))  # noqa: SIM115
    assert headline["coverage"] == 0.4 and headline["span"] == 4
    assert {"mae_masked_ae", "mae_neighbour_interp", "mae_regional_mean"} <= set(headline)
    metrics = pd.read_csv(out / "metrics.tsv", sep="\t")
    assert metrics.columns.tolist() == METRIC_COLUMNS and len(metrics) == 2 * 2 * 3
    assert set(metrics["model"]) == {"masked_ae", "neighbour_interp", "regional_mean"}
    history = pd.read_csv(out / "history.tsv", sep="\t")
    assert set(history["model"]) == {"span=1", "span=4"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cpgs_merged"] > 0 and summary["subsampled"] is True
    assert sum(summary["regions_used"].values()) == 120
    record = json.loads((out / "record.json").read_text())
    assert record["step"] == "methylation_mae" and len(record["inputs"]) == 2
    assert sorted(p.name for p in figs.iterdir()) == [
        "methylation_example.png", "methylation_example.svg", "methylation_sweep.png",
        "methylation_sweep.svg"]
    assert sorted(p.name for p in out.iterdir()) == ["history.tsv", "metrics.tsv",
                                                     "record.json", "summary.json"]
    # same seed, same numbers
    again = run_methylation_mae(inputs, tmp_path / "o2", tmp_path / "f2", SMALL,
                                log=open("/dev/null", "w"))  # noqa: SIM115
    assert again["mae_masked_ae"] == headline["mae_masked_ae"]


def test_run_per_setting_and_bad_input(tmp_path):
    good = tmp_path / "r1.cov.gz"
    write_cov(good, 32 * 60, seed=1)
    params = {**SMALL, "train_per": "setting", "max_regions": 0, "epochs": 1}
    run_methylation_mae([good], tmp_path / "out", tmp_path / "figs", params,
                        log=open("/dev/null", "w"))  # noqa: SIM115
    history = pd.read_csv(tmp_path / "out" / "history.tsv", sep="\t")
    assert history["model"].nunique() == 4
    bad = tmp_path / "bad.cov"
    bad.write_text("chr1\t1\t1\t50\t1\t1\nchr1\t2\t2\t50\t3\n")
    with pytest.raises(InputError, match=f"{bad} line 2"):
        run_methylation_mae([good, bad], tmp_path / "o2", tmp_path / "f2", SMALL)
    assert not (tmp_path / "o2").exists() and not (tmp_path / "f2").exists()


def test_unknown_param():
    with pytest.raises(InputError, match="unknown methylation parameter"):
        resolve_params({"epoch": 3})
