"""Batch-aware contrastive embedding of single-cell counts, tested on a known artificial shift.

1. :func:`simulate_batches` splits cells at random into batches and applies a technical shift:
   a depth factor per batch × a log-normal factor per (batch, gene), then Poisson resampling.
   Batches hold the same cell types, so a good embedding can mix them completely.
2. :func:`putative_groups`: Leiden clusters of the shifted data after centring every gene
   within each batch (a crude linear correction). Leiden on the *uncorrected* data is not
   used: with a strong shift its clusters are batch-pure, and a within-group penalty would
   then never see two batches together (``run_scrna`` reports that purity).
3. :func:`train_contrastive`: an MLP encoder (log1p size-normalised input) trained with
   InfoNCE — two augmentations of one cell (binomial thinning + gene dropout) are positives,
   all other cells of the minibatch negatives — plus ``penalty_weight`` × the **within-group
   batch-mean penalty** (:func:`group_batch_penalty`): inside each putative group, the squared
   distance of every batch's mean embedding from the group's mean over batches.
4. :func:`batch_metrics`: batch mixing (normalised batch entropy of k-NN neighbourhoods,
   kBET-like acceptance rate, batch silhouette) and structure (ARI of Leiden vs the clusters of
   the unshifted data, silhouette w.r.t. those clusters).

Arrays: counts (n_cells, n_genes) integers; batch, group, cluster labels (n_cells,) integers.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy.stats import chi2
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors
from torch import nn

from .fit import FitSettings, Step, fit
from .scrna_dae import (
    Encoder,
    binomial_thin,
    latent_structure,
    log_normalise,
    neighbour_graph,
    silhouette,
)
from .seeding import seed_everything

# ---------------------------------------------------------------------------- simulation


@dataclass
class BatchShift:
    counts: np.ndarray          # (n, G) int64, shifted and resampled
    batch: np.ndarray           # (n,) int, batch of each cell
    depth_factors: np.ndarray   # (B,)
    gene_factors: np.ndarray    # (B, G)


def simulate_batches(counts: np.ndarray, n_batches: int, seed: int,
                     depth_factors: np.ndarray | None = None,
                     gene_log_sd: float = 0.5) -> BatchShift:
    """Random balanced batches; counts'[c, g] ~ Poisson(counts[c, g] × depth[b] × factor[b, g]).

    depth_factors default to ``linspace(1, 0.5, n_batches)``; factor[b, g] = exp(N(0, sd²)).
    """
    if n_batches < 2:
        raise ValueError(f"n_batches must be at least 2, got {n_batches}")
    rng = np.random.default_rng(seed)
    n, n_genes = counts.shape
    batch = rng.permutation(n) % n_batches
    depth = (np.linspace(1.0, 0.5, n_batches) if depth_factors is None
             else np.asarray(depth_factors, dtype=float))
    genes = np.exp(rng.normal(0.0, gene_log_sd, (n_batches, n_genes)))
    rate = np.asarray(counts, dtype=float) * depth[batch, None] * genes[batch]
    return BatchShift(rng.poisson(rate).astype(np.int64), batch, depth, genes)


def batch_centred_pca(counts: np.ndarray, batch: np.ndarray, n_comps: int,
                      seed: int) -> np.ndarray:
    """PCA (n, n_comps) of log1p-normalised counts with every gene centred within each batch."""
    x = np.asarray(log_normalise(counts), dtype=np.float64)
    for b in np.unique(batch):
        x[batch == b] -= x[batch == b].mean(0)
    x = np.clip(x / np.maximum(x.std(0), 1e-8), -10, 10)
    n_comps = min(n_comps, min(x.shape) - 1)
    return PCA(n_comps, random_state=seed, svd_solver="arpack").fit_transform(x)


def putative_groups(counts: np.ndarray, batch: np.ndarray, n_comps: int, seed: int,
                    resolution: float = 1.0) -> np.ndarray:
    """Putative biological groups (n,): Leiden on :func:`batch_centred_pca`."""
    labels, _ = neighbour_graph(batch_centred_pca(counts, batch, n_comps, seed), seed,
                                resolution)
    return labels


# ---------------------------------------------------------------------------- objective


def augment(counts: np.ndarray, keep: float, gene_dropout: float,
            rng: np.random.Generator) -> torch.Tensor:
    """One random view (n, G) float: binomial thinning, then each gene zeroed w.p. gene_dropout."""
    view = binomial_thin(counts, keep, rng)
    view[rng.random(view.shape) < gene_dropout] = 0
    return torch.from_numpy(view).float()


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE (NT-Xent) of unit-norm views (n, d): row i of z1 and z2 are positives."""
    z = torch.cat([z1, z2])
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    n = len(z1)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return nn.functional.cross_entropy(sim, target)


