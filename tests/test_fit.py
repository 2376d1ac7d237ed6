"""The shared training loop: kept weights, early stopping, resume after an interruption."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from torch import nn

from helixflow.fit import FitSettings, Step, fit
from helixflow.seeding import seed_everything


class JobKilledError(Exception):
    pass


def problem(seed: int = 0):
    """A tiny logistic regression with dropout (so the global torch RNG matters too) and a
    numpy augmentation stream (so the trainer's own generators matter)."""
    rng_data = np.random.default_rng(0)
    X = torch.from_numpy(rng_data.normal(size=(96, 5)).astype(np.float32))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).float()
    generator = seed_everything(seed, 1)
    model = nn.Sequential(nn.Dropout(0.2), nn.Linear(5, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05)
    rng = np.random.default_rng(seed)
    return X, y, generator, model, optimizer, rng


def run(tmp_path=None, epochs: int = 6, interrupt_at: int | None = None, **settings):
    X, y, generator, model, optimizer, rng = problem()
    calls = {"epoch": 0}

    def step(rows):
        noise = torch.from_numpy(rng.normal(0, 0.1, size=(len(rows), 5)).astype(np.float32))
        logits = model(X[rows] + noise).squeeze(-1)
        return Step(nn.functional.binary_cross_entropy_with_logits(logits, y[rows]), len(rows))

    def evaluate(model):
        calls["epoch"] += 1
        if calls["epoch"] == interrupt_at:
            raise JobKilledError
        logits = model(X).squeeze(-1)
        return {"valid_loss": float(nn.functional.binary_cross_entropy_with_logits(logits, y))}

    checkpoint = tmp_path / "ckpt.pt" if tmp_path is not None else None
    cfg = FitSettings(epochs=epochs, batch_size=16, monitor="valid_loss",
                      higher_is_better=False, checkpoint=checkpoint, **settings)
    result = fit(model, optimizer, step, len(X), cfg, generator, evaluate, rngs=[rng],
                 log=io.StringIO())
    return model, result


def weights(model):
    return [p.detach().clone() for p in model.state_dict().values()]


def test_resumed_run_equals_an_uninterrupted_one(tmp_path):
    whole, whole_result = run()
    with pytest.raises(JobKilledError):
        run(tmp_path, interrupt_at=4)
    assert (tmp_path / "ckpt.pt").exists()                     # epochs 1-3 were saved
    resumed, resumed_result = run(tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(weights(whole), weights(resumed), strict=True))
    columns = ["epoch", "train_loss", "valid_loss"]
    assert whole_result.history[columns].equals(resumed_result.history[columns])
    assert resumed_result.best_epoch == whole_result.best_epoch
    assert not (tmp_path / "ckpt.pt").exists(), "a finished run leaves no checkpoint"


def test_checkpoint_of_another_run_is_ignored(tmp_path):
    with pytest.raises(JobKilledError):
        run(tmp_path, interrupt_at=3, patience=0)
    fresh, fresh_result = run()                   # the uninterrupted run with other settings
    other, other_result = run(tmp_path, patience=2)           # differs from the checkpoint's
    assert len(other_result.history) >= 3 and other_result.history["epoch"].iloc[0] == 1
    assert other_result.history["valid_loss"].iloc[0] == fresh_result.history["valid_loss"].iloc[0]


def test_keeps_the_best_epoch_and_stops_after_patience():
    scores = iter([0.5, 0.7, 0.6, math.nan, 0.65, 0.9])
    model = nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = {}

    def step(rows):
        return Step((model(torch.ones(len(rows), 1)) ** 2).mean(), len(rows))

    def evaluate(model):
        score = next(scores)
        seen[score] = model.weight.detach().clone()
        return {"valid_auroc": score}

    result = fit(model, optimizer, step, 8, FitSettings(epochs=6, batch_size=4, patience=3),
                 torch.Generator().manual_seed(0), evaluate, log=io.StringIO())
    assert list(result.history["epoch"]) == [1, 2, 3, 4, 5]      # 3 epochs without a gain
    assert result.best_epoch == 2 and result.best_score == 0.7    # NaN never counts as better
    assert torch.equal(model.weight, seen[0.7])
    assert result.chosen["valid_auroc"] == 0.7


def test_keep_last_and_a_start_to_beat():
    model = nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    start_state = {k: v.clone() for k, v in model.state_dict().items()}

    def step(rows):
        return Step((model(torch.ones(len(rows), 1)) - 3).pow(2).mean(), len(rows))

    def evaluate(model):
        return {"valid_auroc": 0.6}

    result = fit(model, optimizer, step, 8, FitSettings(epochs=3, batch_size=4),
                 torch.Generator().manual_seed(0), evaluate, start=(0.8, start_state),
                 log=io.StringIO())
    assert result.best_epoch == 0 and result.best_score == 0.8
    assert all(torch.equal(model.state_dict()[k], v) for k, v in start_state.items())
    result = fit(model, optimizer, step, 8, FitSettings(epochs=3, batch_size=4, keep="last"),
                 torch.Generator().manual_seed(0), evaluate, log=io.StringIO())
    assert result.best_epoch == 3


def test_min_batches_needs_a_long_enough_shuffle():
    model = nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    settings = FitSettings(epochs=1, batch_size=4, monitor=None, min_batches=5)
    sizes = []

    def step(rows):
        sizes.append(len(rows))
        return Step(model(torch.ones(len(rows), 1)).mean(), len(rows))

    with pytest.raises(ValueError, match="shuffle"):
        fit(model, optimizer, step, 8, settings, torch.Generator(), log=io.StringIO())
    generator = torch.Generator().manual_seed(0)
    fit(model, optimizer, step, 8, settings, generator, log=io.StringIO(),
        shuffle=lambda: torch.cat([torch.randperm(8, generator=generator) for _ in range(3)])[:20])
    assert sizes == [4] * 5


def test_the_mean_loss_is_weighted_and_skipped_batches_do_not_count():
    model = nn.Linear(1, 1, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    losses = iter([1.0, None, 4.0])

    def step(rows):
        value = next(losses)
        if value is None:
            return None
        return Step(model.weight.sum() * 0 + value, weight=3 if value == 1.0 else 1)

    result = fit(model, optimizer, step, 9, FitSettings(epochs=1, batch_size=3, monitor=None),
                 torch.Generator(), log=io.StringIO(), shuffle=lambda: torch.arange(9))
    assert result.history["train_loss"].iloc[0] == pytest.approx((3 * 1.0 + 4.0) / 4)


def test_rows_per_epoch_trains_each_epoch_on_a_fresh_subset():
    X, y, generator, model, optimizer, _ = problem()
    seen: list[list[int]] = []

    def step(rows):
        seen[-1].extend(rows.tolist())
        logits = model(X[rows]).squeeze(-1)
        return Step(nn.functional.binary_cross_entropy_with_logits(logits, y[rows]), len(rows))

    def evaluate(model):
        seen.append([])
        return {"valid_loss": 0.0}

    seen.append([])
    cfg = FitSettings(epochs=3, batch_size=16, monitor="valid_loss", higher_is_better=False,
                      rows_per_epoch=40)
    fit(model, optimizer, step, len(X), cfg, generator, evaluate, log=io.StringIO())
    epochs = [set(rows) for rows in seen[:3]]
    assert [len(rows) for rows in seen[:3]] == [40, 40, 40]       # 3 batches: 16 + 16 + 8
    assert all(len(rows) == 40 for rows in epochs), "no row twice within an epoch"
    assert epochs[0] != epochs[1] != epochs[2], "each epoch draws its own subset"
    assert len(set().union(*epochs)) > 40
