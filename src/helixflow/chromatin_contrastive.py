"""Sequence ↔ chromatin contrastive learning (issue 14, seed 000): align a bin's DNA with its
ChIP-exo occupancy across hundreds of proteins, then ask what the sequence side learned.

Two encoders: the project's sequence encoder (a pretrained one from ``encoder_dir``, else a fresh
one) + a projection head on its pooled descriptor, and a small MLP over the bin's chromatin view
(:mod:`helixflow.chromatin_view`) + a projection head. The loss is the symmetric InfoNCE with
in-batch negatives (:func:`helixflow.objectives.info_nce`) at the seeds' temperature
(:func:`helixflow.objectives.temperature_from_margin`, as pretraining). Training runs through
:func:`helixflow.fit.fit` on the training chromosomes; each step reads one strand of every bin,
reverse-complemented at random (the pooled descriptor would run both strands: twice the cost),
while every evaluation uses the RC-invariant ``encoder.pooled``. The kept weights have the best
valid top-1 retrieval (both directions, pools of ``pool_size`` fixed valid bins).

Evaluation on the test chromosomes:

- retrieval, sequence → chromatin and chromatin → sequence: top-k accuracy in disjoint seeded
  pools of ``pool_size`` bins (chance k / pool_size whatever the number of test bins) and over
  all test bins (chance k / N), with Wilson intervals. Bins with identical views cannot be told
  apart from the chromatin side: such candidates count as ties broken at random (expected
  accuracy), and ``ceiling`` is what a perfect model would reach.
- linear probes of TF binding (label: the bin holds a summit of that TF) on frozen pooled
  embeddings of the contrastive encoder, the encoder it started from and a random encoder:
  logistic regression, C chosen on valid, test AUROC with a stratified bootstrap interval and a
  paired bootstrap of the difference. Circularity: a probed TF's own track is part of the view
  the ``all_proteins`` encoder was aligned to, so its probe partly reads back its training
  target. The ``probed_held_out`` variant trains a second encoder on a view without every probed
  TF's track, and bins are selected without them (:mod:`helixflow.chromatin_view`); co-bound
  partners (e.g. Fhl1/Ifh1 with Rap1) can still carry the TF's signal into that view.

Outputs (``out_dir``): metrics.tsv (retrieval), probes.tsv, probe_gain.tsv, history.tsv,
proteins.tsv, encoder_{variant}/ (model.safetensors + config.json), record.json; one figure.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd
import torch
from torch import nn

from .chromatin_view import VIEW_DEFAULTS, ChromatinPairs, build_pairs
from .evaluate import bootstrap_metrics, paired_difference
from .files import write_tsv
from .fit import FitResult, FitSettings, Step, fit
from .mil import wilson_interval
from .models.encoders import build_encoder, encoder_tokenizer, load_encoder, save_encoder
from .models.rc import masked_mean, resolve_padding
from .objectives import ProjectionHead, info_nce, temperature_from_margin
from .records import write_record
from .transfer import embed, fit_probe

DEFAULTS: dict = {
    "view": dict(VIEW_DEFAULTS),
    "encoder": {"architecture": "dilated_cnn"},   # only without a pretrained encoder_dir
    "chromatin_encoder": {"hidden": 256, "layers": 2, "dropout": 0.1},
    "proj_dim": 64,
    # the seeds' rule (as pretraining): a positive at cosine 0.8 among negatives at 0 gets p 0.5
    "temperature": None, "target_sp": 0.8, "target_sn": 0.0, "target_p0": 0.5,
    # CPU budget: 8 epochs of 2,048 fresh training bins; the pretrained encoder learns slower
    "training": {"epochs": 8, "batch_size": 64, "rows_per_epoch": 2048, "lr": 1e-3,
                 "encoder_lr": 2e-4, "weight_decay": 0.01, "patience": 3, "valid_bins": 1024,
                 "max_grad_norm": 1.0},
    "retrieval": {"pool_size": 256, "ks": [1, 5, 10], "level": 0.95},
    # the five spine TFs (JASPAR motifs); bins subsampled for the probes' embeddings (CPU)
    "probe": {"targets": ["REB1", "ABF1", "CBF1", "MCM1", "RAP1"], "C": [0.01, 0.1, 1.0, 10.0],
              "max_iter": 2000, "train_bins": 4000, "valid_bins": 2000, "min_positives": 10,
              "n_boot": 1000, "level": 0.95},
    "holdout_probed": True,
    "batch_size_eval": 128,
}
DIRECTIONS = ("sequence_to_chromatin", "chromatin_to_sequence")


def merge_params(params: Mapping | None) -> dict:
    """:data:`DEFAULTS` overridden by ``params``, one level deep for the nested settings."""
    out = copy.deepcopy(DEFAULTS)
    for key, value in (params or {}).items():
        if isinstance(out.get(key), dict) and isinstance(value, Mapping):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


# ----------------------------------------------------------------------------- the model

class ChromatinMLP(nn.Module):
    """Chromatin view shape=(B, P) → features shape=(B, hidden): ``layers`` × (dense → GELU →
    LayerNorm → dropout)."""

    def __init__(self, n_proteins: int, hidden: int = 256, layers: int = 2,
                 dropout: float = 0.1) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        width = n_proteins
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.GELU(), nn.LayerNorm(hidden),
                       nn.Dropout(dropout)]
            width = hidden
        self.net = nn.Sequential(*blocks)
        self.hidden = hidden

    def forward(self, view: torch.Tensor) -> torch.Tensor:
        return self.net(view)


class PairedEncoders(nn.Module):
    """The sequence encoder (its pooled descriptor batch-normalised) and the chromatin MLP, each
    with a projection head to ``proj_dim``."""

    def __init__(self, sequence_encoder: nn.Module, n_proteins: int, hidden: int = 256,
                 layers: int = 2, dropout: float = 0.1, proj_dim: int = 64) -> None:
        super().__init__()
        self.sequence = sequence_encoder
        # pooled descriptors of different bins share most of their value (a pretrained or
        # random encoder's differ by little): batch norm centres and scales them for the head
        self.sequence_norm = nn.BatchNorm1d(sequence_encoder.d_model)
        self.sequence_head = ProjectionHead(sequence_encoder.d_model, proj_dim)
        self.chromatin = ChromatinMLP(n_proteins, hidden, layers, dropout)
        self.chromatin_head = ProjectionHead(hidden, proj_dim)

    def project_sequence(self, tokens: torch.Tensor, both_strands: bool = True) -> torch.Tensor:
        """Token ids shape=(B, L) → projections shape=(B, proj_dim): of ``encoder.pooled``
        (RC-invariant), or with ``both_strands=False`` of the mean of the given strand's
        features."""
        if both_strands:
            pooled = self.sequence.pooled(tokens)
        else:
            pad = resolve_padding(tokens, None)
            pooled = masked_mean(self.sequence(tokens, pad), pad)
        return self.sequence_head(self.sequence_norm(pooled.float()))

    def project_chromatin(self, view: torch.Tensor) -> torch.Tensor:
        """Chromatin views shape=(B, P) → projections shape=(B, proj_dim)."""
        return self.chromatin_head(self.chromatin(view))


@torch.no_grad()
def project(model: PairedEncoders, tokens: np.ndarray, view: np.ndarray,
            batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm projections of both sides, float32 each shape=(n, proj_dim); eval mode,
    pooled (RC-invariant) sequence descriptors."""
    model.eval()
    device = next(model.parameters()).device
    z_seq, z_chrom = [], []
    for i in range(0, len(tokens), batch_size):
        t = torch.from_numpy(tokens[i:i + batch_size].astype(np.int64)).to(device)
        v = torch.from_numpy(view[i:i + batch_size]).to(device)
        z_seq.append(nn.functional.normalize(model.project_sequence(t).float(), dim=-1).cpu())
        z_chrom.append(nn.functional.normalize(model.project_chromatin(v).float(), dim=-1)
                       .cpu())
    dim = model.sequence_head.net[-1].out_features
    if not z_seq:
        return np.zeros((0, dim), np.float32), np.zeros((0, dim), np.float32)
    return torch.cat(z_seq).numpy(), torch.cat(z_chrom).numpy()


