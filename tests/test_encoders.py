"""Sequence encoders: RC of tokens, RC equivariance / invariance, shift equivariance, RoPE,
padding, fused attention, adapters, save/load."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from helixflow.errors import InputError
from helixflow.models.adapters import Adapter, add_adapters
from helixflow.models.encoders import (
    build_encoder,
    encoder_tokenizer,
    load_encoder,
    n_parameters,
    save_encoder,
)
from helixflow.models.rc import RCConv1d, rc_token_table, reverse_complement_tokens
from helixflow.models.transformer import TransformerBlock, apply_rope, rope_tables
from helixflow.tokenize import PAD, SPECIALS, Tokenizer

pytestmark = pytest.mark.usefixtures("restore_torch_state")

SMALL = {"d_model": 32, "n_layers": 2}
TRANSFORMER = {"architecture": "transformer", "n_heads": 4, **SMALL}
DILATED = {"architecture": "dilated_cnn", "kernel": 5, **SMALL}
ATOL = 1e-5


def revcomp(seq: str) -> str:
    return seq[::-1].translate(str.maketrans("ACGT", "TGCA"))


def random_seq(n: int, seed: int) -> str:
    return "".join(np.random.default_rng(seed).choice(list("ACGT"), n))


def tokens_of(seqs: list[str], k: int = 1, stride: int = 1) -> torch.Tensor:
    tok = Tokenizer(k, stride)
    return torch.from_numpy(np.stack([tok.encode(s) for s in seqs]).astype(np.int64))


def make(config: dict, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    return build_encoder(config).eval()


# --- RC of tokens, against an independent computation on strings ------------------------

@pytest.mark.parametrize(("k", "stride"), [(1, 1), (2, 1), (3, 1), (3, 3), (4, 2)])
def test_rc_of_tokens_is_the_tokens_of_the_rc_strand(k, stride):
    tok = Tokenizer(k, stride)
    seq = random_seq(60 + k, seed=k * 10 + stride)    # (length - k) % stride == 0: exact
    ids = tok.encode(seq)
    assert np.array_equal(reverse_complement_tokens(ids, k), tok.encode(revcomp(seq)))
    torch_ids = torch.from_numpy(ids.astype(np.int64))
    assert torch.equal(reverse_complement_tokens(torch_ids, k),
                       torch.from_numpy(tok.encode(revcomp(seq)).astype(np.int64)))


@pytest.mark.skipif(not hasattr(Tokenizer, "reverse_complement"),
                    reason="Tokenizer.reverse_complement not available")
@pytest.mark.parametrize(("k", "stride"), [(1, 1), (3, 1), (3, 3)])
def test_rc_of_tokens_agrees_with_the_tokenizer(k, stride):
    tok = Tokenizer(k, stride)
    ids = np.stack([tok.encode(random_seq(60 + k, s)) for s in range(3)])
    ids[0, :4] = PAD
    assert np.array_equal(reverse_complement_tokens(ids, k), tok.reverse_complement(ids))


def test_rc_table_is_an_involution_fixing_specials():
    table = rc_token_table(3)
    assert torch.equal(table[table], torch.arange(len(table)))
    assert table[: len(SPECIALS)].tolist() == list(range(len(SPECIALS)))
    tok = Tokenizer(3)
    assert tok.token(int(table[tok.encode("AAC")[0]])) == "GTT"


# --- RC equivariance and invariance -------------------------------------------------------

def test_rc_conv_is_equivariant_on_one_hot_dna():
    torch.manual_seed(0)
    conv = RCConv1d(4, 8, kernel=7, dilation=2)
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (3, 40)), 4).float().transpose(1, 2)
    rc_x = x.flip(1).flip(2)                               # one-hot ACGT: RC flips both axes
    assert torch.allclose(conv(rc_x), conv(x).flip(1).flip(2), atol=ATOL)


@pytest.mark.parametrize("k", [1, 3])
def test_rcps_dilated_cnn_feature_maps_are_rc_equivariant(k):
    enc = make({**DILATED, "k": k, "rc_equivariant": True})
    x = tokens_of([random_seq(90, s) for s in range(3)], k)
    with torch.no_grad():
        F, F_rc = enc(x), enc(enc.rc_tokens(x))
    # RC on a feature map: reverse the length axis and swap channel pairs (c <-> C-1-c)
    assert torch.allclose(F_rc, F.flip(1).flip(2), atol=ATOL)
    assert F.abs().mean() > 0.1                                      # not trivially zero


def test_plain_dilated_cnn_is_not_rc_equivariant():
    """The property above is a real constraint: without parameter sharing it fails."""
    enc = make({**DILATED, "rc_equivariant": False})
    x = tokens_of([random_seq(90, 7)])
    with torch.no_grad():
        F, F_rc = enc(x), enc(enc.rc_tokens(x))
    assert (F_rc - F.flip(1).flip(2)).abs().max() > 0.1


def test_strand_averaged_transformer_features_reverse_under_rc():
    enc = make({**TRANSFORMER, "rc_equivariant": True})
    x = tokens_of([random_seq(50, s) for s in range(2)])
    with torch.no_grad():
        F, F_rc = enc(x), enc(enc.rc_tokens(x))
    assert torch.allclose(F_rc, F.flip(1), atol=ATOL)


@pytest.mark.parametrize("base", [TRANSFORMER, DILATED])
@pytest.mark.parametrize("equivariant", [False, True])
def test_global_descriptor_is_rc_invariant(base, equivariant):
    enc = make({**base, "rc_invariant": True, "rc_equivariant": equivariant})
    x = tokens_of([random_seq(60, s) for s in range(4)])
    with torch.no_grad():
        g, g_rc = enc.pooled(x), enc.pooled(enc.rc_tokens(x))
    assert g.shape == (4, 32)
    assert torch.allclose(g, g_rc, atol=ATOL)
    assert (g[0] - g[1]).abs().max() > 1e-3                         # still tells windows apart


@pytest.mark.parametrize("base", [TRANSFORMER, DILATED])
def test_descriptor_without_rc_invariance_depends_on_strand(base):
    enc = make({**base, "rc_invariant": False, "rc_equivariant": False})
    x = tokens_of([random_seq(60, 3)])
    with torch.no_grad():
        assert (enc.pooled(x) - enc.pooled(enc.rc_tokens(x))).abs().max() > 1e-3


@pytest.mark.parametrize("base", [TRANSFORMER, DILATED])
@pytest.mark.parametrize("equivariant", [False, True])
def test_layer_descriptor_is_rc_invariant_and_ends_with_pooled(base, equivariant):
    enc = make({**base, "rc_invariant": True, "rc_equivariant": equivariant})
    x = tokens_of([random_seq(60, s) for s in range(4)])
    padded = torch.cat([x, torch.full((4, 7), PAD)], dim=1)
    n, d = enc.config["n_layers"], enc.d_model
    with torch.no_grad():
        G = enc.pooled_layers(x)
        assert G.shape == (4, (n + 1) * d)
        assert torch.allclose(G, enc.pooled_layers(enc.rc_tokens(x)), atol=ATOL)
        assert torch.allclose(G[:, -d:], enc.pooled(x), atol=ATOL)
        assert torch.allclose(enc.pooled_layers(padded), G, atol=ATOL)   # padding ignored
    layers = G.reshape(4, n + 1, d)
    assert (layers[:, 0] - layers[:, -1]).abs().max() > 1e-3            # depths differ


def test_layer_descriptor_reads_each_block_output():
    enc = make({**DILATED, "rc_invariant": False})
    x = tokens_of([random_seq(50, 9)])
    with torch.no_grad():
        h = enc.embed(x)
        means = []
        for block in enc.blocks:
            h = block(h)
            means.append(h.mean(1))
        means.append(enc.norm(h).mean(1))
        torch.testing.assert_close(enc.pooled_layers(x), torch.cat(means, 1))


def test_rc_invariance_holds_for_padded_windows():
    enc = make({**TRANSFORMER, "rc_invariant": True})
    x = tokens_of([random_seq(40, 1)])
    padded = torch.cat([x, torch.full((1, 9), PAD)], dim=1)
    with torch.no_grad():
        g = enc.pooled(padded)
        assert torch.allclose(g, enc.pooled(enc.rc_tokens(padded)), atol=ATOL)
        assert torch.allclose(g, enc.pooled(x), atol=ATOL)          # padding changes nothing


# --- shift equivariance of the convolutional maps -----------------------------------------

@pytest.mark.parametrize("equivariant", [False, True])
def test_dilated_cnn_maps_shift_with_the_input(equivariant):
    enc = make({**DILATED, "n_layers": 3, "rc_equivariant": equivariant})
    radius = (enc.receptive_field - 1) // 2                          # 14 tokens
    seq, shift = random_seq(120, 5), 7
    with torch.no_grad():
        F = enc(tokens_of([seq]))
        F_shift = enc(tokens_of([seq[shift:]]))
    # away from the ends, position i of the shifted input is position i + shift of the original
    inner = slice(radius, 120 - shift - radius)
    assert torch.allclose(F_shift[:, inner], F[:, radius + shift:120 - radius], atol=ATOL)
    edge = (F_shift[:, :radius] - F[:, shift:shift + radius]).abs().max()
    assert edge > 1e-4                                   # the ends do see the cut: test is live


# --- RoPE, attention, padding -------------------------------------------------------------

def test_rope_matches_complex_rotation_and_keeps_norms():
    torch.manual_seed(0)
    L, dim, base = 12, 8, 100.0
    x = torch.randn(2, 3, L, dim)
    cos, sin = rope_tables(L, dim, base)
    got = apply_rope(x, cos, sin)
    # independent form: pair (i, i + dim/2) as a complex number times exp(i * pos * freq_i)
    z = torch.complex(x[..., : dim // 2], x[..., dim // 2:])
    freq = base ** (-torch.arange(0, dim, 2).float() / dim)
    z = z * torch.polar(torch.ones(L, dim // 2), torch.arange(L).float()[:, None] * freq)
    assert torch.allclose(got, torch.cat([z.real, z.imag], dim=-1), atol=1e-5)
    assert torch.allclose(got.norm(dim=-1), x.norm(dim=-1), atol=1e-5)


def test_rope_scores_depend_only_on_relative_position():
    torch.manual_seed(1)
    L, dim = 16, 8
    q, k = torch.randn(dim), torch.randn(dim)
    cos, sin = rope_tables(L, dim)
    Q = apply_rope(q.expand(1, 1, L, dim), cos, sin)[0, 0]
    K = apply_rope(k.expand(1, 1, L, dim), cos, sin)[0, 0]
    scores = Q @ K.T                                                # scores[i, j]
    for offset in range(-L + 1, L):
        diagonal = torch.diagonal(scores, offset)
        assert torch.allclose(diagonal, diagonal[0].expand_as(diagonal), atol=1e-5)
    assert torch.diagonal(scores, 0)[0] != torch.diagonal(scores, 3)[0]


def test_fused_attention_block_matches_explicit_softmax_attention():
    torch.manual_seed(2)
    block = TransformerBlock(16, 2, 2, 0.0).eval()
    x = torch.randn(2, 10, 16)
    cos, sin = rope_tables(10, 8)
    mask = torch.ones(2, 1, 1, 10, dtype=torch.bool)
    mask[1, ..., 7:] = False                                        # last 3 keys are padding
    with torch.no_grad():
        got = block(x, cos, sin, mask)
        q, k, v = block.qkv(block.norm1(x)).view(2, 10, 3, 2, 8).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(8)
        scores = scores.masked_fill(~mask, float("-inf"))
        a = (scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 10, 16)
        h = x + block.proj(a)
        want = h + block.mlp(block.norm2(h))
    assert torch.allclose(got, want, atol=1e-5)


def test_transformer_ignores_padding_keys():
    enc = make(TRANSFORMER)
    x = tokens_of([random_seq(30, 4)])
    padded = torch.cat([x, torch.full((1, 6), PAD)], dim=1)
    with torch.no_grad():
        assert torch.allclose(enc(padded)[:, :30], enc(x), atol=ATOL)
        explicit = torch.zeros_like(padded, dtype=torch.bool)
        explicit[:, 30:] = True
        assert torch.allclose(enc(padded, explicit)[:, :30], enc(x), atol=ATOL)


# --- sizes, adapters, save / load ---------------------------------------------------------

def test_default_configs_and_interface():
    for config, expected in (({"architecture": "transformer"}, (128, 4)),
                             ({"architecture": "dilated_cnn"}, (128, 6))):
        enc = build_encoder(config)
        assert (enc.d_model, len(enc.blocks)) == expected
        assert enc.vocab_size == 9 and encoder_tokenizer(enc) == Tokenizer(1, 1)
    assert build_encoder({"architecture": "dilated_cnn"}).receptive_field == 253
    with pytest.raises(ValueError, match="unknown transformer setting"):
        build_encoder({"architecture": "transformer", "d_modle": 64})


@pytest.mark.parametrize("base", [TRANSFORMER, DILATED])
def test_adapters_freeze_the_encoder_and_start_as_identity(base):
    enc = make({**base, "d_model": 64})
    x = tokens_of([random_seq(40, s) for s in range(2)])
    with torch.no_grad():
        before = enc(x)
    total = n_parameters(enc)
    trained = add_adapters(enc, bottleneck=4)
    assert trained == sum(p.numel() for p in enc.parameters() if p.requires_grad)
    assert trained == len(enc.blocks) * (64 * 4 + 4 + 4 * 64 + 64)
    assert 0.005 < trained / total < 0.06
    with torch.no_grad():
        assert torch.allclose(enc(x), before, atol=ATOL)
        enc.blocks[0].adapter.up.weight.normal_()
        assert not torch.allclose(enc(x), before, atol=1e-3)


def test_default_transformer_adapters_are_about_one_percent():
    enc = build_encoder({"architecture": "transformer"})
    total = n_parameters(enc)
    assert abs(add_adapters(enc, bottleneck=8) / total - 0.01) < 0.002
    assert all(isinstance(b.adapter, Adapter) for b in enc.blocks)


def test_rc_equivariance_survives_trained_adapters():
    enc = make({**DILATED, "rc_equivariant": True})
    add_adapters(enc, bottleneck=4)
    with torch.no_grad():
        for block in enc.blocks:                                     # as if trained
            block.adapter.up.weight_half.normal_()
        x = tokens_of([random_seq(70, 2)])
        assert torch.allclose(enc(enc.rc_tokens(x)), enc(x).flip(1).flip(2), atol=ATOL)


@pytest.mark.parametrize("base", [TRANSFORMER, {**DILATED, "rc_equivariant": True}])
def test_save_load_round_trip(tmp_path, base):
    enc = make({**base, "k": 2})
    add_adapters(enc, 2)
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_encoder(enc, tmp_path)
    again = load_encoder(tmp_path)
    x = tokens_of([random_seq(41, 0)], k=2)
    with torch.no_grad():
        assert torch.equal(again(x), enc(x))
    assert again.config == enc.config


def test_load_reports_missing_files_and_tensors(tmp_path):
    with pytest.raises(InputError, match="config.json"):
        load_encoder(tmp_path)
    enc = make(TRANSFORMER)
    save_encoder(enc, tmp_path)
    bigger = make({**TRANSFORMER, "n_layers": 3})
    (tmp_path / "config.json").write_text(json.dumps(bigger.config))
    with pytest.raises(InputError, match="lack"):
        load_encoder(tmp_path)


# --- GPU: bf16 autocast and fused attention -----------------------------------------------

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("base", [TRANSFORMER, DILATED])
def test_cuda_bf16_matches_float32(base):
    enc = make({**base, "d_model": 64}).cuda()
    x = tokens_of([random_seq(200, s) for s in range(8)]).cuda()
    with torch.no_grad():
        want = enc.pooled(x)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            got = enc.pooled(x)
            got_rc = enc.pooled(enc.rc_tokens(x))
    assert torch.allclose(got.float(), want, atol=0.05, rtol=0.05)
    assert torch.allclose(got.float(), got_rc.float(), atol=0.05)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_full_windows_run_on_the_flash_kernel():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    enc = make({**TRANSFORMER, "d_model": 64}).cuda()
    x = tokens_of([random_seq(200, s) for s in range(8)]).cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):             # fails if flash can't run
            enc.train()
            enc.pooled(x).float().sum().backward()
        with torch.no_grad():
            padded = torch.cat([x, torch.full((8, 8), PAD, device="cuda")], dim=1)
            assert torch.allclose(enc.pooled(padded).float(), enc.pooled(x).float(), atol=0.05)
