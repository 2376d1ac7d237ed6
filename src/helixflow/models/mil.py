"""Attention-based multiple-instance learning over a DNA region (Ilse et al. 2018).

A bag is one region of ``bag`` bp; its instances are the sub-windows of ``instance`` bp
every ``stride`` bp. Each instance is encoded like :class:`~helixflow.models.cnn.BindingCNN`'s
trunk (convolution → ReLU → global max → dense), on both strands at once, so the bag logit
does not depend on which strand is read. Gated attention weighs the instances and the bag
logit is read from their attention-weighted mean embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass
class MILConfig:
    """Architecture of :class:`AttentionMIL`."""

    bag: int = 1000        # bp per bag
    instance: int = 100    # bp per instance (sub-window)
    stride: int = 50       # bp between instance starts
    filters: int = 32
    kernel: int = 15
    embed: int = 32        # instance embedding size
    attention: int = 16    # hidden size of the gated attention
    dropout: float = 0.1


def instance_starts(bag: int, instance: int, stride: int) -> np.ndarray:
    """Start of every instance in a bag of ``bag`` bp, shape=(k,): 0, stride, ... (all inside)."""
    if not 0 < instance <= bag or stride <= 0:
        raise ValueError(f"need 0 < instance <= bag and stride > 0, got bag={bag}, "
                         f"instance={instance}, stride={stride}")
    return np.arange(0, bag - instance + 1, stride)


class AttentionMIL(nn.Module):
    """Bag logit and per-instance attention from one-hot DNA.

    Input ``X: torch.Tensor, shape=(b, 4, bag)``; :meth:`forward` returns
    ``(logits shape=(b,), attention shape=(b, k))`` with each attention row summing to 1.
    The instance encoder convolves the whole bag once and max-pools each instance's span
    (only filter positions wholly inside the instance), which equals encoding every
    instance on its own.
    """

    def __init__(self, config: MILConfig) -> None:
        super().__init__()
        self.config = config
        if config.kernel > config.instance:
            raise ValueError(f"kernel {config.kernel} is longer than the instance "
                             f"{config.instance}")
        self.starts = instance_starts(config.bag, config.instance, config.stride)
        self.conv = nn.Conv1d(4, config.filters, config.kernel)
        self.pool = nn.MaxPool1d(config.instance - config.kernel + 1, config.stride)
        self.dropout = nn.Dropout(config.dropout)
        self.embed = nn.Sequential(nn.Linear(config.filters, config.embed), nn.ReLU())
        self.attention_v = nn.Linear(config.embed, config.attention)
        self.attention_u = nn.Linear(config.embed, config.attention)
        self.attention_w = nn.Linear(config.attention, 1)
        self.classifier = nn.Linear(config.embed, 1)

    @property
    def n_instances(self) -> int:
        return len(self.starts)

    def conv_features(self, X: torch.Tensor) -> torch.Tensor:
        """Strand-symmetric filter activations, shape=(b, filters, bag - kernel + 1).

        Position ``p`` holds max(ReLU(conv), ReLU(conv of the reverse complement)) of the
        ``kernel`` bp starting at ``p``.
        """
        forward = torch.relu(self.conv(X))
        reverse = torch.relu(self.conv(X.flip(1).flip(2))).flip(2)
        return torch.maximum(forward, reverse)

    def instance_embeddings(self, X: torch.Tensor) -> torch.Tensor:
        """Instance embeddings ``h_k``, shape=(b, k, embed)."""
        pooled = self.pool(self.conv_features(X))            # (b, filters, k)
        return self.embed(self.dropout(pooled.transpose(1, 2)))

    def attend(self, h: torch.Tensor) -> torch.Tensor:
        """Gated attention: softmax_k of ``wᵀ(tanh(V h_k) ⊙ sigmoid(U h_k))``, shape=(b, k)."""
        gate = torch.tanh(self.attention_v(h)) * torch.sigmoid(self.attention_u(h))
        return torch.softmax(self.attention_w(gate).squeeze(-1), dim=1)

    def forward(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.instance_embeddings(X)
        attention = self.attend(h)
        bag = (attention.unsqueeze(-1) * h).sum(dim=1)
        return self.classifier(self.dropout(bag)).squeeze(-1), attention
