"""Supervised training of a sequence CNN on the shared loop (:mod:`helixflow.fit`).

The model, optimizer and data are built here; each batch is gathered from the (memory-mapped)
shards and reverse-complement augmented; after each epoch the valid split (and a fixed subset
of the training windows) is scored; the kept weights are those of the best valid AUROC.

A run whose network scores every valid window the same has collapsed: its ReLUs are dead and
no gradient reaches them again (seen once on the full-size human MAX run, lr 3e-3: loss flat
from epoch 1, AUROC 0.500). It is stopped at that epoch and restarted with the next seed and
half the learning rate, at most ``restarts`` times; the record lists every restart.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from .device import resolve_device
from .errors import InputError
from .evaluate import auroc_or_nan
from .fit import FitSettings, Step, fit
from .losses import LOSSES, make_loss
from .models.cnn import BindingCNN, CNNConfig, n_parameters
from .seeding import seed_everything


@dataclass
class TrainConfig:
    """Optimisation settings; filled from the workflow's params."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 5               # 0 = no early stopping (train all epochs, keep the last)
    rows_per_epoch: int | None = None  # train on a fresh random subset of this many windows
    #                                   per epoch (a budget for big genomes); None = all
    rc_augment: bool = True
    rc_average: bool = True         # score = mean of forward and reverse-complement logits
    seed: int = 0
    threads: int = 1
    model: CNNConfig = field(default_factory=CNNConfig)
    loss: str = "bce"               # "bce", "weighted_bce" or "focal" (helixflow.losses)
    pos_weight: float | None = None  # weighted_bce: None = n_neg / n_pos of the training set
    focal_gamma: float = 2.0
    focal_alpha: float | None = 0.25  # focal: weight of positives (negatives 1 - alpha)
    train_eval_max: int | None = 10_000  # train metrics per epoch on at most this many
    #                                  training windows (a fixed seeded subset); None = all
    device: str = "auto"            # "auto" | "cpu" | "cuda" (helixflow.seeding.resolve_device)
    precision: str = "bf16"         # autocast on a GPU ("fp32" = none); a CPU runs fp32
    checkpoint: str | None = None   # per-epoch state to resume an interrupted run from
    restarts: int = 2               # new runs (next seed, half the lr) after a collapse


