"""Denoising autoencoder: thinning, NB likelihood, dispersion fit, NB-DAE vs MSE-DAE."""

import numpy as np
import pytest
import torch
from scipy import stats

from helixflow import scrna_dae as dae


def test_thinning_keeps_p_times_counts_in_expectation():
    rng = np.random.default_rng(0)
    counts = np.tile(np.array([0, 1, 3, 20, 150]), (20000, 1))
    p = 0.3
    thinned = dae.binomial_thin(counts, p, rng)
    assert thinned.dtype == np.int64 and (thinned >= 0).all() and (thinned <= counts).all()
    se = np.sqrt(counts[0] * p * (1 - p) / len(counts))
    assert np.all(np.abs(thinned.mean(0) - p * counts[0]) <= 5 * se + 1e-12)
    row_sums = thinned.sum(1)  # library sizes are preserved in expectation: E = p × sum
    assert abs(row_sums.mean() - p * counts[0].sum()) < 5 * row_sums.std() / np.sqrt(len(counts))


def test_thinning_is_exactly_binomial():
    rng = np.random.default_rng(1)
    n, p, draws = 12, 0.35, 40000
    thinned = dae.binomial_thin(np.full(draws, n), p, rng)
    observed = np.bincount(thinned, minlength=n + 1)
    expected = stats.binom.pmf(np.arange(n + 1), n, p) * draws
    keep = expected > 5  # pool the sparse tail into one bin
    obs = np.append(observed[keep], observed[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum())
    assert stats.chisquare(obs, exp).pvalue > 1e-3


def test_split_molecules_partitions_every_molecule():
    rng = np.random.default_rng(2)
    counts = rng.poisson(3.0, (50, 40))
    train, heldout = dae.split_molecules(counts, 0.1, rng)
    assert np.array_equal(train + heldout, counts)
    assert (train >= 0).all() and (heldout >= 0).all()
    assert 0.07 < heldout.sum() / counts.sum() < 0.13


def test_nb_nll_matches_scipy():
    x = np.array([0, 0, 1, 3, 7, 25, 100, 0, 2], dtype=np.float64)
    mu = np.array([0.01, 2.0, 0.5, 3.0, 10.0, 20.0, 80.0, 150.0, 1e-3])
    theta = np.array([0.1, 1.0, 5.0, 0.5, 20.0, 3.0, 1000.0, 2.0, 50.0])
    ours = dae.nb_nll(torch.from_numpy(x), torch.from_numpy(mu), torch.from_numpy(theta))
    reference = -stats.nbinom.logpmf(x, n=theta, p=theta / (theta + mu))
    np.testing.assert_allclose(ours.numpy(), reference, rtol=1e-6, atol=1e-8)


def test_zinb_reduces_to_nb_and_sums_to_one():
    x = torch.arange(0, 400, dtype=torch.float64)
    mu, theta = torch.tensor(6.0, dtype=torch.float64), torch.tensor(2.0, dtype=torch.float64)
    no_zeros = torch.tensor(-50.0, dtype=torch.float64)
    np.testing.assert_allclose(dae.zinb_nll(x, mu, theta, no_zeros).numpy(),
                               dae.nb_nll(x, mu, theta).numpy(), rtol=1e-10, atol=1e-12)
    pmf = torch.exp(-dae.zinb_nll(x, mu, theta, torch.tensor(0.4, dtype=torch.float64)))
    assert float(pmf.sum()) == pytest.approx(1.0, abs=1e-8)


def test_fit_dispersion_recovers_theta():
    rng = np.random.default_rng(3)
    theta = np.array([0.3, 2.0, 10.0])
    mu = rng.lognormal(1.0, 0.8, (3000, 3))
    x = rng.poisson(rng.gamma(theta, mu / theta))
    fitted = dae.fit_dispersion(x, mu, max_cells=3000)
    np.testing.assert_allclose(fitted, theta, rtol=0.25)


def test_training_is_deterministic_for_a_seed():
    counts, _ = dae.synthetic_counts(120, 30, 2, seed=4)
    cfg = dae.DAEConfig(epochs=2, batch_size=32, latent_dim=4, hidden=16, seed=7)
    first = dae.train_dae(counts, cfg)[1]["loss"]
    second = dae.train_dae(counts, cfg)[1]["loss"]
    np.testing.assert_array_equal(first.to_numpy(), second.to_numpy())


def test_nb_dae_beats_mse_dae_on_heldout_molecules():
    counts, labels = dae.synthetic_counts(600, 200, 4, seed=1)
    cfg = dae.DAEConfig(epochs=25, batch_size=64, latent_dim=8, hidden=64, seed=0)
    result = dae.denoise_benchmark(counts, labels, cfg, heldout_fraction=0.1)
    m = result.metrics.set_index("model")
    per_molecule = m["heldout_nb_ll_per_molecule"]
    assert per_molecule["nb_dae"] > per_molecule["mse_dae"]
    assert per_molecule["nb_dae"] > per_molecule["gene_mean"]
    assert m.loc["nb_dae", "heldout_nb_ll_per_cell"] > m.loc["mse_dae", "heldout_nb_ll_per_cell"]
    assert result.latents["nb_dae"].shape == (600, 8)
    assert m.loc["nb_dae", "ari"] > 0.3  # the latent space keeps the planted clusters
    assert np.isnan(m.loc["gene_mean", "silhouette"])
