"""Batch-aware contrastive embedding: shift simulation, penalty, mixing metrics."""

import numpy as np
import torch

from helixflow import scrna_batch as sb
from helixflow import scrna_dae as dae


def test_simulate_batches_is_balanced_and_seeded():
    counts, _ = dae.synthetic_counts(300, 50, 3, seed=0)
    first = sb.simulate_batches(counts, 3, seed=5)
    second = sb.simulate_batches(counts, 3, seed=5)
    assert np.array_equal(first.counts, second.counts)
    assert first.counts.shape == counts.shape and first.counts.dtype == np.int64
    assert np.bincount(first.batch).tolist() == [100, 100, 100]
    depth = [first.counts[first.batch == b].sum(1).mean() for b in range(3)]
    assert depth[0] > depth[1] > depth[2]  # depth factors 1, 0.75, 0.5


def test_group_batch_penalty():
    z = torch.tensor([[1.0, 0], [1, 0], [0, 1], [0, 1], [5, 5], [5, 5]])
    group = torch.tensor([0, 0, 0, 0, 1, 1])
    batch = torch.tensor([0, 0, 1, 1, 0, 0])  # group 1 holds one batch: not penalised
    # group 0: batch means (1,0) and (0,1), centre (.5,.5): squared distance 0.5 each
    assert float(sb.group_batch_penalty(z, batch, group)) == 0.5
    same = torch.tensor([[1.0, 0], [0, 1], [1, 0], [0, 1]])
    assert float(sb.group_batch_penalty(same, torch.tensor([0, 0, 1, 1]),
                                        torch.tensor([0, 0, 0, 0]))) == 0.0
    assert float(sb.group_batch_penalty(same, torch.tensor([0, 0, 0, 0]),
                                        torch.tensor([0, 0, 1, 1]))) == 0.0


def test_info_nce_prefers_matching_views():
    gen = torch.Generator().manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(32, 8, generator=gen), dim=1)
    other = torch.nn.functional.normalize(torch.randn(32, 8, generator=gen), dim=1)
    assert sb.info_nce(z, z, 0.2) < sb.info_nce(z, other, 0.2)


def test_batch_mixing_metrics_on_extremes():
    rng = np.random.default_rng(0)
    batch = np.repeat([0, 1], 200)
    separated = rng.normal(0, 1, (400, 5)) + batch[:, None] * 20
    mixed = rng.normal(0, 1, (400, 5))
    sep, mix = sb.batch_mixing(separated, batch, 0), sb.batch_mixing(mixed, batch, 0)
    assert sep["batch_entropy"] < 0.05 and sep["kbet_acceptance"] < 0.05
    assert sep["batch_silhouette"] > 0.8
    assert mix["batch_entropy"] > 0.9 and mix["kbet_acceptance"] > 0.8
    assert abs(mix["batch_silhouette"]) < 0.05


def test_penalty_reduces_batch_separation():
    counts, labels = dae.synthetic_counts(800, 200, 4, seed=2, depth=800)
    shift = sb.simulate_batches(counts, 2, seed=0)
    groups = sb.putative_groups(shift.counts, shift.batch, n_comps=10, seed=0)
    results = {}
    for weight in (0.0, 10.0):
        cfg = sb.ContrastiveConfig(latent_dim=8, hidden=64, epochs=20, batch_size=128,
                                   penalty_weight=weight, seed=0)
        encoder, history = sb.train_contrastive(shift.counts, shift.batch, groups, cfg)
        rep = sb.embed(encoder, shift.counts)
        assert np.allclose(np.linalg.norm(rep, axis=1), 1.0, atol=1e-5)
        results[weight] = sb.batch_metrics(rep, shift.batch, labels, seed=0)
    before = sb.batch_metrics(dae.standard_pca(shift.counts, 8, 0), shift.batch, labels, 0)
    assert before["batch_entropy"] < 0.5  # the artificial shift separates the batches
    assert results[10.0]["batch_entropy"] > results[0.0]["batch_entropy"] + 0.3
    assert results[10.0]["kbet_acceptance"] > results[0.0]["kbet_acceptance"] + 0.3
    assert results[10.0]["batch_silhouette"] < results[0.0]["batch_silhouette"]
    # biology survives the correction
    assert results[10.0]["ari_unshifted_clusters"] >= results[0.0]["ari_unshifted_clusters"] - 0.1
