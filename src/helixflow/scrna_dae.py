"""Count denoising autoencoder for single-cell RNA: binomial thinning, NB loss, fair evaluation.

The corruption mimics how counts arise: a cell's molecules are captured independently, so
*binomial thinning* (keep each molecule with probability p) gives a shallower but otherwise
equally plausible profile. The NB-DAE reads ``log1p`` of the size-normalised thinned counts,
squeezes them through a small latent space and returns an NB mean
``mu = size factor × softmax(gene scores)`` with a per-gene dispersion ``theta``; its loss is
the NB negative log-likelihood of the *unthinned* counts. The MSE-DAE baseline has the same
layers but regresses ``log1p`` normalised values with a squared error.

Evaluation is molecular cross-validation: each cell's molecules are split by thinning into a
training part and a held-out part; models only see the training part; the held-out molecules
are scored under an NB whose mean is the model's predicted expression *proportions* scaled to
the held-out depth. All models (NB-DAE, MSE-DAE, per-gene-mean baseline) are scored with the
same protocol and a per-gene dispersion fitted the same way (see :func:`fit_dispersion`).
Arrays are dense ``(n_cells, n_genes)`` counts unless said otherwise.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import adjusted_rand_score, silhouette_score
from torch import nn

from .fit import FitSettings, Step, fit
from .seeding import seed_everything

TARGET_SUM = 1e4            # size normalisation: counts per 10,000 molecules
MIN_PROPORTION = 1e-7       # floor on every model's predicted proportions (no zero NB means)


# ---------------------------------------------------------------------------- counts


def binomial_thin(counts: np.ndarray, keep: float | np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    """Keep each molecule independently with probability ``keep``: Binomial(counts, keep).

    counts: non-negative integers, any shape; keep: scalar or broadcastable to counts.
    Returns int64 of the same shape; E[result] = keep × counts. Only non-zero entries are drawn.
    """
    counts = np.asarray(counts)
    out = np.zeros(counts.shape, dtype=np.int64)
    nz = counts > 0
    p = np.broadcast_to(np.asarray(keep, dtype=float), counts.shape)[nz]
    out[nz] = rng.binomial(counts[nz].astype(np.int64), p)
    return out


def split_molecules(counts: np.ndarray, heldout_fraction: float,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split every molecule into training or held-out: (train, heldout), both (n, G) int64.

    heldout ~ Binomial(counts, heldout_fraction), train = counts - heldout.
    """
    heldout = binomial_thin(counts, heldout_fraction, rng)
    return np.asarray(counts, dtype=np.int64) - heldout, heldout


