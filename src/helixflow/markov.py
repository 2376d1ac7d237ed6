"""Pretraining diagnostics: masked-token accuracy and perplexity against k-mer count baselines.

Baselines, fitted on the training corpus's tokens and scored on the very tokens the MLM is
scored on (held-out chromosomes, the masked positions of a fixed masking seed):

- ``markov``: order-m Markov chain, P(x_i | x_{i-m} .. x_{i-1}); its cross-entropy on held-out
  tokens is the order-m conditional entropy estimate of the sequence.
- ``bidirectional``: P(x_i | m tokens left and m right), read from counts. The MLM sees both
  sides, so this is its honest reference. It sees the true neighbours, while the MLM's
  neighbours are themselves masked at the masking rate, so the comparison favours the baseline.

Counts never cross a window's edge (the MLM sees one window too); context beyond the edge is
[PAD]. Probabilities are add-alpha smoothed over the 4**k k-mer tokens:
P(x | c) = (n(c, x) + alpha) / (n(c) + alpha 4**k). The order and alpha are chosen on tokens not
used for fitting (the last ``select_fraction`` of the training windows, or a validation corpus),
never on the held-out tokens. The MLM's probabilities are renormalised over the same 4**k k-mer
tokens (specials are never masked targets), so all models predict from the same alphabet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .device import resolve_device
from .errors import InputError
from .files import read_json, write_tsv
from .objectives import IGNORE, N_SPECIALS, mask_tokens

ALPHAS = (1e-3, 1e-2, 0.1, 0.5, 1.0)
COLUMNS = ["model", "context", "order", "alpha", "selected", "tokens", "accuracy", "perplexity",
           "cross_entropy_bits"]


# --------------------------------------------------------------------------- token windows

def load_windows(manifest_path: str | Path, max_windows: int | None = None) -> np.ndarray:
    """Token windows of a corpus, int64 shape=(n, n_tokens), in manifest order.

    With ``max_windows``, that many windows evenly spaced over the corpus (deterministic).
    """
    manifest_path = Path(manifest_path)
    if not manifest_path.is_file():
        raise InputError("no corpus manifest", path=manifest_path,
                         fix="build the corpus first (helixflow.corpus.run_pretrain_corpus)")
    manifest = read_json(manifest_path)
    shards = [np.load(manifest_path.parent / s["path"], mmap_mode="r")
              for s in manifest["shards"]]
    if not shards or sum(len(s) for s in shards) == 0:
        raise InputError("the corpus holds no windows", path=manifest_path,
                         fix="check its chromosomes and max_n_fraction")
    if max_windows is None:
        return np.concatenate([np.asarray(s, dtype=np.int64) for s in shards])
    total = sum(len(s) for s in shards)
    wanted = np.unique(np.linspace(0, total - 1, min(max_windows, total)).astype(np.int64))
    offsets = np.cumsum([0] + [len(s) for s in shards])
    shard_of = np.searchsorted(offsets, wanted, side="right") - 1
    return np.stack([np.asarray(shards[s][i - offsets[s]], dtype=np.int64)
                     for s, i in zip(shard_of, wanted, strict=True)])


def corpus_k(manifest_path: str | Path) -> tuple[int, int]:
    """(k, stride) of a corpus's tokenizer."""
    tok = read_json(manifest_path)["tokenizer"]
    return int(tok["k"]), int(tok["stride"])


# --------------------------------------------------------------------------- count models

def _context_keys(windows: np.ndarray, rows: np.ndarray, cols: np.ndarray, left: int,
                  right: int, base: int) -> np.ndarray:
    """One int64 key per target position for its ``left`` + ``right`` neighbours ([PAD] = 0
    beyond the window's edges)."""
    L = windows.shape[1]
    key = np.zeros(len(rows), dtype=np.int64)
    for offset in [*range(-left, 0), *range(1, right + 1)]:
        c = cols + offset
        inside = (c >= 0) & (c < L)
        token = np.where(inside, windows[rows, np.clip(c, 0, L - 1)], 0)
        key = key * base + token
    return key


