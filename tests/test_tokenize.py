"""Tokenizers: ids, specials, N handling, strides, round trips, and the k budget helper."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from helixflow.tokenize import SPECIALS, UNK, Tokenizer, choose_k, k_budget_table


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
