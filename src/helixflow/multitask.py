"""Multi-task binding over many targets: label matrix, masked training, fair evaluation, filters.

One model over many ChIP targets at once (seed 002, "Learning Across Boundaries"): a shared
convolutional trunk and one head per target (:mod:`helixflow.models.multitask`).

Windows and labels
------------------
* Windows are the union of every target's summit windows (``width`` bp centred on a summit;
  summits of any targets closer than ``merge_bp`` to an already kept centre share its window),
  plus GC-matched genomic background windows (``negative_ratio`` per summit window, per split),
  drawn at least ``width / 2 + negative_flank`` bp from every summit of every target.
* A window's split is its chromosome's; windows on valid/test chromosomes are only in that
  split, so held-out chromosomes never reach training. Windows overlapping the blacklist, with
  more than ``max_n_fraction`` N, or running off a chromosome are dropped.
* Label of target t for a window centred at c, with d the distance from c to t's nearest
  summit: 1 when ``d <= positive_radius``; 0 when ``d > width / 2 + negative_flank`` (no summit
  in the window nor in a flank beyond it); unknown (-1, masked out of loss and metrics) in
  between, where a real site may sit inside the window off centre. A 0 also becomes unknown
  when the window plus its flanks overlap the blacklist: the experiment reports no peaks
  there, so "no summit" is not evidence of no binding. (Blacklisted windows themselves are
  dropped, which is the same as unknown for every target.)

Evaluation (the fair comparison): each target that has single-task shards is scored on *its
own* single-task test windows with its multi-task head, beside the single-task CNN's AUROC;
every target is also scored on the multi-task test windows whose label for it is known.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import torch

from .config import overlay
from .device import resolve_device
from .errors import InputError
from .evaluate import (
    METRIC_COLUMNS,
    auroc_or_nan,
    bootstrap_metrics,
    paired_difference,
    read_predictions,
    write_predictions,
)
from .files import write_tsv
from .fit import FitSettings, Step, fit
from .genome import one_hot_windows
from .intervals import (
    background_negatives,
    check_no_leak,
    nearest_distance,
    read_blacklist,
    read_peaks,
    resolve_splits,
    usable_windows,
)
from .models.multitask import (
    UNKNOWN,
    MultiTaskCNN,
    MultiTaskConfig,
    masked_bce,
    n_parameters,
    save_multitask,
)
from .motif_report import filter_ppms
from .motifs import (
    jaspar_motifs,
    tomtom_matches,
    trim_ppm,
    write_meme,
)
from .plots import GREY, STYLE, new_figure, plot_learning_curves, plot_metric_summary, save_figure
from .records import write_record
from .seeding import seed_everything
from .shards import load_split
from .tiles import tiles_for
from .train import gather_batch, predict_batch, rc

DEFAULTS: dict = {
    "splits": {"valid": ["chrVII", "chrX"], "test": ["chrIV", "chrXV"], "train": []},
    "width": 200,
    "merge_bp": 20,
    "positive_radius": 50,
    "negative_flank": 50,
    "negative_ratio": 1.0,
    "gc_bins": 20,
    "max_n_fraction": 0.01,
    "seed": 42,
    "threads": 1,
    "model": {"filters": 128, "kernel": 19, "dense": 0, "dropout": 0.2},
    # pos_weight 'balanced' and dense 0 were chosen on the mean valid AUROC of the yeast run
    # (0.852, against 0.836 for 'sqrt', 0.808 for 'none', 0.824 for balanced with dense 64).
    "training": {"epochs": 40, "batch_size": 128, "lr": 0.003, "weight_decay": 0.0001,
                 "patience": 6, "rc_augment": True, "rc_average": True, "monitor": 4000,
                 "pos_weight": "balanced"},
    "single_task_model": "cnn",
    "n_boot": 1000,
    "level": 0.95,
    "motifs": {"activation_threshold": 0.5, "min_sites": 10, "max_windows": 5000,
               "jaspar_tax_group": "fungi", "jaspar_collection": "CORE", "jaspar_release": None,
               "q_threshold": 0.05, "n_top_targets": 3, "n_matches": 10,
               "max_heatmap_filters": 40},
}

AUROC_COLUMNS = ["target", "n_pos", "n_neg", "auroc_multitask", "auroc_multitask_lo",
                 "auroc_multitask_hi", "auroc_single_task", "auroc_single_task_lo",
                 "auroc_single_task_hi", "delta_auroc", "delta_auroc_lo", "delta_auroc_hi",
                 "valid_auroc_multitask"]
MASKED_COLUMNS = ["target", "n_pos", "n_neg", "n_unknown", "auroc", "auroc_lo", "auroc_hi",
                  "auprc", "auprc_lo", "auprc_hi"]
FILTER_COLUMNS = ["filter", "n_sites", "best_jaspar_id", "best_jaspar_name", "p", "q",
                  "matched", "top_targets", "max_importance"]


# ---------------------------------------------------------------- windows and labels

def merged_centres(summits: Mapping[str, pd.DataFrame], merge_bp: int) -> pd.DataFrame:
    """Window centres ``chrom, centre``: all targets' summits, greedily merged.

    Per chromosome, summits are walked in order; one within ``merge_bp`` of the last kept
    centre shares that centre, any other starts a new one.
    """
    frames = [df[["chrom", "summit"]] for df in summits.values() if len(df)]
    if not frames:
        return pd.DataFrame({"chrom": pd.Series(dtype=str), "centre": pd.Series(dtype=int)})
    every = pd.concat(frames, ignore_index=True)
    rows = []
    for chrom, part in every.groupby("chrom", sort=False):
        last = None
        for pos in np.sort(part["summit"].to_numpy()):
            if last is None or pos - last > merge_bp:
                rows.append((chrom, int(pos)))
                last = pos
    return pd.DataFrame(rows, columns=["chrom", "centre"])


def overlaps_regions(windows: pd.DataFrame, regions: pd.DataFrame, pad: int = 0) -> np.ndarray:
    """Whether each window, widened by ``pad`` on both sides, overlaps any region, shape=(n,)."""
    hit = np.zeros(len(windows), dtype=bool)
    for chrom, part in regions.groupby("chrom", sort=False):
        on = np.flatnonzero((windows["chrom"] == chrom).to_numpy())
        if on.size == 0:
            continue
        starts = windows["start"].to_numpy()[on, None] - pad
        ends = windows["end"].to_numpy()[on, None] + pad
        hit[on] = ((starts < part["end"].to_numpy()[None]) &
                   (ends > part["start"].to_numpy()[None])).any(axis=1)
    return hit


def label_matrix(windows: pd.DataFrame, summits: Mapping[str, pd.DataFrame],
                 positive_radius: int, negative_flank: int,
                 blacklist: pd.DataFrame | None = None) -> np.ndarray:
    """Labels, int8 shape=(n windows, T targets): 1, 0 or ``UNKNOWN`` (-1); see module doc.

    windows: ``chrom, start, end`` (centre = (start + end) // 2); summits: target →
    ``chrom, summit``, columns in dict order.
    """
    centre = ((windows["start"].to_numpy() + windows["end"].to_numpy()) // 2).astype(np.int64)
    half = ((windows["end"] - windows["start"]).to_numpy() // 2).astype(np.int64)
    labels = np.full((len(windows), len(summits)), UNKNOWN, dtype=np.int8)
    chroms = windows["chrom"].to_numpy()
    for t, peaks in enumerate(summits.values()):
        distance = np.full(len(windows), np.inf)
        for chrom in np.unique(chroms):
            on = chroms == chrom
            distance[on] = nearest_distance(centre[on],
                                            peaks.loc[peaks["chrom"] == chrom, "summit"])
        labels[distance <= positive_radius, t] = 1
        labels[distance > half + negative_flank, t] = 0
    if blacklist is not None and len(blacklist):
        uncovered = overlaps_regions(windows, blacklist, pad=negative_flank)
        labels[uncovered[:, None] & (labels == 0)] = UNKNOWN
    return labels


def build_windows(fasta: str | Path, sizes: Mapping[str, int], summits: Mapping[str, pd.DataFrame],
                  blacklist: pd.DataFrame, split_of: Mapping[str, str],
                  params: dict, tiles: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, dict]:
    """Summit-union and background windows with their splits and label matrix (``tiles``:
    the genome's tiles at the window width).

    Returns (windows ``chrom, start, end, name, split, kind, gc``, labels shape=(n, T), stats).
    """
    width, flank = int(params["width"]), int(params["negative_flank"])
    rng = np.random.default_rng(params["seed"])
    centres = merged_centres(summits, int(params["merge_bp"]))
    centres = centres[centres["chrom"].isin(list(split_of))]
    start = centres["centre"].to_numpy() - width // 2
    windows = pd.DataFrame({"chrom": centres["chrom"].to_numpy(), "start": start,
                            "end": start + width})
    inside = (windows["start"] >= 0) & (windows["end"] <= windows["chrom"].map(sizes))
    stats = {"summits": {t: len(df) for t, df in summits.items()}, "centres": len(windows),
             "off_chromosome_end": int((~inside).sum())}
    windows, dropped = usable_windows(windows[inside].reset_index(drop=True), blacklist, fasta,
                                      split_of, params["max_n_fraction"])
    stats |= dropped
    windows["name"] = ("mt:" + windows["chrom"] + ":" + (windows["start"] + width // 2)
                       .astype(str))
    windows = windows.assign(kind="summit")

    every = pd.concat([df[["chrom", "summit"]] for df in summits.values()], ignore_index=True)
    reach = width // 2 + flank
    exclude = pd.concat([pd.DataFrame({"chrom": every["chrom"],
                                       "start": (every["summit"] - reach).clip(lower=0),
                                       "end": every["summit"] + reach + 1}),
                         blacklist[["chrom", "start", "end"]]], ignore_index=True)
    parts = [windows]
    for split in ("train", "valid", "test"):
        chroms = [c for c, s in split_of.items() if s == split]
        pos = windows[windows["split"] == split]
        neg = background_negatives(pos, exclude, tiles, chroms,
                                   params["negative_ratio"], params["gc_bins"],
                                   params["max_n_fraction"], rng)
        if len(neg):
            parts.append(neg.assign(name="bg:" + neg["chrom"].astype(str) + ":"
                                    + neg["start"].astype(str), split=split, kind="background"))
    table = pd.concat(parts, ignore_index=True)
    table = table.sort_values(["chrom", "start", "kind"], kind="stable").reset_index(drop=True)
    table = table[["chrom", "start", "end", "name", "split", "kind", "gc"]]
    table["gc"] = table["gc"].astype(float).round(4)
    labels = label_matrix(table, summits, int(params["positive_radius"]), flank, blacklist)
    known_any = (labels != UNKNOWN).any(axis=1)
    stats["all_unknown_dropped"] = int((~known_any).sum())
    table, labels = table[known_any].reset_index(drop=True), labels[known_any]
    check_no_leak(table, split_of, "multi-task windows")
    stats["windows"] = {s: int((table["split"] == s).sum()) for s in ("train", "valid", "test")}
    stats["labels"] = label_counts(labels, table["split"].to_numpy(), list(summits))
    return table, labels, stats


def label_counts(labels: np.ndarray, splits: np.ndarray, targets: list[str]) -> dict:
    """``{target: {split: {pos, neg, unknown}}}`` of a label matrix, shape=(n, T)."""
    out: dict = {}
    for t, target in enumerate(targets):
        out[target] = {}
        for split in ("train", "valid", "test"):
            column = labels[splits == split, t]
            out[target][split] = {"pos": int((column == 1).sum()),
                                  "neg": int((column == 0).sum()),
                                  "unknown": int((column == UNKNOWN).sum())}
    return out


# ---------------------------------------------------------------- training

@dataclass
class MultiTaskTrainConfig:
    """Optimisation settings of :func:`train_multitask`; filled from the params."""

    epochs: int = 40
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    patience: int = 6          # 0 = train all epochs, keep the last
    rows_per_epoch: int | None = None  # a fresh random subset of this many windows per epoch
    rc_augment: bool = True
    rc_average: bool = True    # score = mean of forward and reverse-complement logits
    monitor: int = 4000        # training windows scored each epoch for the train AUROC
    pos_weight: str = "balanced"  # positives' loss weight per target: none, sqrt, balanced
    seed: int = 0
    threads: int = 1
    device: str = "auto"       # "auto" | "cpu" | "cuda" (helixflow.device)
    precision: str = "bf16"    # autocast on a GPU
    model: MultiTaskConfig = field(default_factory=MultiTaskConfig)


@torch.no_grad()
def predict_multitask(model: MultiTaskCNN, X: np.ndarray, batch_size: int | None = None,
                      rc_average: bool = True) -> np.ndarray:
    """Logits, float32 shape=(n, T), for one-hot ``X`` (shape=(n, 4, L)), strand-averaged,
    ``batch_size`` (default :func:`helixflow.train.predict_batch`) windows at a time."""
    model.eval()
    batch_size = batch_size or predict_batch(X.shape[-1])
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(X), batch_size):
        xb = torch.from_numpy(np.asarray(X[i:i + batch_size], dtype=np.float32)).to(device)
        logit = model(xb).float()
        if rc_average:
            logit = (logit + model(rc(xb)).float()) / 2
        out.append(logit.cpu())
    n_targets = len(model.config.targets)
    return torch.cat(out).numpy() if out else np.zeros((0, n_targets), dtype=np.float32)


def masked_aurocs(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUROC per target over known labels, shape=(T,); NaN where a class is missing."""
    out = np.full(labels.shape[1], np.nan)
    for t in range(labels.shape[1]):
        known = labels[:, t] != UNKNOWN
        out[t] = auroc_or_nan(labels[known, t], scores[known, t])
    return out


def _masked_loss(logits: np.ndarray, labels: np.ndarray,
                 pos_weight: torch.Tensor | None = None) -> float:
    return float(masked_bce(torch.from_numpy(logits), torch.from_numpy(labels.astype(np.int64)),
                            pos_weight))


def positive_weights(labels: np.ndarray, rule: str) -> np.ndarray | None:
    """Per-target weight of the positive terms from training labels, shape=(T,), or None.

    ``balanced``: known negatives / known positives (each target's classes weigh the same);
    ``sqrt``: its square root (half way, on a log scale); ``none``: no weighting.
    """
    if rule == "none":
        return None
    pos = (labels == 1).sum(axis=0).astype(np.float64)
    neg = (labels == 0).sum(axis=0).astype(np.float64)
    ratio = neg / np.maximum(pos, 1)
    if rule == "balanced":
        return ratio
    if rule == "sqrt":
        return np.sqrt(ratio)
    raise ValueError(f"pos_weight must be none, sqrt or balanced, got {rule!r}")


def train_multitask(X_train: np.ndarray, Y_train: np.ndarray, X_valid: np.ndarray,
                    Y_valid: np.ndarray, cfg: MultiTaskTrainConfig,
                    log=sys.stderr) -> tuple[MultiTaskCNN, pd.DataFrame, dict]:
    """Train a :class:`MultiTaskCNN` with the masked loss; returns (best model, history, summary).

    ``X_*``: uint8 one-hot, shape=(n, 4, L); ``Y_*``: labels, shape=(n, T), 1/0/-1. Early
    stopping follows the valid AUROC averaged over targets (each over its known labels). The
    history has epoch, train_loss, train_auroc (mean, on ``monitor`` training windows in eval
    mode), valid_loss, valid_auroc (mean), seconds and valid_auroc_{target} per target; the
    losses are the training objective (with ``pos_weight``).
    """
    targets = cfg.model.targets
    if Y_train.shape[1] != len(targets) or Y_valid.shape[1] != len(targets):
        raise ValueError(f"labels have {Y_train.shape[1]} columns for {len(targets)} targets")
    for t, name in enumerate(targets):
        known = Y_train[:, t][Y_train[:, t] != UNKNOWN]
        if not 0 < known.sum() < len(known):
            raise InputError(f"target {name} has {int(known.sum())} positive among "
                             f"{len(known)} known training windows; it needs both",
                             fix="drop the target or move chromosomes into the train split")
    device = resolve_device(cfg.device)
    generator = seed_everything(cfg.seed, cfg.threads, device)
    model = MultiTaskCNN(cfg.model).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    Y = torch.from_numpy(np.asarray(Y_train, dtype=np.int64))
    weights = positive_weights(np.asarray(Y_train), cfg.pos_weight)
    pos_weight = None if weights is None else torch.tensor(weights, dtype=torch.float32)
    monitor = np.sort(np.random.default_rng(cfg.seed).permutation(len(X_train))[:cfg.monitor])
    X_mon, Y_mon = np.asarray(X_train[monitor]), np.asarray(Y_train)[monitor]

    def step(rows: torch.Tensor) -> Step:
        xb = gather_batch(X_train, rows, cfg.rc_augment, generator)
        loss = masked_bce(model(xb.to(device)), Y[rows].to(device),
                          None if pos_weight is None else pos_weight.to(device))
        return Step(loss, len(rows))

    def evaluate(model: MultiTaskCNN) -> dict:
        mon_logits = predict_multitask(model, X_mon, rc_average=cfg.rc_average)
        valid_logits = predict_multitask(model, X_valid, rc_average=cfg.rc_average)
        valid_by_target = masked_aurocs(Y_valid, valid_logits)
        return {"train_loss": _masked_loss(mon_logits, Y_mon, pos_weight),
                "train_auroc": float(np.nanmean(masked_aurocs(Y_mon, mon_logits))),
                "valid_loss": _masked_loss(valid_logits, Y_valid, pos_weight),
                "valid_auroc": float(np.nanmean(valid_by_target))} | {
                f"valid_auroc_{name}": float(v)
                for name, v in zip(targets, valid_by_target, strict=True)}

    settings = FitSettings(
        epochs=cfg.epochs, batch_size=cfg.batch_size, patience=cfg.patience,
        keep="best" if cfg.patience else "last", precision=cfg.precision,
        rows_per_epoch=cfg.rows_per_epoch,
        log_columns=("train_loss", "train_auroc", "valid_loss", "valid_auroc"))
    result = fit(model, optimizer, step, len(Y), settings, generator, evaluate, log=log)
    chosen = result.chosen
    summary = {"n_params": n_parameters(model), "epochs_run": len(result.history),
               "best_epoch": int(chosen["epoch"]),
               "valid_auroc_mean": float(chosen["valid_auroc"]),
               "train_auroc_mean": float(chosen["train_auroc"]),
               "seconds": result.seconds, "device": str(device), "config": asdict(cfg)}
    return model.cpu(), result.history, summary


def make_train_config(params: dict, targets: list[str]) -> MultiTaskTrainConfig:
    """A :class:`MultiTaskTrainConfig` from the params' ``model`` and ``training`` dicts."""
    arch = MultiTaskConfig(targets=list(targets), window=int(params["width"]),
                           **params["model"])
    return MultiTaskTrainConfig(**params["training"], seed=int(params["seed"]),
                                threads=int(params["threads"]), model=arch)


# ---------------------------------------------------------------- evaluation

def masked_test_table(labels: np.ndarray, scores: np.ndarray, targets: list[str],
                      n_boot: int, level: float, seed: int) -> pd.DataFrame:
    """AUROC/AUPRC with bootstrap intervals per target over its known labels (MASKED_COLUMNS)."""
    rows = []
    for t, name in enumerate(targets):
        known = labels[:, t] != UNKNOWN
        y = labels[known, t]
        row = {"target": name, "n_pos": int(y.sum()), "n_neg": int(len(y) - y.sum()),
               "n_unknown": int((~known).sum())}
        if 0 < y.sum() < len(y):
            row |= bootstrap_metrics(y, scores[known, t], n_boot=n_boot, seed=seed, level=level)
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=MASKED_COLUMNS)


def shard_chromosome(name: str, sizes: Mapping[str, int],
                     aliases: Mapping[str, str]) -> str | None:
    """The genome chromosome a shard window name points to, or None when it names none.

    Understands background names ``bg:CHROM:START`` and peak names ``CHROM_START_END``
    (peak-file chromosome names, mapped through ``aliases``).
    """
    for candidate in (name.split(":")[1] if name.startswith("bg:") and name.count(":") >= 2
                      else None, name.split("_")[0]):
        if candidate in sizes:
            return candidate
        if candidate in aliases and aliases[candidate] in sizes:
            return aliases[candidate]
    return None


def check_same_test(names: list[str], split_of: Mapping[str, str], sizes: Mapping[str, int],
                    aliases: Mapping[str, str], manifest: str | Path) -> int:
    """Raise unless every shard test window whose chromosome is readable lies on a chromosome
    the multi-task model also holds out for test; returns how many names were checked."""
    checked = 0
    for name in names:
        chrom = shard_chromosome(name, sizes, aliases)
        if chrom is None:
            continue
        checked += 1
        if split_of.get(chrom) != "test":
            raise InputError(f"single-task test window {name} lies on {chrom}, which the "
                             f"multi-task model puts in '{split_of.get(chrom, 'no split')}'",
                             path=manifest, fix="give the multi-task step the same 'splits' "
                             "as the single-task shards")
    return checked


def single_task_row(metrics: pd.DataFrame, target: str, model: str) -> dict:
    """The single-task model's test AUROC and interval from a metrics table (NaN if absent)."""
    rows = metrics[(metrics["target"] == target) & (metrics["model"] == model)
                   & (metrics["split"] == "test")]
    if rows.empty:
        return {"auroc_single_task": np.nan, "auroc_single_task_lo": np.nan,
                "auroc_single_task_hi": np.nan}
    row = rows.iloc[0]
    return {"auroc_single_task": float(row["auroc"]), "auroc_single_task_lo": float(
        row["auroc_lo"]), "auroc_single_task_hi": float(row["auroc_hi"])}


def compare_single_task(model: MultiTaskCNN, shards: Mapping[str, str | Path],
                        metrics: pd.DataFrame, predictions: Mapping[str, str | Path],
                        split_of: Mapping[str, str], sizes: Mapping[str, int],
                        aliases: Mapping[str, str], params: dict,
                        pred_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score each target's own single-task test windows with its head.

    Writes ``pred_dir/{target}.tsv`` (name, label, score) and returns (AUROC_COLUMNS table,
    METRIC_COLUMNS rows for model ``cnn_multitask``). With the single-task model's test
    predictions on the same windows, a paired bootstrap gives the AUROC difference. The
    head's AUROC on the target's own valid windows (``valid_auroc_multitask``) lets the
    workflow choose among a target's models on the valid split (:mod:`helixflow.selection`).
    """
    targets = model.config.targets
    kw = {"n_boot": params["n_boot"], "seed": params["seed"], "level": params["level"]}
    rows, metric_rows = [], []
    for target, manifest in shards.items():
        if target not in targets:
            raise InputError(f"single-task shards given for {target}, which has no head",
                             path=manifest, fix="add the target's peaks to the multi-task run")
        test = load_split(manifest, "test")
        check_same_test(test.names, split_of, sizes, aliases, manifest)
        y = np.asarray(test.y).astype(np.int64)
        score = predict_multitask(model, test.X, rc_average=params["training"]["rc_average"])
        score = score[:, targets.index(target)].astype(np.float64)
        write_predictions(pred_dir / f"{target}.tsv", test.names, y, score)
        point = bootstrap_metrics(y, score, **kw)
        metric_rows.append({"target": target, "model": "cnn_multitask", "split": "test",
                            **point})
        valid = load_split(manifest, "valid")
        valid_score = predict_multitask(model, valid.X,
                                        rc_average=params["training"]["rc_average"])
        row = {"target": target, "n_pos": point["n_pos"], "n_neg": point["n_neg"],
               "valid_auroc_multitask": auroc_or_nan(np.asarray(valid.y),
                                                     valid_score[:, targets.index(target)]),
               "auroc_multitask": point["auroc"], "auroc_multitask_lo": point["auroc_lo"],
               "auroc_multitask_hi": point["auroc_hi"],
               **single_task_row(metrics, target, params["single_task_model"])}
        if target in predictions:
            single = read_predictions(predictions[target]).set_index("name")
            if set(single.index) != set(test.names):
                raise InputError(f"{target}: single-task predictions are not on the shard's "
                                 f"test windows", path=predictions[target],
                                 fix="use the predictions of the model trained on these shards")
            reference = single.loc[test.names, "score"].to_numpy(dtype=np.float64)
            delta = paired_difference(y, score, reference, **kw)
            row |= {k: delta[k] for k in ("delta_auroc", "delta_auroc_lo", "delta_auroc_hi")}
        rows.append(row)
    table = pd.DataFrame(rows).reindex(columns=AUROC_COLUMNS)
    return table, pd.DataFrame(metric_rows).reindex(columns=METRIC_COLUMNS)


# ---------------------------------------------------------------- shared filters

def filter_importance(model: MultiTaskCNN, X: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Head weight × filter importance, shape=(F, T).

    For filter f and target t: the mean gradient of t's logit with respect to f's pooled
    activation (exactly the head weight when the heads read the pooled filters directly,
    ``dense = 0``) times the standard deviation of f's pooled activation over ``X``: how far
    the logit moves for a typical change in the filter. Positive = evidence for binding.
    """
    model.eval()
    pooled, grads = [], []
    for i in range(0, len(X), chunk):
        with torch.no_grad():
            p = model.pooled(torch.from_numpy(np.asarray(X[i:i + chunk], dtype=np.float32)))
        p.requires_grad_(True)
        out = model.read_out(p)
        rows = [torch.autograd.grad(out[:, t].sum(), p, retain_graph=True)[0].sum(0)
                for t in range(out.shape[1])]
        grads.append(torch.stack(rows, dim=1).detach().numpy())
        pooled.append(p.detach().numpy())
    weight = np.sum(grads, axis=0) / max(1, len(X))
    return weight * np.concatenate(pooled).std(axis=0)[:, None]


def shared_filter_table(queries: Mapping[str, np.ndarray], nsites: Mapping[str, int],
                        matches: pd.DataFrame, importance: pd.DataFrame, q_threshold: float,
                        n_top: int) -> pd.DataFrame:
    """One row per filter with sites: best JASPAR match and the targets weighting it most.

    importance: filters × targets (index = filter names). ``top_targets`` lists the ``n_top``
    targets with the largest positive importance as ``target:value``.
    """
    best = matches.sort_values(["query", "q", "p"]).drop_duplicates("query").set_index("query")
    rows = []
    for name in queries:
        scores = importance.loc[name].sort_values(ascending=False)
        top = [f"{t}:{v:.3g}" for t, v in scores.iloc[:n_top].items() if v > 0]
        row = {"filter": name, "n_sites": int(nsites[name]), "top_targets": ",".join(top),
               "max_importance": float(scores.iloc[0])}
        if name in best.index:
            hit = best.loc[name]
            row |= {"best_jaspar_id": hit["target_id"], "best_jaspar_name": hit["target_name"],
                    "p": float(hit["p"]), "q": float(hit["q"]),
                    "matched": bool(hit["q"] < q_threshold)}
        rows.append(row)
    table = pd.DataFrame(rows).reindex(columns=FILTER_COLUMNS)
    table["matched"] = table["matched"].fillna(False).astype(bool)
    return table


def plot_filter_heatmap(path_png: str | Path, filters: pd.DataFrame, importance: pd.DataFrame,
                        title: str, max_filters: int = 40) -> tuple[Path, Path]:
    """Filters × targets heatmap of head weight × filter importance for JASPAR-matched filters.

    Rows are the matched filters (``filters.matched``), labelled with their best JASPAR
    motif and q, grouped by that motif; at most ``max_filters`` rows (largest importance
    first). Colour: red = the filter is evidence for binding of that target, blue = against.
    """
    matched = filters[filters["matched"]].sort_values("max_importance", ascending=False)
    matched = matched.iloc[:max_filters].sort_values(["best_jaspar_name", "max_importance"],
                                                     ascending=[True, False])
    targets = list(importance.columns)
    with matplotlib.rc_context(STYLE):
        fig = new_figure(2.2 + 0.42 * len(targets), 1.6 + 0.26 * max(len(matched), 3))
        ax = fig.subplots()
        ax.grid(False)
        if matched.empty:
            ax.text(0.5, 0.5, "no filter matched a JASPAR motif", ha="center", va="center",
                    color=GREY, transform=ax.transAxes)
            ax.set_axis_off()
        else:
            values = importance.loc[matched["filter"]].to_numpy(dtype=float)
            limit = float(np.abs(values).max()) or 1.0
            image = ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto",
                              interpolation="nearest")
            ax.set_xticks(range(len(targets)), targets, rotation=60, ha="right")
            ax.set_yticks(range(len(matched)), [
                f"{r.filter}  {r.best_jaspar_name} ({r.best_jaspar_id}, q={r.q:.1g})"
                for r in matched.itertuples()])
            ax.set_xlabel("Target (head)")
            fig.colorbar(image, ax=ax, shrink=0.8,
                         label="head weight × filter s.d. (logit units)")
        fig.suptitle(title)
        return save_figure(fig, path_png)


def filter_report(model: MultiTaskCNN, X: np.ndarray, Y: np.ndarray, out_dir: Path,
                  figure: Path, params: dict) -> dict:
    """Shared filters → PPMs → Tomtom vs JASPAR → filters.meme, filters_tomtom.tsv (best match
    per filter), tomtom.tsv (``n_matches`` best per filter), filter_importance.tsv, heatmap.

    ``X``/``Y``: training windows and labels; PPMs come from windows positive for some target,
    importance from all of them (each at most ``max_windows``, drawn with the seed).
    """
    mp = params["motifs"]
    targets = model.config.targets
    rng = np.random.default_rng(params["seed"])
    positive = np.flatnonzero((Y == 1).any(axis=1))
    pick = np.sort(rng.permutation(positive)[:mp["max_windows"]])
    ppms, sites = filter_ppms(model, np.asarray(X[pick]), mp["activation_threshold"])
    everyone = np.sort(rng.permutation(len(X))[:mp["max_windows"]])
    names = [f"filter{i:03d}" for i in range(model.config.filters)]
    importance = pd.DataFrame(filter_importance(model, np.asarray(X[everyone])), index=names,
                              columns=targets)
    queries, nsites = {}, {}
    for name, ppm, n in zip(names, ppms, sites, strict=True):
        if n >= mp["min_sites"]:
            queries[name], _ = trim_ppm(ppm)
            nsites[name] = int(n)
    write_meme(out_dir / "filters.meme", queries, nsites=nsites)
    jaspar = jaspar_motifs(mp["jaspar_tax_group"], mp["jaspar_collection"], mp["jaspar_release"])
    matches = tomtom_matches(queries, jaspar)
    table = shared_filter_table(queries, nsites, matches, importance, mp["q_threshold"],
                                mp["n_top_targets"])
    write_tsv(out_dir / "filters_tomtom.tsv", table)
    rank = matches.groupby("query").cumcount()
    write_tsv(out_dir / "tomtom.tsv", matches[rank < mp["n_matches"]])
    write_tsv(out_dir / "filter_importance.tsv",
              importance.round(5).rename_axis("filter").reset_index())
    plot_filter_heatmap(figure, table, importance,
                        "Multi-task CNN: shared filters matching JASPAR, weight per target",
                        mp["max_heatmap_filters"])
    matched = table[table["matched"]]
    return {"n_filters_with_sites": len(queries), "n_filters_matched": len(matched),
            "jaspar_release": jaspar[0].release if jaspar else "",
            "matched_motifs": sorted(set(matched["best_jaspar_name"]))}


# ---------------------------------------------------------------- the step

def run_multitask(fasta: str | Path, sizes: Mapping[str, int], aliases: Mapping[str, str],
                  blacklist: str | Path | None, peaks: Mapping[str, str | Path],
                  single_task_shards: Mapping[str, str | Path],
                  single_task_metrics_tsv: str | Path | Sequence[str | Path],
                  out_dir: str | Path,
                  figure_dir: str | Path, params: dict | None = None,
                  single_task_predictions: Mapping[str, str | Path] | None = None,
                  log=sys.stderr, tiles: str | Path | None = None) -> dict:
    """Build windows and labels, train the multi-task CNN, evaluate, report shared filters.

    ``peaks``: target → peaks file (head order = dict order); ``single_task_shards``: target →
    shard manifest for the targets to compare; ``single_task_predictions`` (optional): target
    → the single-task model's test predictions on those shards, for a paired difference.
    ``params`` override :data:`DEFAULTS` key by key (nested dicts merged). Writes into
    ``out_dir``: windows.tsv, model/, history.tsv, auroc.tsv, test_masked.tsv, metrics.tsv,
    predictions/{target}.tsv, masked_predictions/{target}.tsv, filters.meme,
    filters_tomtom.tsv, tomtom.tsv, filter_importance.tsv, record.json; and into ``figure_dir``:
    multitask_auroc, multitask_filters, multitask_learning_curves (PNG + SVG).
    """
    started = time.time()
    p = overlay(DEFAULTS, params, "multi-task setting")
    out_dir, figure_dir = Path(out_dir), Path(figure_dir)
    targets = list(peaks)
    p["targets"] = targets  # the heads are the targets given peaks, in that order
    split_of = resolve_splits(sizes, p["splits"]["valid"], p["splits"]["test"],
                              p["splits"].get("train") or None)
    summits = {t: read_peaks(path, sizes, aliases) for t, path in peaks.items()}
    black = read_blacklist(blacklist, sizes, aliases)
    windows, labels, stats = build_windows(fasta, sizes, summits, black, split_of, p,
                                           tiles_for(tiles, fasta, int(p["width"])))
    write_tsv(out_dir / "windows.tsv", pd.concat(
        [windows, pd.DataFrame(labels, columns=targets)], axis=1))
    X = one_hot_windows(fasta, windows)
    part = {s: (windows["split"] == s).to_numpy() for s in ("train", "valid", "test")}
    print(f"multitask: {len(windows)} windows ({stats['windows']}), {len(targets)} targets, "
          f"built in {time.time() - started:.0f}s", file=log, flush=True)

    cfg = make_train_config(p, targets)
    model, history, summary = train_multitask(X[part["train"]], labels[part["train"]],
                                              X[part["valid"]], labels[part["valid"]], cfg, log)
    save_multitask(model, out_dir / "model")
    write_tsv(out_dir / "history.tsv", history.round(5))

    test_scores = predict_multitask(model, X[part["test"]], rc_average=cfg.rc_average)
    masked = masked_test_table(labels[part["test"]], test_scores, targets, p["n_boot"],
                               p["level"], p["seed"])
    write_tsv(out_dir / "test_masked.tsv", masked.round(4))
    test_names = windows.loc[part["test"], "name"].to_numpy()
    for t, target in enumerate(targets):
        known = labels[part["test"], t] != UNKNOWN
        write_predictions(out_dir / "masked_predictions" / f"{target}.tsv", test_names[known],
                          labels[part["test"], t][known], test_scores[known, t])

    metric_tables = ([single_task_metrics_tsv] if isinstance(single_task_metrics_tsv, str | Path)
                     else list(single_task_metrics_tsv))        # one table, or one per target
    single_metrics = pd.concat([pd.read_csv(t, sep="\t") for t in metric_tables],
                               ignore_index=True)
    auroc, metric_rows = compare_single_task(
        model, single_task_shards, single_metrics, single_task_predictions or {}, split_of,
        sizes, aliases, p, out_dir / "predictions")
    write_tsv(out_dir / "auroc.tsv", auroc.round(4))
    write_tsv(out_dir / "metrics.tsv", metric_rows.round(4))
    if len(metric_rows):
        single = single_metrics[single_metrics["target"].isin(list(single_task_shards))
                                & (single_metrics["model"] == p["single_task_model"])
                                & (single_metrics["split"] == "test")]
        both = pd.concat([single[METRIC_COLUMNS], metric_rows], ignore_index=True)
        both = both.sort_values("target", key=lambda s: s.map(
            {t: i for i, t in enumerate(single_task_shards)}), kind="stable")
        plot_metric_summary(figure_dir / "multitask_auroc.png", both,
                            "Single-task vs multi-task CNN, own test windows",
                            split="test", level=p["level"])
    plot_learning_curves(figure_dir / "multitask_learning_curves.png", {"multitask": history},
                         "Multi-task CNN (mean over targets, masked loss)",
                         loss_label="Masked BCE (training objective)")
    filters = filter_report(model, X[part["train"]], labels[part["train"]], out_dir,
                            figure_dir / "multitask_filters.png", p)

    results = {
        "targets": targets, "windows": stats["windows"], "build": {
            k: v for k, v in stats.items() if k not in ("labels", "windows")},
        "labels": stats["labels"], "train": {k: v for k, v in summary.items() if k != "config"},
        "auroc": auroc.round(4).to_dict(orient="records"),
        "test_masked": masked.round(4).to_dict(orient="records"),
        "filters": filters, "seconds": round(time.time() - started, 1),
    }
    inputs = {"fasta": fasta, "blacklist": blacklist or "",
              **{f"single_task_metrics:{i}": t for i, t in enumerate(metric_tables)},
              **{f"peaks:{t}": path for t, path in peaks.items()},
              **{f"shards:{t}": path for t, path in single_task_shards.items()},
              **{f"predictions:{t}": path for t, path in (single_task_predictions or {}).items()}}
    write_record(out_dir / "record.json", "multitask", p, inputs, results)
    return results
