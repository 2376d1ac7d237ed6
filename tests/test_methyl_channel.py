"""Tests for helixflow.methyl_channel and the in_channels option of BindingCNN."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from helixflow.encode import decode, one_hot_batch
from helixflow.methyl_channel import (
    cpg_positions,
    methylation_track,
    planted_methylation_data,
    with_methylation,
)
from helixflow.models.cnn import BindingCNN, CNNConfig, load_model, save_model
from helixflow.train import TrainConfig, predict, train_cnn

pytestmark = pytest.mark.usefixtures("restore_torch_state")


def test_methylation_track_encoding():
    track = methylation_track(np.array([101, 104, 99, 120]), np.array([0.25, np.nan, 1.0, 0.5]),
                              start=100, length=10)
    assert track.dtype == np.float32 and track.shape == (10,)
    assert track.tolist() == [0, 0.25, 0, 0, 0, 0, 0, 0, 0, 0]  # NaN → 0; outside ignored
    with pytest.raises(ValueError, match="0..1"):
        methylation_track(np.array([1]), np.array([50.0]), 0, 10)


def test_with_methylation_stacks_a_fifth_channel():
    X = one_hot_batch(["ACGTACGT", "CCGGAATT"])
    M = np.arange(16, dtype=np.float32).reshape(2, 8) / 16
    X5 = with_methylation(X, M)
    assert X5.shape == (2, 5, 8) and X5.dtype == np.float32
    assert (X5[:, :4] == X).all() and (X5[:, 4] == M).all()
    with pytest.raises(ValueError):
        with_methylation(X, M[:, :4])


def test_planted_data_has_motif_in_both_classes():
    X, y = planted_methylation_data(200, length=60, seed=1)
    assert X.shape == (200, 5, 60) and y.tolist() == [0, 1] * 100
    for x, label in zip(X, y, strict=True):
        seq = decode(x[:4].astype(np.uint8))
        at = seq.find("CACGTG")
        assert at >= 0 and seq.find("CACGTG", at + 1) < 0
        assert set(np.flatnonzero(x[4])) <= set(cpg_positions(seq))  # only CpG Cs carry beta
        beta = x[4, at + 2]  # the C of CACGTG's CpG
        assert (beta <= 0.2) if label else (beta >= 0.8)


def test_config_without_in_channels_loads_as_four(tmp_path):
    save_model(BindingCNN(CNNConfig(window=50, kernel=5, filters=4, dense=0)), tmp_path)
    fields = json.loads((tmp_path / "config.json").read_text())
    assert fields.pop("in_channels") == 4
    (tmp_path / "config.json").write_text(json.dumps(fields))  # as written before the option
    assert load_model(tmp_path).conv.in_channels == 4
    model = BindingCNN(CNNConfig(window=50, kernel=5, filters=4, dense=0, in_channels=5))
    assert model(torch.zeros(3, 5, 50)).shape == (3,)


def test_methylation_channel_is_needed_to_separate_classes():
    X, y = planted_methylation_data(2500, length=60, seed=0)
    X_train, y_train, X_valid, y_valid = X[:2000], y[:2000], X[2000:], y[2000:]
    auroc = {}
    for channels in (5, 4):
        cfg = TrainConfig(epochs=12, batch_size=64, lr=3e-3, patience=4, rc_augment=False,
                          rc_average=False, seed=0, threads=1,
                          model=CNNConfig(window=60, filters=16, kernel=8, pool=0, dense=16,
                                          dropout=0.1, in_channels=channels))
        model, _, summary = train_cnn(X_train[:, :channels], y_train, X_valid[:, :channels],
                                      y_valid, cfg, log=io.StringIO())
        scores = predict(model, X_valid[:, :channels], rc_average=False)
        auroc[channels] = roc_auc_score(y_valid, scores)
    print(f"valid AUROC: sequence + methylation {auroc[5]:.3f}, sequence only {auroc[4]:.3f}")
    assert auroc[5] > 0.9
    assert 0.4 < auroc[4] < 0.6
