"""DNA tokenizers (seeds 001/003): single nucleotides or k-mers, with special tokens,
and a helper that chooses k for a memory/compute budget.

Token ids: the special tokens first (``SPECIALS``), then the 4**k k-mers in lexicographic
order of A, C, G, T. A k-mer holding N (or any IUPAC code) becomes [UNK].
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .encode import ALPHABET, base_indices

SPECIALS = ("[PAD]", "[MASK]", "[CLS]", "[SEP]", "[UNK]")
PAD, MASK, CLS, SEP, UNK = range(len(SPECIALS))


@dataclass(frozen=True)
class Tokenizer:
    """k-mer tokenizer; ``stride`` 1 = overlapping k-mers, ``stride == k`` = non-overlapping."""

    k: int = 1
    stride: int = 1

    def __post_init__(self) -> None:
        if self.k < 1 or not 1 <= self.stride <= self.k:
            raise ValueError(f"need k >= 1 and 1 <= stride <= k, got k={self.k}, "
                             f"stride={self.stride}")

    @property
    def vocab_size(self) -> int:
        return len(SPECIALS) + 4 ** self.k

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8 if self.vocab_size <= 256 else np.uint16 if
                        self.vocab_size <= 65536 else np.uint32)

    def n_tokens(self, length: int) -> int:
        """Tokens for a sequence of ``length`` bp (no [CLS]/[SEP])."""
        return max(0, (length - self.k) // self.stride + 1)

    def encode(self, seq: str) -> np.ndarray:
        """Token ids of ``seq``, shape=(n_tokens(len(seq)),), dtype :attr:`dtype`."""
        return self.position_ids(base_indices(seq))[::self.stride]

    def encode_windows(self, idx: np.ndarray, starts: np.ndarray, window_bp: int) -> np.ndarray:
        """Token ids of many equal windows of one chunk at once (vectorised :meth:`encode`).

        ``idx``: base indices of the chunk (0..3 = A, C, G, T; 4 = N or any other code),
        shape=(length,), as :func:`helixflow.encode.base_indices` gives; ``starts``: window
        starts into the chunk, shape=(n,), with ``starts + window_bp <= length``.
        Returns shape=(n, n_tokens(window_bp)), dtype :attr:`dtype`; row i equals
        ``encode(chunk[starts[i]:starts[i] + window_bp])``.
        """
        starts = np.asarray(starts, dtype=np.int64)
        n_tok = self.n_tokens(window_bp)
        if len(starts) == 0 or n_tok == 0:
            return np.zeros((len(starts), n_tok), dtype=self.dtype)
        if starts.min() < 0 or starts.max() + window_bp > len(idx):
            raise ValueError("windows run past the end of the chunk")
        # token j of a window starting at s is the k-mer at s + j * stride; a strided view
        # avoids an (n, n_tokens) index array
        span = (n_tok - 1) * self.stride + 1
        view = np.lib.stride_tricks.sliding_window_view(self.position_ids(idx), span)
        return view[:, ::self.stride][starts]

    def position_ids(self, idx: np.ndarray) -> np.ndarray:
        """Id of the k-mer at every position, shape=(length - k + 1,), dtype :attr:`dtype`."""
        idx = np.asarray(idx)
        n = len(idx) - self.k + 1
        if n <= 0:
            return np.zeros(0, dtype=self.dtype)
        if self.k == 1:
            return np.where(idx > 3, UNK, idx + len(SPECIALS)).astype(self.dtype)
        code = np.zeros(n, dtype=np.int32 if self.k <= 15 else np.int64)
        for i in range(self.k):
            code = code * 4 + np.minimum(idx[i:i + n], 3)
        unknown = np.concatenate([np.zeros(1, np.int32), np.cumsum(idx > 3, dtype=np.int32)])
        bad = unknown[self.k:] - unknown[:n] > 0
        return np.where(bad, UNK, code + len(SPECIALS)).astype(self.dtype)

    def reverse_complement(self, ids: np.ndarray) -> np.ndarray:
        """Token ids of the reverse complement, shape and dtype of ``ids`` (last axis = tokens).

        The tokens of ``seq`` cover its first ``(n - 1) * stride + k`` bases; reversing the
        token order and complementing every k-mer gives the tokens of the reverse complement
        of that covered sequence, for any stride. Special tokens ([PAD], [MASK], [UNK], ...)
        stay as they are, so ``encode(rc(seq)) == reverse_complement(encode(seq))`` and applying
        it twice gives ``ids`` back.
        """
        ids = np.asarray(ids)
        flipped = ids[..., ::-1]
        if self.vocab_size <= 1 << 16:
            return rc_id_table(self.k, self.dtype)[flipped].astype(ids.dtype, copy=False)
        return _rc_ids(flipped, self.k).astype(ids.dtype)

    def decode(self, ids: np.ndarray) -> str:
        """The sequence behind token ids (specials dropped; [UNK] k-mers read as N)."""
        kmers = [self.token(int(i)) for i in ids if int(i) not in (PAD, CLS, SEP)]
        kmers = ["N" * self.k if k in ("[UNK]", "[MASK]") else k for k in kmers]
        if not kmers:
            return ""
        if self.stride == self.k:
            return "".join(kmers)
        return kmers[0] + "".join(k[self.k - self.stride:] for k in kmers[1:])

    def token(self, token_id: int) -> str:
        """The string of one token id."""
        if token_id < len(SPECIALS):
            return SPECIALS[token_id]
        code, letters = token_id - len(SPECIALS), []
        for _ in range(self.k):
            code, base = divmod(code, 4)
            letters.append(ALPHABET[base])
        return "".join(reversed(letters))

    def manifest(self) -> dict:
        """What a shard manifest records about the tokenizer."""
        return {"k": self.k, "stride": self.stride, "vocab_size": self.vocab_size,
                "specials": list(SPECIALS), "dtype": str(self.dtype),
                "order": "specials, then k-mers in lexicographic ACGT order"}


def _rc_ids(ids: np.ndarray, k: int) -> np.ndarray:
    """Id of the reverse-complement k-mer of every id, int64; specials map to themselves."""
    ids = np.asarray(ids, dtype=np.int64)
    code = np.maximum(ids - len(SPECIALS), 0)
    rc = np.zeros_like(code)
    for _ in range(k):                        # read digits low to high, write them high to low
        code, digit = np.divmod(code, 4)
        rc = rc * 4 + (3 - digit)             # complement: A<->T (0<->3), C<->G (1<->2)
    return np.where(ids < len(SPECIALS), ids, rc + len(SPECIALS))


@functools.lru_cache(maxsize=16)
def rc_id_table(k: int, dtype: np.dtype = np.int64) -> np.ndarray:
    """Id of the reverse complement of every id of the k-mer vocabulary (specials map to
    themselves), a read-only lookup table shape=(5 + 4**k,)."""
    table = _rc_ids(np.arange(len(SPECIALS) + 4 ** k), k).astype(dtype)
    table.setflags(write=False)
    return table


def k_budget_table(window_bp: int, k_values=range(1, 9), d_model: int = 256,
                   n_layers: int = 4, batch: int = 32, bytes_per_value: int = 2,
                   overlapping: bool = True) -> pd.DataFrame:
    """The seeds' trade-off, per k: tokens L-k+1 (or L/k), vocabulary 4**k + specials,
    attention cost ∝ tokens², embedding + softmax ∝ vocabulary.

    Columns: k, tokens, vocab, attention_memory_gb (one batch of score matrices per layer),
    embedding_memory_gb (input + output tables), attention_gflop, softmax_gflop (per batch),
    total_gflop, total_memory_gb.
    """
    rows = []
    for k in k_values:
        tok = Tokenizer(k, 1 if overlapping else k)
        n, vocab = tok.n_tokens(window_bp), tok.vocab_size
        attention_mem = n_layers * batch * n * n * bytes_per_value / 1e9
        embedding_mem = 2 * vocab * d_model * bytes_per_value / 1e9
        attention_flop = n_layers * batch * (4 * n * n * d_model + 8 * n * d_model ** 2) / 1e9
        softmax_flop = batch * 2 * n * vocab * d_model / 1e9
        rows.append({"k": k, "tokens": n, "vocab": vocab,
                     "attention_memory_gb": attention_mem, "embedding_memory_gb": embedding_mem,
                     "attention_gflop": attention_flop, "softmax_gflop": softmax_flop})
    table = pd.DataFrame(rows)
    table["total_gflop"] = table["attention_gflop"] + table["softmax_gflop"]
    table["total_memory_gb"] = table["attention_memory_gb"] + table["embedding_memory_gb"]
    return table


def choose_k(window_bp: int, memory_budget_gb: float, **cost) -> tuple[int, pd.DataFrame, str]:
    """The k with the least compute among those that fit ``memory_budget_gb``.

    Returns (k, the per-k table of :func:`k_budget_table`, a sentence of reasoning for the
    report). Raises ValueError when no k fits.
    """
    table = k_budget_table(window_bp, **cost)
    fits = table[table["total_memory_gb"] <= memory_budget_gb]
    if fits.empty:
        raise ValueError(f"no k in {list(table['k'])} fits {memory_budget_gb} GB for "
                         f"{window_bp}-bp windows; shorten the window or shrink the batch")
    best = fits.loc[fits["total_gflop"].idxmin()]
    k = int(best["k"])
    single = table.iloc[0]
    reason = (f"{window_bp}-bp windows: single nucleotides give {int(single['tokens'])} tokens "
              f"({single['total_memory_gb']:.2f} GB, {single['total_gflop']:.1f} GFLOP per "
              f"batch); k={k} gives {int(best['tokens'])} tokens and a vocabulary of "
              f"{int(best['vocab'])} ({best['total_memory_gb']:.2f} GB, "
              f"{best['total_gflop']:.1f} GFLOP), the least compute within "
              f"{memory_budget_gb} GB: attention grows with tokens², the embedding and "
              "softmax with 4^k.")
    return k, table, reason