# ----------------------------------------------------------------------------- retrieval

def view_groups(view: np.ndarray) -> np.ndarray:
    """Id of each row's distinct chromatin view, int64 shape=(n,): equal ids, equal views."""
    return np.unique(view, axis=0, return_inverse=True)[1].ravel().astype(np.int64)


def topk_hits(z_query: np.ndarray, z_candidates: np.ndarray, ks: Sequence[int],
              tie_groups: np.ndarray | None = None, chunk: int = 1024) -> np.ndarray:
    """Expected top-k hits of each query's partner (row i of ``z_candidates``), float64
    shape=(n, len(ks)).

    Similarity: dot products (cosines of unit vectors). With ``tie_groups`` (shape=(n,)) the
    other candidates of the partner's group are ties by construction (identical inputs) and are
    ranked with it at random: with g better candidates outside the group and e others in it, the
    hit probability is clip((k − g) / (e + 1), 0, 1). Without, every rank is strict.
    """
    n = len(z_query)
    ks_arr = np.asarray(ks, np.float64)
    hits = np.zeros((n, len(ks_arr)))
    for i in range(0, n, chunk):
        rows = np.arange(i, min(i + chunk, n))
        sim = z_query[rows] @ z_candidates.T                       # (b, n)
        own = sim[np.arange(len(rows)), rows][:, None]
        if tie_groups is None:
            better, same = (sim > own).sum(1), np.zeros(len(rows))
        else:
            tied = tie_groups[None, :] == tie_groups[rows][:, None]
            better = ((sim > own) & ~tied).sum(1)
            same = tied.sum(1) - 1
        hits[rows] = np.clip((ks_arr[None, :] - better[:, None]) / (same[:, None] + 1), 0, 1)
    return hits


