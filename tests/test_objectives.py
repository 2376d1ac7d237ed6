"""Self-supervised objectives: masking, MLM loss, contrastive views, InfoNCE, temperature rule."""

import math

import numpy as np
import pytest
import torch

from helixflow.objectives import (
    IGNORE,
    N_SPECIALS,
    augment,
    bases_to_tokens,
    combined_loss,
    info_nce,
    mask_tokens,
    mlm_loss,
    reverse_complement_tokens,
    temperature_from_margin,
    tokens_to_bases,
)
from helixflow.tokenize import CLS, MASK, PAD, UNK, Tokenizer

COMPLEMENT = str.maketrans("ACGTN", "TGCAN")


def random_seqs(n: int, length: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGT"), length)) for _ in range(n)]


def encode(seqs: list[str], tok: Tokenizer) -> torch.Tensor:
    return torch.from_numpy(np.stack([tok.encode(s).astype(np.int64) for s in seqs]))


def test_mask_rate_labels_and_specials():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(N_SPECIALS, N_SPECIALS + 4, (64, 1000), generator=g)
    tokens[:, :50] = PAD
    tokens[:, 50] = CLS
    tokens[:, 51:60] = UNK
    inputs, labels = mask_tokens(tokens, 0.15, "mask", generator=g, vocab_size=9)
    picked = labels != IGNORE
    assert not picked[:, :60].any()                       # specials never picked
    assert abs(picked[:, 60:].float().mean().item() - 0.15) < 0.01
    assert torch.equal(labels[picked], tokens[picked])
    assert (inputs[picked] == MASK).all()
    assert torch.equal(inputs[~picked], tokens[~picked])


def test_schemes_random_and_80_10_10():
    g = torch.Generator().manual_seed(1)
    vocab = N_SPECIALS + 64                               # k = 3
    tokens = torch.randint(N_SPECIALS, vocab, (64, 1000), generator=g)
    inputs, labels = mask_tokens(tokens, 0.2, "random", generator=g, vocab_size=vocab)
    picked = labels != IGNORE
    assert ((inputs[picked] >= N_SPECIALS) & (inputs[picked] < vocab)).all()
    # random replacement is uniform over 64 k-mers: it equals the original ~1/64 of the time
    assert (inputs[picked] == tokens[picked]).float().mean().item() < 0.05

    inputs, labels = mask_tokens(tokens, 0.2, "80/10/10", generator=g, vocab_size=vocab)
    picked = labels != IGNORE
    fraction_mask = (inputs[picked] == MASK).float().mean().item()
    fraction_same = (inputs[picked] == tokens[picked]).float().mean().item()
    assert abs(fraction_mask - 0.8) < 0.02
    assert abs(fraction_same - (0.1 + 0.1 / 64)) < 0.02  # kept, or replaced by itself


def test_span_masking_picks_whole_spans():
    g = torch.Generator().manual_seed(2)
    tokens = torch.randint(N_SPECIALS, N_SPECIALS + 4, (32, 2000), generator=g)
    _, labels = mask_tokens(tokens, 0.15, "mask", span=6, generator=g, vocab_size=9)
    picked = (labels != IGNORE).numpy()
    assert abs(picked.mean() - 0.15) < 0.02
    for row in picked:                                    # every run of picks is >= 6 long
        edges = np.diff(np.concatenate([[0], row.astype(int), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        inner = (starts > 0) & (ends < len(row))         # runs cut by the window edge may be short
        assert ((ends - starts)[inner] >= 6).all()


def test_masking_is_deterministic_for_a_seed():
    tokens = torch.randint(N_SPECIALS, 9, (4, 100), generator=torch.Generator().manual_seed(0))
    a = mask_tokens(tokens, generator=torch.Generator().manual_seed(7), vocab_size=9)
    b = mask_tokens(tokens, generator=torch.Generator().manual_seed(7), vocab_size=9)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_mlm_loss_matches_direct_cross_entropy():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 7, 9, generator=g)
    labels = torch.full((3, 7), IGNORE)
    labels[0, 2], labels[1, 5], labels[2, 0] = 5, 8, 6
    x = logits.numpy().astype(np.float64)
    log_softmax = x - np.log(np.exp(x).sum(-1, keepdims=True))
    expected = -np.mean([log_softmax[0, 2, 5], log_softmax[1, 5, 8], log_softmax[2, 0, 6]])
    assert mlm_loss(logits, labels).item() == pytest.approx(expected, rel=1e-5)
    assert mlm_loss(logits, torch.full((3, 7), IGNORE)).item() == 0.0


@pytest.mark.parametrize("k,stride", [(1, 1), (3, 1), (3, 3), (4, 2)])
def test_tokens_bases_round_trip_and_rc_against_tokenizer(k, stride):
    tok = Tokenizer(k, stride)
    seqs = random_seqs(5, 61 - (61 - k) % stride)
    tokens = encode(seqs, tok)
    bases = tokens_to_bases(tokens, k, stride)
    assert ["".join("ACGT"[b] for b in row) for row in bases.tolist()] == seqs
    assert torch.equal(bases_to_tokens(bases, k, stride), tokens)
    rc = encode([s.translate(COMPLEMENT)[::-1] for s in seqs], tok)
    assert torch.equal(reverse_complement_tokens(tokens, k, stride), rc)


def test_unknown_bases_become_unk():
    tok = Tokenizer(3, 1)
    tokens = encode(["ACGTNACGTA"], tok)
    assert torch.equal(bases_to_tokens(tokens_to_bases(tokens, 3, 1), 3, 1), tokens)


def test_augment_identity_rc_crop_and_mutation_rate():
    k, stride = 3, 1
    tok = Tokenizer(k, stride)
    seqs = random_seqs(8, 202, seed=4)
    tokens = encode(seqs, tok)
    g = torch.Generator().manual_seed(5)
    same = augment(tokens, 0.0, 0, 0.0, g, k=k, stride=stride)
    assert torch.equal(same, tokens)
    flipped = augment(tokens, 0.0, 0, 1.0, g, k=k, stride=stride)
    assert torch.equal(flipped, reverse_complement_tokens(tokens, k, stride))
    cropped = augment(tokens, 0.0, 10, 0.0, g, k=k, stride=stride)
    assert cropped.shape == (8, tokens.shape[1] - 10)
    for view, row in zip(cropped.tolist(), tokens.tolist(), strict=True):
        offsets = [o for o in range(11) if row[o:o + len(view)] == view]
        assert offsets, "a crop is a contiguous piece of its window"
    long = encode(random_seqs(16, 2000, seed=6), tok)
    mutated = augment(long, 0.05, 0, 0.0, g, k=k, stride=stride)
    changed = (tokens_to_bases(mutated, k, stride) != tokens_to_bases(long, k, stride))
    assert abs(changed.float().mean().item() - 0.05) < 0.006


def test_info_nce_matches_direct_computation():
    g = torch.Generator().manual_seed(8)
    z1, z2 = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    tau = 0.3
    a = z1.numpy() / np.linalg.norm(z1.numpy(), axis=1, keepdims=True)
    b = z2.numpy() / np.linalg.norm(z2.numpy(), axis=1, keepdims=True)
    s = a @ b.T / tau
    row = -np.mean([s[i, i] - np.log(np.exp(s[i]).sum()) for i in range(6)])
    col = -np.mean([s[i, i] - np.log(np.exp(s[:, i]).sum()) for i in range(6)])
    assert info_nce(z1, z2, tau).item() == pytest.approx((row + col) / 2, rel=1e-5)
    # identical, well-separated views at a low temperature: the positive is found
    eye = torch.eye(6)
    assert info_nce(eye, eye, 0.05).item() < 1e-6


@pytest.mark.parametrize("s_p,s_n,p0,B", [(0.8, 0.0, 0.5, 32), (0.9, 0.2, 0.7, 256),
                                          (0.5, -0.1, 0.1, 64)])
def test_temperature_rule_gives_p0(s_p, s_n, p0, B):
    tau = temperature_from_margin(s_p, s_n, p0, B)
    logits = torch.tensor([s_p] + [s_n] * (B - 1), dtype=torch.float64) / tau
    assert torch.softmax(logits, 0)[0].item() == pytest.approx(p0, rel=1e-9)
    assert tau == pytest.approx((s_p - s_n) / math.log(p0 * (B - 1) / (1 - p0)))


def test_temperature_rule_rejects_impossible_targets():
    with pytest.raises(ValueError, match="s_p > s_n"):
        temperature_from_margin(0.1, 0.2, 0.5, 32)
    with pytest.raises(ValueError, match="above chance"):
        temperature_from_margin(0.8, 0.0, 1 / 64, 32)


def test_combined_loss():
    a, b = torch.tensor(2.0), torch.tensor(3.0)
    assert combined_loss(a, b, 1.0, 0.5).item() == pytest.approx(3.5)
    assert combined_loss(a, None, 1.0, 0.0).item() == pytest.approx(2.0)
    with pytest.raises(ValueError):
        combined_loss(a, None, 1.0, 0.5)