def group_batch_penalty(z: torch.Tensor, batch: torch.Tensor, group: torch.Tensor,
                        min_cells: int = 2) -> torch.Tensor:
    """Within-group batch-mean penalty of embeddings z (n, d).

    For each group holding ≥ 2 batches with ≥ ``min_cells`` cells each: the mean over those
    batches of ``||mean_z(group, batch) - mean over batches||²``; averaged over such groups.
    Zero when no group qualifies.
    """
    n_batches = int(batch.max()) + 1
    key = group * n_batches + batch
    cells, inverse = torch.unique(key, return_inverse=True)
    counts = torch.bincount(inverse, minlength=len(cells)).float()
    means = torch.zeros(len(cells), z.shape[1]).index_add_(0, inverse, z) / counts[:, None]
    ok = counts >= min_cells
    cells, means = cells[ok], means[ok]
    groups, g_inv = torch.unique(cells // n_batches, return_inverse=True)
    n_per_group = torch.bincount(g_inv, minlength=len(groups)).float()
    centre = torch.zeros(len(groups), z.shape[1]).index_add_(0, g_inv, means)
    centre = centre / n_per_group[:, None]
    sq = ((means - centre[g_inv]) ** 2).sum(1)
    per_group = torch.zeros(len(groups)).index_add_(0, g_inv, sq) / n_per_group
    valid = n_per_group >= 2
    if not valid.any():
        return z.sum() * 0.0
    return per_group[valid].mean()


@dataclass
class ContrastiveConfig:
    """Encoder size and training of the batch-aware contrastive model."""

    latent_dim: int = 16
    hidden: int = 128
    epochs: int = 30
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    temperature: float = 0.2
    thinning_keep: float = 0.5
    gene_dropout: float = 0.2
    penalty_weight: float = 10.0   # 0 = plain InfoNCE (the ablation)
    seed: int = 0
    threads: int = 1


def train_contrastive(counts: np.ndarray, batch: np.ndarray, group: np.ndarray,
                      cfg: ContrastiveConfig) -> tuple[Encoder, pd.DataFrame]:
    """Train the encoder; returns (encoder in eval mode, history epoch, loss, infonce, penalty)."""
    generator = seed_everything(cfg.seed, cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    counts = np.asarray(counts, dtype=np.int64)
    batch_t = torch.as_tensor(np.asarray(batch), dtype=torch.long)
    group_t = torch.as_tensor(np.asarray(group), dtype=torch.long)
    model = Encoder(counts.shape[1], cfg.latent_dim, cfg.hidden)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def step(rows: torch.Tensor) -> Step | None:
        if len(rows) < 2:
            return None
        x = counts[rows.numpy()]
        z1 = nn.functional.normalize(
            model(augment(x, cfg.thinning_keep, cfg.gene_dropout, rng)), dim=1)
        z2 = nn.functional.normalize(
            model(augment(x, cfg.thinning_keep, cfg.gene_dropout, rng)), dim=1)
        nce = info_nce(z1, z2, cfg.temperature)
        penalty = group_batch_penalty(torch.cat([z1, z2]), batch_t[rows].repeat(2),
                                      group_t[rows].repeat(2))
        loss = nce + cfg.penalty_weight * penalty
        return Step(loss, 1.0, {"loss": loss, "infonce": nce, "penalty": penalty})

    settings = FitSettings(epochs=cfg.epochs, batch_size=cfg.batch_size, monitor=None,
                           keep="last", loss_name="loss")
    result = fit(model, optimizer, step, len(counts), settings, generator, rngs=[rng],
                 log=io.StringIO())
    return model, result.history


@torch.no_grad()
def embed(model: Encoder, counts: np.ndarray, batch_size: int = 2048) -> np.ndarray:
    """Unit-norm embedding (n, latent_dim) of un-augmented counts (n, G)."""
    model.eval()
    parts = [nn.functional.normalize(
        model(torch.from_numpy(np.asarray(counts[i:i + batch_size], dtype=np.float32))), dim=1)
        for i in range(0, len(counts), batch_size)]
    return torch.cat(parts).numpy()


# ---------------------------------------------------------------------------- metrics


def _neighbour_batches(rep: np.ndarray, batch: np.ndarray, k: int) -> np.ndarray:
    """Batch counts (n, B) among each cell's k nearest neighbours (itself excluded)."""
    k = min(k, len(rep) - 1)
    idx = NearestNeighbors(n_neighbors=k + 1).fit(rep).kneighbors(rep, return_distance=False)
    n_batches = int(batch.max()) + 1
    neighbours = batch[idx[:, 1:]]
    return np.stack([(neighbours == b).sum(1) for b in range(n_batches)], axis=1)


def batch_mixing(rep: np.ndarray, batch: np.ndarray, seed: int, k: int = 30,
                 alpha: float = 0.05) -> dict[str, float]:
    """Batch mixing of rep (n, d) given batch (n,).

    batch_entropy: mean Shannon entropy of the batch mix of each cell's k-NN, divided by
    log(B) (1 = as mixed as possible, 0 = neighbours all from one batch).
    kbet_acceptance: kBET-like — fraction of cells whose k-NN batch counts pass a χ² test
    (level alpha) against the global batch frequencies (1 = well mixed).
    batch_silhouette: silhouette w.r.t. batch (≤ 0 mixed, near 1 separated).
    """
    counts = _neighbour_batches(rep, batch, k)
    n_batches = counts.shape[1]
    frac = counts / counts.sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.nansum(np.where(frac > 0, frac * np.log(frac), 0.0), axis=1)
    expected = np.bincount(batch, minlength=n_batches) / len(batch) * counts.sum(1,
                                                                                 keepdims=True)
    stat = ((counts - expected) ** 2 / expected).sum(1)
    p_value = chi2.sf(stat, df=n_batches - 1)
    return {"batch_entropy": float(entropy.mean() / np.log(n_batches)),
            "kbet_acceptance": float((p_value >= alpha).mean()),
            "batch_silhouette": silhouette(rep, batch, seed)}


def batch_metrics(rep: np.ndarray, batch: np.ndarray, clusters: np.ndarray, seed: int,
                  resolution: float = 1.0, umap: bool = False) -> dict:
    """Mixing (see :func:`batch_mixing`) and structure of rep (n, d).

    Structure: ari_unshifted_clusters (Leiden on rep vs clusters of the unshifted data),
    silhouette_unshifted_clusters. ``labels`` holds the Leiden labels on rep, ``umap`` its
    UMAP (n, 2) when asked (else None).
    """
    structure = latent_structure(rep, clusters, seed, resolution, umap)
    return {**batch_mixing(rep, batch, seed),
            "ari_unshifted_clusters": structure["ari"],
            "silhouette_unshifted_clusters": structure["silhouette"],
            "labels": structure["labels"], "umap": structure["umap"]}


def batch_purity(labels: np.ndarray, batch: np.ndarray) -> float:
    """Mean over cells of the largest batch fraction in the cell's cluster (1/B mixed, 1 pure)."""
    table = pd.crosstab(labels, batch).to_numpy()
    purity = table.max(1) / table.sum(1)
    return float((purity * table.sum(1)).sum() / table.sum())
