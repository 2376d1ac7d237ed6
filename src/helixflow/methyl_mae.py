"""Masked autoencoder for CpG methylation (seed 000): block masks, model, baselines, sweep.

Regions are tiles of L consecutive CpGs (:mod:`helixflow.methylation`). Contiguous blocks of
``span`` CpGs covering a fraction ``coverage`` of each region are hidden; a small dilated 1-D
conv network sees the rest (beta, a visibility mask, log read depth, CpG spacing) and predicts
the methylation probability p of every CpG. Training maximises the binomial likelihood of the
hidden CpGs' read counts (meth of total), so deeply sequenced CpGs weigh more. Two baselines
predict the same CpGs: linear interpolation of the visible neighbours' beta along the genome,
and the mean beta of the region's visible CpGs.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import matplotlib
import numpy as np
import pandas as pd
import torch
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from scipy.special import gammaln, xlogy
from torch import nn

from .errors import InputError
from .files import write_json, write_tsv
from .fit import FitSettings, Step, fit
from .methylation import (
    Regions,
    block_split,
    make_regions,
    merge_replicates,
    read_methylation,
    subsample_regions,
)
from .plots import GREY, PALETTE, STYLE, new_figure, save_figure
from .records import write_record

P_EPS = 1e-3  # every model's p is clipped to [P_EPS, 1 - P_EPS] before scoring
MODELS = ("masked_ae", "neighbour_interp", "regional_mean")
MODEL_LABELS = {"masked_ae": "masked autoencoder", "neighbour_interp": "neighbour interpolation",
                "regional_mean": "regional mean"}
METRIC_COLUMNS = ["coverage", "span", "model", "n_cpgs", "mae_beta", "binom_ll_per_cpg",
                  "binom_ll_per_read"]
DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "region_cpgs": 64,          # CpGs per region (L)
    "block_regions": 10,        # consecutive regions per split block
    "valid_fraction": 0.1,      # of blocks
    "test_fraction": 0.2,       # of blocks
    "coverages": [0.15, 0.3, 0.5],  # fraction of each region's CpGs hidden
    "spans": [1, 4, 16],        # CpGs per hidden block
    "epochs": 20,
    "batch_size": 128,
    "lr": 3e-3,
    "patience": 4,              # epochs without a better valid loss before stopping
    "hidden": 32,               # channels of the conv network
    "threads": 2,
    "max_regions": 0,           # 0 = use every region; else subsample (each split in proportion)
    "train_per": "span",        # "span": one model per span, trained over all coverages;
                                # "setting": one model per coverage × span
    "bedgraph_coverage": None,  # reads assumed per CpG for bedGraph input (no counts there)
}


# ----------------------------------------------------------------------------- masks

def block_mask(n: int, length: int, coverage: float, span: int,
               rng: np.random.Generator) -> np.ndarray:
    """Hide non-overlapping blocks of ``span`` consecutive positions; bool, shape (n, length).

    Each row gets k blocks, k = floor(x) or floor(x) + 1 with x = coverage * length / span
    (randomly rounded so E[k * span / length] = coverage; k is capped at length // span).
    Blocks are placed as if the row's ends were joined (uniformly over all placements of k
    non-overlapping blocks on that circle), so every position is hidden with probability
    ``coverage`` – edge CpGs as often as central ones. A block crossing the end therefore shows
    up as two shorter runs, one at each end; blocks may touch.
    """
    if not 0 <= coverage <= 1 or span < 1 or span > length:
        raise ValueError(f"need 0 <= coverage <= 1 and 1 <= span <= {length}, "
                         f"got coverage={coverage}, span={span}")
    x = coverage * length / span
    k = np.floor(x).astype(int) + (rng.random(n) < x - np.floor(x))
    k = np.minimum(k, length // span)
    mask = np.zeros((n, length), dtype=bool)
    for kk in np.unique(k):
        if kk == 0:
            continue
        rows = np.flatnonzero(k == kk)
        slots = length - kk * span + kk  # stars and bars: choose kk of these slots
        chosen = np.sort(np.argsort(rng.random((len(rows), slots)), axis=1)[:, :kk], axis=1)
        starts = chosen - np.arange(kk) + np.arange(kk) * span  # (rows, kk) on a line
        starts += rng.integers(0, length, (len(rows), 1))  # rotate the line around the circle
        cols = (starts[:, :, None] + np.arange(span)).reshape(len(rows), -1) % length
        mask[rows[:, None], cols] = True
    return mask


def run_lengths(mask: np.ndarray, circular: bool = False) -> np.ndarray:
    """Lengths of the runs of True in each row of a bool (n, L) array, concatenated.

    ``circular``: a run that leaves the end continues at the start (as :func:`block_mask` places
    blocks); rows with no False are skipped.
    """
    if circular:
        mask = mask[~mask.all(axis=1)]
        shift = np.argmax(~mask, axis=1)  # start each row at a visible position
        mask = np.take_along_axis(mask, (np.arange(mask.shape[1]) + shift[:, None])
                                  % mask.shape[1], axis=1)
    padded = np.pad(mask.astype(np.int8), ((0, 0), (1, 1)))
    edges = np.diff(padded, axis=1)
    starts, ends = np.nonzero(edges == 1), np.nonzero(edges == -1)
    return ends[1] - starts[1]


# ----------------------------------------------------------------------------- likelihood

def binom_loglik(p: np.ndarray, meth: np.ndarray, total: np.ndarray) -> np.ndarray:
    """log Binomial(meth; total, p), elementwise; p is clipped to [P_EPS, 1 - P_EPS]."""
    p = np.clip(np.asarray(p, dtype=float), P_EPS, 1 - P_EPS)
    meth, total = np.asarray(meth, dtype=float), np.asarray(total, dtype=float)
    return (gammaln(total + 1) - gammaln(meth + 1) - gammaln(total - meth + 1)
            + xlogy(meth, p) + xlogy(total - meth, 1 - p))


def binom_loglik_logits(logits: torch.Tensor, meth: torch.Tensor,
                        total: torch.Tensor) -> torch.Tensor:
    """log Binomial(meth; total, sigmoid(logits)), elementwise and differentiable."""
    log_choose = (torch.lgamma(total + 1) - torch.lgamma(meth + 1)
                  - torch.lgamma(total - meth + 1))
    return (log_choose + meth * nn.functional.logsigmoid(logits)
            + (total - meth) * nn.functional.logsigmoid(-logits))


# ----------------------------------------------------------------------------- model

def cpg_spacing(pos: np.ndarray) -> np.ndarray:
    """log10(1 + bp to the previous / next CpG) / 4, float32 shape (n, 2, L) for pos (n, L).

    The first CpG's previous gap is its next gap and vice versa (regions are cut apart).
    """
    gaps = np.diff(pos, axis=1).astype(np.float32)
    if gaps.shape[1] == 0:
        return np.zeros((len(pos), 2, pos.shape[1]), dtype=np.float32)
    prev = np.concatenate([gaps[:, :1], gaps], axis=1)
    nxt = np.concatenate([gaps, gaps[:, -1:]], axis=1)
    return (np.log10(1 + np.stack([prev, nxt], axis=1)) / 4).astype(np.float32)


class RegionTensors:
    """The fixed per-CpG arrays of some regions as float32 tensors, shape (n, L).

    beta is 0 where uncovered; ``spacing`` is :func:`cpg_spacing`, shape (n, 2, L).
    """

    def __init__(self, regions: Regions) -> None:
        self.meth = torch.from_numpy(regions.meth.astype(np.float32))
        self.total = torch.from_numpy(regions.total.astype(np.float32))
        self.covered = self.total > 0
        self.beta = torch.where(self.covered, self.meth / self.total.clamp(min=1), 0.0)
        self.depth = torch.log1p(self.total) / 4
        self.spacing = torch.from_numpy(cpg_spacing(regions.pos))

    def __len__(self) -> int:
        return len(self.meth)

    def inputs(self, index: torch.Tensor | slice, hidden: torch.Tensor) -> torch.Tensor:
        """Model input, shape (n, 5, L): centred beta, visible, depth (0 where not visible),
        spacing to the previous and next CpG. Hidden and uncovered CpGs read beta 0.5."""
        visible = self.covered[index] & ~hidden
        vis = visible.float()
        return torch.cat([((self.beta[index] - 0.5) * vis)[:, None], vis[:, None],
                          (self.depth[index] * vis)[:, None], self.spacing[index]], dim=1)


class MethylMAE(nn.Module):
    """Dilated residual 1-D conv encoder + per-CpG (1×1 conv) decoder.

    Input shape (n, 5, L) (:meth:`RegionTensors.inputs`); output logits of p, shape (n, L).
    With kernel 5 and dilations 1, 2, 4, 8 each CpG sees 30 CpGs either side.
    """

    IN_CHANNELS = 5

    def __init__(self, hidden: int = 32, kernel: int = 5,
                 dilations: Sequence[int] = (1, 2, 4, 8)) -> None:
        super().__init__()
        self.embed = nn.Conv1d(self.IN_CHANNELS, hidden, 1)
        self.encoder = nn.ModuleList(
            nn.Conv1d(hidden, hidden, kernel, dilation=d, padding=d * (kernel - 1) // 2)
            for d in dilations)
        self.decoder = nn.Sequential(nn.Conv1d(hidden, hidden, 1), nn.GELU(),
                                     nn.Conv1d(hidden, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for conv in self.encoder:
            h = h + nn.functional.gelu(conv(h))
        return self.decoder(h).squeeze(1)


def _masked_loss(model: MethylMAE, data: RegionTensors, index: torch.Tensor | slice,
                 hidden: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(sum of -log-likelihood over hidden covered CpGs, their count)."""
    logits = model(data.inputs(index, hidden))
    select = hidden & data.covered[index]
    ll = binom_loglik_logits(logits[select], data.meth[index][select], data.total[index][select])
    return -ll.sum(), int(select.sum())