def ceiling_hits(ks: Sequence[int], tie_groups: np.ndarray) -> np.ndarray:
    """Expected top-k hits of a perfect model that cannot separate identical views, shape=(n,
    len(ks)): min(1, k / group size)."""
    size = np.bincount(tie_groups)[tie_groups].astype(np.float64)
    return np.minimum(1.0, np.asarray(ks, np.float64)[None, :] / size[:, None])


def retrieval_table(z_seq: np.ndarray, z_chrom: np.ndarray, view: np.ndarray,
                    ks: Sequence[int] = (1, 5, 10), pool_size: int = 256, seed: int = 0,
                    level: float = 0.95) -> pd.DataFrame:
    """Top-k retrieval both ways, in seeded disjoint pools of ``pool_size`` bins (the
    remainder of a random order is not queried; fewer bins than a pool: one pool of all) and
    over all bins. ``z_seq``, ``z_chrom``: unit-norm projections shape=(n, D), row i the same
    bin; ``view``: the chromatin views shape=(n, P) (for ties and the ceiling).

    Columns: direction, pool ('pools' or 'all'), pool_size, k, n_queries, accuracy,
    accuracy_lo, accuracy_hi (Wilson), chance (k / pool_size), ceiling.
    """
    n = len(z_seq)
    order = np.random.default_rng(seed).permutation(n)
    size = min(pool_size, n)
    pools = [order[i:i + size] for i in range(0, n - size + 1, size)] if size else []
    rows = []
    partitions = {"pools": pools, "all": [np.arange(n)]}
    groups = {name: [view_groups(view[m]) for m in members]      # identical views tie
              for name, members in partitions.items()}
    for pool_name, members in partitions.items():
        for direction in DIRECTIONS:
            hit_parts, ceil_parts = [], []
            for m, g in zip(members, groups[pool_name], strict=True):
                if direction == "sequence_to_chromatin":
                    hit_parts.append(topk_hits(z_seq[m], z_chrom[m], ks, g))
                else:
                    hit_parts.append(topk_hits(z_chrom[m], z_seq[m], ks))
                ceil_parts.append(ceiling_hits(ks, g))
            hits = np.concatenate(hit_parts) if hit_parts else np.zeros((0, len(ks)))
            ceil = np.concatenate(ceil_parts) if ceil_parts else np.zeros((0, len(ks)))
            pool_n = size if pool_name == "pools" else n
            for j, k in enumerate(ks):
                lo, hi = wilson_interval(float(hits[:, j].sum()), len(hits), level)
                rows.append({"direction": direction, "pool": pool_name, "pool_size": pool_n,
                             "k": int(k), "n_queries": len(hits),
                             "accuracy": float(hits[:, j].mean()) if len(hits) else np.nan,
                             "accuracy_lo": lo, "accuracy_hi": hi,
                             "chance": min(1.0, k / pool_n) if pool_n else np.nan,
                             "ceiling": float(ceil[:, j].mean()) if len(ceil) else np.nan})
    return pd.DataFrame(rows)


