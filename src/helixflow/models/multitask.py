"""A multi-task binding CNN: one shared convolutional trunk, one logit per target.

The trunk is :class:`helixflow.models.cnn.BindingCNN`'s (conv → ReLU → global max-pool,
optionally a dense layer); the heads are one ``Linear(d, T)``, i.e. one linear read-out per
target over the shared features. :func:`masked_bce` trains it on a label matrix in which a
window's label for a target may be unknown.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from .weights import load_weights, n_parameters, save_weights  # noqa: F401  (n_parameters: API)

UNKNOWN = -1  # label-matrix code for "this window's label for this target is unknown"


@dataclass
class MultiTaskConfig:
    """Architecture of :class:`MultiTaskCNN`; stored as ``config.json`` beside the weights."""

    targets: list[str] = field(default_factory=list)  # head order
    window: int = 200
    filters: int = 128
    kernel: int = 19
    dense: int = 0         # shared hidden units after pooling; 0 = heads read the pooled filters
    dropout: float = 0.2


class MultiTaskCNN(nn.Module):
    """Binding logits for every target from one-hot DNA.

    Input ``X: torch.Tensor, shape=(n, 4, window)``; output logits, shape=(n, T) in the order
    of ``config.targets``. ``conv`` is the shared first (motif-detector) layer,
    :meth:`pooled` the shared features each head reads, ``heads`` the per-target read-outs
    (row t of ``heads.weight`` is target t's head).
    """

    def __init__(self, config: MultiTaskConfig) -> None:
        super().__init__()
        if not config.targets:
            raise ValueError("a multi-task model needs at least one target")
        self.config = config
        self.conv = nn.Conv1d(4, config.filters, config.kernel)
        self.dropout = nn.Dropout(config.dropout)
        if config.dense:
            self.shared = nn.Sequential(nn.Linear(config.filters, config.dense), nn.ReLU(),
                                        nn.Dropout(config.dropout))
            width = config.dense
        else:
            self.shared = nn.Identity()
            width = config.filters
        self.heads = nn.Linear(width, len(config.targets))

    def activations(self, X: torch.Tensor) -> torch.Tensor:
        """First-layer filter activations after ReLU, shape=(n, filters, window - kernel + 1)."""
        return torch.relu(self.conv(X))

    def pooled(self, X: torch.Tensor) -> torch.Tensor:
        """Each filter's maximum over the window, shape=(n, filters)."""
        return self.activations(X).amax(dim=2)

    def read_out(self, pooled: torch.Tensor) -> torch.Tensor:
        """Logits, shape=(n, T), from pooled filter activations, shape=(n, filters)."""
        return self.heads(self.shared(self.dropout(pooled)))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.read_out(self.pooled(X))


def masked_bce(logits: torch.Tensor, labels: torch.Tensor,
               pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy averaged over the known labels only.

    logits: shape=(n, T); labels: shape=(n, T) with 1, 0 or :data:`UNKNOWN` (-1);
    pos_weight: shape=(T,), optional weight of each target's positive terms. Unknown entries
    contribute nothing to the loss and get exactly zero gradient; with no known label the
    loss is 0 (still differentiable).
    """
    known = labels != UNKNOWN
    target = torch.where(known, labels, torch.zeros_like(labels)).to(logits.dtype)
    per_entry = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none",
                                                               pos_weight=pos_weight)
    per_entry = torch.where(known, per_entry, torch.zeros_like(per_entry))
    return per_entry.sum() / known.sum().clamp(min=1)


def save_multitask(model: MultiTaskCNN, out_dir: str | Path) -> None:
    """Write ``model.safetensors`` and ``config.json`` (atomically) into ``out_dir``."""
    save_weights(model, {"architecture": "MultiTaskCNN", **asdict(model.config)}, out_dir)


def load_multitask(model_dir: str | Path) -> MultiTaskCNN:
    """Rebuild a :class:`MultiTaskCNN` from ``config.json`` and ``model.safetensors`` (eval)."""
    return load_weights(model_dir, lambda fields: MultiTaskCNN(MultiTaskConfig(**fields)))
