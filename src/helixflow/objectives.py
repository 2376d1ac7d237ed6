"""Self-supervised objectives for DNA token sequences (seeds 001/003).

Masked language modelling: :func:`mask_tokens` picks positions (single tokens or spans) and
corrupts them ([MASK] only, random k-mers, or BERT's 80/10/10); :func:`mlm_loss` is the
cross-entropy over the picked positions only.

Contrastive learning: :func:`augment` makes a view of each window by biologically motivated
changes (point mutations, a shift/jitter crop, reverse complement), worked out on the bases
behind the tokens so k-mer tokens stay consistent; :func:`info_nce` is the symmetric InfoNCE
loss with in-batch negatives; :func:`temperature_from_margin` is the seeds' temperature rule.

Everything runs on the device of its inputs (masks and views are drawn there, from a generator
on that device), so the GPU never waits for the CPU to corrupt a batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .models.rc import rc_token_table
from .tokenize import MASK, SPECIALS, UNK

IGNORE = -100               # label of positions that are not scored (torch's ignore_index)
N_SPECIALS = len(SPECIALS)  # token ids below this are special; k-mers start here
SCHEMES = ("80/10/10", "mask", "random")


def _rand(shape: tuple[int, ...], generator: torch.Generator | None,
          device: torch.device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device)


def _randint(low: int, high: int, shape: tuple[int, ...], generator: torch.Generator | None,
             device: torch.device) -> torch.Tensor:
    return torch.randint(low, high, shape, generator=generator, device=device)


# --------------------------------------------------------------------------- masked modelling

def mask_tokens(tokens: torch.Tensor, rate: float = 0.15, scheme: str = "80/10/10",
                span: int = 1, generator: torch.Generator | None = None,
                vocab_size: int = N_SPECIALS + 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt ``tokens`` for masked language modelling.

    ``tokens``: LongTensor, shape=(B, L). Spans of ``span`` tokens start at each position with
    probability ``rate / span`` (so about ``rate`` of positions are picked; overlapping spans
    make it slightly less); special tokens ([PAD], [UNK], ...) are never picked. Picked
    positions become [MASK] (``scheme="mask"``), a uniformly random k-mer (``"random"``), or
    [MASK] / random / unchanged with probabilities 0.8 / 0.1 / 0.1 (``"80/10/10"``).
    With overlapping k-mer tokens a single masked token can be read off its neighbours; use
    ``span >= k`` there.

    Returns (inputs, labels), both shape=(B, L): labels hold the original id at picked
    positions and ``IGNORE`` (-100) elsewhere.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown masking scheme '{scheme}'; choose one of {SCHEMES}")
    if not 0 < rate <= 1 or span < 1:
        raise ValueError(f"need 0 < rate <= 1 and span >= 1, got rate={rate}, span={span}")
    device = tokens.device
    starts = _rand(tuple(tokens.shape), generator, device) < rate / span
    if span > 1:  # position p is picked when a span starts in [p - span + 1, p]
        padded = F.pad(starts.float()[:, None], (span - 1, 0))
        starts = F.max_pool1d(padded, span, stride=1)[:, 0] > 0
    picked = starts & (tokens >= N_SPECIALS)
    labels = torch.where(picked, tokens, torch.full_like(tokens, IGNORE))

    if scheme == "mask":
        replace_mask, replace_random = picked, torch.zeros_like(picked)
    elif scheme == "random":
        replace_mask, replace_random = torch.zeros_like(picked), picked
    else:
        u = _rand(tuple(tokens.shape), generator, device)
        replace_mask, replace_random = picked & (u < 0.8), picked & (u >= 0.8) & (u < 0.9)
    random_ids = _randint(N_SPECIALS, vocab_size, tuple(tokens.shape), generator, device)
    inputs = torch.where(replace_mask, torch.full_like(tokens, MASK), tokens)
    inputs = torch.where(replace_random, random_ids, inputs)
    return inputs, labels


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats) over the scored positions only.

    ``logits``: shape=(B, L, V); ``labels``: shape=(B, L) with ``IGNORE`` off the masked
    positions. A batch with no masked position gives 0 (with a gradient path), not NaN.
    """
    flat = logits.reshape(-1, logits.shape[-1]).float()
    total = F.cross_entropy(flat, labels.reshape(-1), ignore_index=IGNORE, reduction="sum")
    return total / (labels != IGNORE).sum().clamp(min=1)


