"""Tests for helixflow.imbalance and evaluate.precision_at_recall (tiny made-up genome)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from tiny_project import make_genome

from helixflow.evaluate import precision_at_recall
from helixflow.genome import index_genome
from helixflow.imbalance import (
    TABLE_COLUMNS,
    at_ratio,
    imbalance_windows,
    nested_order,
    run_imbalance,
)
from helixflow.intervals import drop_overlapping, read_peaks, resolve_splits, summit_windows
from helixflow.tiles import genome_tiles

pytestmark = pytest.mark.usefixtures("restore_torch_state")


# ---------------------------------------------------------------- precision at recall

def brute_precision_at_recall(y: np.ndarray, score: np.ndarray, recall: float) -> float:
    best = 0.0
    for t in np.unique(score):
        called = score >= t
        tp = int((called & (y == 1)).sum())
        if tp / y.sum() >= recall:
            best = max(best, tp / called.sum())
    return best


def test_precision_at_recall_by_hand():
    y = np.array([1, 0, 1, 0])
    score = np.array([0.9, 0.8, 0.7, 0.1])
    assert precision_at_recall(y, score, 0.5) == 1.0
    assert precision_at_recall(y, score, 1.0) == pytest.approx(2 / 3)
    # tied windows are called together: no threshold takes the positive without the negative
    assert precision_at_recall(np.array([1, 0, 0, 1]), np.array([0.5, 0.5, 0.1, 0.05]),
                               0.5) == 0.5


def test_precision_at_recall_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(5, 200))
        y = (rng.random(n) < rng.uniform(0.05, 0.6)).astype(int)
        y[0], y[1] = 1, 0
        score = np.round(rng.normal(size=n) + y * rng.uniform(0, 2), 1)  # ties on purpose
        for recall in (0.1, 0.5, 0.8, 1.0):
            assert precision_at_recall(y, score, recall) == pytest.approx(
                brute_precision_at_recall(y, score, recall))


def test_precision_at_recall_rejects_bad_input():
    with pytest.raises(ValueError, match="recall"):
        precision_at_recall(np.array([0, 1]), np.array([0.1, 0.2]), 0.0)
    with pytest.raises(ValueError, match="both classes"):
        precision_at_recall(np.array([1, 1]), np.array([0.1, 0.2]), 0.5)


# ---------------------------------------------------------------- nested negatives

def test_nested_order_prefixes_keep_the_gc_mix():
    rng = np.random.default_rng(1)
    gc = np.clip(rng.beta(4, 6, 5000), 0, 1)
    n_bins = 20
    order = nested_order(gc, n_bins, np.random.default_rng(2))
    assert sorted(order) == list(range(len(gc)))
    bins = np.clip(np.digitize(gc, np.linspace(0, 1, n_bins + 1)[1:-1]), 0, n_bins - 1)
    whole = np.bincount(bins, minlength=n_bins)
    for m in (50, 200, 1000, 4000):
        got = np.bincount(bins[order[:m]], minlength=n_bins)
        expected = m * whole / len(gc)
        assert np.abs(got - expected).max() <= 2.5, (m, got, expected)
    # a plain random prefix of the same size strays far more than that
    plain = np.bincount(bins[rng.permutation(len(gc))[:1000]], minlength=n_bins)
    assert np.abs(plain - 1000 * whole / len(gc)).max() > 2.5


# ---------------------------------------------------------------- on a tiny genome

@pytest.fixture(scope="module")
def genome(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("imbalance")
    summits = make_genome(root)
    sizes = index_genome(root / "tiny" / "genome.fa.gz", root / "genome.fa",
                         root / "chrom.sizes")
    peaks = root / "peaks.bed"
    peaks.write_text("".join(f"{c}\t{s}\t{s + 1}\tpeak{i}\n" for i, (c, s) in
                             enumerate(summits)))
    blacklist = root / "blacklist.bed"
    blacklist.write_text("chr1\t0\t2500\nchr2\t30000\t32000\n")
    return {"root": root, "fasta": root / "genome.fa", "sizes": sizes, "peaks": peaks,
            "blacklist": blacklist, "splits": {"valid": ["chr5"], "test": ["chr6"],
                                               "train": []}}


def test_windows_nest_and_avoid_peaks_and_blacklist(genome):
    sizes = genome["sizes"]
    split_of = resolve_splits(sizes, ["chr5"], ["chr6"])
    peaks = read_peaks(genome["peaks"], sizes, {})
    black = pd.DataFrame({"chrom": ["chr1", "chr2"], "start": [0, 30000], "end": [2500, 32000]})
    table = imbalance_windows(peaks, black, genome["fasta"], sizes, split_of, 100, 4.0,
                              {"train": 100}, 20, 0.01, seed=3,
                              tiles=genome_tiles(genome["fasta"], 100))
    pos, neg = table[table["label"] == 1], table[table["label"] == 0]
    assert (pos["split"] == "train").sum() == 100          # capped
    assert (pos["split"] == "test").sum() == 60             # all
    assert (table["chrom"].map(split_of) == table["split"]).all()
    # negatives touch no peak window (kept or not) and no blacklisted region
    exclude = pd.concat([summit_windows(peaks, 100, sizes)[["chrom", "start", "end"]], black])
    assert len(drop_overlapping(neg, exclude)) == len(neg)
    for split in ("train", "valid", "test"):
        n_pos = int((pos["split"] == split).sum())
        ranks = np.sort(neg.loc[neg["split"] == split, "rank"].to_numpy())
        assert list(ranks) == list(range(len(ranks)))
        previous: set = set()
        for ratio in (1, 2.5, 4):
            rows = at_ratio(table, split, ratio)
            assert (rows["label"] == 0).sum() == min(round(ratio * n_pos), len(ranks))
            names = set(rows["name"])
            assert previous <= names                        # nested
            previous = names
    # the GC mix of the negatives follows the positives'
    assert abs(neg["gc"].mean() - pos["gc"].mean()) < 0.02


def test_run_imbalance_end_to_end(genome, tmp_path):
    out = tmp_path / "out"
    params = {"ratios": [1, 3], "width": 100, "splits": genome["splits"],
              "max_positives": {"train": 120, "valid": 40, "test": 0},
              "architecture": {"filters": 4, "kernel": 9, "pool": 0, "dense": 0,
                               "dropout": 0.0},
              "training": {"epochs": 3, "batch_size": 64, "lr": 0.02, "weight_decay": 0.0,
                           "patience": 0, "rc_augment": True, "rc_average": True},
              "n_boot": 20, "seed": 5, "train_seeds": None}
    summary = run_imbalance("Reb1", genome["fasta"], genome["sizes"], {}, genome["blacklist"],
                            genome["peaks"], out, tmp_path / "fig" / "imbalance.png", params,
                            log=io.StringIO())
    table = pd.read_csv(out / "imbalance.tsv", sep="\t")
    assert list(table.columns) == TABLE_COLUMNS
    assert len(table) == 2 * 3
    assert set(table["loss"]) == {"bce", "weighted_bce", "focal"}
    assert (table["n_pos"] == 60).all()
    assert list(table.groupby("ratio")["n_neg"].first()) == [60, 180]
    assert np.allclose(table["auprc_chance"], table["n_pos"] / (table["n_pos"] + table["n_neg"]))
    assert table[["auroc", "auprc", "precision_at_recall_50"]].notna().all().all()
    # at 1:1 the balancing weight is 1, so weighted BCE trains exactly like BCE
    one = table[table["ratio"] == 1].set_index("loss")
    assert one.loc["weighted_bce", "auroc"] == pytest.approx(one.loc["bce", "auroc"], abs=0.01)
    assert summary["n_positives"] == {"train": 120, "valid": 40, "test": 60}
    histories = pd.read_csv(out / "histories.tsv", sep="\t")
    assert len(histories) == 6 * 3
    for name in ("windows.tsv", "record.json"):
        assert (out / name).stat().st_size > 0
    for suffix in (".png", ".svg"):
        assert (tmp_path / "fig" / f"imbalance{suffix}").stat().st_size > 0


def test_run_imbalance_rejects_unknown_loss(genome, tmp_path):
    from helixflow.errors import InputError

    with pytest.raises(InputError, match="unknown loss"):
        run_imbalance("Reb1", genome["fasta"], genome["sizes"], {}, None, genome["peaks"],
                      tmp_path, tmp_path / "x.png", {"losses": ["bce", "hinge"]})



def test_params_merge_nested_defaults():
    from helixflow.config import overlay
    from helixflow.errors import InputError
    from helixflow.imbalance import DEFAULTS

    params = overlay(DEFAULTS, {"training": {"epochs": 2}, "ratios": [1, 2]})
    assert params["training"] == DEFAULTS["training"] | {"epochs": 2}
    assert params["ratios"] == [1, 2] and params["losses"] == DEFAULTS["losses"]
    assert overlay(DEFAULTS, None) == DEFAULTS
    with pytest.raises(InputError, match="unknown setting 'ratio'"):
        overlay(DEFAULTS, {"ratio": [1]})
