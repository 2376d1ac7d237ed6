"""Transfer of a (pretrained) sequence encoder to TF binding, with label-efficiency curves.

For one ChIP target, on the spine's chromosome-held-out shards, every combination of

- encoder: ``pretrained`` (weights from a pretraining run's directory), ``random`` (the same
  architecture, randomly initialised with ``params['seed'] + seed``: a random run's seeds span
  initialisations as well as label subsets), ``cnn`` (the spine's from-scratch
  :class:`~helixflow.models.cnn.BindingCNN`, mode ``scratch``);
- mode: ``probe`` (frozen RC-invariant embeddings -> standardised logistic regression, C chosen
  on valid; the embedding is the mean of every block's output and of the final features,
  ``probe.features: layers``, or of the final features alone, ``final``), ``finetune``
  (encoder + linear head, every weight, small learning rate), ``freeze_unfreeze`` (head alone
  on frozen final embeddings, then every weight), ``adapters`` (bottleneck adapters after each
  block + head, ~1% of the weights);
- fraction of the training windows (stratified, nested across fractions, at least
  ``min_per_class`` of each class) and seed

is one run: trained on that subset of train, every choice (C, epoch) made on the whole valid
split, scored once on the test split. Each run records the parameters it trained, its wall time,
valid AUROC, test AUROC and AUPRC (``runs.tsv``), and its test predictions.

The valid split is used whole at every label fraction (the choices of a 1% run are made on
more labels than it trains on; the test split is never looked at before scoring). Training
modes use bf16 autocast on CUDA; probe embeddings are float32 everywhere. The random encoder
starts where pretraining started (the architecture's own initialisation), so a small fine-tuning
learning rate is a weak from-scratch baseline for it; the spine's CNN is the real one.
"""

from __future__ import annotations

import copy
import io
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import matplotlib
import numpy as np
import pandas as pd
import torch
from matplotlib.lines import Line2D
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.preprocessing import StandardScaler
from torch import nn

from .device import resolve_device
from .errors import InputError
from .evaluate import auroc_or_nan, bootstrap_replicates, read_predictions, write_predictions
from .files import write_json, write_tsv
from .fit import FitSettings, Step, autocast, fit
from .models.adapters import add_adapters, n_trainable
from .models.encoders import (
    build_encoder,
    encoder_config,
    encoder_tokenizer,
    load_encoder,
    n_parameters,
)
from .plots import GREY, PALETTE, STYLE, new_figure, save_figure
from .seeding import seed_everything
from .shards import Split, load_split
from .tokenize import SPECIALS, UNK, Tokenizer
from .train import train_eval_rows
from .transfer_grid import (  # noqa: F401  (DEFAULTS, FULL_GRID: the public settings)
    DEFAULTS,
    ENCODER_MODES,
    FULL_GRID,
    headline_predictions,
    mode_grid,
    prediction_path,
    resolve_params,
)

RUN_COLUMNS = ["target", "encoder", "mode", "fraction", "seed", "n_train", "params_trained",
               "params_total", "wall_s", "valid_auroc", "test_auroc", "test_auprc",
               "n_pos_train", "shared_s", "choice", "device"]

# --- data ---------------------------------------------------------------------------------

def onehot_to_tokens(X: np.ndarray, tokenizer: Tokenizer, chunk: int = 2048) -> np.ndarray:
    """Token ids of one-hot windows, int64 shape=(n, tokenizer.n_tokens(L)).

    X: one-hot shape=(n, 4, L) (uint8 or float; all-zero columns are N). Equal to
    ``tokenizer.encode(decode(x))`` for every window, vectorised.
    """
    n, _, L = X.shape
    k, n_tok = tokenizer.k, tokenizer.n_tokens(L)
    offsets = (np.arange(n_tok) * tokenizer.stride)[:, None] + np.arange(k)
    place = 4 ** np.arange(k - 1, -1, -1)
    out = np.empty((n, n_tok), dtype=np.int64)
    for i in range(0, n, chunk):
        block = np.asarray(X[i:i + chunk])
        idx = np.where(block.sum(1) > 0, block.argmax(1), 4)              # (b, L), N = 4
        windows = idx[:, offsets]                                        # (b, n_tok, k)
        codes = (np.minimum(windows, 3) * place).sum(-1) + len(SPECIALS)
        out[i:i + chunk] = np.where((windows > 3).any(-1), UNK, codes)
    return out