def pooled_scores(model: PairedEncoders, tokens: np.ndarray, view: np.ndarray,
                  temperature: float, pool_size: int, batch_size: int, seed: int = 0,
                  eval_batch: int = 128) -> dict[str, float]:
    """Held-out scores for the training loop: ``valid_loss`` (InfoNCE in consecutive batches of
    ``batch_size``) and ``valid_top1`` (mean of both directions' top-1 accuracy in pools)."""
    z_seq, z_chrom = project(model, tokens, view, eval_batch)
    losses = [float(info_nce(torch.from_numpy(z_seq[i:i + batch_size]),
                             torch.from_numpy(z_chrom[i:i + batch_size]), temperature))
              for i in range(0, len(z_seq) - 1, batch_size) if len(z_seq[i:i + batch_size]) > 1]
    table = retrieval_table(z_seq, z_chrom, view, (1,), pool_size, seed)
    top1 = table[(table["pool"] == "pools")]["accuracy"].mean()
    return {"valid_loss": float(np.mean(losses)) if losses else np.nan,
            "valid_top1": float(top1)}


# ----------------------------------------------------------------------------- training

def contrastive_temperature(params: Mapping) -> float:
    """The fixed temperature, or the seeds' rule for the training batch (B − 1 negatives)."""
    if params.get("temperature") is not None:
        return float(params["temperature"])
    return temperature_from_margin(params["target_sp"], params["target_sn"],
                                   params["target_p0"], params["training"]["batch_size"])


def train_contrastive(model: PairedEncoders, tokens: np.ndarray, view: np.ndarray,
                      train_rows: np.ndarray, valid_rows: np.ndarray, params: Mapping,
                      seed: int = 0, device: torch.device | None = None, label: str = "",
                      log: TextIO = sys.stderr) -> FitResult:
    """InfoNCE over batches of training bins (one random strand each), the encoder at
    ``encoder_lr``, heads and chromatin MLP at ``lr``; keeps the epoch with the best valid
    top-1 retrieval on up to ``valid_bins`` fixed valid bins. ``tokens`` shape=(n, L), ``view``
    shape=(n, P): every bin; ``*_rows`` index them."""
    settings = params["training"]
    device = device or torch.device("cpu")
    model.to(device)
    temperature = contrastive_temperature(params)
    generator = torch.Generator().manual_seed(seed)
    flips = torch.Generator().manual_seed(seed + 1)
    rng = np.random.default_rng(seed)
    if len(valid_rows) > settings["valid_bins"]:
        valid_rows = np.sort(rng.choice(valid_rows, settings["valid_bins"], replace=False))
    encoder_ids = {id(p) for p in model.sequence.parameters()}
    optimizer = torch.optim.AdamW(
        [{"params": list(model.sequence.parameters()), "lr": settings["encoder_lr"]},
         {"params": [p for p in model.parameters() if id(p) not in encoder_ids],
          "lr": settings["lr"]}], weight_decay=settings["weight_decay"])
    batch = settings["batch_size"]

    def step(rows: torch.Tensor) -> Step | None:
        if len(rows) < 2:                          # InfoNCE needs a negative
            return None
        idx = train_rows[rows.numpy()]
        t = torch.from_numpy(tokens[idx].astype(np.int64))
        flip = torch.rand(len(idx), generator=flips) < 0.5
        t = torch.where(flip[:, None], model.sequence.rc_tokens(t), t).to(device)
        z_seq = model.project_sequence(t, both_strands=False)
        z_chrom = model.project_chromatin(torch.from_numpy(view[idx]).to(device))
        return Step(info_nce(z_seq, z_chrom, temperature), weight=float(len(idx)))

    fit_settings = FitSettings(
        epochs=settings["epochs"], batch_size=batch, monitor="valid_top1",
        higher_is_better=True, patience=settings["patience"],
        max_grad_norm=settings["max_grad_norm"],
        rows_per_epoch=min(settings["rows_per_epoch"] or len(train_rows), len(train_rows)))
    return fit(model, optimizer, step, len(train_rows), fit_settings, generator,
               lambda m: pooled_scores(m, tokens[valid_rows], view[valid_rows], temperature,
                                       params["retrieval"]["pool_size"], batch, seed,
                                       params["batch_size_eval"]),
               rngs=(rng,), device=device, label=label, log=log)


# ----------------------------------------------------------------------------- probes

