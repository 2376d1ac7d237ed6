"""Bottleneck adapters (Houlsby et al. 2019) for parameter-efficient transfer.

An adapter maps ``h -> h + up(GELU(down(h)))`` position-wise, with ``down: d_model -> bottleneck``
and ``up: bottleneck -> d_model``. ``up`` starts at zero, so inserting adapters leaves the
encoder's output unchanged until they are trained. One adapter runs after every block
(``block.adapter``). For an RC-equivariant dilated CNN the adapters share parameters across
strands too (:class:`RCAdapter`), so equivariance survives adaptation.

With d_model 128 and a bottleneck of 8, the adapters are about 1% of the default encoders'
parameters (see :func:`add_adapters`'s return value).
"""

from __future__ import annotations

import torch
from torch import nn

from .rc import RCLinear


class Adapter(nn.Module):
    """``h + up(GELU(down(h)))`` on h shape=(..., d_model); ``up`` initialised at zero."""

    def __init__(self, d_model: int, bottleneck: int) -> None:
        super().__init__()
        self.down = nn.Linear(d_model, bottleneck)
        self.up = nn.Linear(bottleneck, d_model)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(nn.functional.gelu(self.down(h)))


class RCAdapter(nn.Module):
    """:class:`Adapter` with RC parameter sharing (paired channels); ``bottleneck`` even."""

    def __init__(self, d_model: int, bottleneck: int) -> None:
        super().__init__()
        self.down = RCLinear(d_model, bottleneck)
        self.up = RCLinear(bottleneck, d_model)
        nn.init.zeros_(self.up.weight_half)
        nn.init.zeros_(self.up.bias_half)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(nn.functional.gelu(self.down(h)))


def n_trainable(module: nn.Module) -> int:
    """Parameters that receive gradients."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def insert_adapters(encoder: nn.Module, bottleneck: int) -> list[nn.Module]:
    """Put a fresh adapter after every block of ``encoder`` (``encoder.blocks[i].adapter``).

    Records ``adapter_bottleneck`` in ``encoder.config`` so a saved model rebuilds with them.
    Returns the adapters. Freezes nothing (see :func:`add_adapters`).
    """
    if bottleneck < 1:
        raise ValueError(f"adapter bottleneck must be >= 1, got {bottleneck}")
    kind = RCAdapter if encoder.config.get("rc_equivariant") and \
        encoder.config["architecture"] == "dilated_cnn" else Adapter
    if kind is RCAdapter and bottleneck % 2:
        bottleneck += 1                                   # channel pairs need an even width
    device = next(encoder.parameters()).device
    adapters = []
    for block in encoder.blocks:
        block.adapter = kind(encoder.d_model, bottleneck).to(device)
        adapters.append(block.adapter)
    encoder.config["adapter_bottleneck"] = bottleneck
    return adapters


def add_adapters(encoder: nn.Module, bottleneck: int = 8) -> int:
    """Freeze ``encoder`` and insert trainable adapters after each block.

    Returns the number of trainable parameters (the adapters'); compare with the encoder's
    total to see the fraction trained (~1% for the default configs and ``bottleneck=8``).
    """
    for p in encoder.parameters():
        p.requires_grad_(False)
    adapters = insert_adapters(encoder, bottleneck)
    return sum(n_trainable(a) for a in adapters)
