"""Transformer encoder over nucleotide or k-mer tokens with rotary position embeddings (RoPE).

Pre-norm blocks ``x + attn(LN(x))``, ``x + MLP(LN(x))`` (GELU), then a final LayerNorm.
Attention is :func:`torch.nn.functional.scaled_dot_product_attention`, so CUDA uses the fused
flash / memory-efficient kernels (under bf16 autocast; a padding mask is passed only when a
window really holds padding, which keeps flash attention available for full windows).

RoPE (Su et al. 2021) rotates each (even, odd) half-pair of query and key channels by
``position * base**(-2i / head_dim)``; the score ``q_i . k_j`` then depends on positions only
through ``j - i`` (:func:`rope_tables`, :func:`apply_rope`). Relative positions make the encoder
indifferent to where a window sits, and padding moved to the other end by a reverse complement
changes nothing for the real tokens.

RC handling. A transformer is not equivariant to RC by construction; ``rc_equivariant=True``
makes it so by *strand averaging*: both strands go through the same weights and the features of
the RC strand are reversed back and averaged, ``f(x) = (h(x) + reverse(h(rc(x)))) / 2``, so
``f(rc(x)) == reverse(f(x))`` (the RC action on these features is a plain reversal of the
length axis) at twice the cost. ``rc_invariant=True`` alone keeps one pass for the features and
averages the global descriptor of both strands in :meth:`pooled`.
"""

from __future__ import annotations

import torch
from torch import nn

from .rc import PooledEncoder, rc_token_table, resolve_padding

TRANSFORMER_DEFAULTS = {"architecture": "transformer", "k": 1, "stride": 1, "d_model": 128,
                        "n_layers": 4, "n_heads": 4, "mlp_ratio": 4, "dropout": 0.0,
                        "rope_base": 10000.0, "rc_invariant": True, "rc_equivariant": False}


def rope_tables(length: int, head_dim: int, base: float = 10000.0,
                device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotation angles, each float32 shape=(length, head_dim).

    Channel ``i`` and ``i + head_dim/2`` form a pair rotated by ``pos * base**(-2i/head_dim)``.
    """
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head dimension, got {head_dim}")
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32, device=device)
                        / head_dim)
    angles = torch.arange(length, dtype=torch.float32, device=device)[:, None] * inv_freq
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x shape=(B, heads, L, head_dim) by the tables of :func:`rope_tables` (in float32)."""
    x32 = x.float()
    half = x32.shape[-1] // 2
    rotated = torch.cat([-x32[..., half:], x32[..., :half]], dim=-1)
    return (x32 * cos + rotated * sin).to(x.dtype)


class TransformerBlock(nn.Module):
    """Pre-norm self-attention + MLP block on x shape=(B, L, d_model); ``adapter`` (identity
    until :func:`helixflow.models.adapters.add_adapters`) runs on the block's output."""

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not a multiple of n_heads {n_heads}")
        self.n_heads, self.dropout_p = n_heads, dropout
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, mlp_ratio * d_model), nn.GELU(),
                                 nn.Linear(mlp_ratio * d_model, d_model))
        self.dropout = nn.Dropout(dropout)
        self.adapter: nn.Module = nn.Identity()

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                attn_mask: torch.Tensor | None) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, L, 3, self.n_heads, D // self.n_heads).permute(
            2, 0, 3, 1, 4)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        a = nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout_p if self.training else 0.0)
        x = x + self.dropout(self.proj(a.transpose(1, 2).reshape(B, L, D)))
        x = x + self.dropout(self.mlp(self.norm2(x)))
        return self.adapter(x)


class TransformerEncoder(PooledEncoder):
    """Per-token features shape=(B, L, d_model) from token ids shape=(B, L).

    ``config``: see ``TRANSFORMER_DEFAULTS``; ``vocab_size = 5 + 4**k``. ``padding_mask``:
    bool shape=(B, L), True at padding (default: where the token is [PAD]); padded keys get no
    attention.
    """

    def __init__(self, config: dict) -> None:
        super().__init__()
        cfg = {**TRANSFORMER_DEFAULTS, **config}
        cfg["vocab_size"] = 5 + 4 ** cfg["k"]
        self.config, self.d_model, self.vocab_size = cfg, cfg["d_model"], cfg["vocab_size"]
        self.register_buffer("rc_table", rc_token_table(cfg["k"]), persistent=False)
        self.embed = nn.Embedding(self.vocab_size, self.d_model)
        self.blocks = nn.ModuleList(
            TransformerBlock(self.d_model, cfg["n_heads"], cfg["mlp_ratio"], cfg["dropout"])
            for _ in range(cfg["n_layers"]))
        self.norm = nn.LayerNorm(self.d_model)
        self.apply(_init_weights)

    def rc_features(self, F: torch.Tensor) -> torch.Tensor:
        if not self.config["rc_equivariant"]:
            raise ValueError("rc_features is defined only for rc_equivariant encoders")
        return F.flip(-2)

    def one_strand(self, tokens: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """Features of the strand as given (no strand averaging), shape=(B, L, d_model)."""
        L = tokens.shape[1]
        cos, sin = rope_tables(L, self.d_model // self.config["n_heads"],
                               self.config["rope_base"], tokens.device)
        attn_mask = None
        if bool(padding_mask.any()):                    # keeps the flash kernel for full windows
            attn_mask = (~padding_mask)[:, None, None, :]
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x, cos, sin, attn_mask)
        return self.norm(x)

    def forward(self, tokens: torch.Tensor,
                padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        pad = resolve_padding(tokens, padding_mask)
        F = self.one_strand(tokens, pad)
        if self.config["rc_equivariant"]:
            F = (F + self.one_strand(self.rc_tokens(tokens), pad.flip(-1)).flip(-2)) / 2
        return F


def _init_weights(module: nn.Module) -> None:
    """GPT-style initialisation: N(0, 0.02) weights, zero biases."""
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
