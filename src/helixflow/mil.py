"""Multiple-instance learning: a peak is a bag of sub-windows; does attention find the motif?

Each peak becomes a bag: a ``bag``-bp region around its summit, shifted by a seeded uniform
offset of up to ``max_shift`` bp so the summit is not always in the middle (the label says
only "the site is somewhere in here"). Negative bags are GC-matched background regions of the
same width on the same split's chromosomes. An :class:`~helixflow.models.mil.AttentionMIL`
is trained on the train split (early stopping on the valid bag AUROC) and scored on test.

Localisation: in each positive test bag the best hit of the target's JASPAR matrix (log-odds,
both strands) marks the "true" instances, those that contain the whole hit. The rate is how
often the highest-attention instance is one of them, against a uniformly random instance
(expected rate = mean over bags of #containing / #instances), the bag's centre instance and
the instance nearest the peak caller's summit (which the model never sees).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import torch
from scipy.stats import norm

from .config import MIL_BAG_BP, overlay
from .device import resolve_device
from .errors import InputError
from .evaluate import auroc_or_nan, bootstrap_metrics
from .files import write_tsv
from .fit import FitSettings, Step, fit
from .genome import one_hot_windows
from .intervals import (
    background_negatives,
    check_no_leak,
    read_blacklist,
    read_peaks,
    resolve_splits,
    usable_windows,
)
from .models.mil import AttentionMIL, MILConfig
from .motifs import best_hits, jaspar_motif, pwm_logodds
from .plots import GREY, PALETTE, STYLE, new_figure, save_figure
from .records import write_record
from .seeding import seed_everything
from .tiles import tiles_for

DEFAULTS: dict = {
    "bag": MIL_BAG_BP,           # bp per bag
    "instance": 100,             # bp per instance
    "stride": 50,                # bp between instances
    "max_shift": 300,            # bag centre = summit + uniform integer in [-max_shift, max_shift]
    "negative_ratio": 1.0,       # negative bags per positive bag, per split
    "exclude_flank": 100,        # negative bags keep this far (bp) from every summit
    "max_bags": {"train": 0, "valid": 0, "test": 0},   # positive bags per split; 0 = all
    "splits": {"valid": ["chrVII", "chrX"], "test": ["chrIV", "chrXV"], "train": []},
    "gc_bins": 20,
    "max_n_fraction": 0.01,
    "model": {"filters": 32, "kernel": 15, "embed": 32, "attention": 16, "dropout": 0.1},
    "training": {"epochs": 30, "batch_size": 32, "lr": 0.003, "weight_decay": 1e-4,
                 "patience": 4},
    "strong_hit_fraction": 0.7,  # "strong" hit: log-odds >= this × the matrix's best score
    "jaspar_release": None,
    "n_examples": 3,             # example bags in the figure
    "level": 0.95,
    "seed": 42,
    "threads": 1,
}
TABLE_COLUMNS = ["target", "jaspar_id", "n_bags_train", "n_bags_test", "bag_auroc",
                 "bag_auroc_lo", "bag_auroc_hi", "n_instances", "n_localised",
                 "localisation_rate", "lo", "hi", "random_baseline", "centre_rate",
                 "summit_rate", "n_strong", "strong_rate", "strong_lo", "strong_hi",
                 "strong_random_baseline", "best_epoch", "seconds"]


# ----------------------------------------------------------------------------- bags

def bag_regions(peaks: pd.DataFrame, sizes: Mapping[str, int], bag: int, max_shift: int,
                rng: np.random.Generator) -> pd.DataFrame:
    """One ``bag``-bp region per peak, its centre shifted from the summit by a random offset.

    Columns chrom, start, end, name, summit_offset (summit position inside the bag). Bags
    running off a chromosome are dropped.
    """
    shift = rng.integers(-max_shift, max_shift + 1, size=len(peaks))
    start = peaks["summit"].to_numpy() + shift - bag // 2
    out = pd.DataFrame({"chrom": peaks["chrom"].to_numpy(), "start": start, "end": start + bag,
                        "name": peaks["name"].to_numpy(),
                        "summit_offset": peaks["summit"].to_numpy() - start})
    inside = (out["start"] >= 0) & (out["end"] <= out["chrom"].map(sizes))
    return out[inside].reset_index(drop=True)


def mil_bags(peaks: pd.DataFrame, blacklist: pd.DataFrame, fasta: str | Path,
             sizes: Mapping[str, int], split_of: Mapping[str, str], params: dict,
             rng: np.random.Generator, tiles: pd.DataFrame) -> pd.DataFrame:
    """Positive and negative bags of every split (``tiles``: the genome's tiles at the bag
    width).

    Columns chrom, start, end, name, label, split, gc, summit_offset (-1 for negatives).
    Positive bags overlapping the blacklist or with too many N are dropped; negative bags
    avoid the blacklist and every summit ± ``exclude_flank``.
    """
    width = int(params["bag"])
    bags = bag_regions(peaks, sizes, width, int(params["max_shift"]), rng)
    positives, _ = usable_windows(bags, blacklist, fasta, split_of,
                                  float(params["max_n_fraction"]))
    positives = positives.assign(label=1)
    flank = int(params["exclude_flank"])
    exclude = pd.concat([pd.DataFrame({"chrom": peaks["chrom"],
                                       "start": (peaks["summit"] - flank).clip(lower=0),
                                       "end": peaks["summit"] + flank + 1}), blacklist],
                        ignore_index=True)
    parts = []
    for split in ("train", "valid", "test"):
        chroms = [c for c, s in split_of.items() if s == split]
        pos = positives[positives["split"] == split].reset_index(drop=True)
        cap = int(params["max_bags"].get(split, 0))
        if 0 < cap < len(pos):
            pos = pos.iloc[np.sort(rng.choice(len(pos), cap, replace=False))]
        if pos.empty:
            raise InputError(f"no positive bags on the {split} chromosomes "
                             f"({', '.join(chroms)})", fix="choose a target with peaks there "
                             "or change 'splits'")
        neg = background_negatives(pos, exclude, tiles, chroms,
                                   float(params["negative_ratio"]), int(params["gc_bins"]),
                                   float(params["max_n_fraction"]), rng)
        names = "bg:" + neg["chrom"].astype(str) + ":" + neg["start"].astype(str)
        parts += [pos, neg.assign(name=names, label=0, split=split, summit_offset=-1)]
    table = pd.concat(parts, ignore_index=True)
    table["gc"] = table["gc"].astype(float).round(4)
    check_no_leak(table, split_of, "MIL bags")
    return table[["chrom", "start", "end", "name", "label", "split", "gc", "summit_offset"]]


# ----------------------------------------------------------------------------- training

@dataclass
class MILTrainConfig:
    """Optimisation settings of :func:`train_mil`."""

    epochs: int = 30
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    patience: int = 4        # 0 = train all epochs, keep the last
    seed: int = 0
    threads: int = 1
    device: str = "auto"     # "auto" | "cpu" | "cuda" (helixflow.device)
    precision: str = "bf16"  # autocast on a GPU
    model: MILConfig = field(default_factory=MILConfig)


@torch.no_grad()
def predict_bags(model: AttentionMIL, X: np.ndarray,
                 batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Bag logits shape=(n,) and attention shape=(n, k) for one-hot bags ``X`` (n, 4, bag)."""
    model.eval()
    device = next(model.parameters()).device
    logits, attention = [], []
    for i in range(0, len(X), batch_size):
        logit, att = model(torch.from_numpy(np.asarray(X[i:i + batch_size], dtype=np.float32))
                           .to(device))
        logits.append(logit.float().cpu().numpy())
        attention.append(att.float().cpu().numpy())
    if not logits:
        return np.zeros(0, np.float32), np.zeros((0, model.n_instances), np.float32)
    return np.concatenate(logits), np.concatenate(attention)



