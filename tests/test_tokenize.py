"""Tokenizers: ids, specials, N handling, strides, round trips, and the k budget helper."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helixflow.encode import base_indices
from helixflow.tokenize import (
    CLS,
    MASK,
    PAD,
    SPECIALS,
    UNK,
    Tokenizer,
    choose_k,
    k_budget_table,
)


def test_single_nucleotide_ids():
    tok = Tokenizer(1)
    assert tok.vocab_size == 4 + len(SPECIALS)
    assert list(tok.encode("ACGT")) == [5, 6, 7, 8]
    assert list(tok.encode("acgN")) == [5, 6, 7, UNK]     # soft-masked bases are bases


@pytest.mark.parametrize("k", [2, 3, 4])
def test_kmer_ids_are_lexicographic(k):
    tok = Tokenizer(k)
    kmers = ["".join(p) for p in itertools.product("ACGT", repeat=k)]
    ids = [int(tok.encode(kmer)[0]) for kmer in kmers]
    assert ids == list(range(len(SPECIALS), len(SPECIALS) + 4 ** k))
    assert [tok.token(i) for i in ids] == kmers


def test_overlapping_and_non_overlapping_lengths():
    seq = "ACGTACGTAC"
    assert len(Tokenizer(3, 1).encode(seq)) == len(seq) - 3 + 1
    assert len(Tokenizer(3, 3).encode(seq)) == len(seq) // 3
    assert len(Tokenizer(6).encode("ACG")) == 0


def test_n_anywhere_in_a_kmer_is_unk():
    ids = Tokenizer(3).encode("ACGNACG")
    assert list(ids[[1, 2, 3]]) == [UNK] * 3 and ids[0] != UNK and ids[4] != UNK
    assert Tokenizer(3).encode("ACRTT")[0] == UNK                 # IUPAC R


@pytest.mark.parametrize("k, stride", [(1, 1), (3, 1), (6, 1), (3, 3), (4, 2)])
def test_round_trip(k, stride):
    rng = np.random.default_rng(k * 10 + stride)
    seq = "".join(rng.choice(list("ACGT"), 60))
    seq = seq[: (len(seq) - k) // stride * stride + k]            # whole tokens only
    tok = Tokenizer(k, stride)
    assert tok.decode(tok.encode(seq)) == seq


def test_dtype_fits_the_vocabulary():
    assert Tokenizer(3).dtype == np.uint8
    assert Tokenizer(6).dtype == np.uint16
    assert Tokenizer(6).encode("T" * 6)[0] == Tokenizer(6).vocab_size - 1


def test_budget_table_follows_the_seed_formulas():
    table = k_budget_table(1000, k_values=[1, 2, 6]).set_index("k")
    assert list(table["tokens"]) == [1000, 999, 995]
    assert list(table["vocab"]) == [4 + 5, 16 + 5, 4096 + 5]
    # attention memory ∝ tokens², embedding memory ∝ vocabulary
    ratio = table.loc[1, "attention_memory_gb"] / table.loc[6, "attention_memory_gb"]
    assert ratio == pytest.approx((1000 / 995) ** 2)
    assert table.loc[6, "embedding_memory_gb"] / table.loc[1, "embedding_memory_gb"] == \
        pytest.approx(4101 / 9)


def test_choose_k_trades_tokens_for_vocabulary():
    # non-overlapping k-mers shorten long windows: a tight budget forces a larger k
    k_long, _, reason = choose_k(6000, memory_budget_gb=2.0, overlapping=False)
    # overlapping k-mers barely shorten a window, so a big vocabulary only costs
    k_overlap, table, _ = choose_k(200, memory_budget_gb=1000.0, overlapping=True)
    cost = table.set_index("k")["total_gflop"]
    assert k_long > 1 and k_overlap <= 3
    assert cost[8] > 10 * cost[1]
    assert f"k={k_long}" in reason and "tokens²" in reason
    with pytest.raises(ValueError, match="fits"):
        choose_k(6000, memory_budget_gb=1e-6)


# ---------------------------------------------------------------- properties (hypothesis)

TOKENIZERS = st.sampled_from([(1, 1), (2, 1), (3, 1), (3, 3), (4, 2), (6, 1), (6, 3), (8, 1)])
DNA = st.text(alphabet="ACGT", max_size=80)
DNA_N = st.text(alphabet="ACGTNacgtnRYK", max_size=80)
COMPLEMENT = str.maketrans("ACGTNacgtnRYK", "TGCANtgcanNNN")


def _whole_tokens(seq: str, tok: Tokenizer) -> str:
    n = tok.n_tokens(len(seq))
    return seq[: (n - 1) * tok.stride + tok.k] if n else ""


@settings(max_examples=150, deadline=None)
@given(TOKENIZERS, DNA)
def test_round_trip_property(ks, seq):
    tok = Tokenizer(*ks)
    covered = _whole_tokens(seq, tok)
    ids = tok.encode(seq)
    assert len(ids) == tok.n_tokens(len(seq))
    assert tok.decode(ids) == covered
    assert np.array_equal(tok.encode(covered), ids)


@settings(max_examples=150, deadline=None)
@given(TOKENIZERS, DNA_N)
def test_ids_stay_in_the_vocabulary(ks, seq):
    tok = Tokenizer(*ks)
    ids = tok.encode(seq)
    assert ids.dtype == tok.dtype
    assert np.all((ids == UNK) | ((ids >= len(SPECIALS)) & (ids < tok.vocab_size)))
    for i, token_id in zip(range(len(ids)), ids, strict=True):   # UNK exactly where N sits
        kmer = seq[i * tok.stride: i * tok.stride + tok.k].upper()
        assert (token_id == UNK) == any(b not in "ACGT" for b in kmer)
        if token_id != UNK:
            assert tok.token(int(token_id)) == kmer


@settings(max_examples=150, deadline=None)
@given(TOKENIZERS, DNA_N)
def test_reverse_complement_of_tokens(ks, seq):
    """RC of the tokens = tokens of the RC of the covered sequence; RC twice = identity."""
    tok = Tokenizer(*ks)
    covered = _whole_tokens(seq, tok)
    ids = tok.encode(seq)
    rc_ids = tok.reverse_complement(ids)
    assert rc_ids.dtype == ids.dtype
    assert np.array_equal(rc_ids, tok.encode(covered.translate(COMPLEMENT)[::-1]))
    assert np.array_equal(tok.reverse_complement(rc_ids), ids)


def test_reverse_complement_keeps_specials_and_works_on_batches():
    tok = Tokenizer(2)
    ids = np.array([[CLS, 5, 6, MASK, PAD], [5, 5, 5, 5, 5]], dtype=tok.dtype)   # AA AC
    rc = tok.reverse_complement(ids)
    assert [tok.token(int(i)) for i in rc[0]] == ["[PAD]", "[MASK]", "GT", "TT", "[CLS]"]
    assert [tok.token(int(i)) for i in rc[1]] == ["TT"] * 5


@settings(max_examples=60, deadline=None)
@given(TOKENIZERS, st.text(alphabet="ACGTN", min_size=30, max_size=120), st.data())
def test_encode_windows_matches_encode(ks, chunk, data):
    tok = Tokenizer(*ks)
    window = data.draw(st.integers(tok.k, 30))
    starts = data.draw(st.lists(st.integers(0, len(chunk) - window), max_size=8))
    got = tok.encode_windows(base_indices(chunk), np.array(starts, dtype=np.int64), window)
    assert got.shape == (len(starts), tok.n_tokens(window)) and got.dtype == tok.dtype
    for row, start in zip(got, starts, strict=True):
        assert np.array_equal(row, tok.encode(chunk[start:start + window]))