def _targets(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of every k-mer token (specials are never targets)."""
    rows, cols = np.nonzero(windows >= N_SPECIALS)
    return rows, cols


@dataclass
class CountModel:
    """Add-alpha smoothed counts of (context, next k-mer); see the module docstring."""

    left: int
    right: int
    vocab_size: int             # token ids 0..vocab_size-1 (context symbols)
    n_out: int                  # 4**k k-mer targets
    joint_keys: np.ndarray      # sorted unique context * n_out + target
    joint_counts: np.ndarray
    context_keys: np.ndarray    # sorted unique contexts
    context_counts: np.ndarray
    context_best: np.ndarray    # most frequent target per context
    overall_best: int
    alpha: float = 1.0

    @property
    def name(self) -> str:
        if self.right:
            return f"bidirectional_{self.left}+{self.right}"
        return f"markov_order{self.left}"

    @classmethod
    def fit(cls, windows: np.ndarray, left: int, right: int, vocab_size: int,
            alpha: float = 1.0) -> CountModel:
        n_out = vocab_size - N_SPECIALS
        if vocab_size ** (left + right) * n_out >= 2 ** 62:
            raise ValueError(f"context of {left}+{right} tokens over {vocab_size} ids "
                             "overflows 64-bit keys; use a lower order")
        rows, cols = _targets(windows)
        context = _context_keys(windows, rows, cols, left, right, vocab_size)
        joint = context * n_out + (windows[rows, cols] - N_SPECIALS)
        joint_keys, joint_counts = np.unique(joint, return_counts=True)
        ctx_of_joint = joint_keys // n_out
        context_keys, start = np.unique(ctx_of_joint, return_index=True)
        context_counts = np.add.reduceat(joint_counts, start)
        # most frequent target per context: order joint entries by (context, -count)
        order = np.lexsort((-joint_counts, ctx_of_joint))
        first = np.searchsorted(ctx_of_joint[order], context_keys)
        context_best = joint_keys[order][first] % n_out
        totals = np.bincount(joint_keys % n_out, weights=joint_counts, minlength=n_out)
        return cls(left, right, vocab_size, n_out, joint_keys, joint_counts, context_keys,
                   context_counts, context_best, int(totals.argmax()), alpha)

    def score(self, windows: np.ndarray, rows: np.ndarray,
              cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(log-probability in nats of the true token, whether the argmax is right) per
        position (rows, cols) of ``windows``."""
        context = _context_keys(windows, rows, cols, self.left, self.right, self.vocab_size)
        target = windows[rows, cols] - N_SPECIALS
        n_joint = _lookup(self.joint_keys, self.joint_counts, context * self.n_out + target)
        n_context = _lookup(self.context_keys, self.context_counts, context)
        logp = np.log((n_joint + self.alpha) / (n_context + self.alpha * self.n_out))
        best = _lookup(self.context_keys, self.context_best, context, missing=self.overall_best)
        return logp, best == target


def _lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray,
            missing: float = 0) -> np.ndarray:
    """values[keys == query] per query (``missing`` where a key is absent); keys sorted."""
    at = np.clip(np.searchsorted(keys, query), 0, max(len(keys) - 1, 0))
    found = keys[at] == query if len(keys) else np.zeros(len(query), dtype=bool)
    return np.where(found, values[at] if len(keys) else missing, missing)


def fit_selected(train: np.ndarray, select: np.ndarray, contexts: list[tuple[int, int]],
                 vocab_size: int, alphas=ALPHAS) -> tuple[list[CountModel], pd.DataFrame]:
    """Fit each (left, right) context on ``train``, pick alpha on ``select`` (lowest
    cross-entropy); returns the models (alpha set) and a table of every (context, alpha) tried.
    """
    rows, cols = _targets(select)
    models, tried = [], []
    for left, right in contexts:
        model = CountModel.fit(train, left, right, vocab_size)
        best = None
        for alpha in alphas:
            model.alpha = alpha
            bits = -model.score(select, rows, cols)[0].mean() / math.log(2)
            tried.append({"model": model.name, "left": left, "right": right, "alpha": alpha,
                          "select_bits": bits})
            if best is None or bits < best[1]:
                best = (alpha, bits)
        model.alpha = best[0]
        models.append(model)
    return models, pd.DataFrame(tried)


# --------------------------------------------------------------------------- MLM scoring

