"""Dilated residual CNN over nucleotide or k-mer tokens, optionally RC-equivariant (RCPS).

Token embedding, then ``n_layers`` pre-norm residual blocks ``x + conv_d(GELU(norm(x)))`` with
dilation ``d = dilation_base**i`` (1, 2, 4, ...; 'same' padding, so the map is shift-equivariant
away from the ends), then a final norm. Receptive field ``1 + (kernel - 1) * sum(d)`` tokens
(253 for kernel 5 and six layers). Features at padding positions are zeroed after every layer,
so padding acts like the convolution's own zero padding.

With ``rc_equivariant`` every layer uses reverse-complement parameter sharing
(:mod:`helixflow.models.rc`): channels pair up as ``c <-> d_model-1-c`` and
``f(rc(x)) == rc(f(x))`` where RC reverses the length axis and the channel axis.
"""

from __future__ import annotations

import torch
from torch import nn

from .rc import (
    PooledEncoder,
    RCConv1d,
    RCEmbedding,
    RCLayerNorm,
    rc_feature_map,
    rc_token_table,
    resolve_padding,
)

DILATED_DEFAULTS = {"architecture": "dilated_cnn", "k": 1, "stride": 1, "d_model": 128,
                    "n_layers": 6, "kernel": 5, "dilation_base": 2, "dropout": 0.0,
                    "rc_invariant": True, "rc_equivariant": False}


class DilatedBlock(nn.Module):
    """Pre-norm residual block on x shape=(B, L, C); ``adapter`` (identity until
    :func:`helixflow.models.adapters.add_adapters`) runs on the block's output."""

    def __init__(self, channels: int, kernel: int, dilation: int, dropout: float,
                 equivariant: bool) -> None:
        super().__init__()
        if equivariant:
            self.norm = RCLayerNorm(channels)
            self.conv = RCConv1d(channels, channels, kernel, dilation)
        else:
            if kernel % 2 == 0:
                raise ValueError(f"kernel must be odd for 'same' padding, got {kernel}")
            self.norm = nn.LayerNorm(channels)
            self.conv = nn.Conv1d(channels, channels, kernel, dilation=dilation,
                                  padding=dilation * (kernel - 1) // 2)
        self.dropout = nn.Dropout(dropout)
        self.adapter: nn.Module = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.gelu(self.norm(x)).transpose(1, 2)
        x = x + self.dropout(self.conv(h).transpose(1, 2))
        return self.adapter(x)


class DilatedCNNEncoder(PooledEncoder):
    """Per-token features shape=(B, L, d_model) from token ids shape=(B, L).

    ``config``: see ``DILATED_DEFAULTS``; ``vocab_size = 5 + 4**k``.
    """

    def __init__(self, config: dict) -> None:
        super().__init__()
        cfg = {**DILATED_DEFAULTS, **config}
        cfg["vocab_size"] = 5 + 4 ** cfg["k"]
        self.config, self.d_model, self.vocab_size = cfg, cfg["d_model"], cfg["vocab_size"]
        eq = bool(cfg["rc_equivariant"])
        self.register_buffer("rc_table", rc_token_table(cfg["k"]), persistent=False)
        self.embed = (RCEmbedding(self.vocab_size, self.d_model, cfg["k"]) if eq
                      else nn.Embedding(self.vocab_size, self.d_model))
        self.blocks = nn.ModuleList(
            DilatedBlock(self.d_model, cfg["kernel"], cfg["dilation_base"] ** i, cfg["dropout"],
                         eq) for i in range(cfg["n_layers"]))
        self.norm = RCLayerNorm(self.d_model) if eq else nn.LayerNorm(self.d_model)

    @property
    def receptive_field(self) -> int:
        """Tokens that one output position sees."""
        cfg = self.config
        return 1 + (cfg["kernel"] - 1) * sum(cfg["dilation_base"] ** i
                                             for i in range(cfg["n_layers"]))

    def rc_features(self, F: torch.Tensor) -> torch.Tensor:
        if not self.config["rc_equivariant"]:
            raise ValueError("rc_features is defined only for rc_equivariant encoders")
        return rc_feature_map(F)

    def forward(self, tokens: torch.Tensor,
                padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        keep = (~resolve_padding(tokens, padding_mask)).unsqueeze(-1)
        x = self.embed(tokens) * keep
        for block in self.blocks:
            x = block(x) * keep
        return self.norm(x)