@torch.no_grad()
def predict_p(model: MethylMAE, data: RegionTensors, hidden: np.ndarray,
              batch_size: int = 1024) -> np.ndarray:
    """Methylation probability of every CpG, shape (n, L), given the bool (n, L) hidden mask."""
    model.eval()
    mask = torch.from_numpy(hidden)
    out = [torch.sigmoid(model(data.inputs(slice(i, i + batch_size), mask[i:i + batch_size])))
           for i in range(0, len(data), batch_size)]
    return torch.cat(out).numpy().astype(float)


def train_mae(train: Regions, valid: Regions, coverages: Sequence[float], span: int,
              params: dict, log: TextIO = sys.stderr) -> tuple[MethylMAE, pd.DataFrame]:
    """Train on ``train`` with fresh block masks every batch; early-stop on ``valid``.

    AdamW with a cosine learning-rate decay from ``lr`` to 0 over ``epochs``.
    Each batch draws its coverage from ``coverages``; valid masks are fixed (one per coverage).
    Loss = binomial -log-likelihood per hidden covered CpG. Returns (best model, history with
    epoch, train_loss, valid_loss, seconds).
    """
    seed, length = int(params["seed"]), train.pos.shape[1]
    rng = np.random.default_rng([seed, span, *(round(c * 1000) for c in coverages)])
    tr, va = RegionTensors(train), RegionTensors(valid)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MethylMAE(hidden=int(params["hidden"]))
    mean_beta = float(tr.meth.sum() / tr.total.sum().clamp(min=1))
    with torch.no_grad():
        model.decoder[-1].bias.fill_(float(np.log(mean_beta / (1 - mean_beta + 1e-9) + 1e-9)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(params["lr"]), weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, int(params["epochs"]))
    valid_masks = [torch.from_numpy(block_mask(len(va), length, c, span, rng)) for c in coverages]

    def shuffle() -> torch.Tensor:
        return torch.from_numpy(rng.permutation(len(tr)))

    def step(rows: torch.Tensor) -> Step | None:
        coverage = coverages[int(rng.integers(len(coverages)))]
        hidden = torch.from_numpy(block_mask(len(rows), length, coverage, span, rng))
        nll, n = _masked_loss(model, tr, rows, hidden)
        if n == 0:
            return None
        return Step(nll / n, n, {"train_loss": nll})

    def evaluate(model: MethylMAE) -> dict:
        parts = [_masked_loss(model, va, slice(None), m) for m in valid_masks]
        return {"valid_loss": sum(float(s) for s, _ in parts) / max(1, sum(n for _, n in parts))}

    settings = FitSettings(epochs=int(params["epochs"]), batch_size=int(params["batch_size"]),
                           monitor="valid_loss", higher_is_better=False,
                           patience=int(params["patience"] or 0))
    result = fit(model, optimizer, step, len(tr), settings, torch.Generator(), evaluate,
                 scheduler=schedule, shuffle=shuffle, rngs=[rng], label="  ", log=log)
    return model, result.history


# ----------------------------------------------------------------------------- baselines

def interpolation_baseline(pos: np.ndarray, beta: np.ndarray, visible: np.ndarray,
                           fallback: float) -> np.ndarray:
    """Linear interpolation in genomic position of the visible CpGs' beta, shape (n, L).

    Beyond the outermost visible CpG the nearest one is copied; a region with no visible CpG
    gets ``fallback``.
    """
    out = np.full(beta.shape, float(fallback))
    for i in np.flatnonzero(visible.any(axis=1)):
        seen = visible[i]
        out[i] = np.interp(pos[i], pos[i][seen], beta[i][seen])
    return out


def regional_mean_baseline(beta: np.ndarray, visible: np.ndarray, fallback: float) -> np.ndarray:
    """Mean beta of each region's visible CpGs, broadcast to shape (n, L); ``fallback`` if none."""
    count = visible.sum(axis=1)
    total = np.where(visible, beta, 0.0).sum(axis=1)
    mean = np.divide(total, count, out=np.full(len(count), float(fallback)), where=count > 0)
    return np.repeat(mean[:, None], beta.shape[1], axis=1)


def score(p: np.ndarray, meth: np.ndarray, total: np.ndarray, select: np.ndarray) -> dict:
    """Metrics over selected CpGs: n_cpgs, mae_beta, binom_ll_per_cpg, binom_ll_per_read."""
    p, k, n = p[select], meth[select], total[select]
    ll = binom_loglik(p, k, n)
    return {"n_cpgs": int(select.sum()),
            "mae_beta": float(np.mean(np.abs(np.clip(p, P_EPS, 1 - P_EPS) - k / n))),
            "binom_ll_per_cpg": float(ll.mean()), "binom_ll_per_read": float(ll.sum() / n.sum())}


def evaluate_setting(model: MethylMAE, test: Regions, coverage: float, span: int,
                     fallback: float, seed: int) -> tuple[list[dict], dict]:
    """Score the three models on the same seeded masks of the test regions.

    Returns (one metrics row per model, predictions {model: p (n, L)} plus ``hidden``).
    """
    rng = np.random.default_rng([seed, 7, span, round(coverage * 1000)])
    hidden = block_mask(len(test), test.pos.shape[1], coverage, span, rng)
    beta, covered = np.nan_to_num(test.beta), test.covered
    visible = covered & ~hidden
    preds = {"masked_ae": predict_p(model, RegionTensors(test), hidden),
             "neighbour_interp": interpolation_baseline(test.pos, beta, visible, fallback),
             "regional_mean": regional_mean_baseline(beta, visible, fallback)}
    select = hidden & covered
    rows = [{"coverage": coverage, "span": span, "model": name,
             **score(p, test.meth, test.total, select)} for name, p in preds.items()]
    return rows, {**preds, "hidden": hidden}


# ----------------------------------------------------------------------------- entry point

def resolve_params(params: dict | None) -> dict:
    """``DEFAULTS`` updated with ``params``; unknown keys and impossible values raise."""
    unknown = sorted(set(params or {}) - set(DEFAULTS))
    if unknown:
        raise InputError(f"unknown methylation parameter(s): {', '.join(unknown)}",
                         fix=f"use only {', '.join(DEFAULTS)}")
    p = {**DEFAULTS, **(params or {})}
    p["coverages"] = [float(c) for c in p["coverages"]]
    p["spans"] = [int(s) for s in p["spans"]]
    if not p["coverages"] or not all(0 < c < 1 for c in p["coverages"]):
        raise InputError("coverages must be fractions strictly between 0 and 1",
                         fix="e.g. coverages: [0.15, 0.3, 0.5]")
    if not p["spans"] or not all(1 <= s <= p["region_cpgs"] for s in p["spans"]):
        raise InputError(f"spans must lie in 1..region_cpgs ({p['region_cpgs']})",
                         fix="e.g. spans: [1, 4, 16]")
    if p["train_per"] not in ("span", "setting"):
        raise InputError(f"train_per must be 'span' or 'setting', not {p['train_per']!r}")
    return p


def headline_setting(params: dict) -> tuple[float, int]:
    """The middle coverage and middle span (in the given order): the numbers returned."""
    return (params["coverages"][len(params["coverages"]) // 2],
            params["spans"][len(params["spans"]) // 2])


def run_methylation_mae(inputs: Sequence[str | Path], out_dir: str | Path,
                        figure_dir: str | Path, params: dict | None = None, fmt: str = "auto",
                        log: TextIO = sys.stderr) -> dict:
    """Read, merge, split, train, sweep coverage × span, write tables, figures and a record.

    inputs: replicate files of one sample (``fmt`` as in :func:`read_methylation`); their
    counts are summed per CpG. params (missing keys take these defaults, :data:`DEFAULTS`):

    - seed 0 – splits, masks, initialisation and batch order all follow from it
    - region_cpgs 64 – CpGs per region; block_regions 10 – consecutive regions per split block
    - valid_fraction 0.1, test_fraction 0.2 – of the blocks
    - coverages [0.15, 0.3, 0.5] × spans [1, 4, 16] – the sweep (fraction hidden, block length)
    - epochs 20, batch_size 128, lr 0.003 (AdamW, cosine decay), patience 4, hidden 32
    - threads 2 – torch CPU threads (restored afterwards)
    - max_regions 0 – 0 keeps every region, else a seeded subsample (each split in proportion)
    - train_per "span" – one model per span trained on all coverages, evaluated at each; or
      "setting" – one model per coverage × span (3× the training time by default)
    - bedgraph_coverage None – reads assumed per CpG for bedGraph input

    Writes into out_dir: summary.json (counts, split sizes, timings), metrics.tsv (one row per
    coverage × span × model on the test regions' hidden covered CpGs), history.tsv (per-epoch
    losses of every trained model), record.json; into figure_dir: methylation_sweep.png/.svg
    and methylation_example.png/.svg. Returns the headline numbers at :func:`headline_setting`.
    """
    started = time.time()
    p = resolve_params(params)
    out_dir, figure_dir = Path(out_dir), Path(figure_dir)
    tables = [read_methylation(path, fmt, p["bedgraph_coverage"]) for path in inputs]
    if not tables:
        raise InputError("no methylation files given", fix="list at least one input file")
    cpgs = merge_replicates(tables)
    regions = make_regions(cpgs, int(p["region_cpgs"]))
    try:
        split = block_split(len(regions), int(p["block_regions"]), float(p["valid_fraction"]),
                            float(p["test_fraction"]), int(p["seed"]))
    except ValueError as err:
        raise InputError(str(err), path=inputs[0] if len(inputs) == 1 else None) from err
    keep = subsample_regions(split, int(p["max_regions"] or 0), int(p["seed"]))
    n_regions = len(regions)
    regions, split = regions.subset(keep), split[keep]
    parts = {name: regions.subset(np.flatnonzero(split == name))
             for name in ("train", "valid", "test")}
    seconds_ingest = time.time() - started
    train_beta = parts["train"].beta[parts["train"].covered]
    fallback = float(train_beta.mean()) if len(train_beta) else 0.5

    threads = torch.get_num_threads()
    torch.set_num_threads(int(p["threads"]))
    try:
        models, history = train_models(parts["train"], parts["valid"], p, log)
        seconds_train = time.time() - started - seconds_ingest
        metrics, examples = evaluate_models(models, parts["test"], p, fallback)
    finally:
        torch.set_num_threads(threads)
    setting = headline_setting(p)
    headline = _headline(metrics, setting)
    summary = {
        "inputs": [{"path": str(path), "rows": len(t)} for path, t in zip(inputs, tables,
                                                                           strict=True)],
        "cpgs_merged": len(cpgs), "cpgs_covered": int((cpgs["total"] > 0).sum()),
        "reads_per_cpg_mean": float(cpgs["total"].mean()),
        "beta_mean": float(cpgs["beta"].mean()),
        "chromosomes": sorted(cpgs["chrom"].unique().tolist()),
        "regions_all": n_regions,
        "regions_used": {name: len(part) for name, part in parts.items()},
        "subsampled": len(keep) < n_regions,
        "models_trained": len(models),
        "epochs_run": history.groupby("model", sort=False).size().to_dict(),
        "seconds": {"ingest": round(seconds_ingest, 2), "train": round(seconds_train, 2),
                    "total": None},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_tsv(out_dir / "metrics.tsv", metrics, float_format="%.6g")
    write_tsv(out_dir / "history.tsv", history, float_format="%.6g")
    title = (f"{', '.join(summary['chromosomes'])}, {len(inputs)} "
             + ("replicates merged" if len(inputs) > 1 else "file")
             + f"; {len(parts['test']):,} test regions")
    plot_sweep(metrics, figure_dir / "methylation_sweep.png", title)
    plot_example(parts["test"], examples[setting], setting, figure_dir /
                 "methylation_example.png")
    summary["seconds"]["total"] = round(time.time() - started, 2)
    headline["seconds"] = summary["seconds"]["total"]
    write_json(out_dir / "summary.json", summary)
    write_record(out_dir / "record.json", "methylation_mae", {**p, "fmt": fmt},
                 {f"input_{i + 1}": path for i, path in enumerate(inputs)}, headline)
    return headline


def _model_key(coverage: float, span: int, p: dict) -> tuple[tuple[float, ...], int]:
    """(training coverages, span) of the model that serves one sweep setting."""
    return (tuple(p["coverages"]), span) if p["train_per"] == "span" else ((coverage,), span)


def train_models(train: Regions, valid: Regions, p: dict, log: TextIO = sys.stderr,
                 ) -> tuple[dict, pd.DataFrame]:
    """One model per span (``train_per="span"``) or per coverage × span; returns
    ({(training coverages, span): model}, history with model, span, train_coverages, epoch,
    train_loss, valid_loss, seconds)."""
    models, histories = {}, []
    keys = dict.fromkeys(_model_key(c, s, p) for s in p["spans"] for c in p["coverages"])
    for coverages, span in keys:
        name = f"span={span}" + (f",coverage={coverages[0]}" if p["train_per"] == "setting"
                                 else "")
        print(f"methylation MAE {name}", file=log, flush=True)
        model, history = train_mae(train, valid, coverages, span, p, log)
        models[(coverages, span)] = model
        histories.append(history.assign(model=name, span=span,
                                        train_coverages=",".join(map(str, coverages))))
    history = pd.concat(histories, ignore_index=True)
    return models, history[["model", "span", "train_coverages", "epoch", "train_loss",
                            "valid_loss", "seconds"]]


def evaluate_models(models: dict, test: Regions, p: dict,
                    fallback: float) -> tuple[pd.DataFrame, dict]:
    """Metrics (:data:`METRIC_COLUMNS`) of every coverage × span × model on ``test``, and the
    predictions {(coverage, span): {model: p (n, L), "hidden": mask}}."""
    rows, examples = [], {}
    for span in p["spans"]:
        for coverage in p["coverages"]:
            new, preds = evaluate_setting(models[_model_key(coverage, span, p)], test, coverage,
                                          span, fallback, int(p["seed"]))
            rows += new
            examples[(coverage, span)] = preds
    return pd.DataFrame(rows)[METRIC_COLUMNS], examples


def _headline(metrics: pd.DataFrame, setting: tuple[float, int]) -> dict:
    rows = metrics[(metrics["coverage"] == setting[0]) & (metrics["span"] == setting[1])]
    rows = rows.set_index("model")
    out: dict[str, Any] = {"coverage": setting[0], "span": setting[1],
                           "n_cpgs": int(rows["n_cpgs"].iloc[0])}
    for model in MODELS:
        out[f"mae_{model}"] = round(float(rows.loc[model, "mae_beta"]), 5)
        out[f"ll_per_read_{model}"] = round(float(rows.loc[model, "binom_ll_per_read"]), 5)
    return out


# ----------------------------------------------------------------------------- figures


def plot_sweep(metrics: pd.DataFrame, path_png: str | Path, title: str) -> tuple[Path, Path]:
    """MAE of beta (top) and binomial log-likelihood per read (bottom) against coverage.

    One column per span, one colour per model (Okabe–Ito), on the test regions' hidden CpGs.
    """
    spans = sorted(metrics["span"].unique())
    with matplotlib.rc_context(STYLE):
        fig = new_figure(3.2 * len(spans) + 0.6, 6.2)
        axes = fig.subplots(2, len(spans), sharey="row", squeeze=False)
        for j, span in enumerate(spans):
            for m, model in enumerate(MODELS):
                rows = metrics[(metrics["span"] == span) & (metrics["model"] == model)]
                rows = rows.sort_values("coverage")
                x = 100 * rows["coverage"].to_numpy()
                for i, column in enumerate(("mae_beta", "binom_ll_per_read")):
                    axes[i, j].plot(x, rows[column], marker="s^o"[m], color=PALETTE[m],
                                    label=MODEL_LABELS[model])
            axes[0, j].set_title(f"hidden blocks of {span} CpG" + ("s" if span > 1 else ""))
            axes[1, j].set_xlabel("CpGs hidden per region (%)")
            for ax in axes[:, j]:
                ax.set_xticks(100 * np.sort(metrics["coverage"].unique()))
        axes[0, 0].set_ylabel("Mean absolute error of beta\n(lower is better)")
        axes[1, 0].set_ylabel("Binomial log-likelihood\nper read (nats, higher is better)")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        n_lo, n_hi = int(metrics["n_cpgs"].min()), int(metrics["n_cpgs"].max())
        legend = fig.legend(handles, labels, loc="outside lower center", ncols=len(MODELS),
                            title=f"scored on the hidden covered CpGs of the test regions "
                            f"({n_lo:,}–{n_hi:,} per point); every p clipped to "
                            f"[{P_EPS:g}, {1 - P_EPS:g}]")
        legend.get_title().set_fontsize(8.5)
        fig.suptitle(f"Imputing hidden CpGs in held-out test regions ({title})")
        return save_figure(fig, path_png)


def _example_region(test: Regions, preds: dict) -> int:
    """The test region whose hidden covered CpGs vary most in beta (at least 3 of them)."""
    select = preds["hidden"] & test.covered
    beta = np.where(select, np.nan_to_num(test.beta), 0.0)
    count = select.sum(axis=1)
    mean = beta.sum(axis=1) / np.maximum(count, 1)
    var = np.where(select, (beta - mean[:, None]) ** 2, 0.0).sum(axis=1) / np.maximum(count, 1)
    return int(np.argmax(np.where(count >= 3, var, -1.0)))


def plot_example(test: Regions, preds: dict, setting: tuple[float, int],
                 path_png: str | Path) -> tuple[Path, Path]:
    """One test region along its CpGs: observed beta (marker area ∝ reads), hidden blocks shaded,
    the three models' predictions at the hidden CpGs."""
    i = _example_region(test, preds)
    beta, total = test.beta[i], test.total[i]
    hidden, covered = preds["hidden"][i], test.covered[i]
    x = np.arange(len(beta))
    held = covered & hidden
    error = {name: np.abs(np.clip(preds[name][i][held], P_EPS, 1 - P_EPS) - beta[held]).mean()
             for name in MODELS}
    label = {name: f"{MODEL_LABELS[name]} (MAE here {error[name]:.3f})" for name in MODELS}

    def size(reads: np.ndarray | int) -> np.ndarray:  # marker area (pt²) for a read count
        return 10 + 70 * np.asarray(reads) / max(int(total.max()), 1)

    with matplotlib.rc_context(STYLE):
        fig = new_figure(10.0, 5.0)
        ax = fig.subplots()
        padded = np.pad(hidden.astype(np.int8), 1)
        for a, b in zip(np.flatnonzero(np.diff(padded) == 1),
                        np.flatnonzero(np.diff(padded) == -1), strict=True):
            ax.axvspan(a - 0.5, b - 0.5, color="#E8E8E8", zorder=0, linewidth=0)
        seen = covered & ~hidden
        ax.scatter(x[seen], beta[seen], s=size(total[seen]), color=GREY, zorder=2,
                   label="observed, visible to the models")
        ax.scatter(x[held], beta[held], s=size(total[held]), facecolor="none", edgecolor="black",
                   linewidth=1.2, zorder=3, label="observed, hidden (the target)")
        ax.plot(x, preds["regional_mean"][i], color=PALETTE[MODELS.index("regional_mean")],
                linestyle=":", linewidth=1.8, zorder=4, label=label["regional_mean"])
        for name, marker in (("masked_ae", "s"), ("neighbour_interp", "^")):
            ax.plot(x[hidden], preds[name][i][hidden], color=PALETTE[MODELS.index(name)],
                    marker=marker, markersize=6, linestyle="none",
                    zorder=6 if name == "masked_ae" else 5, label=label[name])
        ax.set(xlabel="CpG number in the region (in genomic order)",
               ylabel="Methylation (beta = methylated / all reads)", ylim=(-0.04, 1.04),
               xlim=(-1, len(beta)))
        coverage, span = setting
        ax.set_title(f"{coverage:.0%} of CpGs hidden in blocks of {span}; predictions shown at "
                     "hidden CpGs; the test region whose hidden CpGs vary most",
                     fontsize=9, color="#333333")
        handles, labels = ax.get_legend_handles_labels()
        handles.append(Patch(color="#E8E8E8", label="hidden block"))
        for reads in sorted({1, int(total.max())}):
            handles.append(Line2D([], [], marker="o", linestyle="none", color=GREY,
                                  markersize=float(np.sqrt(size(reads))),
                                  label=f"{reads} read{'s' if reads > 1 else ''} (area ∝ reads)"))
        fig.legend(handles=handles, loc="outside lower center", ncols=4)
        first, last = int(test.pos[i, 0]), int(test.pos[i, -1])
        fig.suptitle(f"Example test region {test.chrom[i]}:{first:,}–{last:,} "
                     f"({len(beta)} CpGs over {last - first + 1:,} bp)")
        return save_figure(fig, path_png)