class CollapsedNetworkError(RuntimeError):
    """The network gives every valid window the same score after ``epoch``: dead units."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        super().__init__(f"the network scores every valid window the same after epoch "
                         f"{epoch} (its units are dead; training cannot revive them)")


def is_constant(logits: np.ndarray) -> bool:
    """Whether ``logits`` (more than one) are all equal up to float rounding."""
    if len(logits) < 2:
        return False
    return float(np.ptp(logits)) <= 1e-6 * max(1.0, float(np.abs(logits).max()))


def rc(X: torch.Tensor) -> torch.Tensor:
    """Reverse complement a one-hot batch, shape=(n, 4, L)."""
    return X.flip(1).flip(2)


# Positions (windows × length) scored at once: 512 windows of 200 bp (the yeast default),
# 102 of 1 kb, so that scoring memory follows the positions (a 256-filter model scoring 512
# 1-kb windows at once held ~1 GB of activations).
PREDICT_POSITIONS = 512 * 200


def predict_batch(length: int) -> int:
    """Windows of ``length`` scored at once (:data:`PREDICT_POSITIONS`)."""
    return max(1, PREDICT_POSITIONS // max(length, 1))


@torch.no_grad()
def predict(model: BindingCNN, X: np.ndarray, batch_size: int | None = None,
            rc_average: bool = True) -> np.ndarray:
    """Logits for one-hot ``X`` (uint8, shape=(n, 4, L), may be a memmap), optionally
    strand-averaged; only one batch (default :func:`predict_batch`) is converted to float at
    a time."""
    model.eval()
    batch_size = batch_size or predict_batch(X.shape[-1])
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(X), batch_size):
        xb = torch.from_numpy(np.asarray(X[i:i + batch_size], dtype=np.float32)).to(device)
        logit = model(xb).float()
        if rc_average:
            logit = (logit + model(rc(xb)).float()) / 2
        out.append(logit.cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)



def _loss(logits: np.ndarray, y: np.ndarray) -> float:
    return float(nn.functional.binary_cross_entropy_with_logits(
        torch.from_numpy(logits), torch.from_numpy(y.astype(np.float32))))


def gather_batch(X: np.ndarray, rows: torch.Tensor, rc_augment: bool,
                 generator: torch.Generator) -> torch.Tensor:
    """The float batch of one-hot ``X[rows]`` (X may be a memmap), each window reverse-
    complemented with probability 1/2 (drawn from ``generator``) when ``rc_augment``."""
    xb = torch.from_numpy(np.asarray(X[rows.numpy()], dtype=np.float32))
    if rc_augment:
        flip = torch.rand(len(rows), generator=generator) < 0.5
        xb = torch.where(flip[:, None, None], rc(xb), xb)
    return xb


def train_eval_rows(n: int, limit: int | None, seed: int) -> np.ndarray:
    """Sorted rows of the training split scored each epoch: all, or a fixed seeded subset of
    ``limit`` (its own generator, so the training draws do not depend on it)."""
    if limit is None or n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def train_cnn(X_train: np.ndarray, y_train: np.ndarray, X_valid: np.ndarray,
              y_valid: np.ndarray, cfg: TrainConfig,
              log=sys.stderr) -> tuple[BindingCNN, pd.DataFrame, dict]:
    """Train a :class:`BindingCNN` with :func:`helixflow.fit.fit`; returns (best model,
    per-epoch history, summary).

    ``X_*``: uint8 one-hot, shape=(n, 4, L), typically memory-mapped shards (each batch is
    gathered and converted to float on its own); ``y_*``: 0/1, shape=(n,). The history has
    epoch, train_loss, train_auroc, valid_loss, valid_auroc, seconds (train metrics are
    measured in eval mode, so they compare with valid, on the training windows or at most
    ``cfg.train_eval_max`` of them). A collapsed run restarts (module docstring); the
    summary's ``config`` is the run that was kept, ``restarts`` the collapsed ones.
    """
    for split, labels in (("train", y_train), ("valid", y_valid)):
        if not 0 < int(np.sum(labels)) < len(labels):
            raise InputError(f"the {split} split has {int(np.sum(labels))} positives among "
                             f"{len(labels)} windows; AUROC needs both classes",
                             fix="move chromosomes with peaks into that split ('splits' in "
                             "the config)")
    if cfg.loss not in LOSSES:
        raise InputError(f"unknown loss {cfg.loss!r}", fix="use one of " + ", ".join(LOSSES))
    restarts: list[dict] = []
    for attempt in range(cfg.restarts + 1):
        run = restart_config(cfg, attempt)
        try:
            return _train_once(X_train, y_train, X_valid, y_valid, run, restarts,
                               attempt == cfg.restarts, log)
        except CollapsedNetworkError as dead:
            restarts.append({"seed": run.seed, "lr": run.lr, "collapsed_after_epoch": dead.epoch})
            after = restart_config(cfg, attempt + 1)
            print(f"{dead}: restarting with seed {after.seed} and lr {after.lr:g}", file=log,
                  flush=True)
    raise AssertionError("unreachable: the last run never raises CollapsedNetworkError")


def restart_config(cfg: TrainConfig, attempt: int) -> TrainConfig:
    """The settings of run ``attempt`` (0 = ``cfg``): the next seed, half the lr each time."""
    return cfg if attempt == 0 else replace(cfg, seed=cfg.seed + attempt,
                                            lr=cfg.lr / 2 ** attempt)


def _train_once(X_train: np.ndarray, y_train: np.ndarray, X_valid: np.ndarray,
                y_valid: np.ndarray, cfg: TrainConfig, restarts: list[dict], last: bool,
                log) -> tuple[BindingCNN, pd.DataFrame, dict]:
    """One training run of :func:`train_cnn`; raises :class:`CollapsedNetworkError` at the
    first epoch whose valid scores are all equal, unless it is the ``last`` run, which
    completes (and says in its summary whether it collapsed: a constant model scores AUROC
    0.5, an honest result for a task the network cannot learn)."""
    device = resolve_device(cfg.device)
    generator = seed_everything(cfg.seed, cfg.threads, device)
    model = BindingCNN(cfg.model).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = make_loss(cfg.loss, torch.from_numpy(np.asarray(y_train, dtype=np.float32)),
                        cfg.pos_weight, cfg.focal_gamma, cfg.focal_alpha)
    y = torch.from_numpy(np.asarray(y_train, dtype=np.float32))
    scored = train_eval_rows(len(y_train), cfg.train_eval_max, cfg.seed)
    X_scored, y_scored = np.asarray(X_train[scored]), np.asarray(y_train)[scored]
    epochs_done = [0]

    def step(rows: torch.Tensor) -> Step:
        xb = gather_batch(X_train, rows, cfg.rc_augment, generator)
        return Step(loss_fn(model(xb.to(device)), y[rows].to(device)), len(rows))

    def evaluate(model: BindingCNN) -> dict:
        epochs_done[0] += 1
        valid_logits = predict(model, X_valid, rc_average=cfg.rc_average)
        if is_constant(valid_logits) and not last:
            raise CollapsedNetworkError(epochs_done[0])
        train_logits = predict(model, X_scored, rc_average=cfg.rc_average)
        return {"train_loss": _loss(train_logits, y_scored),
                "train_auroc": auroc_or_nan(y_scored, train_logits),
                "valid_loss": _loss(valid_logits, y_valid),
                "valid_auroc": auroc_or_nan(y_valid, valid_logits)}

    settings = FitSettings(epochs=cfg.epochs, batch_size=cfg.batch_size, patience=cfg.patience,
                           keep="best" if cfg.patience else "last", precision=cfg.precision,
                           rows_per_epoch=cfg.rows_per_epoch,
                           checkpoint=Path(cfg.checkpoint) if cfg.checkpoint else None)
    result = fit(model, optimizer, step, len(y), settings, generator, evaluate, log=log)
    chosen = result.chosen
    summary = {"n_params": n_parameters(model), "epochs_run": len(result.history),
               "best_epoch": int(chosen["epoch"]), "valid_auroc": float(chosen["valid_auroc"]),
               "train_auroc": float(chosen["train_auroc"]), "seconds": result.seconds,
               "device": str(device), "restarts": restarts,
               "collapsed": last and is_constant(predict(model, X_valid,
                                                         rc_average=cfg.rc_average)),
               "config": asdict(cfg)}
    if summary["collapsed"]:
        print(f"warning: after {len(restarts)} restarts the kept network still scores every "
              "valid window the same (AUROC 0.5); lower 'lr' in the training settings",
              file=log, flush=True)
    return model.cpu(), result.history, summary


def make_config(architecture: dict, training: dict, overrides: dict | None = None,
                seed: int = 0, threads: int = 1, window: int | None = None) -> TrainConfig:
    """A :class:`TrainConfig` from the workflow's dicts; ``overrides`` may touch either part.

    ``window`` (the shards' window width) sets the model's input length.
    """
    arch, opt = dict(architecture), dict(training)
    if window is not None:
        arch["window"] = window
    for key, value in (overrides or {}).items():
        if key in ("seed", "threads", "model"):
            raise KeyError(f"'{key}' cannot be set per grid entry; set it at the top level")
        if key in CNNConfig.__dataclass_fields__:
            arch[key] = value
        elif key in TrainConfig.__dataclass_fields__:
            opt[key] = value
        else:
            raise KeyError(f"unknown CNN setting '{key}' in the grid")
    return TrainConfig(**opt, seed=seed, threads=threads, model=CNNConfig(**arch))


def select_on_valid(X_train: np.ndarray, y_train: np.ndarray, X_valid: np.ndarray,
                    y_valid: np.ndarray, candidates: list[TrainConfig],
                    log=sys.stderr) -> tuple[BindingCNN, pd.DataFrame, dict, pd.DataFrame]:
    """Train every candidate; keep the one with the best valid AUROC (the test split is unseen).

    Returns (model, its history, its summary, one row per candidate).
    """
    best = None
    rows = []
    for i, cfg in enumerate(candidates):
        print(f"candidate {i + 1}/{len(candidates)}: {asdict(cfg.model)} lr={cfg.lr}",
              file=log, flush=True)
        model, history, summary = train_cnn(X_train, y_train, X_valid, y_valid, cfg, log=log)
        rows.append({"candidate": i, **asdict(cfg.model), "lr": cfg.lr,
                     "weight_decay": cfg.weight_decay, "n_params": summary["n_params"],
                     "best_epoch": summary["best_epoch"], "valid_auroc": summary["valid_auroc"],
                     "restarts": len(summary["restarts"])})
        if best is None or summary["valid_auroc"] > best[2]["valid_auroc"]:
            best = (model, history, summary)
    table = pd.DataFrame(rows)
    table["chosen"] = table["valid_auroc"] == best[2]["valid_auroc"]
    table.loc[table["chosen"].cumsum() > 1, "chosen"] = False
    return best[0], best[1], best[2], table
