"""Reverse-complement (RC) helpers shared by the sequence encoders.

Three things live here:

* RC of token ids (:func:`rc_token_table`, :func:`reverse_complement_tokens`): reverse the
  token order and replace every k-mer by the id of its reverse complement; special tokens
  ([PAD], [MASK], ...) map to themselves. Exact for the ids of :class:`helixflow.tokenize.Tokenizer`
  whenever the tokens tile the sequence symmetrically, i.e. ``(length - k) % stride == 0``
  (always for stride 1; for stride k when the length is a multiple of k).
* RC on feature maps of a reverse-complement parameter-sharing (RCPS) network
  (:func:`rc_feature_map`): channels come in pairs ``c <-> C-1-c``, so RC reverses the length
  axis and the channel axis, exactly as RC of one-hot ACGT flips both axes.
* RCPS layers (Shrikumar et al. 2017; Zhou et al. 2021): :class:`RCConv1d`, :class:`RCLinear`,
  :class:`RCLayerNorm` and :class:`RCEmbedding` hold half of their parameters and build the full
  weights so that ``layer(rc(x)) == rc(layer(x))`` by construction.

:class:`PooledEncoder` is the mix-in that gives every encoder its global descriptor
``pooled(tokens)``: the mean over non-pad positions, made RC-invariant either by the
architecture (equivariant feature maps) or by averaging the descriptors of both strands.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..tokenize import PAD, rc_id_table


def rc_token_table(k: int) -> torch.Tensor:
    """Id of the reverse complement of every token id, LongTensor shape=(5 + 4**k,).

    Specials map to themselves; k-mer ``w`` maps to ``revcomp(w)``. An involution.
    """
    return torch.from_numpy(rc_id_table(k).copy())


def reverse_complement_tokens(tokens: torch.Tensor | np.ndarray, k: int = 1,
                              table: torch.Tensor | None = None) -> torch.Tensor | np.ndarray:
    """Token ids of the reverse-complement strand, shape=(..., L) like ``tokens``.

    Reverses the last axis and maps each id through :func:`rc_token_table`; padding moves to
    the other end (RC of a padded window is the RC of its bases, padded on the left).
    Numpy in, numpy out.
    """
    if isinstance(tokens, np.ndarray):
        return rc_id_table(k)[tokens[..., ::-1].astype(np.int64)].astype(tokens.dtype)
    if table is None:
        table = rc_token_table(k).to(tokens.device)
    return table[tokens.flip(-1)]


def rc_feature_map(F: torch.Tensor) -> torch.Tensor:
    """RC of an RCPS feature map, shape=(B, L, C): reverse length and swap channel pairs."""
    return F.flip(-2).flip(-1)


def _tied(half: torch.Tensor) -> torch.Tensor:
    """Full RCPS weight from its free half: rows ``[half; half flipped on every axis]``."""
    return torch.cat([half, half.flip(tuple(range(half.dim())))], dim=0)


class RCConv1d(nn.Module):
    """Conv1d with RC parameter sharing: ``conv(rc(x)) == rc(conv(x))`` for x shape=(B, C, L).

    ``in_channels`` and ``out_channels`` are paired (``c <-> C-1-c``); out must be even.
    Odd kernel and 'same' padding, so RC (a length flip) commutes with the convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, dilation: int = 1,
                 bias: bool = True) -> None:
        super().__init__()
        if out_channels % 2 or kernel % 2 == 0:
            raise ValueError(f"RCConv1d needs an even out_channels and an odd kernel, got "
                             f"{out_channels} and {kernel}")
        reference = nn.Conv1d(in_channels, out_channels // 2, kernel)   # for its default init
        self.weight_half = nn.Parameter(reference.weight.detach().clone())
        self.bias_half = nn.Parameter(reference.bias.detach().clone()) if bias else None
        self.dilation, self.padding = dilation, dilation * (kernel - 1) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = _tied(self.bias_half) if self.bias_half is not None else None
        return nn.functional.conv1d(x, _tied(self.weight_half), bias, padding=self.padding,
                                    dilation=self.dilation)


class RCLinear(nn.Module):
    """Position-wise linear map with RC parameter sharing, on x shape=(..., in_features)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        if out_features % 2:
            raise ValueError(f"RCLinear needs an even out_features, got {out_features}")
        reference = nn.Linear(in_features, out_features // 2)
        self.weight_half = nn.Parameter(reference.weight.detach().clone())
        self.bias_half = nn.Parameter(reference.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, _tied(self.weight_half), _tied(self.bias_half))


class RCLayerNorm(nn.Module):
    """LayerNorm over channels (last axis) whose affine weights are symmetric in channel pairs."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"RCLayerNorm needs an even channel count, got {channels}")
        self.weight_half = nn.Parameter(torch.ones(channels // 2))
        self.bias_half = nn.Parameter(torch.zeros(channels // 2))
        self.channels, self.eps = channels, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.layer_norm(x, (self.channels,), _tied(self.weight_half),
                                        _tied(self.bias_half), self.eps)


class RCEmbedding(nn.Module):
    """Token embedding with ``E[rc(t)] == E[t]`` with its channel pairs swapped.

    Built from a free table P as ``E = (P + P[rc_table] flipped on channels) / 2``, which holds
    for any involution ``rc_table`` (palindromic k-mers and specials get symmetric vectors).
    """

    def __init__(self, vocab_size: int, channels: int, k: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(vocab_size, channels) * 0.02)
        self.register_buffer("rc_table", rc_token_table(k), persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        table = (self.weight + self.weight[self.rc_table].flip(-1)) / 2
        return nn.functional.embedding(tokens, table)


def resolve_padding(tokens: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
    """Bool mask shape=(B, L), True at padding; ``None`` means 'wherever the token is [PAD]'."""
    return tokens == PAD if padding_mask is None else padding_mask.to(torch.bool)


def masked_mean(F: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
    """Mean of F shape=(B, L, C) over the positions where ``padding_mask`` is False."""
    keep = (~padding_mask).unsqueeze(-1).to(F.dtype)
    return (F * keep).sum(1) / keep.sum(1).clamp_min(1.0)


class PooledEncoder(nn.Module):
    """Shared global descriptor and RC plumbing for encoders built on per-token features.

    Subclasses set ``self.config`` (with ``k``, ``rc_invariant``, ``rc_equivariant``),
    ``self.d_model``, ``self.vocab_size``, register the buffer ``rc_table`` and implement
    ``forward(tokens, padding_mask)`` and :meth:`rc_features` (the action of RC on their
    feature maps when ``rc_equivariant``).
    """

    config: dict
    d_model: int
    vocab_size: int
    rc_table: torch.Tensor

    def rc_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Reverse-complement token ids shape=(B, L) (see :func:`reverse_complement_tokens`)."""
        return reverse_complement_tokens(tokens, table=self.rc_table)

    def rc_features(self, F: torch.Tensor) -> torch.Tensor:
        """How RC acts on this encoder's feature maps shape=(B, L, d_model)."""
        raise NotImplementedError

    def pooled(self, tokens: torch.Tensor,
               padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Global descriptor shape=(B, d_model): mean of the features over non-pad positions.

        With ``rc_invariant``: an equivariant encoder symmetrises the mean under the RC action
        on channels; any other averages the descriptors of the sequence and of its RC, so
        ``pooled(rc(x)) == pooled(x)`` up to float rounding either way.
        """
        pad = resolve_padding(tokens, padding_mask)
        g = masked_mean(self(tokens, pad), pad)
        if not self.config.get("rc_invariant", False):
            return g
        if self.config.get("rc_equivariant", False):
            return (g + self.rc_features(g.unsqueeze(1)).squeeze(1)) / 2
        rc_pad = pad.flip(-1)
        return (g + masked_mean(self(self.rc_tokens(tokens), rc_pad), rc_pad)) / 2

    def pooled_layers(self, tokens: torch.Tensor,
                      padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Descriptor of every depth, shape=(B, (n_layers + 1) * d_model): the masked mean of
        each block's output and of the final features, concatenated in that order.

        A linear probe then weighs short-range (early blocks) against long-range features
        itself. RC-invariant like :meth:`pooled` when ``rc_invariant``; the last ``d_model``
        columns equal :meth:`pooled`.
        """
        pad = resolve_padding(tokens, padding_mask)
        G = self._layer_means(tokens, pad)                            # (B, n_layers + 1, C)
        if self.config.get("rc_invariant", False):
            if self.config.get("rc_equivariant", False):
                G = (G + self.rc_features(G.unsqueeze(-2)).squeeze(-2)) / 2
            else:
                G = (G + self._layer_means(self.rc_tokens(tokens), pad.flip(-1))) / 2
        return G.flatten(1)

    def _layer_means(self, tokens: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """Masked means of every block's output and of ``forward``, shape=(B, n_layers + 1, C).

        Read with forward hooks on ``self.blocks``; a block that runs twice per call (the given
        strand, then its RC, in an RC-equivariant transformer) contributes the mean of its runs.
        """
        masks = (pad, pad.flip(-1))                                   # given strand, its RC
        runs: list[list[torch.Tensor]] = [[] for _ in self.blocks]
        hooks = [block.register_forward_hook(
            lambda _module, _inputs, out, i=i: runs[i].append(
                masked_mean(out, masks[len(runs[i])])))
            for i, block in enumerate(self.blocks)]
        try:
            final = masked_mean(self(tokens, pad), pad)
        finally:
            for hook in hooks:
                hook.remove()
        return torch.stack([torch.stack(r).mean(0) for r in runs] + [final], dim=1)