def train_mil(X_train: np.ndarray, y_train: np.ndarray, X_valid: np.ndarray,
              y_valid: np.ndarray, cfg: MILTrainConfig,
              log=sys.stderr) -> tuple[AttentionMIL, pd.DataFrame, dict]:
    """Train an :class:`AttentionMIL` on bags; returns (best model, history, summary).

    ``X_*``: uint8 one-hot bags, shape=(n, 4, bag); ``y_*``: 0/1 bag labels. Binary
    cross-entropy on the bag logit; the kept weights are those of the best valid bag AUROC.
    No reverse-complement augmentation: the model is strand-symmetric by construction.
    """
    for split, labels in (("train", y_train), ("valid", y_valid)):
        if not 0 < int(np.sum(labels)) < len(labels):
            raise InputError(f"the {split} split has {int(np.sum(labels))} positive bags among "
                             f"{len(labels)}; training needs both classes",
                             fix="move chromosomes with peaks into that split ('splits')")
    device = resolve_device(cfg.device)
    generator = seed_everything(cfg.seed, cfg.threads, device)
    model = AttentionMIL(cfg.model).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    y = torch.from_numpy(np.asarray(y_train, dtype=np.float32))

    def step(rows: torch.Tensor) -> Step:
        xb = torch.from_numpy(np.asarray(X_train[rows.numpy()], dtype=np.float32))
        return Step(loss_fn(model(xb.to(device))[0], y[rows].to(device)), len(rows))

    def evaluate(model: AttentionMIL) -> dict:
        return {"valid_auroc": auroc_or_nan(np.asarray(y_valid), predict_bags(model, X_valid)[0])}

    settings = FitSettings(epochs=cfg.epochs, batch_size=cfg.batch_size, patience=cfg.patience,
                           keep="best" if cfg.patience else "last", precision=cfg.precision)
    result = fit(model, optimizer, step, len(y), settings, generator, evaluate, log=log)
    chosen = result.chosen
    summary = {"epochs_run": len(result.history), "best_epoch": int(chosen["epoch"]),
               "valid_auroc": float(chosen["valid_auroc"]), "seconds": result.seconds,
               "n_params": sum(p.numel() for p in model.parameters()), "device": str(device),
               "config": asdict(cfg)}
    return model.cpu(), result.history, summary