class MLMHead(nn.Module):
    """BERT-style prediction head: dense → GELU → LayerNorm → vocabulary logits."""

    def __init__(self, d_model: int, vocab_size: int) -> None:
        super().__init__()
        self.transform = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(),
                                       nn.LayerNorm(d_model))
        self.decoder = nn.Linear(d_model, vocab_size)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Features, shape=(B, L, d_model) → logits, shape=(B, L, vocab_size)."""
        return self.decoder(self.transform(features))


# --------------------------------------------------------------------------- token ↔ bases

def tokens_to_bases(tokens: torch.Tensor, k: int = 1, stride: int = 1) -> torch.Tensor:
    """The bases behind k-mer tokens: LongTensor shape=(B, (L - 1) * stride + k), 0..3 = ACGT.

    Base p is read from any non-special token covering it; bases that only special tokens
    ([UNK], [PAD], ...) cover are -1 (unknown).
    """
    B, L = tokens.shape
    device = tokens.device
    powers = 4 ** torch.arange(k - 1, -1, -1, device=device)
    codes = (tokens - N_SPECIALS).clamp(min=0)
    digits = (codes[..., None] // powers) % 4                       # (B, L, k)
    digits = torch.where((tokens >= N_SPECIALS)[..., None], digits, torch.full_like(digits, -1))
    pos = torch.arange((L - 1) * stride + k, device=device)
    bases = torch.full((B, len(pos)), -1, dtype=torch.long, device=device)
    for back in range(-(-k // stride)):              # the tokens covering p, nearest start first
        token_of = pos // stride - back
        offset = pos - token_of * stride
        ok = (token_of >= 0) & (token_of < L) & (offset < k)
        read = digits[:, token_of.clamp(0, L - 1), offset.clamp(0, k - 1)]
        bases = torch.where((bases < 0) & ok, read, bases)
    return bases


def bases_to_tokens(bases: torch.Tensor, k: int = 1, stride: int = 1) -> torch.Tensor:
    """k-mer token ids of base sequences (shape=(B, n_bp), -1 = unknown); windows holding an
    unknown base become [UNK] (as :meth:`helixflow.tokenize.Tokenizer.encode` does for N)."""
    windows = bases.unfold(1, k, stride)                             # (B, L, k)
    powers = 4 ** torch.arange(k - 1, -1, -1, device=bases.device)
    ids = (windows.clamp(min=0) * powers).sum(-1) + N_SPECIALS
    return torch.where((windows < 0).any(-1), torch.full_like(ids, UNK), ids)


def reverse_complement_tokens(tokens: torch.Tensor, k: int = 1, stride: int = 1) -> torch.Tensor:
    """Reverse complement of k-mer token sequences, shape=(B, L) → (B, L): the token order
    reversed and every k-mer complemented (the same for any ``stride``), by the tokenizer's
    lookup table."""
    del stride
    return rc_token_table(k).to(tokens.device)[tokens.flip(-1)]


# --------------------------------------------------------------------------- contrastive views

def augment(tokens: torch.Tensor, mutation_rate: float = 0.02, max_shift: int = 0,
            rc_prob: float = 0.5, generator: torch.Generator | None = None, k: int = 1,
            stride: int = 1) -> torch.Tensor:
    """One contrastive view of each window: point mutations, a jitter crop, reverse complement.

    ``tokens``: LongTensor shape=(B, L) of unpadded windows of k-mer tokens (``k``, ``stride``
    of the tokenizer). Each known base mutates with probability ``mutation_rate`` to one of the
    other three bases (uniformly); each window is cropped to ``L - max_shift`` tokens at a random
    offset in [0, max_shift] (two views of a window are thus shifted by up to ``max_shift``
    tokens against each other); each window is reverse-complemented with probability
    ``rc_prob``. Returns shape=(B, L - max_shift).
    """
    B, L = tokens.shape
    if not 0 <= max_shift < L:
        raise ValueError(f"max_shift must be in [0, {L - 1}] for {L}-token windows, "
                         f"got {max_shift}")
    device = tokens.device
    bases = tokens_to_bases(tokens, k, stride)
    if mutation_rate > 0:
        hit = (_rand(tuple(bases.shape), generator, device) < mutation_rate) & (bases >= 0)
        other = (bases + _randint(1, 4, tuple(bases.shape), generator, device)) % 4
        bases = torch.where(hit, other, bases)
    view = bases_to_tokens(bases, k, stride)
    if max_shift:
        offsets = _randint(0, max_shift + 1, (B,), generator, device)
        index = offsets[:, None] + torch.arange(L - max_shift, device=device)
        view = view.gather(1, index)
    if rc_prob > 0:
        flip = _rand((B,), generator, device) < rc_prob
        view = torch.where(flip[:, None], reverse_complement_tokens(view, k, stride), view)
    return view


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE with in-batch negatives (mean nats).

    ``z1``, ``z2``: shape=(B, D), row i of each are two views of window i. Similarities are
    cosines divided by ``temperature``; for each anchor its partner is the positive and the
    other B - 1 windows' views the negatives; the loss averages both directions (1→2, 2→1).
    """
    z1, z2 = F.normalize(z1.float(), dim=-1), F.normalize(z2.float(), dim=-1)
    logits = z1 @ z2.T / temperature
    target = torch.arange(len(z1), device=z1.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def temperature_from_margin(s_p: float, s_n: float, p0: float, batch_size: int) -> float:
    """The seeds' rule τ = (s_p − s_n) / ln(p0 (B − 1) / (1 − p0)).

    With that τ, an anchor whose positive has similarity ``s_p`` and whose B − 1 negatives all
    have ``s_n`` gives the positive softmax probability exactly ``p0``. Needs s_p > s_n and
    p0 above chance (1/B) so that τ > 0.
    """
    if not s_p > s_n:
        raise ValueError(f"need s_p > s_n, got s_p={s_p}, s_n={s_n}")
    if not 1 / batch_size < p0 < 1:
        raise ValueError(f"need 1/B < p0 < 1 (above chance), got p0={p0}, B={batch_size}")
    return (s_p - s_n) / math.log(p0 * (batch_size - 1) / (1 - p0))


class ProjectionHead(nn.Module):
    """SimCLR-style projection of the pooled descriptor: dense → GELU → dense."""

    def __init__(self, d_model: int, dim: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, dim))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled descriptors, shape=(B, d_model) → projections, shape=(B, dim)."""
        return self.net(pooled)


# --------------------------------------------------------------------------- combination

def combined_loss(mlm: torch.Tensor | None, con: torch.Tensor | None, w_mlm: float = 1.0,
                  w_con: float = 0.0) -> torch.Tensor:
    """``w_mlm * mlm + w_con * con``; a term whose weight is 0 may be ``None`` (not computed)."""
    pairs = [(w, loss) for w, loss in ((w_mlm, mlm), (w_con, con)) if w]
    if not pairs or any(loss is None for _, loss in pairs):
        raise ValueError("every objective with a non-zero weight needs a loss, and one weight "
                         f"must be non-zero (w_mlm={w_mlm}, w_con={w_con})")
    return sum(w * loss for w, loss in pairs)