@torch.no_grad()
def mlm_diagnostics(encoder: nn.Module, head: nn.Module, windows: np.ndarray,
                    rate: float = 0.15, span: int = 1, seed: int = 0, batch_size: int = 64,
                    device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
    """Score a masked language model on ``windows`` (int64 shape=(n, L)) with a fixed mask.

    Positions are picked by :func:`helixflow.objectives.mask_tokens` (scheme "mask") from a
    generator seeded with ``seed``, so every call, and every baseline, scores the same tokens.
    Returns ``rows``, ``cols`` (the scored positions), ``logp`` (nats of the true token, the
    softmax renormalised over the k-mer tokens) and ``correct`` (argmax over k-mers is right).
    """
    encoder.eval()
    head.eval()
    generator = torch.Generator().manual_seed(seed)
    out: dict[str, list[np.ndarray]] = {"rows": [], "cols": [], "logp": [], "correct": []}
    for start in range(0, len(windows), batch_size):
        tokens = torch.from_numpy(windows[start:start + batch_size])
        inputs, labels = mask_tokens(tokens, rate, "mask", span, generator,
                                     vocab_size=encoder.vocab_size)
        picked = labels != IGNORE
        logits = head(encoder(inputs.to(device)))[..., N_SPECIALS:].float().cpu()
        logp = torch.log_softmax(logits[picked], dim=-1)
        target = labels[picked] - N_SPECIALS
        rows, cols = torch.nonzero(picked, as_tuple=True)
        out["rows"].append((rows + start).numpy())
        out["cols"].append(cols.numpy())
        out["logp"].append(logp.gather(1, target[:, None])[:, 0].numpy())
        out["correct"].append((logp.argmax(1) == target).numpy())
    return {key: np.concatenate(parts) for key, parts in out.items()}


def _row(model: str, context: str, order: int, alpha: float, logp: np.ndarray,
         correct: np.ndarray) -> dict[str, Any]:
    nats = float(-logp.mean())
    return {"model": model, "context": context, "order": order, "alpha": alpha,
            "selected": False, "tokens": len(logp), "accuracy": float(correct.mean()),
            "perplexity": math.exp(nats), "cross_entropy_bits": nats / math.log(2)}


def diagnostics_table(mlm: dict[str, np.ndarray], heldout: np.ndarray,
                      models: list[CountModel], name: str = "mlm") -> pd.DataFrame:
    """One row per model on the MLM's scored positions of ``heldout``; ``selected`` marks the
    MLM and, per context kind, the baseline chosen on the selection tokens (not on these)."""
    rows = [_row(name, "mlm", 0, float("nan"), mlm["logp"], mlm["correct"])]
    for model in models:
        logp, correct = model.score(heldout, mlm["rows"], mlm["cols"])
        rows.append(_row(model.name, "bidirectional" if model.right else "markov", model.left,
                         model.alpha, logp, correct))
    table = pd.DataFrame(rows, columns=COLUMNS)
    table.loc[0, "selected"] = True
    return table


def write_diagnostics(table: pd.DataFrame, selected: dict[str, str], out_path: str | Path) -> None:
    """Mark the selected baselines and write the TSV atomically."""
    table = table.copy()
    table["selected"] = table["model"].isin([table.loc[0, "model"], *selected.values()])
    write_tsv(out_path, table)


# --------------------------------------------------------------------------- workflow entry

DIAGNOSTICS_DEFAULTS: dict[str, Any] = {
    "mask_rate": 0.15,          # masked share of held-out tokens (scheme "mask")
    "mask_span": 1,
    "seed": 0,                  # masking seed: the scored positions
    "max_windows": 1000,        # held-out windows scored (evenly spaced); None = all
    # training windows counted for the baselines, and valid windows that pick their order and
    # alpha (evenly spaced; None = all): 50,000 windows
    # of 512 tokens (25.6 M) pin down every order the baselines try, and bound the memory on
    # a human genome (all 140,000 windows of the 1/64 synthetic hg38 peaked at 4.2 GB)
    "max_train_windows": 50_000,
    "markov_orders": "auto",    # list of orders, or "auto": 0 .. 8 // k (k-mer tokens)
    "bidirectional_orders": "auto",  # tokens each side, or "auto": 1 .. 4 // k
    "alphas": list(ALPHAS),
    "select_fraction": 0.1,     # last share of training windows used to pick alpha and order
    "valid_manifest": None,     # pick alpha and order here instead (a validation corpus)
    "batch_size": 64,
    "device": "auto",
    "threads": 1,
}


def _orders(value: Any, default: range, vocab_size: int, n_out: int, both_sides: bool) -> list:
    orders = list(default if value == "auto" else value)
    width = 2 if both_sides else 1
    return [m for m in orders if vocab_size ** (width * m) * n_out < 2 ** 62]


def _load_mlm_head(encoder_dir: Path, encoder: nn.Module) -> nn.Module:
    from safetensors.torch import load_file

    from .objectives import MLMHead

    path = encoder_dir / "heads.safetensors"
    state = load_file(str(path)) if path.exists() else {}
    head_state = {k.removeprefix("mlm_head."): v for k, v in state.items()
                  if k.startswith("mlm_head.")}
    if not head_state:
        raise InputError("no masked-language-model head beside the encoder", path=path,
                         fix="pretrain with w_mlm > 0 (the diagnostics score masked tokens)")
    head = MLMHead(encoder.d_model, encoder.vocab_size)
    head.load_state_dict(head_state)
    return head.eval()


def run_pretrain_diagnostics(encoder_dir: str | Path, corpus_manifest: str | Path,
                             heldout_manifest: str | Path, out_path: str | Path,
                             params: dict | None = None) -> dict:
    """Masked-token accuracy and perplexity of a pretrained encoder on held-out chromosomes,
    beside left-context Markov and bidirectional k-mer count baselines on the same tokens.

    ``encoder_dir``: a pretraining output (model.safetensors, config.json, heads.safetensors);
    ``corpus_manifest``: the training corpus (the baselines' counts); ``heldout_manifest``: a
    corpus of held-out chromosomes. ``params``: :data:`DIAGNOSTICS_DEFAULTS`. Writes the TSV
    ``out_path`` (columns :data:`COLUMNS`; ``selected`` marks the MLM and the Markov and
    bidirectional baselines whose order was chosen on the selection tokens), a table of the
    selection (``*.selection.tsv``) and a bar chart (``*.png``/``.svg``) beside it; returns a
    summary.
    """
    from .models.encoders import load_encoder

    p = {**DIAGNOSTICS_DEFAULTS, **(params or {})}
    unknown = set(p) - set(DIAGNOSTICS_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown diagnostics params {sorted(unknown)}")
    torch.set_num_threads(p["threads"])
    device = resolve_device(p["device"])
    encoder_dir, out_path = Path(encoder_dir), Path(out_path)
    encoder = load_encoder(encoder_dir, device)
    head = _load_mlm_head(encoder_dir, encoder).to(device)
    k, stride = corpus_k(corpus_manifest)
    for manifest in (heldout_manifest, p["valid_manifest"]):
        if manifest is not None and corpus_k(manifest) != (k, stride):
            raise InputError(f"tokenizer differs from the training corpus's (k={k}, "
                             f"stride={stride})", path=manifest, fix="build both with one k")
    if (encoder.config["k"], encoder.config["stride"]) != (k, stride):
        raise InputError(f"the encoder reads k={encoder.config['k']} tokens, the corpus has "
                         f"k={k}", path=encoder_dir / "config.json",
                         fix="score the encoder on a corpus of its own tokenizer")

    heldout = load_windows(heldout_manifest, p["max_windows"])
    mlm = mlm_diagnostics(encoder, head, heldout, p["mask_rate"], p["mask_span"], p["seed"],
                          p["batch_size"], device)

    train = load_windows(corpus_manifest, p["max_train_windows"])
    if p["valid_manifest"] is not None:
        fit_part, select = train, load_windows(p["valid_manifest"], p["max_train_windows"])
    else:
        cut = int(round(len(train) * (1 - p["select_fraction"])))
        if not 0 < cut < len(train):
            raise ValueError("select_fraction leaves no windows to fit or to select on")
        fit_part, select = train[:cut], train[cut:]
    vocab, n_out = encoder.vocab_size, encoder.vocab_size - N_SPECIALS
    contexts = ([(m, 0) for m in _orders(p["markov_orders"], range(0, 1 + max(1, 8 // k)),
                                         vocab, n_out, False)]
                + [(m, m) for m in _orders(p["bidirectional_orders"],
                                           range(1, 1 + max(1, 4 // k)), vocab, n_out, True)])
    models, tried = fit_selected(fit_part, select, contexts, vocab, p["alphas"])
    if fit_part is not train:       # refit on every training window with the chosen alpha
        models = [CountModel.fit(train, m.left, m.right, vocab, m.alpha) for m in models]
    table = diagnostics_table(mlm, heldout, models)
    best_select = tried.loc[tried.groupby("model")["select_bits"].idxmin()]
    selected = {}
    for kind, is_bi in (("markov", False), ("bidirectional", True)):
        rows = best_select[(best_select["right"] > 0) == is_bi]
        if len(rows):
            selected[kind] = rows.loc[rows["select_bits"].idxmin(), "model"]
    write_diagnostics(table, selected, out_path)
    write_tsv(out_path.with_suffix(".selection.tsv"), tried)
    plot_diagnostics(table, selected, out_path.with_suffix(".png"))

    def bits(name: str) -> float:
        return float(table.loc[table["model"] == name, "cross_entropy_bits"].iloc[0])

    mlm_bits = float(table.loc[0, "cross_entropy_bits"])
    baseline_rows = table.iloc[1:]
    markov_rows = baseline_rows[baseline_rows["context"] == "markov"]
    summary = {"tokens": int(table.loc[0, "tokens"]), "heldout_windows": len(heldout),
               "mlm_bits": mlm_bits, "mlm_perplexity": float(table.loc[0, "perplexity"]),
               "mlm_accuracy": float(table.loc[0, "accuracy"]), "selected": selected,
               **{f"{kind}_bits": bits(name) for kind, name in selected.items()},
               "best_markov_bits_any_order": float(markov_rows["cross_entropy_bits"].min())
               if len(markov_rows) else None}
    summary["mlm_beats_markov"] = bool(summary["best_markov_bits_any_order"] is not None
                                       and mlm_bits < summary["best_markov_bits_any_order"])
    for kind, name in selected.items():
        model = next(m for m in models if m.name == name)
        logp, _ = model.score(heldout, mlm["rows"], mlm["cols"])
        delta, se = paired_difference_bits(mlm["logp"], logp, mlm["rows"])
        summary[f"mlm_minus_{kind}_bits"], summary[f"mlm_minus_{kind}_se"] = delta, se
        summary[f"mlm_beats_{kind}"] = delta < 0
    return summary


def paired_difference_bits(logp_a: np.ndarray, logp_b: np.ndarray,
                           windows: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy of model a minus model b (bits per token) on the same tokens, and
    its standard error with tokens clustered by window (neighbouring tokens are not
    independent)."""
    diff = (logp_b - logp_a) / math.log(2)            # -log2 p_a - (-log2 p_b)
    _, inverse, counts = np.unique(windows, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=diff)
    n = len(diff)
    mean = float(diff.mean())
    # ratio-estimator (cluster-robust) variance of a mean over clusters of unequal size
    resid = sums - mean * counts
    g = len(counts)
    se = math.sqrt(g / max(g - 1, 1) * float((resid ** 2).sum())) / n
    return mean, se


def plot_diagnostics(table: pd.DataFrame, selected: dict[str, str], path_png: str | Path) -> None:
    """Held-out cross-entropy (bits per token) of the MLM and every baseline, one dot each.

    Dots, not bars: the differences are hundredths of a bit, so the axis cannot start at zero.
    """
    from matplotlib.lines import Line2D

    from .plots import GREY, PALETTE, new_figure, save_figure

    fig = new_figure(6.5, max(3.0, 0.28 * len(table) + 1.2))
    ax = fig.add_subplot(1, 1, 1)
    colour = {"mlm": PALETTE[0], "markov": PALETTE[1], "bidirectional": PALETTE[2]}
    y = np.arange(len(table))[::-1]
    for yi, row in zip(y, table.itertuples(), strict=True):
        chosen = row.model in selected.values()
        ax.plot(row.cross_entropy_bits, yi, "o", color=colour.get(row.context, GREY),
                markersize=8 if chosen else 6, markeredgecolor="black" if chosen else "none")
    ax.axvline(table["cross_entropy_bits"].iloc[0], color=GREY, linestyle=":", linewidth=1)
    ax.set_yticks(y, table["model"], fontsize=8)
    ax.set_xlabel("held-out cross-entropy (bits/token; lower is better)")
    ax.set_title("Masked-token prediction on the test chromosomes", fontsize=10)
    handles = [Line2D([], [], marker="o", linestyle="", color=c, label=n)
               for n, c in (("pretrained encoder (MLM)", PALETTE[0]), ("Markov, order k",
                            PALETTE[1]), ("bidirectional k-mer counts", PALETTE[2]))]
    handles.append(Line2D([], [], marker="o", linestyle="", color="white",
                          markeredgecolor="black", label="order chosen on held-in tokens"))
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8)
    save_figure(fig, path_png)
