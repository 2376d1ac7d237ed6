"""Classifier evaluation: AUROC / AUPRC with stratified bootstrap intervals, curves, predictions.

Every metric here is computed on per-window scores of a binary task (label 1 = bound / positive,
0 = negative). Point estimates come from scikit-learn on the full data; confidence intervals are
percentile intervals over a stratified bootstrap (positives and negatives resampled separately,
so every replicate contains both classes and keeps the observed class balance).

The bootstrap is vectorised: scores are replaced by their rank among the distinct observed values,
each replicate becomes a histogram of positive and negative counts over those values, and both
metrics are exact sums over the histograms (ties handled like scikit-learn).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from helixflow.errors import InputError
from helixflow.files import write_tsv

METRIC_COLUMNS = ["target", "model", "split", "n_pos", "n_neg", "auroc", "auroc_lo", "auroc_hi",
                  "auprc", "auprc_lo", "auprc_hi"]
PREDICTION_COLUMNS = ["name", "label", "score"]

# Upper bound on array elements handled per bootstrap block (memory stays ~100 MB at most).
_BLOCK_ELEMENTS = 4_000_000


def _check_binary(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate labels/scores; return ``(y as int8, score as float64)``, both shape=(n,)."""
    y = np.asarray(y)
    score = np.asarray(score, dtype=np.float64)
    if y.ndim != 1 or score.ndim != 1 or len(y) != len(score):
        raise ValueError(f"y and score must be 1-D of equal length, got shapes {y.shape} and "
                         f"{score.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y must contain only 0/1 (or False/True) labels")
    if not np.isfinite(score).all():
        raise ValueError("score contains NaN or infinite values")
    y = y.astype(np.int8)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        raise ValueError(f"need both classes to evaluate, got {n_pos} positives and "
                         f"{len(y) - n_pos} negatives")
    return y, score


def auroc_or_nan(y: np.ndarray, score: np.ndarray) -> float:
    """AUROC, or NaN when ``y`` holds one class only (an early epoch's tiny subset)."""
    return float(roc_auc_score(y, score)) if 0 < np.sum(y) < len(y) else float("nan")


