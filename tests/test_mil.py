"""Tests for helixflow.models.mil and helixflow.mil: geometry, symmetry, a planted known answer."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score

from helixflow.encode import one_hot, one_hot_batch
from helixflow.errors import InputError
from helixflow.genome import index_genome
from helixflow.mil import (
    TABLE_COLUMNS,
    MILTrainConfig,
    bag_regions,
    best_hits,
    containing,
    localisation,
    predict_bags,
    run_mil,
    train_mil,
    wilson_interval,
)
from helixflow.models.mil import AttentionMIL, MILConfig, instance_starts
from helixflow.motifs import max_pwm_score

pytestmark = pytest.mark.usefixtures("restore_torch_state")

MOTIF = "ATTACCCGG"   # consensus of JASPAR MA0363 (REB1)
RC_MOTIF = MOTIF[::-1].translate(str.maketrans("ACGT", "TGCA"))


def random_seq(rng: np.random.Generator, n: int) -> list[str]:
    return list(rng.choice(list("ACGT"), n))


# ---------------------------------------------------------------- model geometry

def test_instance_starts():
    assert list(instance_starts(1000, 100, 50)) == list(range(0, 901, 50))
    assert list(instance_starts(10, 4, 3)) == [0, 3, 6]
    with pytest.raises(ValueError):
        instance_starts(10, 11, 3)


@pytest.fixture(scope="module")
def model() -> AttentionMIL:
    torch.manual_seed(0)
    return AttentionMIL(MILConfig(bag=200, instance=40, stride=20, filters=6, kernel=7,
                                  embed=8, attention=4, dropout=0.0)).eval()


def test_forward_shapes_and_attention_sums_to_one(model):
    X = torch.from_numpy(one_hot_batch(["".join(random_seq(np.random.default_rng(i), 200))
                                        for i in range(5)]).astype(np.float32))
    logits, attention = model(X)
    assert logits.shape == (5,) and attention.shape == (5, model.n_instances) == (5, 9)
    torch.testing.assert_close(attention.sum(dim=1), torch.ones(5))
    assert (attention > 0).all()


def test_pooled_embeddings_equal_encoding_each_instance_alone(model):
    X = torch.from_numpy(one_hot_batch(["".join(random_seq(np.random.default_rng(i), 200))
                                        for i in range(3)]).astype(np.float32))
    pooled = model.instance_embeddings(X)
    cfg = model.config
    for k, start in enumerate(model.starts):
        piece = X[:, :, start:start + cfg.instance]
        alone = model.embed(model.conv_features(piece).amax(dim=2))
        torch.testing.assert_close(pooled[:, k], alone)


def test_reverse_complement_bag_reverses_attention(model):
    """(bag - instance) is a multiple of stride, so the instances of the reverse complement
    are the same instances in reverse order: same logit, attention reversed."""
    X = torch.from_numpy(one_hot_batch(["".join(random_seq(np.random.default_rng(9), 200))])
                         .astype(np.float32))
    logit, attention = model(X)
    logit_rc, attention_rc = model(X.flip(1).flip(2))
    torch.testing.assert_close(logit_rc, logit)
    torch.testing.assert_close(attention_rc, attention.flip(1))


def test_attention_is_permutation_equivariant(model):
    h = torch.randn(2, 9, 8)
    perm = torch.randperm(9)
    torch.testing.assert_close(model.attend(h[:, perm]), model.attend(h)[:, perm])


# ---------------------------------------------------------------- motif hits and rates

def test_best_hits_finds_a_planted_site_on_either_strand():
    from helixflow.motifs import jaspar_motif, pwm_logodds

    logodds = pwm_logodds(jaspar_motif("MA0363").ppm)
    rng = np.random.default_rng(2)
    seqs, where = [], []
    for i in range(20):
        seq = random_seq(rng, 120)
        at = int(rng.integers(0, 120 - len(MOTIF) + 1))
        seq[at:at + len(MOTIF)] = MOTIF if i % 2 == 0 else RC_MOTIF
        seqs.append("".join(seq))
        where.append(at)
    X = one_hot_batch(seqs)
    score, start, strand = best_hits(X, logodds)
    assert list(start) == where
    assert list(strand) == [1, -1] * 10
    np.testing.assert_allclose(score, max_pwm_score(X, logodds), rtol=1e-6)
    assert np.allclose(score, logodds.max(axis=0).sum(), rtol=1e-5)   # the consensus


def test_containing_needs_the_whole_hit():
    starts = np.array([0, 50, 100])
    got = containing(starts, 100, np.array([0, 45, 95, 150]), 10)
    # instances [0, 100), [50, 150), [100, 200); hits [0, 10), [45, 55), [95, 105), [150, 160)
    assert got.tolist() == [[True, False, False],
                            [True, False, False],
                            [False, True, False],
                            [False, False, True]]


def test_localisation_by_hand():
    contains = np.array([[True, False, False, False],
                         [False, True, True, False],
                         [False, False, False, True]])
    attention = np.array([[0.7, 0.1, 0.1, 0.1],        # top 0: right
                          [0.1, 0.2, 0.6, 0.1],        # top 2: right
                          [0.4, 0.3, 0.2, 0.1]])       # top 0: wrong
    starts, instance = np.array([0, 10, 20, 30]), 10
    out = localisation(attention, contains, np.array([2, 22, 38]), starts, instance)
    assert out["n"] == 3 and out["n_localised"] == 2
    assert out["rate"] == pytest.approx(2 / 3)
    assert out["random_baseline"] == pytest.approx((1 / 4 + 2 / 4 + 1 / 4) / 3)
    assert out["centre_rate"] == pytest.approx(1 / 3)   # instance k // 2 = 2
    assert out["summit_rate"] == pytest.approx(1.0)     # summits at 2, 22, 38 → 0, 2, 3
    assert out["lo"] < out["rate"] < out["hi"]


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (81, 263), (50, 50)])
def test_wilson_interval_matches_scipy(k, n):
    ci = binomtest(k, n).proportion_ci(confidence_level=0.9, method="wilson")
    assert wilson_interval(k, n, 0.9) == pytest.approx((ci.low, ci.high), abs=1e-12)


@pytest.mark.parametrize(("k", "n"), [(0, 50), (0, 7), (50, 50), (3, 3), (1, 1000)])
def test_wilson_interval_holds_the_proportion_at_the_edges(k, n):
    """k = 0 or n: rounding must not put the proportion outside (the figure's error bars)."""
    lo, hi = wilson_interval(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_bag_regions_shift_the_summit_within_bounds():
    peaks = pd.DataFrame({"chrom": ["c"] * 500 + ["c"], "summit": [5000] * 500 + [100],
                          "name": [f"p{i}" for i in range(501)]})
    bags = bag_regions(peaks, {"c": 10_000}, 1000, 300, np.random.default_rng(0))
    assert len(bags) == 500                                   # the one near the end is dropped
    assert ((bags["end"] - bags["start"]) == 1000).all()
    offset = bags["summit_offset"]
    assert offset.between(500 - 300, 500 + 300).all()
    assert offset.min() < 250 and offset.max() > 750          # the shift really spreads
    assert (bags["start"] + offset == 5000).all()


# ---------------------------------------------------------------- known answer

def planted_bags(n: int, seed: int, bag: int = 400, instance: int = 40):
    """Half the bags carry the motif wholly inside one random (non-overlapping) instance."""
    rng = np.random.default_rng(seed)
    seqs, y, where = [], [], []
    for i in range(n):
        seq = random_seq(rng, bag)
        k = -1
        if i % 2:
            k = int(rng.integers(0, bag // instance))
            at = k * instance + int(rng.integers(0, instance - len(MOTIF) + 1))
            seq[at:at + len(MOTIF)] = MOTIF if rng.random() < 0.5 else RC_MOTIF
        seqs.append("".join(seq))
        y.append(i % 2)
        where.append(k)
    return one_hot_batch(seqs), np.array(y, dtype=np.uint8), np.array(where)


def test_attention_finds_the_planted_instance():
    cfg = MILTrainConfig(epochs=12, batch_size=16, lr=0.01, weight_decay=0.0, patience=0,
                         seed=0, model=MILConfig(bag=400, instance=40, stride=40, filters=8,
                                                 kernel=9, embed=16, attention=8,
                                                 dropout=0.0))
    X, y, _ = planted_bags(300, seed=1)
    Xv, yv, _ = planted_bags(100, seed=2)
    Xt, yt, where = planted_bags(200, seed=3)
    model, history, summary = train_mil(X, y, Xv, yv, cfg, log=io.StringIO())
    assert list(history.columns) == ["epoch", "train_loss", "valid_auroc", "seconds"]
    logits, attention = predict_bags(model, Xt)
    assert roc_auc_score(yt, logits) > 0.95
    pos = yt == 1
    rate = float((attention[pos].argmax(axis=1) == where[pos]).mean())
    assert rate > 0.8, rate                                   # random instance: 1 in 10


def test_train_mil_needs_both_classes():
    X, y, _ = planted_bags(10, seed=0, bag=80, instance=40)
    with pytest.raises(InputError, match="both classes"):
        train_mil(X, np.zeros(10, np.uint8), X, y, MILTrainConfig(
            model=MILConfig(bag=80, instance=40, stride=40, kernel=9)))


# ---------------------------------------------------------------- end to end, tiny genome

@pytest.fixture(scope="module")
def genome(tmp_path_factory) -> dict:
    """Four 60-kb chromosomes, 20 peaks each (2.5 kb apart) with REB1's consensus near the
    summit; the peaks file names chromosomes '1'..'4' (aliases to 'chr1'..'chr4')."""
    root = tmp_path_factory.mktemp("mil")
    rng = np.random.default_rng(11)
    records, peaks = [], []
    for c in range(1, 5):
        seq = random_seq(rng, 60_000)
        for j in range(20):
            summit = 5000 + 2500 * j + int(rng.integers(-100, 100))
            at = summit + int(rng.integers(-15, 6))
            seq[at:at + len(MOTIF)] = MOTIF if rng.random() < 0.5 else RC_MOTIF
            peaks.append(f"{c}\t{summit}\t{summit + 1}\tp{c}_{j}\n")
        text = "".join(seq)
        records.append(f">chr{c}\n" + "\n".join(text[i:i + 60] for i in range(0, len(text), 60)))
    (root / "raw.fa").write_text("\n".join(records) + "\n")
    sizes = index_genome(root / "raw.fa", root / "genome.fa", root / "chrom.sizes")
    (root / "peaks.bed").write_text("".join(peaks))
    (root / "blacklist.bed").write_text("1\t0\t3000\n")
    assert one_hot(MOTIF).shape == (4, 9)
    return {"fasta": root / "genome.fa", "sizes": sizes, "peaks": root / "peaks.bed",
            "blacklist": root / "blacklist.bed",
            "aliases": {str(c): f"chr{c}" for c in range(1, 5)}}


PARAMS = {"bag": 400, "instance": 50, "stride": 25, "max_shift": 100, "exclude_flank": 60,
          "splits": {"valid": ["chr3"], "test": ["chr4"], "train": []},
          "model": {"filters": 8, "kernel": 9, "embed": 16, "attention": 8, "dropout": 0.0},
          "training": {"epochs": 15, "batch_size": 8, "lr": 0.01, "weight_decay": 0.0,
                       "patience": 0},
          "n_examples": 2, "seed": 3}


def test_run_mil_end_to_end(genome, tmp_path):
    out = tmp_path / "mil"
    figure = tmp_path / "fig" / "mil.png"
    result = run_mil("Reb1", genome["fasta"], genome["sizes"], genome["aliases"],
                     genome["blacklist"], genome["peaks"], "MA0363", out, figure, PARAMS,
                     log=io.StringIO())
    table = pd.read_csv(out / "mil.tsv", sep="\t")
    assert list(table.columns) == TABLE_COLUMNS and len(table) == 1
    row = table.iloc[0]
    assert row["jaspar_id"].startswith("MA0363")
    assert row["n_instances"] == 15
    assert row["n_bags_test"] == 40 and row["n_localised"] == 20
    assert row["lo"] <= row["localisation_rate"] <= row["hi"]
    # the planted consensus is each positive bag's best hit: attention should land on it
    assert row["n_strong"] == 20
    assert row["localisation_rate"] > row["random_baseline"] + 0.4, row.to_dict()
    assert row["bag_auroc"] > 0.9
    bags = pd.read_csv(out / "bags.tsv", sep="\t")
    assert len(bags) == (bags["label"] == 1).sum() * 2        # 1:1 negatives
    test_pos = bags[(bags["split"] == "test") & (bags["label"] == 1)]
    assert test_pos["top_holds_hit"].astype(bool).sum() == round(row["localisation_rate"] * 20)
    assert pd.read_csv(out / "attention.tsv", sep="\t").shape == (20, 1 + 15)
    assert result["localisation"]["all"]["n"] == 20
    for path in (out / "history.tsv", out / "record.json", figure, figure.with_suffix(".svg")):
        assert path.stat().st_size > 0


def test_run_mil_rejects_a_kernel_longer_than_the_instance(genome, tmp_path):
    params = PARAMS | {"model": PARAMS["model"] | {"kernel": 60}}
    with pytest.raises(InputError, match="kernel"):
        run_mil("Reb1", genome["fasta"], genome["sizes"], genome["aliases"], None,
                genome["peaks"], "MA0363", tmp_path, tmp_path / "m.png", params)
