"""Tests for helixflow.models.cnn and helixflow.train: shapes, save/load, learning, determinism."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from helixflow.encode import one_hot_batch, reverse_complement
from helixflow.models.cnn import BindingCNN, CNNConfig, load_model, n_parameters, save_model
from helixflow.train import (
    TrainConfig,
    is_constant,
    make_config,
    predict,
    rc,
    select_on_valid,
    train_cnn,
)

MOTIF = "TTACCCGG"
LENGTH = 100
HISTORY_COLUMNS = ["epoch", "train_loss", "train_auroc", "valid_loss", "valid_auroc", "seconds"]


pytestmark = pytest.mark.usefixtures("restore_torch_state")


def planted(n: int, seed: int, motif: str = MOTIF) -> tuple[np.ndarray, np.ndarray]:
    """Random sequences; the odd-indexed half carry ``motif`` (either strand) at a random place."""
    rng = np.random.default_rng(seed)
    seqs, y = [], np.arange(n) % 2
    rc_motif = motif[::-1].translate(str.maketrans("ACGT", "TGCA"))
    for label in y:
        seq = list(rng.choice(list("ACGT"), LENGTH))
        if label:
            at = int(rng.integers(0, LENGTH - len(motif) + 1))
            seq[at:at + len(motif)] = motif if rng.random() < 0.5 else rc_motif
        seqs.append("".join(seq))
    return one_hot_batch(seqs), y.astype(np.uint8)


@pytest.fixture(scope="module")
def data():
    X_train, y_train = planted(400, seed=1)
    X_valid, y_valid = planted(200, seed=2)
    return X_train, y_train, X_valid, y_valid


def tiny(**changes) -> TrainConfig:
    model = CNNConfig(window=LENGTH, filters=8, kernel=9, pool=0, dense=0, dropout=0.0)
    cfg = TrainConfig(epochs=6, batch_size=32, lr=0.01, weight_decay=0.0, patience=0, seed=0,
                      threads=1, model=model)
    for key, value in changes.items():
        if key in CNNConfig.__dataclass_fields__:
            setattr(cfg.model, key, value)
        else:
            setattr(cfg, key, value)
    return cfg


def weights_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------- model


@pytest.mark.parametrize(("filters", "kernel", "pool", "dense"), [
    (4, 5, 0, 0), (8, 9, 4, 16), (3, 1, 10, 0), (16, 19, 0, 32), (2, 24, 7, 3),
])
def test_binding_cnn_output_shape(filters, kernel, pool, dense):
    cfg = CNNConfig(window=LENGTH, filters=filters, kernel=kernel, pool=pool, dense=dense)
    model = BindingCNN(cfg).eval()
    X = torch.from_numpy(planted(7, seed=0)[0].astype(np.float32))
    assert model(X).shape == (7,)
    assert model.activations(X).shape == (7, filters, LENGTH - kernel + 1)
    assert (model.activations(X) >= 0).all()
    assert n_parameters(model) == sum(p.numel() for p in model.parameters()) > 0


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = BindingCNN(CNNConfig(window=LENGTH, filters=6, kernel=7, pool=5, dense=4)).eval()
    save_model(model, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json",
                                                                   "model.safetensors"]
    loaded = load_model(tmp_path / "m")
    assert not loaded.training
    assert loaded.config == model.config
    assert weights_equal(model, loaded)
    X = planted(50, seed=3)[0]
    np.testing.assert_array_equal(predict(loaded, X), predict(model, X))
    np.testing.assert_array_equal(predict(loaded, X, rc_average=False),
                                  predict(model, X, rc_average=False))


# ---------------------------------------------------------------- predict and rc


def test_rc_matches_numpy_reverse_complement():
    X = planted(5, seed=4)[0]
    np.testing.assert_array_equal(rc(torch.from_numpy(X)).numpy(), reverse_complement(X))


def test_predict_rc_average_is_strand_invariant():
    torch.manual_seed(1)
    model = BindingCNN(CNNConfig(window=LENGTH, filters=8, kernel=9, pool=4, dense=8))
    X = planted(64, seed=5)[0]
    X[:, :, 10:13] = 0                                   # some N columns too
    X_rc = np.ascontiguousarray(reverse_complement(X))
    both = predict(model, X)
    np.testing.assert_allclose(both, predict(model, X_rc), atol=1e-5)
    np.testing.assert_allclose(both, predict(model, reverse_complement(X)), atol=1e-5)
    forward = predict(model, X, rc_average=False)
    backward = predict(model, X_rc, rc_average=False)
    assert np.abs(forward - backward).max() > 1e-3      # so the averaging is what makes it equal
    np.testing.assert_allclose(both, (forward + backward) / 2, atol=1e-6)


def test_predict_is_batch_independent_and_eval_mode():
    torch.manual_seed(2)
    model = BindingCNN(CNNConfig(window=LENGTH, filters=4, kernel=5, dropout=0.5))
    model.train()
    X = planted(50, seed=6)[0]
    full = predict(model, X)
    assert not model.training
    np.testing.assert_allclose(predict(model, X, batch_size=7), full, atol=1e-6)
    np.testing.assert_array_equal(predict(model, X), full)   # dropout is off
    assert predict(model, X[:0]).shape == (0,)


# ---------------------------------------------------------------- train_cnn


def test_learns_planted_motif(data):
    model, history, summary = train_cnn(*data, tiny(), log=io.StringIO())
    X_valid, y_valid = data[2], data[3]
    assert summary["valid_auroc"] > 0.9
    assert roc_auc_score(y_valid, predict(model, X_valid)) == pytest.approx(
        summary["valid_auroc"])
    assert history["valid_auroc"].iloc[-1] > history["valid_auroc"].iloc[0] - 1e-9
    assert summary["n_params"] == n_parameters(model)


def test_history_columns_and_epochs(data):
    _, history, summary = train_cnn(*data, tiny(epochs=3), log=io.StringIO())
    assert list(history.columns) == HISTORY_COLUMNS
    assert history["epoch"].tolist() == [1, 2, 3]
    assert (history["seconds"] >= 0).all()
    assert history[["train_auroc", "valid_auroc"]].stack().between(0, 1).all()
    assert summary["epochs_run"] == 3
    assert summary["best_epoch"] == 3                      # patience 0 keeps the last epoch


def test_same_seed_same_run_other_seed_other_weights(data):
    log = io.StringIO()
    m1, h1, _ = train_cnn(*data, tiny(epochs=3, dropout=0.2), log=log)
    m2, h2, _ = train_cnn(*data, tiny(epochs=3, dropout=0.2), log=log)
    m3, _, _ = train_cnn(*data, tiny(epochs=3, dropout=0.2, seed=1), log=log)
    cols = [c for c in HISTORY_COLUMNS if c != "seconds"]
    assert h1[cols].equals(h2[cols])
    assert weights_equal(m1, m2)
    assert not weights_equal(m1, m3)


def test_early_stopping_on_random_labels(data):
    rng = np.random.default_rng(0)
    X_train, _, X_valid, _ = data
    y_train = rng.integers(0, 2, len(X_train)).astype(np.uint8)
    y_valid = rng.integers(0, 2, len(X_valid)).astype(np.uint8)
    cfg = tiny(epochs=40, patience=2, lr=0.02)
    model, history, summary = train_cnn(X_train, y_train, X_valid, y_valid, cfg,
                                        log=io.StringIO())
    assert summary["epochs_run"] < cfg.epochs
    best = int(history["valid_auroc"].idxmax())
    assert summary["best_epoch"] == history["epoch"].iloc[best]
    # stopped exactly ``patience`` epochs after the best one
    assert summary["epochs_run"] == summary["best_epoch"] + cfg.patience
    # and the returned weights are the best epoch's, not the last epoch's
    assert roc_auc_score(y_valid, predict(model, X_valid)) == pytest.approx(
        history["valid_auroc"].iloc[best])
    assert summary["valid_auroc"] == history["valid_auroc"].max()


def test_train_log_lines(data):
    log = io.StringIO()
    train_cnn(*data, tiny(epochs=2), log=log)
    lines = [line for line in log.getvalue().splitlines() if line.startswith("epoch")]
    assert len(lines) == 2


# ---------------------------------------------------------------- config and selection


def test_make_config_routes_overrides():
    arch = {"filters": 32, "kernel": 19, "pool": 0, "dense": 32, "dropout": 0.2}
    training = {"epochs": 60, "batch_size": 64, "lr": 0.003, "weight_decay": 1e-4,
                "patience": 8, "rc_augment": True, "rc_average": True}
    cfg = make_config(arch, training, {"filters": 64, "lr": 0.01}, seed=3, threads=2,
                      window=150)
    assert cfg.model.filters == 64 and cfg.model.kernel == 19 and cfg.model.window == 150
    assert cfg.lr == 0.01 and cfg.epochs == 60 and cfg.seed == 3 and cfg.threads == 2
    assert arch["filters"] == 32 and training["lr"] == 0.003        # inputs untouched
    with pytest.raises(KeyError, match="filtres"):
        make_config(arch, training, {"filtres": 8})


def test_select_on_valid_picks_max_and_marks_one(data):
    candidates = [tiny(epochs=1, lr=1e-5, filters=1),               # barely trained
                  tiny(epochs=4),
                  tiny(epochs=4),                                  # an exact tie with #1
                  tiny(epochs=2, filters=2, seed=5)]
    model, history, summary, table = select_on_valid(*data, candidates, log=io.StringIO())
    assert len(table) == 4
    assert table["chosen"].sum() == 1
    best = int(table["valid_auroc"].idxmax())                       # first of the maxima
    assert table["chosen"].tolist() == [i == best for i in range(4)]
    assert table.loc[1, "valid_auroc"] == table.loc[2, "valid_auroc"]
    assert summary["valid_auroc"] == table["valid_auroc"].max()
    assert model.config.filters == table.loc[best, "filters"]
    assert len(history) == candidates[best].epochs
    assert roc_auc_score(data[3], predict(model, data[2])) == pytest.approx(
        summary["valid_auroc"])
    assert {"candidate", "filters", "lr", "n_params", "best_epoch", "valid_auroc",
            "chosen"} <= set(table.columns)


def test_memmapped_training_split_gives_the_same_model(data, tmp_path):
    """Batches gathered from a memory-mapped shard train exactly as from an array in memory."""
    X_train, y_train, X_valid, y_valid = data
    np.save(tmp_path / "x.npy", X_train)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    m1, h1, _ = train_cnn(X_train, y_train, X_valid, y_valid, tiny(epochs=2), log=io.StringIO())
    m2, h2, _ = train_cnn(mapped, y_train, X_valid, y_valid, tiny(epochs=2), log=io.StringIO())
    assert isinstance(mapped, np.memmap)
    assert weights_equal(m1, m2)
    assert h1.drop(columns="seconds").equals(h2.drop(columns="seconds"))


def test_train_metrics_on_a_capped_subset_leave_training_unchanged(data):
    """train_eval_max only changes which windows the logged train metrics use."""
    full_model, full, _ = train_cnn(*data, tiny(epochs=2), log=io.StringIO())
    capped_model, capped, _ = train_cnn(*data, tiny(epochs=2, train_eval_max=50),
                                        log=io.StringIO())
    assert weights_equal(full_model, capped_model)
    assert full["valid_auroc"].equals(capped["valid_auroc"])
    assert not full["train_loss"].equals(capped["train_loss"])


def test_train_eval_rows_fixed_sorted_subset():
    from helixflow.train import train_eval_rows
    np.testing.assert_array_equal(train_eval_rows(5, 10, 0), np.arange(5))
    np.testing.assert_array_equal(train_eval_rows(5, None, 0), np.arange(5))
    rows = train_eval_rows(1000, 100, 3)
    assert len(np.unique(rows)) == 100 and (np.diff(rows) > 0).all()
    np.testing.assert_array_equal(rows, train_eval_rows(1000, 100, 3))


def test_global_pool_model_scores_other_widths():
    """pool 0 is a global max that adapts: a model trained on 100 bp scores 250 bp windows."""
    model = BindingCNN(CNNConfig(window=LENGTH, filters=4, kernel=9, pool=0, dense=8)).eval()
    X = torch.from_numpy(planted(6, seed=5)[0].astype(np.float32))
    longer = torch.zeros(6, 4, 250)
    longer[:, :, 70:70 + LENGTH] = X
    assert model(X).shape == model(longer).shape == (6,)


# ---------------------------------------------------------------- collapsed runs


def test_is_constant_allows_only_rounding():
    assert is_constant(np.full(5, -1.386, dtype=np.float32))
    assert is_constant(np.array([2.0, 2.0 + 1e-9]))
    assert not is_constant(np.array([2.0, 2.001]))
    assert not is_constant(np.array([0.3]))                 # one score is no evidence


def dead_for(monkeypatch, n_dead: int) -> list[int]:
    """Make the first ``n_dead`` networks :func:`train_cnn` builds dead from the start (every
    first-layer unit below zero on any input: a ReLU that no gradient reaches); returns the
    list that grows by one per network built."""
    built: list[int] = []

    def build(config: CNNConfig) -> BindingCNN:
        model = BindingCNN(config)
        if len(built) < n_dead:
            with torch.no_grad():
                model.conv.bias.fill_(-1e3)
        built.append(1)
        return model

    monkeypatch.setattr("helixflow.train.BindingCNN", build)
    return built


def test_collapsed_run_restarts_with_next_seed_and_half_lr(data, monkeypatch):
    built = dead_for(monkeypatch, 1)
    log = io.StringIO()
    cfg = tiny(seed=7)
    model, history, summary = train_cnn(*data, cfg, log=log)
    assert len(built) == 2
    assert summary["restarts"] == [{"seed": 7, "lr": 0.01, "collapsed_after_epoch": 1}]
    assert summary["config"]["seed"] == 8 and summary["config"]["lr"] == 0.005
    assert not summary["collapsed"]
    assert summary["valid_auroc"] > 0.9                     # the restart learned the motif
    assert history["epoch"].tolist() == list(range(1, cfg.epochs + 1))
    assert "restarting with seed 8 and lr 0.005" in log.getvalue()
    assert (cfg.seed, cfg.lr) == (7, 0.01)                  # the caller's config is untouched


def test_a_run_that_always_collapses_completes_and_says_so(data, monkeypatch):
    built = dead_for(monkeypatch, 10)
    log = io.StringIO()
    _, history, summary = train_cnn(*data, tiny(restarts=1, epochs=2), log=log)
    assert len(built) == 2
    assert [r["seed"] for r in summary["restarts"]] == [0]
    assert summary["collapsed"]
    assert summary["valid_auroc"] == 0.5
    assert history["valid_auroc"].eq(0.5).all()
    assert "still scores every valid window the same" in log.getvalue()


def test_select_on_valid_counts_restarts(data, monkeypatch):
    dead_for(monkeypatch, 1)
    *_, table = select_on_valid(*data, [tiny(epochs=2), tiny(epochs=2, lr=0.02)],
                                log=io.StringIO())
    assert table["restarts"].tolist() == [1, 0]
