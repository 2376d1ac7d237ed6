"""Tests for helixflow.evaluate: bootstrap metrics, curves, prediction files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from helixflow import evaluate
from helixflow.errors import InputError


def make_scores(n: int, pos_rate: float = 0.3, shift: float = 1.0, seed: int = 0,
                decimals: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < pos_rate).astype(np.int64)
    score = rng.normal(size=n) + shift * y
    if decimals is not None:  # creates ties
        score = np.round(score, decimals)
    return y, score


@pytest.mark.parametrize("decimals", [None, 1, 0])
def test_counts_metrics_equal_sklearn_on_resamples(decimals):
    y, score = make_scores(300, seed=3, decimals=decimals)
    values, codes = np.unique(score, return_inverse=True)
    rng = np.random.default_rng(11)
    pos_index, neg_index = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    pos_counts, neg_counts, expected = [], [], []
    for _ in range(20):
        index = np.concatenate([rng.choice(pos_index, len(pos_index)),
                                rng.choice(neg_index, len(neg_index))])
        pos_counts.append(np.bincount(codes[index][y[index] == 1], minlength=len(values)))
        neg_counts.append(np.bincount(codes[index][y[index] == 0], minlength=len(values)))
        expected.append((roc_auc_score(y[index], score[index]),
                         average_precision_score(y[index], score[index])))
    auroc, auprc = evaluate.auroc_auprc_from_counts(np.array(pos_counts), np.array(neg_counts))
    np.testing.assert_allclose(auroc, [e[0] for e in expected], rtol=0, atol=1e-12)
    np.testing.assert_allclose(auprc, [e[1] for e in expected], rtol=0, atol=1e-12)


def test_point_estimates_equal_sklearn_and_interval_contains_them():
    y, score = make_scores(500, seed=1)
    m = evaluate.bootstrap_metrics(y, score, n_boot=300)
    assert set(m) == {"n_pos", "n_neg", "auroc", "auroc_lo", "auroc_hi", "auprc", "auprc_lo",
                      "auprc_hi"}
    assert m["auroc"] == roc_auc_score(y, score)
    assert m["auprc"] == average_precision_score(y, score)
    assert (m["n_pos"], m["n_neg"]) == (int(y.sum()), int((1 - y).sum()))
    assert m["auroc_lo"] < m["auroc"] < m["auroc_hi"]
    assert m["auprc_lo"] < m["auprc"] < m["auprc_hi"]


def test_interval_narrows_as_n_grows():
    widths = []
    for n in (200, 2000, 20000):
        m = evaluate.bootstrap_metrics(*make_scores(n, seed=2), n_boot=300)
        widths.append((m["auroc_hi"] - m["auroc_lo"], m["auprc_hi"] - m["auprc_lo"]))
    widths = np.array(widths)
    assert (np.diff(widths, axis=0) < 0).all()
    assert (widths[-1] < widths[0] / 5).all()  # ~ 1/sqrt(n): 10x smaller for 100x the data


def test_deterministic_for_seed_and_different_for_other_seed():
    y, score = make_scores(400, seed=4)
    a = evaluate.bootstrap_metrics(y, score, n_boot=200, seed=7)
    b = evaluate.bootstrap_metrics(y, score, n_boot=200, seed=7)
    c = evaluate.bootstrap_metrics(y, score, n_boot=200, seed=8)
    assert a == b
    assert (a["auroc_lo"], a["auroc_hi"]) != (c["auroc_lo"], c["auroc_hi"])
    assert a["auroc"] == c["auroc"]


def test_perfect_classifier_interval_is_one():
    y = np.array([0] * 50 + [1] * 20)
    score = np.concatenate([np.linspace(0, 0.4, 50), np.linspace(0.6, 1, 20)])
    m = evaluate.bootstrap_metrics(y, score, n_boot=200)
    for metric in ("auroc", "auprc"):
        assert m[metric] == m[f"{metric}_lo"] == m[f"{metric}_hi"] == 1.0


def test_stratified_resampling_with_three_positives():
    y, score = make_scores(2000, pos_rate=0.0, seed=5)
    y[[10, 500, 1500]] = 1
    auroc, auprc = evaluate.bootstrap_replicates(y, score, n_boot=2000, seed=0)
    assert np.isfinite(auroc).all() and np.isfinite(auprc).all()  # every replicate had both
    m = evaluate.bootstrap_metrics(y, score, n_boot=2000)
    assert m["n_pos"] == 3
    assert 0.0 <= m["auroc_lo"] <= m["auroc_hi"] <= 1.0


@pytest.mark.parametrize("y, score", [
    (np.zeros(10), np.arange(10.0)),              # one class only
    (np.array([0, 1, 2]), np.arange(3.0)),        # not binary
    (np.array([0, 1, 1]), np.array([0.1, np.nan, 0.3])),
    (np.array([0, 1]), np.arange(3.0)),           # lengths differ
])
def test_bad_input_raises(y, score):
    with pytest.raises(ValueError):
        evaluate.bootstrap_metrics(y, score, n_boot=10)


def test_metrics_row_has_metric_columns():
    y, score = make_scores(200, seed=7)
    row = evaluate.metrics_row("CTCF", "cnn", "test", y, score, n_boot=50, seed=1)
    assert list(row) == evaluate.METRIC_COLUMNS
    assert row["target"] == "CTCF" and row["model"] == "cnn" and row["split"] == "test"
    assert row["auroc"] == evaluate.bootstrap_metrics(y, score, n_boot=50, seed=1)["auroc"]


def test_curves_shapes_and_ends():
    y, score = make_scores(300, seed=8)
    c = evaluate.curves(y, score)
    assert set(c) == {"fpr", "tpr", "precision", "recall"}
    assert len(c["fpr"]) == len(c["tpr"]) and len(c["precision"]) == len(c["recall"])
    assert c["fpr"][-1] == c["tpr"][-1] == 1.0
    assert c["recall"][0] == 1.0 and c["recall"][-1] == 0.0


def test_predictions_round_trip(tmp_path):
    y, score = make_scores(50, seed=9)
    names = [f"chr1:{i * 100}-{i * 100 + 200}" for i in range(49)] + ["NA"]
    path = tmp_path / "pred.tsv"
    evaluate.write_predictions(path, names, y, score)
    table = evaluate.read_predictions(path)
    assert list(table.columns) == ["name", "label", "score"]
    assert table["name"].tolist() == names
    np.testing.assert_array_equal(table["label"].to_numpy(), y)
    np.testing.assert_array_equal(table["score"].to_numpy(), score)  # exact float round trip
    assert [p.name for p in tmp_path.iterdir()] == ["pred.tsv"]


def test_read_predictions_rejects_missing_column(tmp_path):
    path = tmp_path / "bad.tsv"
    pd.DataFrame({"name": ["a"], "score": [0.1]}).to_csv(path, sep="\t", index=False)
    with pytest.raises(InputError, match="label"):
        evaluate.read_predictions(path)


def test_write_predictions_rejects_length_mismatch(tmp_path):
    with pytest.raises(ValueError):
        evaluate.write_predictions(tmp_path / "p.tsv", ["a", "b"], [0, 1, 1], [0.1, 0.2, 0.3])


def test_paired_difference_uses_the_same_resamples():
    from helixflow.evaluate import paired_difference
    rng = np.random.default_rng(3)
    y = (rng.random(300) < 0.4).astype(int)
    score = y + rng.normal(0, 1.0, 300)
    # a monotone transform ranks identically: with paired resamples every replicate's
    # difference is exactly zero, unpaired resamples would scatter around zero
    same = paired_difference(y, score, np.exp(score), n_boot=200, seed=5)
    assert same["delta_auroc_lo"] == same["delta_auroc_hi"] == 0.0
    better = paired_difference(y, score, rng.normal(0, 1.0, 300), n_boot=200, seed=5)
    assert better["delta_auroc_lo"] > 0.1
    assert better["delta_auroc_lo"] <= better["delta_auroc"] <= better["delta_auroc_hi"]
