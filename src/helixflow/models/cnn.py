"""A DeepBind/Basset-style CNN: conv → ReLU → max-pool → dense → logit."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from .weights import load_weights, n_parameters, save_weights  # noqa: F401  (n_parameters: API)


@dataclass
class CNNConfig:
    """Architecture of :class:`BindingCNN`; stored as ``config.json`` beside the weights."""

    window: int = 200
    filters: int = 32
    kernel: int = 19
    pool: int = 0          # max-pool width; 0 = global max over the whole window (DeepBind)
    dense: int = 32        # hidden units of the dense layer; 0 = linear read-out
    dropout: float = 0.2
    in_channels: int = 4   # 4 = one-hot ACGT; 5 = plus a methylation track (methyl_channel)


class BindingCNN(nn.Module):
    """Binding logit from one-hot DNA.

    Input ``X: torch.Tensor, shape=(n, in_channels, window)`` (4 = one-hot DNA; a 5th channel
    can carry methylation, see :mod:`helixflow.methyl_channel`); output logits, shape=(n,).
    ``conv`` is the first (motif-detector) layer; its ReLU output is :meth:`activations`.
    """

    def __init__(self, config: CNNConfig) -> None:
        super().__init__()
        self.config = config
        conv_len = config.window - config.kernel + 1
        self.conv = nn.Conv1d(config.in_channels, config.filters, config.kernel)
        # global max (pool 0) adapts to the input: a trained model scores any window width
        self.pool = nn.MaxPool1d(config.pool, config.pool) if config.pool else \
            nn.AdaptiveMaxPool1d(1)
        self.dropout = nn.Dropout(config.dropout)
        flat = config.filters * (conv_len // config.pool if config.pool else 1)
        if config.dense:
            self.head = nn.Sequential(nn.Linear(flat, config.dense), nn.ReLU(),
                                      nn.Dropout(config.dropout), nn.Linear(config.dense, 1))
        else:
            self.head = nn.Linear(flat, 1)

    def activations(self, X: torch.Tensor) -> torch.Tensor:
        """First-layer filter activations after ReLU, shape=(n, filters, window - kernel + 1)."""
        return torch.relu(self.conv(X))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        h = self.dropout(self.pool(self.activations(X)))
        return self.head(h.flatten(1)).squeeze(-1)


def save_model(model: BindingCNN, out_dir: str | Path) -> None:
    """Write ``model.safetensors`` and ``config.json`` (atomically) into ``out_dir``."""
    save_weights(model, {"architecture": "BindingCNN", **asdict(model.config)}, out_dir)


def load_model(model_dir: str | Path) -> BindingCNN:
    """Rebuild a :class:`BindingCNN` from ``config.json`` and ``model.safetensors`` (eval mode)."""
    return load_weights(model_dir, lambda fields: BindingCNN(CNNConfig(**fields)))
