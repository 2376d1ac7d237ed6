"""Attribution of a binding CNN's logit to the bases of its input window.

All functions take a trained model (``BindingCNN`` or any module mapping ``(n, 4, L)`` float
one-hot ACGT to logits ``(n,)``) and ``X``, a numpy array ``(n, 4, L)`` (uint8 or float one-hot),
and return float32 numpy arrays ``(n, 4, L)`` in the input's frame. The model is run in eval
mode (its training flag is restored afterwards); nothing here changes its weights.

Methods (seed 002, "From Black Box to Sketchbook"):

* :func:`gradients` — d logit / d x, the plain gradient, for every base (hypothetical).
* :func:`saliency` — gradient × input: non-zero only at the observed base.
* :func:`ism` — in-silico mutagenesis: ``ism[i, b, l] = f(x with base b at l) − f(x)``;
  zero at the reference base. :func:`ism_contributions` turns it into a per-position
  attribution at the observed base, ``−mean over the 3 alternative bases of ism``, i.e. how
  much the observed base helps compared to an average substitution (positive = it matters for
  binding). That is what the logos show.
* :func:`deeplift_shap` — DeepLIFT (rescale rule, captum) averaged over dinucleotide-shuffled
  references of each sequence (DeepSHAP). ``hypothetical=True`` returns *hypothetical*
  contributions ``h[b, l] = m[b, l] − Σ_c m[c, l]·ref[c, l]`` (averaged over references), the
  input TF-MoDISco wants; the default returns *actual* contributions ``h · X``, whose sum over
  (4, L) equals ``f(x) − mean_k f(ref_k)`` (summation-to-delta).
* :func:`integrated_gradients` — captum's IG from a zero baseline or averaged over
  dinucleotide shuffles; actual contributions (× (x − baseline)), summing to the same delta up
  to the Riemann error of ``n_steps``.
* :func:`convergence_delta` — ``Σ attributions − (f(x) − mean f(references))`` per sequence.

DeepLIFT on ``BindingCNN`` (conv → ReLU → max-pool → [dense → ReLU] → logit) is computed
exactly here (:func:`_binding_cnn_multipliers`): captum's DeepLift hooks (checked, captum
0.9.0) violate summation-to-delta on its ReLU + MaxPool stack by ~30% of f(x) − f(ref) even
with fresh ``nn.ReLU`` modules, while a pool-only net converges; so captum's DeepLift is only
the fallback for other architectures, whose :func:`convergence_delta` should be checked.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

BASES = "ACGT"


# ----------------------------------------------------------------------------- helpers

def _as_tensor(X: np.ndarray | torch.Tensor) -> torch.Tensor:
    X = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X)
    if X.ndim != 3 or X.shape[1] != 4:
        raise ValueError(f"need one-hot X of shape (n, 4, L), got {tuple(X.shape)}")
    return X.to(torch.float32)


@contextlib.contextmanager
def _eval(model: nn.Module) -> Iterator[nn.Module]:
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


@torch.no_grad()
def logits(model: nn.Module, X: np.ndarray | torch.Tensor, batch_size: int = 1024) -> np.ndarray:
    """Model logits, shape=(n,) (X shape=(n, 4, L); also accepts (n, k, 4, L) → (n, k))."""
    Xt = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X).float()
    lead = Xt.shape[:-2]
    flat = Xt.reshape(-1, *Xt.shape[-2:])
    with _eval(model):
        out = torch.cat([model(flat[i:i + batch_size]).reshape(-1)
                         for i in range(0, len(flat), batch_size)]) if len(flat) else \
            torch.zeros(0)
    return out.numpy().reshape(lead)


class _Column(nn.Module):
    """Any (n,)-logit model as (n, 1) for captum."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.model(X).reshape(-1, 1)


def _is_binding_cnn(model: nn.Module) -> bool:
    head = getattr(model, "head", None)
    simple_head = isinstance(head, nn.Linear) or (
        isinstance(head, nn.Sequential)
        and [type(m) for m in head if not isinstance(m, nn.Dropout)] == [nn.Linear, nn.ReLU,
                                                                           nn.Linear])
    pool = getattr(model, "pool", None)
    global_max = isinstance(pool, nn.AdaptiveMaxPool1d) and pool.output_size in (1, (1,))
    return (isinstance(getattr(model, "conv", None), nn.Conv1d)
            and (isinstance(pool, nn.MaxPool1d) or global_max) and simple_head)


