"""k-mer count baselines and the pretraining diagnostics: planted chains with known entropy,
a brute-force count check, a uniform model's known perplexity, and the whole stage on a tiny
genome (corpus → pretraining → diagnostics)."""

import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from helixflow.corpus import build_corpus
from helixflow.genome import index_genome
from helixflow.markov import (
    COLUMNS,
    CountModel,
    fit_selected,
    load_windows,
    mlm_diagnostics,
    paired_difference_bits,
    run_pretrain_diagnostics,
)
from helixflow.objectives import N_SPECIALS
from helixflow.pretrain import run_pretrain
from helixflow.tokenize import Tokenizer

T = np.array([[0.70, 0.10, 0.10, 0.10],     # a planted order-1 chain over A, C, G, T
              [0.25, 0.25, 0.25, 0.25],
              [0.05, 0.05, 0.45, 0.45],
              [0.40, 0.30, 0.20, 0.10]])


def markov_windows(n: int, length: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros((n, length), dtype=np.int64)
    x[:, 0] = rng.integers(0, 4, n)
    cumulative = T.cumsum(1)
    for i in range(1, length):
        u = rng.random(n)
        x[:, i] = (u[:, None] > cumulative[x[:, i - 1]]).sum(1)
    return x + N_SPECIALS


def stationary() -> np.ndarray:
    values, vectors = np.linalg.eig(T.T)
    pi = np.real(vectors[:, np.argmin(np.abs(values - 1))])
    return pi / pi.sum()


def bits(model: CountModel, windows: np.ndarray, rows=None, cols=None) -> float:
    if rows is None:
        rows, cols = np.nonzero(windows >= N_SPECIALS)
        keep = cols > 0                                   # the first token has no left context
        rows, cols = rows[keep], cols[keep]
    return float(-model.score(windows, rows, cols)[0].mean() / math.log(2))


def test_markov_recovers_a_planted_conditional_entropy():
    train, test = markov_windows(400, 200, 0), markov_windows(200, 200, 1)
    pi = stationary()
    h1 = -(pi[:, None] * T * np.log2(T)).sum()            # true conditional entropy, bits
    h0 = -(pi * np.log2(pi)).sum()
    models = {m: CountModel.fit(train, m, 0, 9, alpha=0.5) for m in (0, 1, 2)}
    assert bits(models[1], test) == pytest.approx(h1, abs=0.02)
    assert bits(models[0], test) == pytest.approx(h0, abs=0.02)
    assert bits(models[2], test) > bits(models[1], test) - 0.005   # order 2 adds nothing


def test_bidirectional_context_sees_what_left_context_cannot():
    """x_i = (x_{i+1} + x_{i+2}) mod 4, built from the right end: x_i = x_{i-1} - x_{i+1} is
    fixed by its two neighbours, but uniform given the left neighbour alone."""
    rng = np.random.default_rng(2)
    x = np.zeros((600, 40), dtype=np.int64)
    x[:, -2:] = rng.integers(0, 4, (600, 2))
    for i in range(37, -1, -1):
        x[:, i] = (x[:, i + 1] + x[:, i + 2]) % 4
    windows = x + N_SPECIALS
    train, test = windows[:400], windows[400:]
    rows, cols = np.nonzero(np.ones((200, 38), dtype=bool))
    cols = cols + 1                                       # both neighbours inside the window
    bi = CountModel.fit(train, 1, 1, 9, alpha=1e-3)
    left = CountModel.fit(train, 1, 0, 9, alpha=1e-3)
    assert bits(bi, test, rows, cols) < 0.01
    assert bits(left, test, rows, cols) == pytest.approx(2.0, abs=0.02)
    assert bi.score(test, rows, cols)[1].all()


def test_counts_match_a_brute_force_count():
    rng = np.random.default_rng(3)
    windows = rng.integers(N_SPECIALS, N_SPECIALS + 4, (30, 12))
    windows[0, 5] = 4                                   # an [UNK] in the context, never a target
    model = CountModel.fit(windows, 2, 1, 9, alpha=0.3)
    joint, context = Counter(), Counter()
    for row in windows.tolist():
        padded = [0, 0] + row + [0]
        for i, target in enumerate(row):
            if target < N_SPECIALS:
                continue
            c = tuple(padded[i:i + 2]) + (padded[i + 3],)
            joint[c, target] += 1
            context[c] += 1
    rows, cols = np.nonzero(windows >= N_SPECIALS)
    logp, _ = model.score(windows, rows, cols)
    for r, c, lp in zip(rows[:50], cols[:50], logp[:50], strict=True):
        padded = [0, 0] + windows[r].tolist() + [0]
        ctx = tuple(padded[c:c + 2]) + (padded[c + 3],)
        expected = (joint[ctx, windows[r, c]] + 0.3) / (context[ctx] + 0.3 * 4)
        assert math.exp(lp) == pytest.approx(expected, rel=1e-9)


def test_alpha_is_chosen_on_the_selection_tokens():
    train, select = markov_windows(20, 50, 4), markov_windows(20, 50, 5)
    models, tried = fit_selected(train, select, [(1, 0), (6, 0)], 9, alphas=(1e-3, 1.0))
    assert set(tried["model"]) == {"markov_order1", "markov_order6"}
    for model in models:
        rows = tried[tried["model"] == model.name]
        assert model.alpha == rows.loc[rows["select_bits"].idxmin(), "alpha"]
    # sparse high-order counts need the stronger smoothing
    assert models[1].alpha == 1.0


class Uniform(nn.Module):
    """A stand-in encoder + head with equal logits everywhere: 2 bits per base exactly."""

    d_model, vocab_size = 1, 9

    def forward(self, tokens):
        return torch.zeros(*tokens.shape, 1)


def test_uniform_model_scores_two_bits():
    windows = markov_windows(8, 64, 6)
    encoder = Uniform()
    head = nn.Linear(1, 9, bias=False)
    nn.init.zeros_(head.weight)
    out = mlm_diagnostics(encoder, head, windows, rate=0.2, seed=0)
    assert np.allclose(-out["logp"] / math.log(2), 2.0)
    again = mlm_diagnostics(encoder, head, windows, rate=0.2, seed=0)
    assert np.array_equal(out["rows"], again["rows"]) and np.array_equal(out["cols"],
                                                                         again["cols"])


def write_genome(path) -> None:
    """Three chromosomes drawn from the planted order-1 chain: there is something to learn."""
    with open(path, "w") as handle:
        for seed, name in enumerate(("chrA", "chrB", "chrC")):
            text = "".join("ACGT"[b] for b in markov_windows(1, 6000, seed)[0] - N_SPECIALS)
            handle.write(f">{name}\n")
            for i in range(0, len(text), 60):
                handle.write(text[i:i + 60] + "\n")


def test_stage_on_a_tiny_genome(tmp_path, restore_torch_state):
    fasta = tmp_path / "genome.fa"
    write_genome(tmp_path / "raw.fa")
    index_genome(tmp_path / "raw.fa", fasta, tmp_path / "sizes")
    tok = Tokenizer(1, 1)
    for split, chroms in (("train", ["chrA", "chrB"]), ("test", ["chrC"])):
        build_corpus(fasta, chroms, tmp_path / split, tok, 64, 32, 0.1, 100, split=split,
                     workers=1)
    params = {"steps": 30, "batch_size": 16, "lr": 3e-3, "warmup_steps": 3, "log_every": 10,
              "eval_every": 30, "checkpoint_every": 15, "encoder": {
                  "architecture": "dilated_cnn", "d_model": 16, "n_layers": 2}}
    train, test = tmp_path / "train" / "manifest.json", tmp_path / "test" / "manifest.json"
    summary = run_pretrain(train, test, tmp_path / "model", params)
    assert (tmp_path / "model" / "record.json").is_file() and summary["steps"] == 30
    out = tmp_path / "diag" / "pretrain_diagnostics.tsv"
    result = run_pretrain_diagnostics(tmp_path / "model", tmp_path / "train" / "manifest.json",
                                      tmp_path / "test" / "manifest.json", out,
                                      {"markov_orders": [0, 1, 2],
                                       "bidirectional_orders": [1]})
    table = pd.read_csv(out, sep="\t")
    assert list(table.columns) == COLUMNS
    assert table["model"].tolist()[0] == "mlm"
    assert table["tokens"].nunique() == 1                 # every model on the same tokens
    assert table["selected"].sum() == 3                   # mlm + one markov + one bidirectional
    assert (out.with_suffix(".png")).is_file() and (out.with_suffix(".selection.tsv")).is_file()
    assert result["selected"]["markov"] in table["model"].tolist()
    # the planted chain is order 1: the order chosen on training tokens must not be 0
    assert result["selected"]["markov"] != "markov_order0"
    assert len(load_windows(tmp_path / "test" / "manifest.json", 5)) == 5


def test_paired_difference_standard_error():
    rng = np.random.default_rng(7)
    a, b = rng.normal(-1.3, 0.4, 500), rng.normal(-1.4, 0.4, 500)
    diff = (b - a) / math.log(2)
    mean, se = paired_difference_bits(a, b, np.arange(500))      # one token per window
    assert mean == pytest.approx(diff.mean())
    assert se == pytest.approx(diff.std(ddof=1) / math.sqrt(500), rel=1e-9)
    # the same tokens in 50 windows whose tokens move together: a wider interval
    shared = np.repeat(rng.normal(0, 1, 50), 10)
    _, se_clustered = paired_difference_bits(a, a + shared, np.repeat(np.arange(50), 10))
    _, se_naive = paired_difference_bits(a, a + shared, np.arange(500))
    assert se_clustered > 2 * se_naive