def label_subset(y: np.ndarray, fraction: float, seed: int, min_per_class: int = 5) -> np.ndarray:
    """Sorted indices of a stratified ``fraction`` of the windows (>= ``min_per_class`` per class,
    or the whole class when smaller). Nested: for one seed, a smaller fraction's subset is
    contained in a larger one's (prefixes of one seeded permutation per class)."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    keep = []
    for label in (0, 1):
        members = np.flatnonzero(y == label)
        order = members[rng.permutation(len(members))]
        n = min(len(members), max(min_per_class, math.ceil(fraction * len(members))))
        keep.append(order[:n])
    return np.sort(np.concatenate(keep))


def _check_classes(y: np.ndarray, split: str, manifest: Path) -> None:
    n_pos = int(np.sum(y))
    if not 0 < n_pos < len(y):
        raise InputError(f"the {split} split has {n_pos} positives among {len(y)} windows; "
                         "AUROC needs both classes", path=manifest,
                         fix="move chromosomes with peaks into that split ('splits' in the "
                         "config)")


# --- scoring ------------------------------------------------------------------------------


@torch.no_grad()
def embed(encoder: nn.Module, tokens: np.ndarray, batch_size: int = 128,
          layers: bool = False) -> np.ndarray:
    """Pooled (RC-invariant when the encoder says so) embeddings, float32 shape=(n, d_model),
    or of every depth with ``layers`` (``encoder.pooled_layers``, shape=(n, (n_layers+1)·d)).

    Always in float32, also on CUDA: a randomly initialised encoder's descriptors differ
    between windows by less than bf16 resolves, and probes must compare alike on CPU and GPU.
    """
    encoder.eval()
    device = next(encoder.parameters()).device
    describe = encoder.pooled_layers if layers else encoder.pooled
    out = []
    for i in range(0, len(tokens), batch_size):
        batch = torch.from_numpy(tokens[i:i + batch_size]).to(device)
        out.append(describe(batch).float().cpu())
    if not out:
        width = encoder.d_model * ((encoder.config["n_layers"] + 1) if layers else 1)
        return np.zeros((0, width), np.float32)
    return torch.cat(out).numpy()


class Classifier(nn.Module):
    """Binding logit shape=(B,) from tokens shape=(B, L): a linear head on ``encoder.pooled``,
    or with ``layers`` on ``encoder.pooled_layers`` (the probe's features)."""

    def __init__(self, encoder: nn.Module, layers: bool = False) -> None:
        super().__init__()
        self.encoder, self.layers = encoder, layers
        width = encoder.d_model * ((encoder.config["n_layers"] + 1) if layers else 1)
        self.head = nn.Linear(width, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        describe = self.encoder.pooled_layers if self.layers else self.encoder.pooled
        return self.head(describe(tokens).float()).squeeze(-1)


@torch.no_grad()
def predict_logits(model: Classifier, tokens: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Logits float64 shape=(n,)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(tokens), batch_size):
        with autocast(device):
            out.append(model(torch.from_numpy(tokens[i:i + batch_size]).to(device)).float()
                       .cpu())
    return torch.cat(out).double().numpy()


# --- the modes ----------------------------------------------------------------------------

def fit_probe(F_train: np.ndarray, y_train: np.ndarray, F_valid: np.ndarray,
              y_valid: np.ndarray, settings: dict,
              ) -> tuple[StandardScaler, LogisticRegression, float, float]:
    """Logistic regression on standardised embeddings; C with the best valid AUROC (the
    smallest C on ties). Returns (scaler, classifier, valid AUROC, C)."""
    scaler = StandardScaler().fit(F_train)
    Z_train, Z_valid = scaler.transform(F_train), scaler.transform(F_valid)
    best = None
    for C in settings["C"]:
        clf = LogisticRegression(C=C, max_iter=settings["max_iter"]).fit(Z_train, y_train)
        auc = auroc_or_nan(y_valid, clf.decision_function(Z_valid))
        if best is None or auc > best[0]:
            best = (auc, C, clf)
    auc, C, clf = best
    return scaler, clf, auc, C


def run_probe(F_train: np.ndarray, y_train: np.ndarray, F_valid: np.ndarray,
              y_valid: np.ndarray, F_test: np.ndarray, settings: dict,
              ) -> tuple[np.ndarray, float, str]:
    """:func:`fit_probe`, then the test scores. Returns (test scores, valid AUROC, 'C=...')."""
    scaler, clf, auc, C = fit_probe(F_train, y_train, F_valid, y_valid, settings)
    return clf.decision_function(scaler.transform(F_test)), auc, f"C={C:g}"


def probe_as_head(scaler: StandardScaler, clf: LogisticRegression) -> tuple[torch.Tensor,
                                                                            torch.Tensor]:
    """The probe as weights on raw embeddings: w·(x − μ)/σ + b = (w/σ)·x + (b − Σ w μ/σ).
    Returns (weight shape=(1, width), bias shape=(1,)), float32."""
    w = clf.coef_[0] / scaler.scale_
    b = clf.intercept_[0] - float(np.dot(w, scaler.mean_))
    return (torch.tensor(w[None, :], dtype=torch.float32),
            torch.tensor([b], dtype=torch.float32))


def _fit(model: Classifier, tokens: np.ndarray, y: np.ndarray, valid_tokens: np.ndarray,
         y_valid: np.ndarray, s: dict, generator: torch.Generator, eval_batch: int,
         start: tuple[float, dict] | None = None, log: TextIO = sys.stderr,
         head_lr: float | None = None) -> tuple[float, int]:
    """Train the parameters of ``model`` that require grad (AdamW, BCE) with
    :func:`helixflow.fit.fit`; keep the weights of the epoch with the best valid AUROC
    (``start``: a (valid AUROC, state) to beat), stop after ``patience`` epochs without
    improvement. An epoch is one pass over the windows, or ``min_batches`` batches when that
    is more (tiny label fractions). Returns (best valid AUROC, best epoch; 0 = ``start``)."""
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW(_param_groups(model, s["lr"], head_lr),
                                  weight_decay=s["weight_decay"])
    warmup = int(s.get("warmup_epochs", 0))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda epoch: min(1.0, (epoch + 1) / (warmup + 1))) if warmup else None
    loss_fn = nn.BCEWithLogitsLoss()
    X = torch.from_numpy(tokens)
    target = torch.from_numpy(np.asarray(y, dtype=np.float32))
    n_batches = max(s["min_batches"], math.ceil(len(X) / s["batch_size"]))
    passes = math.ceil(n_batches * s["batch_size"] / len(X))

    def shuffle() -> torch.Tensor:         # whole passes, cut to the epoch's batches
        order = torch.cat([torch.randperm(len(X), generator=generator) for _ in range(passes)])
        return order[:n_batches * s["batch_size"]]

    def step(rows: torch.Tensor) -> Step:
        return Step(loss_fn(model(X[rows].to(device)).float(), target[rows].to(device)),
                    len(rows))

    def evaluate(model: Classifier) -> dict:
        return {"valid_auroc": auroc_or_nan(y_valid, predict_logits(model, valid_tokens,
                                                                    eval_batch))}

    settings = FitSettings(epochs=s["epochs"], batch_size=s["batch_size"],
                           patience=s["patience"], min_batches=s["min_batches"],
                           precision="bf16")
    result = fit(model, optimizer, step, len(X), settings, generator, evaluate,
                 scheduler=scheduler, shuffle=shuffle, start=start, device=device, label="  ",
                 log=log)
    return result.best_score, result.best_epoch


def _param_groups(model: Classifier, lr: float, head_lr: float | None) -> list[dict]:
    """The trainable weights, the head at ``head_lr`` (when given) and the rest at ``lr``: a
    head that starts from the probe may move faster than the pretrained encoder under it."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if head_lr is None:
        return [{"params": trainable, "lr": lr}]
    head = {id(p) for p in model.head.parameters()}
    return [{"params": [p for p in trainable if id(p) not in head], "lr": lr},
            {"params": [p for p in trainable if id(p) in head], "lr": head_lr}]


def _train_head_on_embeddings(head: nn.Linear, F_train: np.ndarray, y: np.ndarray,
                              F_valid: np.ndarray, y_valid: np.ndarray, s: dict,
                              generator: torch.Generator) -> float:
    """Freeze phase of freeze-then-unfreeze: the head alone, on cached embeddings (the frozen
    encoder would compute the same ones every epoch); best valid epoch kept."""
    device = head.weight.device
    optimizer = torch.optim.AdamW(head.parameters(), lr=s["head_lr"], weight_decay=0.0)
    loss_fn = nn.BCEWithLogitsLoss()
    X, Xv = torch.from_numpy(F_train).to(device), torch.from_numpy(F_valid).to(device)
    target = torch.from_numpy(np.asarray(y, dtype=np.float32)).to(device)

    def step(rows: torch.Tensor) -> Step:
        rows = rows.to(device)
        return Step(loss_fn(head(X[rows]).squeeze(-1), target[rows]), len(rows))

    def evaluate(head: nn.Linear) -> dict:
        return {"valid_auroc": auroc_or_nan(y_valid, head(Xv).squeeze(-1).double().cpu()
                                            .numpy())}

    settings = FitSettings(epochs=s["head_epochs"], batch_size=s["batch_size"])
    return fit(head, optimizer, step, len(X), settings, generator, evaluate,
               log=io.StringIO()).best_score


def adapter_bottleneck(encoder: nn.Module, param_fraction: float) -> int:
    """Bottleneck width whose adapters hold about ``param_fraction`` of the encoder's weights."""
    total, d, layers = n_parameters(encoder), encoder.d_model, len(encoder.blocks)
    rc = encoder.config.get("rc_equivariant") and encoder.config["architecture"] == "dilated_cnn"
    widths = range(2, d + 1, 2) if rc else range(1, d + 1)

    def count(b: int) -> float:
        per_block = 2 * d * b + b + d
        return layers * (per_block / 2 if rc else per_block)

    return min(widths, key=lambda b: abs(count(b) - param_fraction * total))


# --- one target ---------------------------------------------------------------------------


def _scores(y: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    return auroc_or_nan(y, score), float(average_precision_score(y, score))


def subsample(split: Split, limit: int, seed: int) -> Split:
    """At most ``limit`` windows of ``split`` (a seeded subset, in shard order; 0 = all)."""
    if not 0 < limit < len(split.y):
        return split
    rows = train_eval_rows(len(split.y), limit, seed)
    return Split(X=np.asarray(split.X[rows]), y=np.asarray(split.y)[rows],
                 names=[split.names[i] for i in rows])


def run_transfer(target: str, shards_manifest: str | Path, encoder_dir: str | Path | None,
                 out_dir: str | Path, params: dict | None = None,
                 log: TextIO = sys.stderr) -> dict:
    """Every encoder × mode × fraction × seed of ``params`` for one target; writes outputs.

    params: missing keys take :data:`DEFAULTS` (nested dicts merged one level). The default is
    sized for a CPU: linear probes of the pretrained and the random encoder and the spine's
    CNN from scratch, at 1%, 10% and 100% of the training windows, seeds 0, 1, 2; pass
    ``modes=["probe", "finetune", "freeze_unfreeze", "adapters"]`` (:data:`FULL_GRID`) for
    the whole comparison (meant for a GPU).

    Writes into ``out_dir``: ``runs.tsv`` (columns :data:`RUN_COLUMNS`; ``shared_s`` is the
    time to embed every window once with a frozen encoder, shared by that encoder's probes and
    not part of their ``wall_s``), ``predictions/{encoder}_{mode}_f{fraction}_s{seed}.tsv``
    (test split, :func:`helixflow.evaluate.write_predictions` format, score = logit),
    ``label_efficiency.png/.svg`` and ``summary.json``. Returns the summary: per encoder and
    mode, mean test AUROC per fraction, and the predictions of the 100% runs of the first seed
    (``headline_predictions``, model name ``{encoder}_{mode}``).
    """
    started = time.time()
    p = resolve_params(params)
    out_dir, shards_manifest = Path(out_dir), Path(shards_manifest)
    device = resolve_device(p["device"])
    splits = {name: load_split(shards_manifest, name) for name in ("train", "valid", "test")}
    for name in ("train", "valid"):                   # the test split is always whole
        splits[name] = subsample(splits[name], int(p["max_windows"].get(name, 0)), p["seed"])
    for name, split in splits.items():
        _check_classes(np.asarray(split.y), name, shards_manifest)
    y = {name: np.asarray(split.y).astype(np.int64) for name, split in splits.items()}

    wanted = [e for e in p["encoders"] if e != "cnn"]
    if "pretrained" in wanted and encoder_dir is None:
        raise InputError("the 'pretrained' encoder needs an encoder directory",
                         fix="pass the pretraining output directory, or drop 'pretrained' "
                         "from encoders")
    pretrained = load_encoder(encoder_dir) if encoder_dir is not None else None
    config = dict(pretrained.config) if pretrained is not None else dict(p["encoder"])
    config.pop("adapter_bottleneck", None)

    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    rows: list[dict] = []
    try:
        tokenizer = encoder_tokenizer(encoder_config(config))
        tokens = {s: onehot_to_tokens(split.X, tokenizer) for s, split in splits.items()}
        for name in wanted:
            if name == "pretrained":
                _encoder_runs(target, name, pretrained, tokens, y, splits, p, device, out_dir,
                              rows, log)
                continue
            for seed in sorted({s for mode in p["modes"] for s in mode_grid(p, mode)[1]}):
                torch.manual_seed(p["seed"] + seed)                 # one initialisation per seed
                _encoder_runs(target, name, build_encoder(config), tokens, y, splits, p,
                              device, out_dir, rows, log, only_seed=seed)
        if "cnn" in p["encoders"]:
            _cnn_runs(target, splits, y, p, out_dir, rows, log)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)

    runs = pd.DataFrame(rows, columns=RUN_COLUMNS)
    write_tsv(out_dir / "runs.tsv", runs, float_format="%.6g")
    plot_label_efficiency(runs, None, out_dir / "label_efficiency.png")
    summary = summarise(runs)
    summary.update({"target": target, "seconds": round(time.time() - started, 2),
                    "device": str(device), "encoder_config": config,
                    "encoder_dir": None if encoder_dir is None else str(encoder_dir),
                    "params": p})
    summary["headline_predictions"] = {name: str(out_dir / relative)
                                       for name, relative in headline_predictions(p).items()}
    write_json(out_dir / "summary.json", summary)
    return summary


def _add_run(rows: list[dict], row: dict, out_dir: Path) -> None:
    """Append a run and rewrite ``runs.tsv`` (atomically), so a stopped job keeps its runs."""
    rows.append(row)
    write_tsv(out_dir / "runs.tsv", pd.DataFrame(rows, columns=RUN_COLUMNS), float_format="%.6g")


def _encoder_runs(target: str, name: str, base: nn.Module, tokens: dict, y: dict,
                  splits: dict[str, Split], p: dict, device: torch.device, out_dir: Path,
                  rows: list[dict], log: TextIO, only_seed: int | None = None) -> None:
    """All runs of one transformer / dilated-CNN encoder (pretrained or random), or those of
    seed ``only_seed``."""
    total = n_parameters(base)
    shared_s, F = float("nan"), None
    if "probe" in p["modes"] and (only_seed is None or only_seed in p["seeds"]):
        seed_everything(p["seed"], p["threads"], device)
        tic = time.time()
        frozen = base.to(device)
        layers = p["probe"]["features"] == "layers"
        F = {s: embed(frozen, t, p["batch_size_eval"], layers) for s, t in tokens.items()}
        shared_s = time.time() - tic
        print(f"{target} {name}: embedded {sum(len(t) for t in tokens.values())} windows in "
              f"{shared_s:.1f}s", file=log, flush=True)
    for mode in p["modes"]:
        fractions, seeds = mode_grid(p, mode)
        seeds = [s for s in seeds if only_seed is None or s == only_seed]
        for fraction in fractions:
            for seed in seeds:
                idx = label_subset(y["train"], fraction, seed, p["min_per_class"])
                generator = seed_everything(seed, p["threads"], device)
                tic = time.time()
                print(f"{target} {name} {mode} fraction {fraction:g} seed {seed}: "
                      f"{len(idx)} windows", file=log, flush=True)
                if mode == "probe":
                    score, valid_auc, choice = run_probe(
                        F["train"][idx], y["train"][idx], F["valid"], y["valid"], F["test"],
                        p["probe"])
                    width = F["train"].shape[1]
                    trained, n_total, run_shared = width + 1, total + width + 1, shared_s
                else:
                    score, valid_auc, choice, trained, n_total = _train_mode(
                        mode, base, tokens, y, idx, p, device, generator, log, F)
                    run_shared = float("nan")
                wall = time.time() - tic
                test_auc, test_ap = _scores(y["test"], score)
                write_predictions(prediction_path(out_dir, name, mode, fraction, seed),
                                  splits["test"].names, y["test"], score)
                row = {"target": target, "encoder": name, "mode": mode, "fraction": fraction,
                       "seed": seed, "n_train": len(idx), "params_trained": trained,
                       "params_total": n_total, "wall_s": wall, "valid_auroc": valid_auc,
                       "test_auroc": test_auc, "test_auprc": test_ap,
                       "n_pos_train": int(y["train"][idx].sum()), "shared_s": run_shared,
                       "choice": choice, "device": str(device)}
                _add_run(rows, row, out_dir)
                print(f"  -> valid auroc {valid_auc:.4f} test auroc {test_auc:.4f} "
                      f"({wall:.1f}s, {choice})", file=log, flush=True)


def _train_mode(mode: str, base: nn.Module, tokens: dict, y: dict, idx: np.ndarray, p: dict,
                device: torch.device, generator: torch.Generator, log: TextIO,
                F: dict | None = None) -> tuple[np.ndarray, float, str, int, int]:
    """One fine-tuning run on a fresh copy of ``base``; returns (test logits, valid AUROC,
    choice, parameters trained, parameters in the model). ``F``: the frozen base's probe
    embeddings of every split, when already computed (the finetune mode's probe head)."""
    s = p[mode]
    from_probe = mode == "finetune" and s["head"] == "probe"
    layers = from_probe and p["probe"]["features"] == "layers"
    model = Classifier(copy.deepcopy(base), layers=layers).to(device)
    train_tokens, train_y = tokens["train"][idx], y["train"][idx]
    eval_batch = p["batch_size_eval"]
    if from_probe:        # linear probe first, then fine-tune everything (LP-FT)
        trained = n_trainable(model)
        F_train, F_valid = (F["train"][idx], F["valid"]) if F else (
            embed(model.encoder, t, eval_batch, layers) for t in (train_tokens,
                                                                  tokens["valid"]))
        scaler, clf, probe_auc, C = fit_probe(F_train, train_y, F_valid, y["valid"],
                                              p["probe"])
        weight, bias = probe_as_head(scaler, clf)
        with torch.no_grad():
            model.head.weight.copy_(weight)
            model.head.bias.copy_(bias)
        print(f"  probe head (C={C:g}): valid auroc {probe_auc:.4f}", file=log, flush=True)
        auc, epoch = _fit(model, train_tokens, train_y, tokens["valid"], y["valid"], s,
                          generator, eval_batch,
                          start=(probe_auc, copy.deepcopy(model.state_dict())), log=log,
                          head_lr=s["head_lr"])
        choice = f"probe_head,C={C:g}" if epoch == 0 else f"probe_head,C={C:g},epoch={epoch}"
    elif mode == "finetune":
        trained = n_trainable(model)
        auc, epoch = _fit(model, train_tokens, train_y, tokens["valid"], y["valid"], s,
                          generator, eval_batch, log=log)
        choice = f"epoch={epoch}"
    elif mode == "adapters":
        bottleneck = adapter_bottleneck(model.encoder, s["param_fraction"])
        add_adapters(model.encoder, bottleneck)
        model.to(device)
        trained = n_trainable(model)
        auc, epoch = _fit(model, train_tokens, train_y, tokens["valid"], y["valid"], s,
                          generator, eval_batch, log=log)
        choice = f"bottleneck={model.encoder.config['adapter_bottleneck']},epoch={epoch}"
    else:                                                     # freeze_unfreeze
        trained = n_trainable(model)
        F_train = embed(model.encoder, train_tokens, eval_batch)
        F_valid = embed(model.encoder, tokens["valid"], eval_batch)
        head_auc = _train_head_on_embeddings(model.head, F_train, train_y, F_valid, y["valid"],
                                             s, generator)
        print(f"  head only: valid auroc {head_auc:.4f}", file=log, flush=True)
        auc, epoch = _fit(model, train_tokens, train_y, tokens["valid"], y["valid"], s,
                          generator, eval_batch,
                          start=(head_auc, copy.deepcopy(model.state_dict())), log=log)
        choice = "head_only" if epoch == 0 else f"unfrozen_epoch={epoch}"
    score = predict_logits(model, tokens["test"], eval_batch)
    return score, auc, choice, trained, n_parameters(model)


def _cnn_runs(target: str, splits: dict[str, Split], y: dict, p: dict, out_dir: Path,
              rows: list[dict], log: TextIO) -> None:
    """The spine's BindingCNN from scratch on each label fraction (helixflow.train)."""
    from .train import make_config, predict, train_cnn

    X = {s: np.asarray(split.X) for s, split in splits.items()}
    for fraction in p["fractions"]:
        for seed in p["seeds"]:
            idx = label_subset(y["train"], fraction, seed, p["min_per_class"])
            cfg = make_config(p["cnn"]["architecture"],
                              {**p["cnn"]["training"], "device": p["device"]}, seed=seed,
                              threads=p["threads"], window=X["train"].shape[-1])
            tic = time.time()
            model, _, summary = train_cnn(X["train"][idx], y["train"][idx], X["valid"],
                                          y["valid"], cfg, log=io.StringIO())
            score = predict(model, X["test"], rc_average=cfg.rc_average).astype(np.float64)
            wall = time.time() - tic
            test_auc, test_ap = _scores(y["test"], score)
            write_predictions(prediction_path(out_dir, "cnn", "scratch", fraction, seed),
                              splits["test"].names, y["test"], score)
            n = n_parameters(model)
            row = {"target": target, "encoder": "cnn", "mode": "scratch",
                   "fraction": fraction, "seed": seed, "n_train": len(idx),
                   "params_trained": n, "params_total": n, "wall_s": wall,
                   "valid_auroc": summary["valid_auroc"], "test_auroc": test_auc,
                   "test_auprc": test_ap, "n_pos_train": int(y["train"][idx].sum()),
                   "shared_s": float("nan"), "choice": f"epoch={summary['best_epoch']}",
                   "device": summary["device"]}
            _add_run(rows, row, out_dir)
            print(f"{target} cnn scratch fraction {fraction:g} seed {seed}: test auroc "
                  f"{test_auc:.4f} ({wall:.1f}s)", file=log, flush=True)


# --- summaries and the figure -------------------------------------------------------------

def summarise(runs: pd.DataFrame) -> dict:
    """Mean test AUROC per encoder_mode and fraction, and the pretrained-minus-random probe gap."""
    table = runs.groupby(["encoder", "mode", "fraction"])["test_auroc"].agg(["mean", "std",
                                                                              "count"])
    out: dict = {"test_auroc_mean": {}, "params_trained": {}, "wall_s_mean": {}}
    for (encoder, mode, fraction), row in table.iterrows():
        out["test_auroc_mean"].setdefault(f"{encoder}_{mode}", {})[f"{fraction:g}"] = round(
            float(row["mean"]), 4)
    for (encoder, mode), part in runs.groupby(["encoder", "mode"]):
        out["params_trained"][f"{encoder}_{mode}"] = int(part["params_trained"].iloc[0])
        out["wall_s_mean"][f"{encoder}_{mode}"] = round(float(part["wall_s"].mean()), 2)
    means = out["test_auroc_mean"]
    if "pretrained_probe" in means and "random_probe" in means:
        out["probe_gain_pretrained_minus_random"] = {
            f: round(means["pretrained_probe"][f] - means["random_probe"][f], 4)
            for f in means["pretrained_probe"] if f in means["random_probe"]}
    return out


def _read_runs(runs: pd.DataFrame | str | Path | Sequence[str | Path]) -> pd.DataFrame:
    if isinstance(runs, pd.DataFrame):
        return runs
    paths = [runs] if isinstance(runs, str | Path) else list(runs)
    return pd.concat([pd.read_csv(path, sep="\t") for path in paths], ignore_index=True)


def plot_label_efficiency(runs: pd.DataFrame | str | Path | Sequence[str | Path],
                          cnn_metrics: pd.DataFrame | str | Path | None,
                          path_png: str | Path) -> tuple[Path, Path]:
    """Test AUROC against the fraction of training labels, one panel per target.

    runs: one or more ``runs.tsv`` (or their concatenation). One line per encoder × mode: the
    mean over seeds, with a band from the lowest to the highest seed. cnn_metrics: optional
    metrics table (``evaluate.METRIC_COLUMNS``, e.g. ``results/metrics/summary.tsv``); its
    ``cnn`` rows (the spine's tuned CNN on 100% of the labels) are drawn as a grey band (95%
    bootstrap interval) with a line at the point estimate.
    """
    table = _read_runs(runs)
    reference = None
    if cnn_metrics is not None:
        reference = cnn_metrics if isinstance(cnn_metrics, pd.DataFrame) else pd.read_csv(
            cnn_metrics, sep="\t")
        reference = reference[(reference["model"] == "cnn")
                              & (reference.get("split", "test") == "test")]
    targets = list(dict.fromkeys(table["target"]))
    arms = list(dict.fromkeys(zip(table["encoder"], table["mode"], strict=True)))
    styles = {"probe": "-", "finetune": "--", "freeze_unfreeze": "-.", "adapters": ":",
              "scratch": "-"}
    colours = {"pretrained": PALETTE[0], "random": PALETTE[1], "cnn": PALETTE[2]}
    markers = {"probe": "o", "finetune": "s", "freeze_unfreeze": "^", "adapters": "D",
               "scratch": "o"}
    n = len(targets)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    with matplotlib.rc_context(STYLE):
        fig = new_figure(3.6 * cols + 0.4, 3.2 * rows + 1.0)
        axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
        for ax, target in zip(axes, targets, strict=False):
            part = table[table["target"] == target]
            for i, (encoder, mode) in enumerate(arms):
                arm = part[(part["encoder"] == encoder) & (part["mode"] == mode)]
                if arm.empty:
                    continue
                stats = arm.groupby("fraction")["test_auroc"].agg(["mean", "min", "max"])
                colour = colours.get(encoder, PALETTE[(3 + i) % len(PALETTE)])
                ax.plot(stats.index, stats["mean"], color=colour, linestyle=styles.get(mode, "-"),
                        marker=markers.get(mode, "o"), markersize=5)
                ax.fill_between(stats.index, stats["min"], stats["max"], color=colour,
                                alpha=0.15, linewidth=0)
            if reference is not None and target in set(reference["target"]):
                ref = reference[reference["target"] == target].iloc[0]
                ax.axhspan(ref["auroc_lo"], ref["auroc_hi"], color=GREY, alpha=0.2, linewidth=0)
                ax.axhline(ref["auroc"], color=GREY, linewidth=1.0)
            ax.axhline(0.5, color=GREY, linestyle=":", linewidth=1.0)
            ax.set_xscale("log")
            ax.set(title=target, xlabel="Fraction of training windows (log scale)",
                   ylabel="Test AUROC")
        for ax in axes[n:]:
            ax.set_visible(False)
        handles = [Line2D([], [], color=colours.get(e, PALETTE[(3 + i) % len(PALETTE)]),
                          linestyle=styles.get(m, "-"), marker=markers.get(m, "o"), markersize=5,
                          label=f"{e} {m}") for i, (e, m) in enumerate(arms)]
        handles.append(Line2D([], [], color="#333333", linewidth=6, alpha=0.15,
                              label="range over seeds"))
        if reference is not None:
            handles.append(Line2D([], [], color=GREY, linewidth=1.0,
                                  label="spine CNN, 100% (band: 95% bootstrap CI)"))
        handles.append(Line2D([], [], color=GREY, linestyle=":", label="chance (0.5)"))
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4))
        fig.suptitle("Label efficiency: transfer of sequence encoders to TF binding")
        return save_figure(fig, path_png)