def linear_probes(embeddings: Mapping[str, Mapping[str, np.ndarray]],
                  labels: Mapping[str, Mapping[str, np.ndarray]], settings: Mapping,
                  seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Logistic-regression probes of every target on every encoder's frozen embeddings.

    ``embeddings``: {encoder: {split: features shape=(n_split, d)}} (train, valid, test; the
    same bins in the same order for every encoder); ``labels``: {target: {split: 0/1
    shape=(n_split,)}}. C is chosen on valid (:func:`helixflow.transfer.fit_probe`); test AUROC
    with a stratified bootstrap interval. Returns (probes: target, encoder, n_pos, n_neg,
    auroc(_lo, _hi), auprc(_lo, _hi), valid_auroc, C; gains: the paired bootstrap of every
    encoder pair's test AUROC difference on identical resamples, target, encoder, reference,
    delta_auroc(_lo, _hi), ...)."""
    probes, gains = [], []
    names = list(embeddings)
    for target, y in labels.items():
        scores = {}
        for name in names:
            F = embeddings[name]
            scaler, clf, valid_auc, C = fit_probe(F["train"], y["train"], F["valid"],
                                                  y["valid"], settings)
            scores[name] = clf.decision_function(scaler.transform(F["test"]))
            probes.append({"target": target, "encoder": name,
                           **bootstrap_metrics(y["test"], scores[name], settings["n_boot"],
                                               seed, settings["level"]),
                           "valid_auroc": valid_auc, "C": C})
        for i, name in enumerate(names):
            for reference in names[i + 1:]:
                gains.append({"target": target, "encoder": name, "reference": reference,
                              **paired_difference(y["test"], scores[name], scores[reference],
                                                  settings["n_boot"], seed,
                                                  settings["level"])})
    return pd.DataFrame(probes), pd.DataFrame(gains)


def probe_bins(pairs: ChromatinPairs, settings: Mapping, seed: int) -> dict[str, np.ndarray]:
    """Rows of the probes' bins per split: a seeded subset of ``train_bins`` / ``valid_bins``
    (None = all), every test bin."""
    rng = np.random.default_rng(seed)
    out = {}
    for split in ("train", "valid", "test"):
        rows = pairs.rows(split)
        cap = settings.get(f"{split}_bins")
        if cap is not None and len(rows) > cap:
            rows = np.sort(rng.choice(rows, cap, replace=False))
        out[split] = rows
    return out


def probe_targets(pairs: ChromatinPairs, rows: Mapping[str, np.ndarray], targets: Sequence[str],
                  min_positives: int) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, str]]:
    """Labels of the probe targets with at least ``min_positives`` positive and negative bins in
    every split, and why each other target was skipped."""
    labels, skipped = {}, {}
    for target in targets:
        if target not in pairs.proteins:
            skipped[target] = "no peak file"
            continue
        y = pairs.labels(target).astype(np.int64)
        per = {s: y[r] for s, r in rows.items()}
        short = [s for s, v in per.items() if min(v.sum(), len(v) - v.sum()) < min_positives]
        if short:
            skipped[target] = f"fewer than {min_positives} positives or negatives in " \
                              f"{', '.join(short)}"
            continue
        labels[target] = per
    return labels, skipped


# ----------------------------------------------------------------------------- the stage

def run_chromatin_contrastive(fasta: str | Path, peaks: str | Path | Sequence[str | Path],
                              splits: Mapping[str, list[str]], out_dir: str | Path,
                              figure: str | Path | None = None,
                              aliases: str | Path | Mapping[str, str] | None = None,
                              encoder_dir: str | Path | None = None, params: Mapping | None
                              = None, seed: int = 0, device: torch.device | None = None,
                              log: TextIO = sys.stderr) -> pd.DataFrame:
    """Build the pairs, train (every protein; and without the probed TFs), evaluate retrieval
    and probes on the test chromosomes, write the outputs (module doc); returns metrics.tsv."""
    from .chromatin_plots import plot_chromatin_contrastive

    p = merge_params(params)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = device or torch.device("cpu")
    started = time.time()
    if encoder_dir:
        start_encoder, start_name = load_encoder(encoder_dir), "pretrained"
    else:
        torch.manual_seed(seed)
        start_encoder, start_name = build_encoder(p["encoder"]), "initial"
    targets = [t.upper() for t in p["probe"]["targets"]]
    pairs = build_pairs(fasta, peaks, splits, aliases, encoder_tokenizer(start_encoder),
                        ignore_for_selection=targets, seed=seed, log=log, **p["view"])
    rows = {s: pairs.rows(s) for s in ("train", "valid", "test")}
    for split, r in rows.items():
        if len(r) < 2:
            raise ValueError(f"the {split} split has {len(r)} kept bins; a contrastive model "
                             "needs at least 2 per split")
    held = [t for t in targets if t in pairs.proteins]
    variants = {"all_proteins": []}
    if p["holdout_probed"] and held:
        variants["probed_held_out"] = held
    ret = p["retrieval"]
    metrics, histories, encoders, results = [], [], {}, {}
    for variant, drop in variants.items():
        view, columns = pairs.view(p["view"]["value"], drop)
        torch.manual_seed(seed)
        model = PairedEncoders(copy.deepcopy(start_encoder), len(columns),
                               proj_dim=p["proj_dim"], **p["chromatin_encoder"]).to(device)
        test = rows["test"]
        for stage in ("untrained", "contrastive"):
            if stage == "contrastive":
                fitted = train_contrastive(model, pairs.tokens, view, rows["train"],
                                           rows["valid"], p, seed, device,
                                           f"chromatin {variant} ", log)
                histories.append(fitted.history.assign(variant=variant))
                results[variant] = {"best_epoch": fitted.best_epoch,
                                    "valid_top1": fitted.best_score,
                                    "train_seconds": round(fitted.seconds, 1),
                                    "proteins_in_view": len(columns)}
            z_seq, z_chrom = project(model, pairs.tokens[test], view[test],
                                     p["batch_size_eval"])
            table = retrieval_table(z_seq, z_chrom, view[test], ret["ks"], ret["pool_size"],
                                    seed, ret["level"])
            metrics.append(table.assign(variant=variant, model=stage))
        encoders[f"contrastive_{variant}"] = model.sequence
        save_encoder(model.sequence, out_dir / f"encoder_{variant}")
    metrics_table = pd.concat(metrics, ignore_index=True)
    metrics_table = metrics_table[["variant", "model"] + [c for c in metrics_table.columns
                                                          if c not in ("variant", "model")]]

    probe_rows = probe_bins(pairs, p["probe"], seed)
    labels, skipped = probe_targets(pairs, probe_rows, targets, p["probe"]["min_positives"])
    torch.manual_seed(seed + 1)
    encoders[start_name] = start_encoder
    encoders["random"] = build_encoder(start_encoder.config)
    probes, gains = pd.DataFrame(), pd.DataFrame()
    if labels:
        embeddings = {}
        for name, encoder in encoders.items():
            encoder.to(device)
            embeddings[name] = {s: embed(encoder, pairs.tokens[r].astype(np.int64),
                                         p["batch_size_eval"])
                                for s, r in probe_rows.items()}
        probes, gains = linear_probes(embeddings, labels, p["probe"], seed)
        probes.insert(2, "track_in_view", [
            e == "contrastive_all_proteins" for e in probes["encoder"]])

    write_tsv(out_dir / "metrics.tsv", metrics_table)
    write_tsv(out_dir / "probes.tsv", probes)
    write_tsv(out_dir / "probe_gain.tsv", gains)
    write_tsv(out_dir / "history.tsv", pd.concat(histories, ignore_index=True))
    write_tsv(out_dir / "proteins.tsv", pairs.peak_table)
    if figure is not None:
        plot_chromatin_contrastive(figure, metrics_table, probes)
    headline = metrics_table[(metrics_table["pool"] == "pools") & (metrics_table["k"] == 1)]
    results |= {
        "start_encoder": start_name, "bins": pairs.stats,
        "temperature": contrastive_temperature(p), "probe_skipped": skipped,
        "top1_in_pools": {f"{r.variant}/{r.model}/{r.direction}": round(r.accuracy, 4)
                          for r in headline.itertuples()},
        "chance_top1_in_pools": float(headline["chance"].iloc[0]),
        "seconds": round(time.time() - started, 1), "device": str(device)}
    inputs = {"fasta": fasta, **({"aliases": aliases} if isinstance(aliases, str | Path)
                                 else {})}
    if encoder_dir:
        inputs["encoder"] = Path(encoder_dir) / "model.safetensors"
    write_record(out_dir / "record.json", "chromatin_contrastive",
                 {**p, "seed": seed, "splits": dict(splits)}, inputs, results)
    print(f"chromatin contrastive: done in {results['seconds']:.0f} s", file=log, flush=True)
    return metrics_table
