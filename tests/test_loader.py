"""Corpus loader: determinism, disjoint ranks, resume, augmentation, encodings, extra track."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_corpus import make_pretrain_genome

from helixflow.corpus import build_corpus
from helixflow.errors import InputError
from helixflow.genome import Genome
from helixflow.loader import (
    EpochSampler,
    TokenCorpus,
    hash_uniform,
    make_loader,
    one_hot_from_tokens,
)
from helixflow.tokenize import Tokenizer

WINDOW, STRIDE = 120, 60


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """A k=1 and a k=3 corpus of the small genome; returns (seqs, fasta, {k: manifest})."""
    root = tmp_path_factory.mktemp("loader")
    seqs, fasta = make_pretrain_genome(root)
    manifests = {}
    for k in (1, 3):
        out = root / f"k{k}"
        build_corpus(fasta, ["chrA", "chrB", "chrC"], out, Tokenizer(k), window_bp=WINDOW,
                     stride_bp=STRIDE, max_n_fraction=0.5, shard_windows=23, workers=1)
        manifests[k] = out / "manifest.json"
    return seqs, fasta, manifests


def collect(loader, key="tokens"):
    batches = list(loader)
    return (torch.cat([b[key] for b in batches]).numpy(),
            torch.cat([b["coords"] for b in batches]).numpy(), batches)


def test_corpus_random_access_matches_shards(corpora):
    _, _, manifests = corpora
    corpus = TokenCorpus(manifests[3])
    rows = np.array([len(corpus) - 1, 0, 23, 22, 5, 23])            # across shard edges
    tokens, coords = corpus.rows(rows)
    for row, idx in zip(tokens, rows, strict=True):
        assert np.array_equal(row, corpus[int(idx)][0])
    shard1 = np.load(manifests[3].parent / "shard_00001.npy")
    assert np.array_equal(tokens[2], shard1[0]) and np.array_equal(tokens[3], corpus[22][0])
    with pytest.raises(IndexError):
        corpus.rows(np.array([len(corpus)]))


def test_same_seed_same_batches_other_epoch_other_order(corpora):
    _, _, manifests = corpora
    a = collect(make_loader(manifests[1], 16, seed=7, epoch=0, max_shift=10))
    b = collect(make_loader(manifests[1], 16, seed=7, epoch=0, max_shift=10))
    c = collect(make_loader(manifests[1], 16, seed=7, epoch=1, max_shift=10))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    n = len(TokenCorpus(manifests[1]))
    assert len(a[1]) == len(c[1]) == n                                # every window once


def test_workers_do_not_change_batches(corpora):
    _, _, manifests = corpora
    kwargs = dict(batch_size=10, seed=3, epoch=2, max_shift=6, rc_prob=0.5)
    serial = collect(make_loader(manifests[1], num_workers=0, **kwargs))
    parallel = collect(make_loader(manifests[1], num_workers=2, **kwargs))
    assert np.array_equal(serial[0], parallel[0]) and np.array_equal(serial[1], parallel[1])


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_ranks_are_disjoint_and_equal(world_size):
    n, batch = 100, 7
    per_rank = []
    for rank in range(world_size):
        sampler = EpochSampler(n, batch, seed=5, epoch=1, rank=rank, world_size=world_size)
        batches = list(sampler)
        assert len(batches) == len(sampler) == sampler.batches_per_epoch
        per_rank.append(np.concatenate(batches))
    sizes = {len(p) for p in per_rank}
    assert sizes == {n // world_size}                                  # same count per rank
    union = np.concatenate(per_rank)
    assert len(np.unique(union)) == len(union) == n - n % world_size   # disjoint, drop the rest
    again = np.concatenate(list(EpochSampler(n, batch, 5, 1, rank=0, world_size=world_size)))
    assert np.array_equal(again, per_rank[0])


def test_start_batch_resumes_exactly(corpora):
    _, _, manifests = corpora
    full = list(make_loader(manifests[1], 8, seed=11, epoch=3, rank=1, world_size=2,
                            max_shift=4))
    resumed_loader = make_loader(manifests[1], 8, seed=11, epoch=3, rank=1, world_size=2,
                                 max_shift=4, start_batch=5)
    resumed = list(resumed_loader)
    assert len(resumed_loader) == len(full) - 5 == len(resumed)
    assert resumed_loader.batches_per_epoch == len(full)
    for a, b in zip(full[5:], resumed, strict=True):
        assert torch.equal(a["tokens"], b["tokens"]) and torch.equal(a["coords"], b["coords"])
    with pytest.raises(ValueError, match="past the epoch"):
        EpochSampler(10, 5, 0, start_batch=3)


@pytest.mark.parametrize("k", [1, 3])
def test_tokens_are_the_genome_at_coords_with_rc_and_shift(corpora, k):
    """Decode every yielded window and compare it with the genome at its reported coords."""
    seqs, fasta, manifests = corpora
    tok = Tokenizer(k)
    max_shift = 20
    tokens, coords, batches = collect(make_loader(manifests[k], 32, seed=1, max_shift=max_shift,
                                                  rc_prob=0.5))
    assert batches[0]["tokens"].dtype == torch.int64
    assert tokens.shape[1] == tok.n_tokens(WINDOW - max_shift)
    genome, chroms = Genome(fasta), ["chrA", "chrB", "chrC"]
    comp = str.maketrans("ACGTN", "TGCAN")
    offsets = set()
    for row, (ci, start, rc) in zip(tokens, coords, strict=True):
        chrom = chroms[ci]
        window_start = (start // STRIDE) * STRIDE if start % STRIDE <= max_shift else None
        assert window_start is not None
        offsets.add(int(start - window_start))
        text = "".join(b if b in "ACGT" else "N" for b in genome.fetch(chrom, int(start),
                                                                       int(start) + 100))
        if rc:
            text = text.translate(comp)[::-1]
        assert np.array_equal(row, tok.encode(text))
    genome.close()
    assert 0.35 < coords[:, 2].mean() < 0.65                          # about half are RC
    assert min(offsets) == 0 and max(offsets) == max_shift and len(offsets) > 10


def test_eval_crop_is_centred_without_rc(corpora):
    _, _, manifests = corpora
    plain = collect(make_loader(manifests[1], 50, seed=0, rc_prob=1.0, train=False,
                                shuffle=False))
    cropped = collect(make_loader(manifests[1], 50, seed=0, rc_prob=1.0, max_shift=10,
                                  train=False, shuffle=False))
    assert not plain[1][:, 2].any()
    assert np.array_equal(cropped[0], plain[0][:, 5:WINDOW - 5])
    assert np.array_equal(cropped[1][:, 1], plain[1][:, 1] + 5)


def test_onehot_n_encodings():
    tokens = np.array([[5, 6, 7, 8, 4]])                               # A C G T [UNK]=N
    uniform = one_hot_from_tokens(tokens, "uniform")[0]
    centred = one_hot_from_tokens(tokens, "centred")[0]
    assert uniform.shape == (4, 5)
    assert np.array_equal(uniform[:, :4], np.eye(4)) and np.all(uniform[:, 4] == 0.25)
    assert np.all(centred[:, 4] == 0) and np.allclose(centred.sum(0), 0)
    assert np.allclose(centred[:, 0], [0.75, -0.25, -0.25, -0.25])
    # a convolution filter sees nothing at N under the centred encoding
    weights = np.random.default_rng(0).normal(size=4)
    assert weights @ centred[:, 4] == 0 and weights @ uniform[:, 4] == pytest.approx(
        weights.mean())


def test_onehot_loader_with_extra_track(corpora):
    seqs, _, manifests = corpora
    chroms = ["chrA", "chrB", "chrC"]
    track = {c: np.arange(len(seqs[c]), dtype=np.float32) + 10_000 * i
             for i, c in enumerate(chroms)}                             # value = position code
    x, coords, _ = collect(make_loader(manifests[1], 16, seed=2, max_shift=8, output="onehot",
                                       n_encoding="centred", extra_track=track), key="x")
    assert x.shape[1:] == (5, WINDOW - 8) and x.dtype == np.float32
    for row, (ci, start, rc) in zip(x, coords, strict=True):
        expected = 10_000 * ci + start + np.arange(WINDOW - 8)
        assert np.array_equal(row[4], expected[::-1] if rc else expected)
        assert np.allclose(row[:4].sum(0), 0)                           # centred columns
    tokens_loader = make_loader(manifests[1], 16, seed=2, max_shift=8, extra_track=track)
    tokens, coords2, batches = collect(tokens_loader)
    assert np.array_equal(coords, coords2)
    assert batches[0]["track"].shape == batches[0]["tokens"].shape
    with pytest.raises(ValueError, match="k=1"):
        make_loader(manifests[3], 4, seed=0, output="onehot")


def test_loader_refuses_a_changed_corpus(corpora, tmp_path):
    _, fasta, _ = corpora
    build_corpus(fasta, ["chrC"], tmp_path, Tokenizer(1), 100, 100, 0.5, 50, workers=1)
    shard = tmp_path / "shard_00000.npy"
    shard.write_bytes(shard.read_bytes()[:-1] + b"\x00")
    with pytest.raises(InputError, match="shard_00000.npy"):
        make_loader(tmp_path / "manifest.json", 4, seed=0)


def test_hash_uniform_is_uniform_and_keyed():
    u = hash_uniform(1, 0, np.arange(50_000), stream=1)
    assert abs(u.mean() - 0.5) < 0.01 and u.min() >= 0 and u.max() < 1
    assert np.histogram(u, bins=10, range=(0, 1))[0].min() > 4_500
    assert not np.array_equal(u[:100], hash_uniform(1, 1, np.arange(100), 1))
    assert not np.array_equal(u[:100], hash_uniform(1, 0, np.arange(100), 2))
    assert np.array_equal(u[[7, 3]], hash_uniform(1, 0, np.array([7, 3]), 1))