def comparison_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per target × encoder × mode at 100% of the labels: test AUROC over seeds
    (mean, min, max), parameters trained and mean wall time."""
    full = runs[runs["fraction"] == 1.0]
    table = full.groupby(["target", "encoder", "mode"], sort=False).agg(
        n_seeds=("seed", "nunique"), test_auroc=("test_auroc", "mean"),
        test_auroc_min=("test_auroc", "min"), test_auroc_max=("test_auroc", "max"),
        valid_auroc=("valid_auroc", "mean"), params_trained=("params_trained", "first"),
        params_total=("params_total", "first"), wall_s=("wall_s", "mean")).reset_index()
    return table


def probe_gain(runs: pd.DataFrame, out_dir: str | Path, n_boot: int = 1000,
               seed: int = 0) -> dict | None:
    """Test AUROC of the pretrained probe minus the mean over the random encoder's
    initialisations (100% of the labels, one target's ``runs`` and output folder), with a 95%
    paired bootstrap interval: every model is scored on the same resampled windows.

    Keys: gain, gain_lo, gain_hi, n_random. None when either probe is missing.
    """
    full = runs[(runs["fraction"] == 1.0) & (runs["mode"] == "probe")]
    pretrained = sorted(full.loc[full["encoder"] == "pretrained", "seed"])
    randoms = sorted(set(full.loc[full["encoder"] == "random", "seed"]))
    if not pretrained or not randoms:
        return None

    def read(encoder: str, run_seed: int) -> pd.DataFrame:
        return read_predictions(prediction_path(Path(out_dir), encoder, "probe", 1.0, run_seed))
    ours = read("pretrained", pretrained[0])
    others = [read("random", s) for s in randoms]
    if any(not other["name"].equals(ours["name"]) for other in others):
        raise ValueError(f"probe predictions in {out_dir} do not list the same windows")
    y = ours["label"].to_numpy()
    ours_boot = bootstrap_replicates(y, ours["score"].to_numpy(), n_boot, seed)[0]
    others_boot = np.mean([bootstrap_replicates(y, o["score"].to_numpy(), n_boot, seed)[0]
                           for o in others], axis=0)
    gain = auroc_or_nan(y, ours["score"].to_numpy()) - float(np.mean(
        [auroc_or_nan(y, o["score"].to_numpy()) for o in others]))
    lo, hi = np.percentile(ours_boot - others_boot, [2.5, 97.5])
    return {"gain": gain, "gain_lo": float(lo), "gain_hi": float(hi), "n_random": len(others)}


def summarise_transfer(runs_paths: Sequence[str | Path],
                       cnn_metrics: pd.DataFrame | str | Path, out: str | Path,
                       figure_png: str | Path) -> pd.DataFrame:
    """All targets' runs → the comparison table (``out``) and the label-efficiency figure.

    The pretrained probe's rows also carry :func:`probe_gain` (columns ``probe_gain``,
    ``probe_gain_lo``, ``probe_gain_hi``; empty on other rows).
    """
    parts = [pd.read_csv(path, sep="\t") for path in runs_paths]
    runs = pd.concat(parts, ignore_index=True)
    table = comparison_table(runs)
    gains = {}
    for path, part in zip(runs_paths, parts, strict=True):
        if len(part) and (gain := probe_gain(part, Path(path).parent)) is not None:
            gains[part["target"].iloc[0]] = gain
    is_probe = (table["encoder"] == "pretrained") & (table["mode"] == "probe")
    for key in ("gain", "gain_lo", "gain_hi"):
        table[f"probe_{key}"] = [gains[t][key] if ok and t in gains else np.nan
                                 for t, ok in zip(table["target"], is_probe, strict=True)]
    write_tsv(out, table, float_format="%.4g")
    plot_label_efficiency(runs, cnn_metrics, figure_png)
    return table
