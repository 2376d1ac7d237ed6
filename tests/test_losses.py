"""Tests for helixflow.losses and the ``loss`` option of helixflow.train."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch.nn import functional as F

from helixflow.encode import one_hot_batch
from helixflow.errors import InputError
from helixflow.losses import balance_weight, focal_loss, make_loss, weighted_bce
from helixflow.models.cnn import CNNConfig
from helixflow.train import TrainConfig, predict, train_cnn

pytestmark = pytest.mark.usefixtures("restore_torch_state")


def batch(n: int = 200, seed: int = 0, scale: float = 4.0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    logits = torch.from_numpy(rng.normal(0, scale, n))
    y = torch.from_numpy((rng.random(n) < 0.2).astype(np.float64))
    return logits, y


def focal_direct(logits: np.ndarray, y: np.ndarray, gamma: float, alpha: float | None) -> float:
    """Lin et al. (2017) written out with probabilities, in float64."""
    p = 1 / (1 + np.exp(-logits))
    pt = np.where(y == 1, p, 1 - p)
    at = 1.0 if alpha is None else np.where(y == 1, alpha, 1 - alpha)
    return float(np.mean(-at * (1 - pt) ** gamma * np.log(pt)))


@pytest.mark.parametrize(("gamma", "alpha"), [(2.0, 0.25), (0.5, 0.75), (3.0, None), (0.0, 0.5)])
def test_focal_matches_the_formula(gamma, alpha):
    logits, y = batch()
    got = float(focal_loss(logits, y, gamma, alpha))
    assert got == pytest.approx(focal_direct(logits.numpy(), y.numpy(), gamma, alpha), rel=1e-10)


def test_focal_without_focus_or_weight_is_bce():
    logits, y = batch()
    assert float(focal_loss(logits, y, gamma=0.0, alpha=None)) == pytest.approx(
        float(F.binary_cross_entropy_with_logits(logits, y)), rel=1e-12)


def test_focal_shrinks_easy_examples_most():
    """γ = 2 scales each term by (1 − p_t)²: a confident right answer loses far more than a
    wrong one, relative to cross-entropy."""
    logits = torch.tensor([4.0, -0.5], dtype=torch.float64)  # easy (p=0.98), hard (p=0.38)
    y = torch.ones(2, dtype=torch.float64)
    ratio = [float(focal_loss(logits[i:i + 1], y[i:i + 1], 2.0, None)
                   / F.binary_cross_entropy_with_logits(logits[i:i + 1], y[i:i + 1]))
             for i in range(2)]
    assert ratio[0] == pytest.approx((1 - torch.sigmoid(logits[0]).item()) ** 2)
    assert ratio[0] < 0.001 < 0.3 < ratio[1]


def test_weighted_bce_matches_torch_pos_weight():
    logits, y = batch(seed=3)
    for w in (1.0, 4.0, 50.0):
        reference = F.binary_cross_entropy_with_logits(logits, y, pos_weight=torch.tensor(w))
        assert float(weighted_bce(logits, y, w)) == pytest.approx(float(reference), rel=1e-12)


def test_weighted_bce_default_balances_the_classes():
    logits, y = batch(seed=4)
    n_pos = float(y.sum())
    w = (len(y) - n_pos) / n_pos
    assert balance_weight(y) == pytest.approx(w)
    assert float(weighted_bce(logits, y)) == pytest.approx(float(weighted_bce(logits, y, w)))
    # the positives' total weight equals the negatives'
    assert w * n_pos == pytest.approx(len(y) - n_pos)
    assert balance_weight(torch.ones(5)) == 1.0


def test_losses_stay_finite_at_extreme_logits():
    logits = torch.tensor([-1000.0, -50.0, 0.0, 50.0, 1000.0], requires_grad=True)
    y = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0])
    for loss in (weighted_bce(logits, y, 10.0), focal_loss(logits, y, 2.0, 0.25)):
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
        logits.grad = None
    # a wrong answer at |z| = 1000 costs ~1000 (log-sigmoid is exact there, not inf)
    assert float(weighted_bce(torch.tensor([-1000.0]), torch.tensor([1.0]), 1.0)) == \
        pytest.approx(1000.0)


def test_make_loss():
    logits, y = batch(seed=5)
    assert float(make_loss("bce")(logits, y)) == pytest.approx(
        float(F.binary_cross_entropy_with_logits(logits, y)))
    # the weight comes from the whole training set, not the mini-batch
    fixed = make_loss("weighted_bce", y_train=torch.tensor([1.0, 0, 0, 0]))
    assert float(fixed(logits, y)) == pytest.approx(float(weighted_bce(logits, y, 3.0)))
    assert float(make_loss("focal", gamma=1.0, alpha=None)(logits, y)) == pytest.approx(
        float(focal_loss(logits, y, 1.0, None)))
    with pytest.raises(ValueError, match="unknown loss"):
        make_loss("hinge")
    with pytest.raises(ValueError, match="pos_weight or y_train"):
        make_loss("weighted_bce")


# ---------------------------------------------------------------- train_cnn's loss option

MOTIF = "TTACCCGG"


def planted(n_pos: int, n_neg: int, seed: int, length: int = 60) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    seqs = []
    for i in range(n_pos + n_neg):
        seq = list(rng.choice(list("ACGT"), length))
        if i < n_pos:
            at = int(rng.integers(0, length - len(MOTIF) + 1))
            seq[at:at + len(MOTIF)] = MOTIF
        seqs.append("".join(seq))
    y = np.r_[np.ones(n_pos), np.zeros(n_neg)].astype(np.uint8)
    return one_hot_batch(seqs), y


def tiny(**changes) -> TrainConfig:
    model = CNNConfig(window=60, filters=4, kernel=8, pool=0, dense=0, dropout=0.0)
    settings = {"epochs": 4, "batch_size": 32, "lr": 0.02, "weight_decay": 0.0, "patience": 0,
                "seed": 0, "threads": 1} | changes
    return TrainConfig(model=model, **settings)


@pytest.fixture(scope="module")
def imbalanced():
    return planted(60, 300, seed=1), planted(40, 120, seed=2)


def test_train_default_loss_is_bce_and_weight_one_is_the_same(imbalanced):
    (X, y), (Xv, yv) = imbalanced
    assert TrainConfig().loss == "bce"
    plain, _, _ = train_cnn(X, y, Xv, yv, tiny())
    unit, _, _ = train_cnn(X, y, Xv, yv, tiny(loss="weighted_bce", pos_weight=1.0))
    focal0, _, _ = train_cnn(X, y, Xv, yv, tiny(loss="focal", focal_gamma=0.0, focal_alpha=None))
    for other in (unit, focal0):
        for a, b in zip(plain.state_dict().values(), other.state_dict().values(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_train_with_positive_weighted_losses_learns_under_imbalance(imbalanced):
    """1:5 data, a few epochs: losses that weigh positives up find the motif; plain BCE lags."""
    (X, y), (Xv, yv) = imbalanced
    auroc = {}
    for name, changes in (("bce", {}), ("weighted_bce", {}),
                          ("focal", {"focal_alpha": 0.75, "focal_gamma": 2.0})):
        model, _, summary = train_cnn(X, y, Xv, yv, tiny(loss=name, epochs=8, **changes))
        auroc[name] = roc_auc_score(yv, predict(model, Xv))
        assert summary["config"]["loss"] == name
    assert min(auroc["weighted_bce"], auroc["focal"]) > 0.9, auroc
    assert auroc["weighted_bce"] > auroc["bce"] + 0.1, auroc


def test_train_rejects_unknown_loss(imbalanced):
    (X, y), (Xv, yv) = imbalanced
    with pytest.raises(InputError, match="unknown loss 'hinge'"):
        train_cnn(X, y, Xv, yv, tiny(loss="hinge"))