def auroc_auprc_from_counts(pos_counts: np.ndarray,
                            neg_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROC and average precision from score histograms, exact and tie-aware.

    pos_counts, neg_counts: np.ndarray, shape=(b, v) — number of positive / negative windows at each
    of ``v`` distinct score values sorted ascending, for ``b`` (resampled) data sets.
    Returns (auroc, auprc), each shape=(b,). AUROC counts ties as 1/2 (Mann–Whitney); average
    precision matches ``sklearn.metrics.average_precision_score`` (a threshold per distinct score).
    """
    pos = np.asarray(pos_counts, dtype=np.float64)
    neg = np.asarray(neg_counts, dtype=np.float64)
    n_pos = pos.sum(axis=1)
    n_neg = neg.sum(axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    auroc = (pos * (neg_below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)
    # Precision at each threshold, walking from the highest score down.
    pos_desc, neg_desc = pos[:, ::-1], neg[:, ::-1]
    tp = np.cumsum(pos_desc, axis=1)
    called = tp + np.cumsum(neg_desc, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(called > 0, tp / called, 0.0)
    auprc = (pos_desc * precision).sum(axis=1) / n_pos
    return auroc, auprc


def _resampled_counts(rng: np.random.Generator, codes: np.ndarray, n_values: int,
                      n_rep: int) -> np.ndarray:
    """Histogram of ``n_rep`` with-replacement resamples of ``codes`` (shape=(m,)).

    Returns shape=(n_rep, n_values) int64 counts.
    """
    draws = codes[rng.integers(0, len(codes), size=(n_rep, len(codes)))]
    draws += (np.arange(n_rep, dtype=np.int64) * n_values)[:, None]
    return np.bincount(draws.ravel(), minlength=n_rep * n_values).reshape(n_rep, n_values)


def bootstrap_replicates(y: np.ndarray, score: np.ndarray, n_boot: int = 1000,
                         seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """AUROC and AUPRC of ``n_boot`` stratified bootstrap resamples.

    y: np.ndarray, shape=(n,) 0/1 labels; score: np.ndarray, shape=(n,) higher = more positive.
    Positives and negatives are resampled separately (sizes kept), seeded with
    ``numpy.random.default_rng(seed)``. Returns (auroc, auprc), each shape=(n_boot,).
    """
    y, score = _check_binary(y, score)
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    values, codes = np.unique(score, return_inverse=True)
    codes = codes.astype(np.int64).ravel()
    pos_codes, neg_codes = codes[y == 1], codes[y == 0]
    n_values = len(values)
    block = max(1, _BLOCK_ELEMENTS // max(len(y), n_values))
    rng = np.random.default_rng(seed)
    auroc = np.empty(n_boot)
    auprc = np.empty(n_boot)
    for start in range(0, n_boot, block):
        n_rep = min(block, n_boot - start)
        pos_counts = _resampled_counts(rng, pos_codes, n_values, n_rep)
        neg_counts = _resampled_counts(rng, neg_codes, n_values, n_rep)
        auroc[start:start + n_rep], auprc[start:start + n_rep] = auroc_auprc_from_counts(
            pos_counts, neg_counts)
    return auroc, auprc


def bootstrap_metrics(y: np.ndarray, score: np.ndarray, n_boot: int = 1000, seed: int = 0,
                      level: float = 0.95) -> dict:
    """AUROC and AUPRC (average precision) with stratified percentile-bootstrap intervals.

    y: np.ndarray, shape=(n,) 0/1 labels; score: np.ndarray, shape=(n,) higher = more positive.
    Returns ``{n_pos, n_neg, auroc, auroc_lo, auroc_hi, auprc, auprc_lo, auprc_hi}`` (plain Python
    numbers; AUPRC clipped to <= 1 against float rounding); the interval covers the central
    ``level`` fraction of the replicates. Deterministic for a given ``seed``.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    y, score = _check_binary(y, score)
    boot_auroc, boot_auprc = bootstrap_replicates(y, score, n_boot=n_boot, seed=seed)
    q = [50.0 * (1.0 - level), 50.0 * (1.0 + level)]
    auroc_lo, auroc_hi = np.percentile(boot_auroc, q)
    auprc_lo, auprc_hi = np.percentile(boot_auprc, q)
    n_pos = int(y.sum())
    return {
        "n_pos": n_pos,
        "n_neg": int(len(y) - n_pos),
        "auroc": float(roc_auc_score(y, score)),
        "auroc_lo": float(auroc_lo),
        "auroc_hi": float(auroc_hi),
        # sklearn's float summation can give 1 + 1e-16 for a perfect ranking
        "auprc": min(1.0, float(average_precision_score(y, score))),
        "auprc_lo": float(auprc_lo),
        "auprc_hi": float(auprc_hi),
    }


def metrics_row(target: str, model: str, split: str, y: np.ndarray, score: np.ndarray,
                **kw) -> dict:
    """One row of the metrics table (keys = ``METRIC_COLUMNS``, in order).

    ``kw`` is passed to :func:`bootstrap_metrics` (n_boot, seed, level).
    """
    row = {"target": target, "model": model, "split": split, **bootstrap_metrics(y, score, **kw)}
    return {column: row[column] for column in METRIC_COLUMNS}


def curves(y: np.ndarray, score: np.ndarray) -> dict[str, np.ndarray]:
    """ROC and precision–recall curves for plotting.

    y: np.ndarray, shape=(n,) 0/1 labels; score: np.ndarray, shape=(n,).
    Returns ``fpr``/``tpr`` (ROC, same length) and ``precision``/``recall`` (same length,
    recall decreasing as returned by scikit-learn).
    """
    y, score = _check_binary(y, score)
    fpr, tpr, _ = roc_curve(y, score)
    precision, recall, _ = precision_recall_curve(y, score)
    return {"fpr": fpr, "tpr": tpr, "precision": precision, "recall": recall}


def write_predictions(path: str | Path, names: np.ndarray | list[str], y: np.ndarray,
                      score: np.ndarray) -> None:
    """Write per-window predictions as TSV with columns name, label, score (atomically).

    names, y, score: shape=(n,) each.
    """
    names = np.asarray(names, dtype=str)
    y = np.asarray(y)
    score = np.asarray(score, dtype=np.float64)
    if not (names.ndim == y.ndim == score.ndim == 1 and len(names) == len(y) == len(score)):
        raise ValueError(f"names, y and score must be 1-D of equal length, got shapes "
                         f"{names.shape}, {y.shape}, {score.shape}")
    table = pd.DataFrame({"name": names, "label": y.astype(np.int64), "score": score})
    write_tsv(path, table)


PAIRED_COLUMNS = ["target", "model", "reference", "split", "delta_auroc", "delta_auroc_lo",
                  "delta_auroc_hi", "delta_auprc", "delta_auprc_lo", "delta_auprc_hi"]


def paired_difference(y: np.ndarray, score: np.ndarray, reference: np.ndarray,
                      n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Paired bootstrap of ``metric(score) - metric(reference)`` on the same windows.

    Both models are scored on identical resamples (the same seed draws the same windows,
    since resampling depends only on ``y``), so the interval reflects the difference
    between the models, not the spread of the windows. Keys: delta_auroc(_lo, _hi),
    delta_auprc(_lo, _hi).
    """
    a_roc, a_prc = bootstrap_replicates(y, score, n_boot=n_boot, seed=seed)
    b_roc, b_prc = bootstrap_replicates(y, reference, n_boot=n_boot, seed=seed)
    q = [50.0 * (1.0 - level), 50.0 * (1.0 + level)]
    out = {}
    for name, a, b, point in (
            ("auroc", a_roc, b_roc, roc_auc_score(y, score) - roc_auc_score(y, reference)),
            ("auprc", a_prc, b_prc, average_precision_score(y, score)
             - average_precision_score(y, reference))):
        lo, hi = np.percentile(a - b, q)
        out |= {f"delta_{name}": float(point), f"delta_{name}_lo": float(lo),
                f"delta_{name}_hi": float(hi)}
    return out


def read_predictions(path: str | Path) -> pd.DataFrame:
    """Read a predictions TSV written by :func:`write_predictions` (columns name, label, score)."""
    table = pd.read_csv(path, sep="\t", dtype={"name": str, "score": str},
                        keep_default_na=False,
                        na_values={"score": ["", "NaN", "nan"], "label": [""]})
    missing = [column for column in PREDICTION_COLUMNS if column not in table.columns]
    if missing:
        raise InputError(f"missing column(s) {', '.join(missing)}", path=path, line=1,
                         fix="a predictions file needs the header: name, label, score")
    table = table[PREDICTION_COLUMNS]
    table["score"] = table["score"].map(float)  # Python's parser: an exact float round trip
    if table["label"].isna().any() or not table["label"].isin([0, 1]).all():
        raise InputError("label must be 0 or 1 on every row", path=path,
                         fix="rewrite the file with helixflow.evaluate.write_predictions")
    table["label"] = table["label"].astype(np.int64)
    table["score"] = table["score"].astype(np.float64)
    return table


def precision_at_recall(y: np.ndarray, score: np.ndarray, recall: float = 0.5) -> float:
    """Best precision among the score thresholds whose recall is at least ``recall``.

    y: np.ndarray, shape=(n,) 0/1 labels; score: np.ndarray, shape=(n,) higher = more positive.
    Thresholds are the distinct scores (ties called together, as in scikit-learn's
    precision–recall curve); the chance level is the positive rate.
    """
    if not 0.0 < recall <= 1.0:
        raise ValueError(f"recall must be in (0, 1], got {recall}")
    y, score = _check_binary(y, score)
    precision, achieved, _ = precision_recall_curve(y, score)
    return float(precision[achieved >= recall - 1e-12].max())