def _rescale(x: torch.Tensor, r: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """DeepLIFT rescale multiplier of ReLU: (relu(x) − relu(r)) / (x − r); gradient if x ≈ r."""
    d = x - r
    secant = (torch.relu(x) - torch.relu(r)) / torch.where(d.abs() < eps, torch.ones_like(d), d)
    return torch.where(d.abs() < eps, (x > 0).to(x.dtype), secant)


def _binding_cnn_multipliers(model: nn.Module, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Exact DeepLIFT (rescale) multipliers of the logit w.r.t. the input, shape=(n, C, L).

    conv → ReLU → max-pool → [Linear → ReLU →] Linear. As max-pool then ReLU equals ReLU then
    max-pool, the ReLU is applied to the pooled values; the max-pool follows captum's rule
    (the pooled difference goes to the input's arg-max, or to the reference's where the
    reference is larger), so Σ multipliers·(x − r) = f(x) − f(r) exactly. (captum's own hooks
    break summation-to-delta on this ReLU/max-pool stack: deltas of ~30% of f(x) − f(r).)
    """
    import torch.nn.functional as F

    pool = model.pool
    with torch.no_grad():
        zx, zr = model.conv(x), model.conv(r)
        if isinstance(pool, nn.AdaptiveMaxPool1d):         # global max: one window-wide pool
            args = (zx.shape[2], zx.shape[2], 0, 1, False, True)
        else:
            args = (pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode,
                    True)
        px, ix = F.max_pool1d(zx, *args)
        pr, ir = F.max_pool1d(zr, *args)
        hx, hr = torch.relu(px).flatten(1), torch.relu(pr).flatten(1)
        head = [m for m in model.head if not isinstance(m, nn.Dropout)] \
            if isinstance(model.head, nn.Sequential) else [model.head]
        if len(head) == 1:
            m_h = head[0].weight[0].expand_as(hx)
        else:
            first, last = head[0], head[2]
            s2 = _rescale(first(hx), first(hr))
            m_h = (s2 * last.weight[0]) @ first.weight
        m_p = m_h.reshape(px.shape) * _rescale(px, pr)
        top = torch.maximum(px, pr)
        contrib = torch.zeros_like(zx)
        contrib.scatter_add_(2, ix, m_p * (top - pr))
        contrib.scatter_add_(2, ir, m_p * (px - top))
        dz = zx - zr
        m_z = torch.where(dz.abs() > 0, contrib / torch.where(dz.abs() > 0, dz, 1.0), 0.0)
    xg = x.detach().clone().requires_grad_(True)
    (model.conv(xg) * m_z).sum().backward()
    return xg.grad.detach()


def dinucleotide_references(X: np.ndarray, n_shuffles: int = 10, seed: int = 0) -> np.ndarray:
    """Dinucleotide shuffles of every sequence, shape=(n, n_shuffles, 4, L), float32.

    tangermeme's Eulerian-path shuffle: each shuffle keeps the sequence's dinucleotide counts
    and its first and last base. Deterministic given ``seed``.
    """
    from tangermeme.ersatz import dinucleotide_shuffle

    Xt = _as_tensor(X)
    if len(Xt) == 0:
        return np.zeros((0, n_shuffles, *Xt.shape[1:]), dtype=np.float32)
    refs = dinucleotide_shuffle(Xt.to(torch.int8), n=n_shuffles, random_state=seed)
    return np.asarray(refs, dtype=np.float32)


# ----------------------------------------------------------------------------- methods

def gradients(model: nn.Module, X: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """d logit / d X for every base of every position, shape=(n, 4, L), float32."""
    Xt = _as_tensor(X)
    out = np.zeros(tuple(Xt.shape), dtype=np.float32)
    with _eval(model):
        for i in range(0, len(Xt), batch_size):
            x = Xt[i:i + batch_size].clone().requires_grad_(True)
            model(x).sum().backward()
            out[i:i + batch_size] = x.grad.numpy()
    return out


def saliency(model: nn.Module, X: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Gradient × input of the logit, shape=(n, 4, L): the gradient at the observed bases."""
    return gradients(model, X, batch_size) * _as_tensor(X).numpy()


@torch.no_grad()
def ism(model: nn.Module, X: np.ndarray, batch_size: int = 2048) -> np.ndarray:
    """In-silico saturation mutagenesis, shape=(n, 4, L), float32.

    ``ism[i, b, l] = logit(X[i] with base b at position l) − logit(X[i])``; 0 where b is
    the observed base (and at all-zero 'N' columns, which are left as they are). Mutants are
    scored ``batch_size`` at a time (n·3·L forward passes in all).
    """
    Xt = _as_tensor(X)
    n, _, L = Xt.shape
    out = np.zeros((n, 4, L), dtype=np.float32)
    if n == 0:
        return out
    ref = torch.as_tensor(logits(model, Xt))
    observed = Xt.argmax(1)                                 # (n, L)
    known = Xt.sum(1) > 0                                   # (n, L)
    alt = (torch.arange(1, 4)[None, :, None] + observed[:, None, :]) % 4   # (n, 3, L)
    seq_i, k_i, pos_i = torch.nonzero(known[:, None, :].expand(n, 3, L), as_tuple=True)
    base_i = alt[seq_i, k_i, pos_i]
    with _eval(model):
        for s in range(0, len(seq_i), batch_size):
            si, pi, bi = seq_i[s:s + batch_size], pos_i[s:s + batch_size], base_i[s:s + batch_size]
            mut = Xt[si].clone()
            rows = torch.arange(len(si))
            mut[rows, :, pi] = 0.0
            mut[rows, bi, pi] = 1.0
            delta = model(mut).reshape(-1) - ref[si]
            out[si.numpy(), bi.numpy(), pi.numpy()] = delta.numpy()
    return out


def ism_contributions(ism_scores: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Per-position ISM attribution at the observed base, shape=(n, 4, L).

    ``X · (−Σ_b ism[:, b, :] / 3)``: minus the mean change of the logit over the three
    substitutions, so a base the model needs scores positive (what the logos draw).
    """
    X = np.asarray(X, dtype=np.float32)
    return X * (-np.asarray(ism_scores, dtype=np.float32).sum(1, keepdims=True) / 3.0)


def _hypothetical(multipliers, inputs, baselines):
    """captum custom rule: hypothetical contribution of each base at each position."""
    m, b = multipliers[0], baselines[0]
    return (m - (m * b).sum(1, keepdim=True),)


def _repeat_against(X: torch.Tensor, refs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    k = refs.shape[1]
    return X.repeat_interleave(k, 0), refs.reshape(-1, *refs.shape[2:])


def deeplift_shap(model: nn.Module, X: np.ndarray, n_shuffles: int = 10, seed: int = 0,
                  hypothetical: bool = False, references: np.ndarray | None = None,
                  batch_size: int = 256) -> np.ndarray:
    """DeepLIFT/SHAP attributions vs dinucleotide-shuffled references, shape=(n, 4, L).

    ``references`` (n, k, 4, L) default to :func:`dinucleotide_references` (``n_shuffles``,
    ``seed``). Returns actual contributions (non-zero only at the observed bases; they sum to
    ``f(x) − mean_k f(ref_k)``), or with ``hypothetical=True`` the hypothetical contributions
    of all four bases at each position (× X gives the actual ones).
    """
    from captum.attr import DeepLift

    Xt = _as_tensor(X)
    refs = torch.as_tensor(references if references is not None
                           else dinucleotide_references(Xt, n_shuffles, seed)).float()
    n, k = refs.shape[:2]
    if n != len(Xt):
        raise ValueError(f"references are for {n} sequences, X has {len(Xt)}")
    out = np.zeros(tuple(Xt.shape), dtype=np.float32)
    per = max(1, batch_size // max(k, 1))
    with _eval(model):
        exact = _is_binding_cnn(model)
        explainer = None if exact else DeepLift(_Column(model))
        for i in range(0, n, per):
            x, r = _repeat_against(Xt[i:i + per], refs[i:i + per])
            if exact:
                m = _binding_cnn_multipliers(model, x, r)
                hyp = m - (m * r).sum(1, keepdim=True)
            else:
                hyp = explainer.attribute(x, baselines=r, target=0,
                                          custom_attribution_func=_hypothetical).detach()
            out[i:i + per] = hyp.reshape(-1, k, *Xt.shape[1:]).mean(1).numpy()
    return out if hypothetical else out * Xt.numpy()


# Positions (sequences × window length) that integrated gradients scores at once: 8,192
# sequences of 200 bp (the yeast default), 1,638 of 1 kb, so memory follows the positions,
# not the sequence count (8,192 × 1 kb took 6 GB on the synthetic human genome).
IG_POSITIONS = 8192 * 200


def ig_batch(n_points: int, length: int) -> int:
    """captum's ``internal_batch_size``: all ``n_points`` path points, or as many windows of
    ``length`` as :data:`IG_POSITIONS` allows."""
    return max(1, min(n_points, IG_POSITIONS // max(length, 1)))


def integrated_gradients(model: nn.Module, X: np.ndarray, n_steps: int = 50,
                         baseline: str = "shuffle", seed: int = 0, n_shuffles: int = 10,
                         references: np.ndarray | None = None,
                         batch_size: int = 640) -> np.ndarray:
    """Integrated gradients (captum, Gauss–Legendre, ``n_steps``), shape=(n, 4, L).

    ``baseline="zeros"``: one all-zero baseline; ``"shuffle"``: the mean of IG over
    ``n_shuffles`` dinucleotide shuffles (or the given ``references`` (n, k, 4, L)). Actual
    contributions, non-zero only where X differs from the baseline; they sum to
    ``f(x) − mean f(baseline)`` up to the integration error (see :func:`convergence_delta`).
    """
    from captum.attr import IntegratedGradients

    Xt = _as_tensor(X)
    if baseline == "zeros":
        refs = torch.zeros((len(Xt), 1, *Xt.shape[1:]))
    elif baseline == "shuffle":
        refs = torch.as_tensor(references if references is not None
                               else dinucleotide_references(Xt, n_shuffles, seed)).float()
    else:
        raise ValueError(f"baseline must be 'shuffle' or 'zeros', got {baseline!r}")
    k = refs.shape[1]
    out = np.zeros(tuple(Xt.shape), dtype=np.float32)
    net = _Column(model)
    explainer = IntegratedGradients(net)
    per = max(1, batch_size // k)
    with _eval(model):
        for i in range(0, len(Xt), per):
            x, r = _repeat_against(Xt[i:i + per], refs[i:i + per])
            att = explainer.attribute(x, baselines=r, target=0, n_steps=n_steps,
                                      internal_batch_size=ig_batch(len(x) * n_steps,
                                                                   Xt.shape[-1]))
            out[i:i + per] = att.detach().reshape(-1, k, *Xt.shape[1:]).mean(1).numpy()
    return out


def convergence_delta(model: nn.Module, X: np.ndarray, attributions: np.ndarray,
                      references: np.ndarray) -> np.ndarray:
    """Summation-to-delta error per sequence, shape=(n,).

    ``Σ_{b,l} attributions − (f(X) − mean_k f(references[:, k]))``; ``references`` shape
    (n, k, 4, L) or (n, 4, L). Near 0 for exact DeepLIFT/SHAP; for IG it shrinks with n_steps.
    """
    refs = np.asarray(references, dtype=np.float32)
    if refs.ndim == 3:
        refs = refs[:, None]
    target = logits(model, X) - logits(model, refs).mean(1)
    return np.asarray(attributions, dtype=np.float64).sum((1, 2)) - target


def relative_delta(model: nn.Module, X: np.ndarray, attributions: np.ndarray,
                   references: np.ndarray) -> float:
    """max |convergence delta| / max |f(X) − mean f(references)| (a scale-free check)."""
    refs = np.asarray(references, dtype=np.float32)
    if refs.ndim == 3:
        refs = refs[:, None]
    scale = np.abs(logits(model, X) - logits(model, refs).mean(1)).max(initial=0.0)
    delta = np.abs(convergence_delta(model, X, attributions, refs)).max(initial=0.0)
    return float(delta / max(scale, 1e-8))


def position_scores(attributions: np.ndarray) -> np.ndarray:
    """Per-position attribution, shape=(n, L): the sum over the 4 channels."""
    return np.asarray(attributions).sum(1)