def log_normalise(counts: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """``log1p(TARGET_SUM × counts / library size)`` per cell, shape (n, G) in and out."""
    if isinstance(counts, torch.Tensor):
        lib = counts.sum(1, keepdim=True).clamp(min=1.0)
        return torch.log1p(counts / lib * TARGET_SUM)
    counts = np.asarray(counts, dtype=np.float32)
    lib = np.maximum(counts.sum(1, keepdims=True), 1.0)
    return np.log1p(counts / lib * TARGET_SUM)


def synthetic_counts(n_cells: int, n_genes: int, n_clusters: int, seed: int,
                     depth: float = 1500.0, theta: float = 5.0, effect: float = 1.5
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Clustered NB counts for tests and demos: (counts (n, G) int64, cluster labels (n,)).

    Gene baselines are log-normal; each cluster multiplies 10% of the genes by ``exp(effect)``;
    cell depths are log-normal around ``depth``; counts ~ NB(mean, theta).
    """
    rng = np.random.default_rng(seed)
    base = rng.lognormal(0.0, 1.0, n_genes)
    profiles = np.tile(base, (n_clusters, 1))
    for k in range(n_clusters):
        up = rng.choice(n_genes, max(1, n_genes // 10), replace=False)
        profiles[k, up] *= np.exp(effect)
    profiles /= profiles.sum(1, keepdims=True)
    labels = rng.integers(0, n_clusters, n_cells)
    lib = rng.lognormal(np.log(depth), 0.3, n_cells)
    mu = lib[:, None] * profiles[labels]
    counts = rng.poisson(rng.gamma(theta, mu / theta))
    return counts.astype(np.int64), labels


# ---------------------------------------------------------------------------- likelihoods


def nb_nll(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor,
           eps: float = 1e-10) -> torch.Tensor:
    """Elementwise negative log-likelihood of counts ``x`` under NB(mean mu, dispersion theta).

    Var = mu + mu²/theta; equals ``-scipy.stats.nbinom.logpmf(x, n=theta, p=theta/(theta+mu))``.
    Shapes broadcast (e.g. x, mu (n, G); theta (G,)).
    """
    log_theta_mu = torch.log(theta + mu + eps)
    ll = (torch.lgamma(x + theta) - torch.lgamma(theta) - torch.lgamma(x + 1)
          + theta * (torch.log(theta + eps) - log_theta_mu)
          + x * (torch.log(mu + eps) - log_theta_mu))
    return -ll


def zinb_nll(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, pi_logit: torch.Tensor,
             eps: float = 1e-10) -> torch.Tensor:
    """Elementwise NLL of a zero-inflated NB; ``pi_logit`` (n, G): logit of the extra zeros."""
    log_pi = -nn.functional.softplus(-pi_logit)
    log_not_pi = -nn.functional.softplus(pi_logit)
    log_nb_zero = theta * (torch.log(theta + eps) - torch.log(theta + mu + eps))
    ll_zero = torch.logaddexp(log_pi, log_not_pi + log_nb_zero)
    ll_nonzero = log_not_pi - nb_nll(x, mu, theta, eps)
    return -torch.where(x < 0.5, ll_zero, ll_nonzero)


# ---------------------------------------------------------------------------- model


@dataclass
class DAEConfig:
    """Architecture and optimisation of one denoising autoencoder."""

    loss: str = "nb"               # "nb", "zinb" or "mse"
    latent_dim: int = 16
    hidden: int = 128
    epochs: int = 30
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    thinning_keep: float = 0.5     # corruption: keep each input molecule with this probability
    seed: int = 0
    threads: int = 1               # torch intra-op threads; 1 is fastest for these small MLPs


class Encoder(nn.Module):
    """Counts (n, G) → log1p size-normalised → MLP → latent (n, latent_dim)."""

    def __init__(self, n_genes: int, latent_dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_genes, hidden), nn.LayerNorm(hidden), nn.ReLU(),
                                 nn.Linear(hidden, latent_dim))

    def forward(self, counts: torch.Tensor) -> torch.Tensor:
        return self.net(log_normalise(counts))


class CountDAE(nn.Module):
    """Encoder → latent → decoder giving per-gene scores (n, G); NB/ZINB heads on top.

    For the NB losses the mean is ``size_factor × softmax(scores)``; for MSE the scores are
    the predicted ``log1p`` normalised values. ``log_theta`` (G,) is the NB dispersion.
    """

    def __init__(self, n_genes: int, cfg: DAEConfig) -> None:
        super().__init__()
        self.loss = cfg.loss
        self.encoder = Encoder(n_genes, cfg.latent_dim, cfg.hidden)
        self.decoder = nn.Sequential(nn.Linear(cfg.latent_dim, cfg.hidden), nn.ReLU(),
                                     nn.Linear(cfg.hidden, n_genes))
        self.log_theta = nn.Parameter(torch.zeros(n_genes))
        self.dropout_head = nn.Linear(cfg.latent_dim, n_genes) if cfg.loss == "zinb" else None

    def forward(self, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (gene scores (n, G), latent (n, latent_dim))."""
        z = self.encoder(counts)
        return self.decoder(z), z

    def loss_fn(self, corrupted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean loss of reconstructing ``target`` counts from ``corrupted`` counts."""
        scores, z = self(corrupted)
        if self.loss == "mse":
            return ((scores - log_normalise(target)) ** 2).mean()
        mu = target.sum(1, keepdim=True) * torch.softmax(scores, dim=1)
        theta = self.log_theta.exp()
        if self.loss == "zinb":
            return zinb_nll(target, mu, theta, self.dropout_head(z)).sum(1).mean()
        return nb_nll(target, mu, theta).sum(1).mean()


def train_dae(counts: np.ndarray, cfg: DAEConfig) -> tuple[CountDAE, pd.DataFrame]:
    """Train a :class:`CountDAE` on integer counts (n, G), corrupting each batch by thinning.

    Returns (model in eval mode, history with epoch, loss, seconds).
    """
    if cfg.loss not in ("nb", "zinb", "mse"):
        raise ValueError(f"unknown DAE loss {cfg.loss!r}; use 'nb', 'zinb' or 'mse'")
    generator = seed_everything(cfg.seed, cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    counts = np.asarray(counts, dtype=np.int64)
    model = CountDAE(counts.shape[1], cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def step(rows: torch.Tensor) -> Step:
        batch = counts[rows.numpy()]
        corrupted = torch.from_numpy(binomial_thin(batch, cfg.thinning_keep, rng)).float()
        return Step(model.loss_fn(corrupted, torch.from_numpy(batch).float()), len(batch))

    settings = FitSettings(epochs=cfg.epochs, batch_size=cfg.batch_size, monitor=None,
                           keep="last", loss_name="loss")
    result = fit(model, optimizer, step, len(counts), settings, generator, rngs=[rng],
                 log=io.StringIO())
    return model, result.history


@torch.no_grad()
def encode(model: CountDAE | Encoder, counts: np.ndarray, batch_size: int = 2048) -> np.ndarray:
    """Latent coordinates (n, latent_dim) of counts (n, G)."""
    model.eval()
    encoder = model.encoder if isinstance(model, CountDAE) else model
    parts = [encoder(torch.from_numpy(np.asarray(counts[i:i + batch_size], dtype=np.float32)))
             for i in range(0, len(counts), batch_size)]
    return torch.cat(parts).numpy()


@torch.no_grad()
def predict_proportions(model: CountDAE, counts: np.ndarray,
                        batch_size: int = 2048) -> np.ndarray:
    """Predicted expression proportions (n, G), rows summing to 1, from input counts (n, G).

    NB/ZINB: ``softmax(scores)`` (ZINB: of its NB component). MSE: predicted ``log1p`` values
    turned back into rates, ``expm1(max(score, 0))``, then divided by their row sum — the same
    way a user would turn that model's output into expression levels.
    """
    model.eval()
    out = []
    for i in range(0, len(counts), batch_size):
        scores, _ = model(torch.from_numpy(np.asarray(counts[i:i + batch_size],
                                                      dtype=np.float32)))
        if model.loss == "mse":
            rates = torch.expm1(scores.double().clamp(min=0.0))
            out.append(rates / rates.sum(1, keepdim=True).clamp(min=1e-300))
        else:
            out.append(torch.softmax(scores.double(), dim=1))
    return floor_proportions(torch.cat(out).numpy())


def floor_proportions(proportions: np.ndarray) -> np.ndarray:
    """Raise proportions (n, G) to at least MIN_PROPORTION and renormalise rows to 1."""
    p = np.maximum(np.asarray(proportions, dtype=np.float64), MIN_PROPORTION)
    return p / p.sum(1, keepdims=True)


# ---------------------------------------------------------------------------- evaluation


def nb_loglik(counts: np.ndarray, mu: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """NB log-likelihood per cell (n,) of counts (n, G) given means (n, G), dispersion (G,)."""
    x = torch.from_numpy(np.asarray(counts, dtype=np.float64))
    ll = -nb_nll(x, torch.from_numpy(np.asarray(mu, dtype=np.float64)),
                 torch.from_numpy(np.asarray(theta, dtype=np.float64)))
    return ll.sum(1).numpy()


def _theta_profile(x: torch.Tensor, mu: torch.Tensor, x_nz: torch.Tensor, cols: torch.Tensor,
                   log_theta: torch.Tensor) -> torch.Tensor:
    """NB log-likelihood per gene (G,) up to terms free of theta, at log_theta (G,).

    x, mu: (n, G); x_nz: the non-zero counts, cols: their gene indices.
    """
    theta = log_theta.exp()
    dense = len(x) * theta * log_theta - ((theta + x) * torch.log(theta + mu)).sum(0)
    theta_nz = theta[cols]
    lgammas = torch.lgamma(x_nz + theta_nz) - torch.lgamma(theta_nz)
    return dense + torch.zeros_like(theta).index_add_(0, cols, lgammas)


def fit_dispersion(counts: np.ndarray, mu: np.ndarray, bounds: tuple[float, float] = (1e-2, 1e3),
                   max_cells: int = 2000, seed: int = 0, iterations: int = 30) -> np.ndarray:
    """Per-gene NB dispersion theta (G,) maximising the likelihood of counts given means mu.

    counts, mu: (n, G). Golden-section search on log theta within ``bounds`` for all genes at
    once, on at most ``max_cells`` random cells.
    """
    if len(counts) > max_cells:
        rows = np.sort(np.random.default_rng(seed).choice(len(counts), max_cells, replace=False))
        counts, mu = counts[rows], mu[rows]
    x = torch.from_numpy(np.asarray(counts, dtype=np.float64))
    m = torch.from_numpy(np.asarray(mu, dtype=np.float64))
    rows, cols = torch.nonzero(x, as_tuple=True)
    x_nz = x[rows, cols]
    n_genes = x.shape[1]
    lo = torch.full((n_genes,), float(np.log(bounds[0])), dtype=torch.float64)
    hi = torch.full((n_genes,), float(np.log(bounds[1])), dtype=torch.float64)
    ratio = (np.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = _theta_profile(x, m, x_nz, cols, a), _theta_profile(x, m, x_nz, cols, b)
    for _ in range(iterations):
        left = fa > fb                      # maximum lies in [lo, b]
        hi = torch.where(left, b, hi)
        lo = torch.where(left, lo, a)
        new_a, new_b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        probe = torch.where(left, new_a, new_b)
        fp = _theta_profile(x, m, x_nz, cols, probe)
        a, fa, b, fb = (torch.where(left, new_a, b), torch.where(left, fp, fb),
                        torch.where(left, a, new_b), torch.where(left, fa, fp))
    return ((lo + hi) / 2).exp().numpy()


def heldout_scores(heldout: np.ndarray, proportions: np.ndarray,
                   theta: np.ndarray) -> dict[str, float]:
    """Mean held-out NB log-likelihood per cell and per molecule.

    heldout: counts (n, G); proportions: (n, G), rows sum to 1, scaled here to each cell's
    held-out depth; theta: (G,).
    """
    depth = heldout.sum(1, keepdims=True)
    ll = nb_loglik(heldout, depth * proportions, theta)
    return {"heldout_nb_ll_per_cell": float(ll.mean()),
            "heldout_nb_ll_per_molecule": float(ll.sum() / max(depth.sum(), 1))}


def gene_mean_proportions(counts: np.ndarray, n_cells: int) -> np.ndarray:
    """Trivial baseline: every cell gets the pooled gene proportions of counts; (n_cells, G)."""
    pooled = np.asarray(counts, dtype=np.float64).sum(0)
    return floor_proportions(np.tile(pooled / max(pooled.sum(), 1.0), (n_cells, 1)))


@dataclass
class DenoiseResult:
    metrics: pd.DataFrame                      # one row per model
    latents: dict[str, np.ndarray]             # model → (n, latent_dim), from the full counts
    leiden: dict[str, np.ndarray]              # model → Leiden labels on its latent space
    umaps: dict[str, np.ndarray | None]        # model → UMAP (n, 2) of its latent, if asked
    history: pd.DataFrame                      # model, epoch, loss, seconds
    theta: dict[str, np.ndarray] = field(default_factory=dict)


def denoise_benchmark(counts: np.ndarray, clusters: np.ndarray, cfg: DAEConfig,
                      heldout_fraction: float = 0.1, resolution: float = 1.0,
                      umap: bool = False) -> DenoiseResult:
    """Train the NB-DAE and the MSE-DAE on a molecule split and score all models.

    counts: (n, G) integers; clusters: (n,) reference Leiden labels of the full data.
    Protocol (identical for every model):

    1. ``train, heldout = split_molecules(counts, heldout_fraction)``; models train on ``train``.
    2. Dispersion: ``train`` is split once more the same way into ``a`` + ``b``; theta is
       fitted on ``b`` with means = the model's proportions predicted from ``a`` × depth of
       ``b``. So theta describes the scatter of *unseen* molecules around the prediction for
       every model alike (thinning an NB keeps its theta), and held-out molecules stay unseen.
    3. Held-out: proportions predicted from ``train`` × held-out depth, scored with that theta.

    Latent structure: latents of the full counts; silhouette w.r.t. ``clusters``; ARI between
    Leiden on the latent space and ``clusters``; UMAP of each latent when ``umap``.
    """
    rng = np.random.default_rng(cfg.seed)
    train, heldout = split_molecules(counts, heldout_fraction, rng)
    part_a, part_b = split_molecules(train, heldout_fraction, rng)
    depth_b = part_b.sum(1, keepdims=True)
    models, histories = {}, []
    for name, loss in (("nb_dae", "nb"), ("mse_dae", "mse")):
        model, history = train_dae(train, replace(cfg, loss=loss))
        models[name] = model
        histories.append(history.assign(model=name))
    proportions_a = {name: predict_proportions(m, part_a) for name, m in models.items()}
    proportions_a["gene_mean"] = gene_mean_proportions(part_a, len(counts))
    proportions = {name: predict_proportions(m, train) for name, m in models.items()}
    proportions["gene_mean"] = gene_mean_proportions(train, len(counts))
    rows, latents, leiden, umaps, thetas = [], {}, {}, {}, {}
    for name in ("nb_dae", "mse_dae", "gene_mean"):
        theta = fit_dispersion(part_b, depth_b * proportions_a[name], seed=cfg.seed)
        row = {"model": name, **heldout_scores(heldout, proportions[name], theta),
               "silhouette": np.nan, "ari": np.nan, "median_theta": float(np.median(theta))}
        if name in models:
            latents[name] = encode(models[name], counts)
            row.update(latent_structure(latents[name], clusters, cfg.seed, resolution, umap))
            leiden[name], umaps[name] = row.pop("labels"), row.pop("umap")
        thetas[name] = theta
        rows.append(row)
    history = pd.concat(histories, ignore_index=True)
    return DenoiseResult(pd.DataFrame(rows), latents, leiden, umaps,
                         history[["model", "epoch", "loss", "seconds"]], thetas)


# ---------------------------------------------------------------------------- structure


def neighbour_graph(rep: np.ndarray, seed: int, resolution: float = 1.0,
                    n_neighbors: int = 15, umap: bool = False
                    ) -> tuple[np.ndarray, np.ndarray | None]:
    """Leiden labels (n,) and optionally UMAP coordinates (n, 2) of a representation (n, d).

    scanpy: exact (scikit-learn) k-NN graph → Leiden (igraph, fixed ``random_state``) → UMAP.
    """
    import anndata as ad
    import scanpy as sc

    adata = ad.AnnData(obs=pd.DataFrame(index=[str(i) for i in range(len(rep))]))
    adata.obsm["X_rep"] = np.asarray(rep, dtype=np.float32)
    sc.pp.neighbors(adata, n_neighbors=min(n_neighbors, len(rep) - 1), use_rep="X_rep",
                    random_state=seed, transformer="sklearn")
    sc.tl.leiden(adata, resolution=resolution, random_state=seed, flavor="igraph",
                 n_iterations=2, directed=False)
    coords = None
    if umap:
        sc.tl.umap(adata, random_state=seed, maxiter=500 if len(rep) <= 2000 else 200)
        coords = adata.obsm["X_umap"].copy()
    return adata.obs["leiden"].astype(int).to_numpy(), coords


def silhouette(rep: np.ndarray, labels: np.ndarray, seed: int, max_cells: int = 4000) -> float:
    """Euclidean silhouette of rep (n, d) w.r.t. labels (n,), on at most max_cells cells."""
    if len(np.unique(labels)) < 2:
        return float("nan")
    sample = min(max_cells, len(rep))
    return float(silhouette_score(rep, labels, sample_size=sample, random_state=seed))


def latent_structure(rep: np.ndarray, clusters: np.ndarray, seed: int,
                     resolution: float = 1.0, umap: bool = False) -> dict:
    """Structure of rep (n, d) w.r.t. reference clusters (n,), from one k-NN graph.

    silhouette (Euclidean, w.r.t. clusters), ari (Leiden on rep vs clusters), labels (that
    Leiden, (n,)) and umap ((n, 2) coordinates or None).
    """
    labels, coords = neighbour_graph(rep, seed, resolution, umap=umap)
    return {"silhouette": silhouette(rep, clusters, seed),
            "ari": float(adjusted_rand_score(clusters, labels)), "labels": labels,
            "umap": coords}


def standard_pca(counts: np.ndarray, n_comps: int, seed: int) -> np.ndarray:
    """The standard scanpy recipe: normalise to 1e4, log1p, scale (clip 10), PCA; (n, n_comps)."""
    import anndata as ad
    import scanpy as sc

    adata = ad.AnnData(np.asarray(counts, dtype=np.float32))
    sc.pp.normalize_total(adata, target_sum=TARGET_SUM)
    sc.pp.log1p(adata)
    sc.pp.scale(adata, max_value=10)
    n_comps = min(n_comps, min(adata.shape) - 1)
    sc.pp.pca(adata, n_comps=n_comps, random_state=seed, svd_solver="arpack")
    return adata.obsm["X_pca"].copy()
