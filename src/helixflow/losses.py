"""Binary losses for imbalanced data: class-weighted cross-entropy and focal loss.

Both take logits (never probabilities) and go through log-sigmoid, so they stay finite for
any logit. ``y`` is 0/1 (float or int) of the same shape; both return the mean over elements.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

LOSSES = ("bce", "weighted_bce", "focal")


def balance_weight(y: torch.Tensor) -> float:
    """``n_neg / n_pos`` of 0/1 labels (1.0 when a class is missing)."""
    n_pos = float(torch.as_tensor(y).float().sum())
    n_neg = float(torch.as_tensor(y).numel()) - n_pos
    return n_neg / n_pos if n_pos > 0 and n_neg > 0 else 1.0


def weighted_bce(logits: torch.Tensor, y: torch.Tensor,
                 pos_weight: float | None = None) -> torch.Tensor:
    """Mean of ``-(w·y·log σ(z) + (1 − y)·log σ(−z))``: positives count ``w`` times.

    ``pos_weight`` defaults to ``n_neg / n_pos`` of ``y`` (so both classes weigh the same in
    total); pass the training set's ratio to keep the weight fixed across mini-batches.
    """
    y = y.to(logits.dtype)
    w = balance_weight(y) if pos_weight is None else float(pos_weight)
    return -(w * y * F.logsigmoid(logits) + (1 - y) * F.logsigmoid(-logits)).mean()


def focal_loss(logits: torch.Tensor, y: torch.Tensor, gamma: float = 2.0,
               alpha: float | None = 0.25) -> torch.Tensor:
    """Focal loss (Lin et al. 2017): mean of ``-α_t (1 − p_t)^γ log p_t``.

    ``p_t`` is the predicted probability of the true class, ``α_t = α`` for positives and
    ``1 − α`` for negatives (``alpha=None``: no class weight). ``γ = 0, α = None`` is plain
    binary cross-entropy; larger ``γ`` shrinks the loss of confidently right examples.
    """
    y = y.to(logits.dtype)
    signed = (2 * y - 1) * logits          # log p_t = log σ(signed), 1 − p_t = σ(−signed)
    log_pt = F.logsigmoid(signed)
    loss = -log_pt
    if gamma:
        loss = torch.exp(gamma * F.logsigmoid(-signed)) * loss
    if alpha is not None:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    return loss.mean()


def make_loss(name: str, y_train: torch.Tensor | None = None, pos_weight: float | None = None,
              gamma: float = 2.0, alpha: float | None = 0.25
              ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss called ``name`` (one of ``LOSSES``) as ``f(logits, y)``.

    ``weighted_bce`` fixes its weight once: ``pos_weight``, else ``n_neg / n_pos`` of
    ``y_train`` (the whole training set, not each mini-batch).
    """
    if name == "bce":
        return torch.nn.BCEWithLogitsLoss()
    if name == "weighted_bce":
        if pos_weight is None:
            if y_train is None:
                raise ValueError("weighted_bce needs pos_weight or y_train")
            pos_weight = balance_weight(torch.as_tensor(y_train))
        weight = float(pos_weight)
        return lambda logits, y: weighted_bce(logits, y, weight)
    if name == "focal":
        return lambda logits, y: focal_loss(logits, y, gamma, alpha)
    raise ValueError(f"unknown loss {name!r}; use one of {', '.join(LOSSES)}")
