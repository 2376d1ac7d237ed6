"""The one training loop every HelixFlow trainer uses (pretraining keeps its DDP loop).

A trainer brings its model, optimizer and a ``step(rows)`` that returns the loss of one batch
of training rows; ``fit`` does the rest, readable top to bottom:

    for each epoch:
        shuffle the training rows (the trainer's seeded generator)
        for each batch: step → backward → optimizer step   (bf16 autocast on a GPU if asked)
        evaluate on the valid split, log one line, keep the best weights, checkpoint
        stop after ``patience`` epochs without improvement
    load the kept weights

Long epochs print a progress line every ``progress_s`` seconds. With ``checkpoint`` set, the
state after every epoch (weights, optimizer, kept weights, history and every random stream)
is written atomically, and a run that finds a checkpoint of the same run resumes after its
last epoch with the same result as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd
import torch
from torch import nn

from .checkpoint import read_checkpoint, rng_state, set_rng_state, write_checkpoint


@dataclass
class Step:
    """One batch's result: the ``loss`` to minimise and its ``weight`` in the epoch's mean
    (e.g. the batch's windows). ``sums`` are the values the history averages over the epoch
    (each summed, then divided by the summed weights); by default the loss × weight."""

    loss: torch.Tensor
    weight: float = 1.0
    sums: dict[str, torch.Tensor] | None = None


@dataclass
class FitSettings:
    """How to loop. ``monitor`` is the history column that picks the kept weights (None: no
    validation, keep the last epoch); ``patience`` epochs without improvement stop the run
    (0 = never stop); ``keep`` is "best" (the best ``monitor`` epoch) or "last" (the last
    epoch, the choice when nothing stops the run early)."""

    epochs: int
    batch_size: int
    monitor: str | None = "valid_auroc"
    higher_is_better: bool = True
    patience: int = 0
    keep: str = "best"
    min_batches: int = 0              # at least this many batches per epoch (tiny subsets)
    rows_per_epoch: int | None = None  # an epoch trains on the first this many rows of its
    #                                   shuffle (a fresh subset each epoch); None = all rows
    loss_name: str = "train_loss"     # history column of the epoch's mean training loss
    precision: str = "fp32"           # "bf16": autocast on a CUDA device
    log_columns: Sequence[str] | None = None  # history columns in the log line (None = all)
    progress_s: float = 60.0          # progress line inside an epoch at most this often
    checkpoint: Path | None = None    # per-epoch state to resume from (deleted when done)
    max_grad_norm: float | None = None  # clip the gradients' global norm (recurrent nets)


@dataclass
class FitResult:
    history: pd.DataFrame             # one row per epoch: epoch, loss, evaluation, seconds
    best_epoch: int                   # epoch of the kept weights (0 = the ``start`` weights)
    best_score: float                 # its ``monitor`` value (NaN without one)
    seconds: float

    @property
    def chosen(self) -> pd.Series:
        """The history row of the kept weights."""
        return self.history.loc[self.history["epoch"] == self.best_epoch].iloc[0]


def autocast(device: torch.device, precision: str = "bf16") -> contextlib.AbstractContextManager:
    """bf16 autocast on a CUDA device when ``precision`` is "bf16"; a no-op otherwise."""
    enabled = device.type == "cuda" and precision == "bf16"
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=enabled) if enabled else \
        contextlib.nullcontext()


def fit(model: nn.Module, optimizer: torch.optim.Optimizer, step: Callable[[torch.Tensor], Step
        | None], n_rows: int, settings: FitSettings, generator: torch.Generator,
        evaluate: Callable[[nn.Module], dict] | None = None, *,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        shuffle: Callable[[], torch.Tensor] | None = None,
        rngs: Sequence[np.random.Generator] = (), start: tuple[float, dict] | None = None,
        device: torch.device | None = None, label: str = "",
        log: TextIO = sys.stderr) -> FitResult:
    """Train ``model`` on ``n_rows`` training rows and return the history; the model ends in
    eval mode with the kept weights.

    step(rows) → :class:`Step` for a batch of row indices (None skips the batch);
    evaluate(model) → dict of history columns, called in eval mode without gradients;
    shuffle() → the epoch's row order (default: a permutation drawn from ``generator``);
    rngs: the trainer's numpy generators, saved in checkpoints; start: (score, state) the
    kept weights must beat (epoch 0).
    """
    if settings.keep not in ("best", "last"):
        raise ValueError(f"keep must be 'best' or 'last', not {settings.keep!r}")
    device = device or next(model.parameters()).device
    shuffle = shuffle or (lambda: torch.randperm(n_rows, generator=generator))
    sign = 1.0 if settings.higher_is_better else -1.0
    keeper = {"score": start[0] if start else -math.inf * sign, "state": start[1] if start else
              None, "epoch": 0, "since": 0}
    rows: list[dict] = []
    first = 1
    identity = _identity(model, settings, n_rows) if settings.checkpoint else ""
    if settings.checkpoint is not None:
        resumed = _load_checkpoint(settings.checkpoint, identity, model, optimizer, scheduler,
                                   generator, rngs, log)
        if resumed is not None:
            rows, keeper = resumed["rows"], resumed["keeper"]
            first = len(rows) + 1
    started = time.time()
    for epoch in range(first, settings.epochs + 1):
        if rows and _should_stop(keeper, settings):
            break
        tic = time.time()
        model.train()
        order = shuffle()
        if settings.rows_per_epoch is not None:
            order = order[:settings.rows_per_epoch]
        means = _train_epoch(model, optimizer, step, order, settings, device,
                             f"{label}epoch {epoch}/{settings.epochs}", log)
        if scheduler is not None:
            scheduler.step()
        model.eval()
        row = {"epoch": epoch, **means}
        if evaluate is not None:
            with torch.no_grad(), autocast(device, settings.precision):
                row |= evaluate(model)
        row["seconds"] = time.time() - tic
        rows.append(row)
        improved = _update(keeper, model, row, epoch, settings, sign)
        print(_line(label, row, settings, improved), file=log, flush=True)
        if settings.checkpoint is not None:
            _save_checkpoint(settings.checkpoint, identity, model, optimizer, scheduler,
                             generator, rngs, rows, keeper)
        if _should_stop(keeper, settings):
            print(f"{label}early stop: {settings.monitor} not better for {settings.patience} "
                  "epochs", file=log, flush=True)
            break
    if keeper["state"] is not None and settings.keep == "best":
        model.load_state_dict(keeper["state"])
    model.eval()
    if settings.checkpoint is not None:
        settings.checkpoint.unlink(missing_ok=True)
    best = keeper["score"] if settings.monitor else math.nan
    return FitResult(pd.DataFrame(rows), keeper["epoch"], float(best),
                     time.time() - started)


def _train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, step: Callable, order:
                 torch.Tensor, settings: FitSettings, device: torch.device, label: str,
                 log: TextIO) -> dict[str, float]:
    """One pass over ``order`` (at least ``min_batches`` batches); the weighted mean loss and
    extras, summed on the device so that no batch waits for a host sync."""
    size = settings.batch_size
    n_batches = max(settings.min_batches, math.ceil(len(order) / size))
    if (n_batches - 1) * size >= len(order):   # min_batches needs a longer shuffle
        raise ValueError(f"{len(order)} rows give {math.ceil(len(order) / size)} batches, "
                         f"not {n_batches}: shuffle() must return enough rows")
    sums: dict[str, torch.Tensor] = {}
    weight, tic, shown = 0.0, time.time(), time.time()
    for b in range(n_batches):
        rows = order[b * size:(b + 1) * size]
        with autocast(device, settings.precision):
            out = step(rows)
        if out is None:
            continue
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        if settings.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
        optimizer.step()
        sums_of_batch = out.sums if out.sums is not None else \
            {settings.loss_name: out.loss.detach().double() * out.weight}
        for key, value in sums_of_batch.items():
            sums[key] = sums.get(key, 0) + value.detach().double()
        weight += out.weight
        if time.time() - shown > settings.progress_s:
            shown = time.time()
            print(f"  {label}: batch {b + 1}/{n_batches}, "
                  f"{(b + 1) * size / (shown - tic):.0f} rows/s", file=log, flush=True)
    return {key: float(value) / weight for key, value in sums.items()} if weight else \
        {settings.loss_name: math.nan}


def _update(keeper: dict, model: nn.Module, row: dict, epoch: int, settings: FitSettings,
            sign: float) -> bool:
    """Record this epoch's score; copy its weights when they are the best so far (``keep``
    "best"). Returns whether the monitored score improved (NaN never does)."""
    score = row.get(settings.monitor, math.nan) if settings.monitor else math.nan
    improved = bool(sign * score > sign * keeper["score"])
    keeper["since"] = 0 if improved else keeper["since"] + 1
    if settings.keep == "last" or not settings.monitor:
        keeper["score"], keeper["epoch"] = score, epoch
    elif improved:
        keeper["score"], keeper["epoch"] = score, epoch
        keeper["state"] = copy.deepcopy(model.state_dict())
    return improved


def _should_stop(keeper: dict, settings: FitSettings) -> bool:
    return bool(settings.patience and settings.monitor) and keeper["since"] >= settings.patience


def _line(label: str, row: dict, settings: FitSettings, improved: bool) -> str:
    keys = settings.log_columns or [k for k in row if k not in ("epoch", "seconds")]
    values = "  ".join(f"{k} {row[k]:.4f}" for k in keys if k in row)
    return (f"{label}epoch {row['epoch']:3d}/{settings.epochs}  {values}  "
            f"{row['seconds']:.1f}s" + ("  *" if improved else ""))


# ----------------------------------------------------------------------------- checkpoints

def _identity(model: nn.Module, settings: FitSettings, n_rows: int) -> str:
    """What makes a checkpoint this run's: the settings, the data size and the weights' shapes
    and initial values."""
    digest = hashlib.sha256()
    fields = {k: v for k, v in asdict(settings).items() if k not in ("checkpoint",
                                                                      "progress_s")}
    digest.update(json.dumps([fields, n_rows], default=str, sort_keys=True).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _save_checkpoint(path: Path, identity: str, model: nn.Module, optimizer, scheduler,
                     generator: torch.Generator, rngs: Sequence[np.random.Generator],
                     rows: list[dict], keeper: dict) -> None:
    write_checkpoint(path, {
        "identity": identity, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng_state([generator], rngs), "rows": rows, "keeper": keeper})


def _load_checkpoint(path: Path, identity: str, model: nn.Module, optimizer, scheduler,
                     generator: torch.Generator, rngs: Sequence[np.random.Generator],
                     log: TextIO) -> dict | None:
    """Restore a checkpoint of this run (None when there is none, or it is another run's)."""
    state = read_checkpoint(path)
    if state is None or state.get("identity") != identity:
        if path.exists():
            print(f"ignoring checkpoint {path}: unreadable, or another run's (settings, data "
                  "or initial weights differ)", file=log, flush=True)
        return None
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"], [generator], rngs)
    print(f"resuming from {path} after epoch {len(state['rows'])}", file=log, flush=True)
    return state