# ----------------------------------------------------------------------------- localisation

def containing(starts: np.ndarray, instance: int, hit_start: np.ndarray,
               width: int) -> np.ndarray:
    """Which instances hold the whole hit: bool shape=(n, k) for instance starts (k,)."""
    lo = np.asarray(starts)[None, :]
    hit = np.asarray(hit_start)[:, None]
    return (lo <= hit) & (hit + width <= lo + instance)


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``k / n``."""
    if n == 0:
        return float("nan"), float("nan")
    z = float(norm.ppf(0.5 + level / 2))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # the interval always holds p; min/max keep rounding (1e-18 above 0 at k = 0) from
    # putting it outside
    return float(max(0.0, min(p, centre - half))), float(min(1.0, max(p, centre + half)))


def localisation(attention: np.ndarray, contains: np.ndarray, summit_offset: np.ndarray,
                 starts: np.ndarray, instance: int, level: float = 0.95) -> dict:
    """How often the top-attention instance holds the motif hit, against three baselines.

    attention, contains: shape=(n, k); summit_offset: shape=(n,) summit position in each bag.
    Returns n, n_localised, rate with a Wilson interval (lo, hi), random_baseline (expected
    rate of a uniformly random instance), centre_rate (the middle instance) and summit_rate
    (the instance whose centre is nearest the summit).
    """
    n, k = contains.shape
    rows = np.arange(n)
    top = attention.argmax(axis=1)
    hits = int(contains[rows, top].sum())
    lo, hi = wilson_interval(hits, n, level)
    centres = np.asarray(starts) + instance / 2
    nearest = np.abs(centres[None, :] - np.asarray(summit_offset)[:, None]).argmin(axis=1)
    return {"n": n, "n_localised": hits, "rate": hits / n if n else float("nan"), "lo": lo,
            "hi": hi, "random_baseline": float(contains.mean()) if n else float("nan"),
            "centre_rate": float(contains[:, k // 2].mean()) if n else float("nan"),
            "summit_rate": float(contains[rows, nearest].mean()) if n else float("nan")}


# ----------------------------------------------------------------------------- figure

def plot_mil(path_png: str | Path, examples: list[dict], stats: dict, title: str) -> None:
    """Left: attention along example bags, the motif hit and the summit marked. Right: the
    localisation rate (Wilson interval) beside its baselines, all bags and strong hits.

    Each example: ``name``, ``starts`` (k,), ``instance``, ``attention`` (k,), ``hit_start``,
    ``hit_width``, ``summit_offset``, ``bag``. ``stats``: ``{"all": localisation(...),
    "strong": localisation(...)}``.
    """
    with matplotlib.rc_context(STYLE):
        fig = new_figure(11.0, 1.0 + 1.6 * max(len(examples), 2))
        grid = fig.add_gridspec(max(len(examples), 1), 2, width_ratios=[1.7, 1])
        for i, ex in enumerate(examples):
            ax = fig.add_subplot(grid[i, 0])
            centres = ex["starts"] + ex["instance"] / 2
            top = int(np.argmax(ex["attention"]))
            colours = [PALETTE[1] if j == top else PALETTE[0] for j in range(len(centres))]
            ax.bar(centres, ex["attention"], width=ex["instance"] * 0.45, color=colours)
            ax.axvspan(ex["hit_start"], ex["hit_start"] + ex["hit_width"], color=PALETTE[2],
                       alpha=0.35, label="best JASPAR hit")
            ax.axvline(ex["summit_offset"], color=GREY, linestyle=":", label="peak summit")
            ax.axhline(1 / len(centres), color=GREY, linewidth=0.8, linestyle="--",
                       label="uniform attention")
            ax.set(xlim=(0, ex["bag"]), ylabel="attention")
            ax.set_title(ex["name"], fontsize=9)
            if i == len(examples) - 1:
                ax.set_xlabel("position in bag (bp); one bar per instance, at its centre; "
                              "top attention in orange")
            if i == 0:
                ax.legend(loc="upper right", fontsize=8)
        ax = fig.add_subplot(grid[:, 1])
        bars = [("top\nattention", "rate", PALETTE[1]),
                ("random\ninstance", "random_baseline", GREY),
                ("centre\ninstance", "centre_rate", PALETTE[5]),
                ("summit\ninstance", "summit_rate", PALETTE[3])]
        width = 0.38
        for j, (group, label) in enumerate((("all", "all positive test bags"),
                                            ("strong", "bags with a strong hit"))):
            st = stats.get(group)
            if not st or not st["n"]:
                continue
            x = np.arange(len(bars)) + (j - 0.5) * width
            values = [st[key] for _, key, _ in bars]
            ax.bar(x, values, width=width, color=[c for _, _, c in bars],
                   alpha=1.0 if j == 0 else 0.55, edgecolor="black", linewidth=0.4,
                   label=f"{label} (n={st['n']})", hatch=None if j == 0 else "//")
            ax.errorbar(x[0], st["rate"], yerr=[[st["rate"] - st["lo"]], [st["hi"] - st["rate"]]],
                        color="black", capsize=3)
        ax.set_xticks(np.arange(len(bars)), [b for b, _, _ in bars], fontsize=9)
        ax.set(ylim=(0, 1), ylabel="fraction of bags whose instance holds the motif hit",
               title="Localisation")
        ax.legend(loc="upper right", fontsize=8, title="solid: all; hatched: strong hit")
        fig.suptitle(title)
        save_figure(fig, path_png)


# ----------------------------------------------------------------------------- step

def run_mil(target: str, fasta: str | Path, sizes: Mapping[str, int],
            aliases: Mapping[str, str], blacklist: str | Path | None, peaks: str | Path,
            jaspar_id: str, out_dir: str | Path, figure_png: str | Path,
            params: dict | None = None, log=sys.stderr,
            tiles: str | Path | None = None) -> dict:
    """Attention MIL for one target; see the module docstring.

    Writes into ``out_dir``: ``mil.tsv`` (one row, ``TABLE_COLUMNS``), ``bags.tsv`` (every
    bag, its split and label; test positives also with their best hit, the top-attention
    instance and whether it holds the hit), ``attention.tsv`` (test positives × instances),
    ``history.tsv`` and ``record.json``; the figure ``figure_png`` (+ ``.svg``).
    Returns the table row as a dict.
    """
    params = overlay(DEFAULTS, params, "MIL setting")
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sizes = dict(sizes)
    model_cfg = MILConfig(bag=int(params["bag"]), instance=int(params["instance"]),
                          stride=int(params["stride"]), **params["model"])
    try:
        AttentionMIL(model_cfg)  # checks bag / instance / stride / kernel before any work
    except ValueError as err:
        raise InputError(f"MIL geometry: {err}", fix="need kernel <= instance <= bag and "
                         "stride > 0 ('mil' params)") from err
    motif = jaspar_motif(jaspar_id, params["jaspar_release"])
    logodds = pwm_logodds(motif.ppm)
    splits = params["splits"]
    split_of = resolve_splits(sizes, splits["valid"], splits["test"], splits.get("train"))
    rng = np.random.default_rng(int(params["seed"]))
    table = mil_bags(read_peaks(peaks, sizes, aliases), read_blacklist(blacklist, sizes, aliases),
                     fasta, sizes, split_of, params, rng,
                     tiles_for(tiles, fasta, int(params["bag"])))
    X = one_hot_windows(fasta, table)
    data = {}
    for split in ("train", "valid", "test"):
        idx = np.flatnonzero(table["split"].to_numpy() == split)
        data[split] = (X[idx], table["label"].to_numpy(np.uint8)[idx], idx)
    cfg = MILTrainConfig(**params["training"], seed=int(params["seed"]),
                         threads=int(params["threads"]), model=model_cfg)
    model, history, summary = train_mil(*data["train"][:2], *data["valid"][:2], cfg, log=log)

    X_test, y_test, idx_test = data["test"]
    logits, attention = predict_bags(model, X_test)
    bag_metrics = bootstrap_metrics(y_test, logits, n_boot=1000, seed=int(params["seed"]),
                                    level=float(params["level"]))
    pos = y_test == 1
    score, hit_start, strand = best_hits(X_test[pos], logodds)
    width = logodds.shape[1]
    contains = containing(model.starts, model_cfg.instance, hit_start, width)
    summit = table["summit_offset"].to_numpy()[idx_test][pos]
    strong = score >= float(params["strong_hit_fraction"]) * logodds.max(axis=0).sum()
    level = float(params["level"])
    stats = {"all": localisation(attention[pos], contains, summit, model.starts,
                                 model_cfg.instance, level),
             "strong": localisation(attention[pos][strong], contains[strong], summit[strong],
                                    model.starts, model_cfg.instance, level)}

    row = {"target": target, "jaspar_id": motif.matrix_id,
           "n_bags_train": len(data["train"][1]), "n_bags_test": len(y_test),
           "bag_auroc": bag_metrics["auroc"], "bag_auroc_lo": bag_metrics["auroc_lo"],
           "bag_auroc_hi": bag_metrics["auroc_hi"], "n_instances": model.n_instances,
           "n_localised": stats["all"]["n"], "localisation_rate": stats["all"]["rate"],
           "lo": stats["all"]["lo"], "hi": stats["all"]["hi"],
           "random_baseline": stats["all"]["random_baseline"],
           "centre_rate": stats["all"]["centre_rate"],
           "summit_rate": stats["all"]["summit_rate"], "n_strong": stats["strong"]["n"],
           "strong_rate": stats["strong"]["rate"], "strong_lo": stats["strong"]["lo"],
           "strong_hi": stats["strong"]["hi"],
           "strong_random_baseline": stats["strong"]["random_baseline"],
           "best_epoch": summary["best_epoch"],
           "seconds": round(time.perf_counter() - started, 2)}

    top = attention[pos].argmax(axis=1)
    test_pos = table.iloc[idx_test[pos]].reset_index(drop=True).assign(
        hit_score=score.round(3), hit_start=hit_start, hit_strand=strand, strong_hit=strong,
        top_instance=top, top_attention=attention[pos].max(axis=1).astype(float).round(4),
        top_holds_hit=contains[np.arange(len(top)), top], n_holding=contains.sum(axis=1))
    bags = table.copy()
    extra = test_pos.columns.difference(table.columns, sort=False)
    bags[extra] = pd.NA
    bags.loc[idx_test[pos], extra] = test_pos[extra].to_numpy()
    att = pd.DataFrame(attention[pos].astype(float).round(5),
                       columns=[f"i{j}_{s}" for j, s in enumerate(model.starts)])
    write_tsv(out_dir / "bags.tsv", bags)
    write_tsv(out_dir / "attention.tsv", pd.concat([test_pos[["name"]], att], axis=1))
    write_tsv(out_dir / "history.tsv", history)
    write_tsv(out_dir / "mil.tsv", pd.DataFrame([row], columns=TABLE_COLUMNS))

    # the most confident positive bags with a strong hit, and the most confident miss
    order = [i for i in np.argsort(-logits[pos], kind="stable") if strong[i]]
    held = test_pos["top_holds_hit"].to_numpy(bool)
    n_examples = int(params["n_examples"])
    misses = [i for i in order if not held[i]][:1 if n_examples > 1 else 0]
    picks = [i for i in order if held[i]][:n_examples - len(misses)] + misses
    examples = [{"name": f"{test_pos['name'][i]} ({test_pos['chrom'][i]}:"
                         f"{test_pos['start'][i]:,}; {'+' if strand[i] > 0 else '−'} hit "
                         f"{score[i]:.1f} bits; bag logit {logits[pos][i]:.1f}"
                         f"{'' if held[i] else '; top instance misses the hit'})",
                 "starts": model.starts, "instance": model_cfg.instance,
                 "attention": attention[pos][i], "hit_start": int(hit_start[i]),
                 "hit_width": width, "summit_offset": int(summit[i]), "bag": model_cfg.bag}
                for i in picks]
    plot_mil(figure_png, examples, stats,
             f"{target}: attention MIL — does the top instance hold the "
             f"{motif.name} ({motif.matrix_id}) hit?")
    results = {**row, "valid_bag_auroc": summary["valid_auroc"],
               "epochs_run": summary["epochs_run"], "n_params": summary["n_params"],
               "localisation": stats, "model": asdict(model_cfg)}
    write_record(out_dir / "record.json", "mil", params | {"jaspar_id": jaspar_id},
                 {"fasta": fasta, "peaks": peaks,
                  **({"blacklist": blacklist} if blacklist else {})}, results)
    return results
