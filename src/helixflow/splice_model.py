"""The splice-site pretext and the site classifiers on a pretrained sequence encoder (seed 000).

Pretext: the encoder and its masked-modelling head (from pretraining, or new) keep training on
windows around the training chromosomes' splice sites with each site's core masked (the
GT/AG dinucleotides and their consensus neighbours, :data:`helixflow.splice.CORE`) plus a
light random masking elsewhere (its loss weighted by ``background_weight``, so the head
keeps its genome-wide skill), and learn to fill the core from exon/intron context. The
kept weights are those with the lowest cross-entropy on the valid chromosomes' cores.
Predictions at a masked core are the head's probabilities over the four bases; their mean
over held-out sites is the model's PWM.

Classifier: the encoder's features over the junction (mean over window positions
``flank - 3 .. flank + 6``) feed one logit, site against GT/AG decoy; every weight trains;
weights kept on valid AUROC. Both train through :func:`helixflow.fit.fit`.
Single-nucleotide tokens only (k = 1): a core is then a set of token positions.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import TextIO

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from .errors import InputError
from .evaluate import auroc_or_nan
from .fit import FitResult, FitSettings, Step, fit
from .models.encoders import build_encoder, load_encoder
from .objectives import IGNORE, MLMHead, mask_tokens, mlm_loss
from .splice import core_slice
from .tokenize import MASK, SPECIALS, Tokenizer

BASE_TOKENS = slice(len(SPECIALS), len(SPECIALS) + 4)   # A, C, G, T with k = 1
PRETEXT_DEFAULTS = {"epochs": 40, "batch_size": 32, "lr": 5e-4, "weight_decay": 0.01,
                    "patience": 6, "background_mask_rate": 0.15, "background_weight": 0.5}
CLASSIFIER_DEFAULTS = {"epochs": 15, "batch_size": 64, "lr": 1e-3, "weight_decay": 0.01,
                       "patience": 4}
JUNCTION_SPAN = (-3, 6)     # features pooled over these window positions around the junction


class SiteMLM(nn.Module):
    """Encoder + masked-modelling head: tokens (B, L) → logits (B, L, vocab)."""

    def __init__(self, encoder: nn.Module, head: MLMHead) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(tokens))


def load_site_mlm(pretrained: str | Path | None, encoder_config: dict | None = None) -> SiteMLM:
    """The pretrained encoder and MLM head (``pretrained``: a pretraining output directory
    with model.safetensors, config.json and heads.safetensors), or new ones from
    ``encoder_config`` when ``pretrained`` is None."""
    if pretrained is None:
        encoder = build_encoder(encoder_config or {"architecture": "dilated_cnn"})
        head = MLMHead(encoder.d_model, encoder.vocab_size)
    else:
        encoder = load_encoder(pretrained)
        head = MLMHead(encoder.d_model, encoder.vocab_size)
        heads = Path(pretrained) / "heads.safetensors"
        state = {k.removeprefix("mlm_head."): v for k, v in load_file(str(heads)).items()
                 if k.startswith("mlm_head.")} if heads.is_file() else {}
        if not state:
            raise InputError("no masked-modelling head beside the encoder", path=heads,
                             fix="pretrain with an MLM weight above 0 (pretraining.params."
                             "w_mlm), or set 'splice: {pretrained: false}'")
        head.load_state_dict(state)
    if encoder.config["k"] != 1:
        raise InputError(f"the splice pretext masks single bases; the encoder reads "
                         f"{encoder.config['k']}-mers", fix="pretrain with k: 1, or turn the "
                         "splice stage off ('splice: null')")
    return SiteMLM(encoder, head)


def encode(windows: list[str]) -> torch.Tensor:
    """Single-nucleotide token ids (n, L) of equal-length windows."""
    tokenizer = Tokenizer(1, 1)
    return torch.from_numpy(np.stack([tokenizer.encode(w) for w in windows]).astype(np.int64))


def core_mask(kinds: list[str], length: int, flank: int) -> torch.Tensor:
    """Bool (n, length): True on each window's core (its kind's :data:`splice.CORE`)."""
    mask = torch.zeros((len(kinds), length), dtype=torch.bool)
    for i, kind in enumerate(kinds):
        mask[i, core_slice(kind, flank)] = True
    return mask


def mask_core(tokens: torch.Tensor, core: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels): the core positions become [MASK] and are the only labels."""
    inputs = tokens.masked_fill(core, MASK)
    labels = torch.where(core, tokens, torch.full_like(tokens, IGNORE))
    return inputs, labels


@torch.no_grad()
def masked_core_probabilities(model: SiteMLM, tokens: torch.Tensor, core: torch.Tensor,
                              batch: int = 128) -> np.ndarray:
    """Probabilities (positions, 4) over A, C, G, T at every core position (row-major over
    windows, then positions), each window's core masked, renormalised over the four bases;
    windows may have cores of different widths."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(tokens), batch):
        inputs, _ = mask_core(tokens[i:i + batch], core[i:i + batch])
        logits = model(inputs.to(device)).float()[..., BASE_TOKENS].cpu()
        out.append(torch.softmax(logits, dim=-1)[core[i:i + batch]])
    return torch.cat(out).numpy() if out else np.zeros((0, 4))


def core_probabilities(model: SiteMLM, tokens: torch.Tensor, core: torch.Tensor,
                       batch: int = 128) -> np.ndarray:
    """Probabilities (n, width, 4) at each window's masked core; every core has ``width``
    positions (one kind of site)."""
    return masked_core_probabilities(model, tokens, core, batch).reshape(
        len(tokens), _core_width(core), 4)


def _core_width(core: torch.Tensor) -> int:
    widths = core.sum(1).unique()
    if len(widths) > 1:
        raise ValueError(f"cores of different widths {widths.tolist()}: one kind of site at "
                         "a time")
    return int(widths[0]) if len(widths) else 0


def true_bases(tokens: torch.Tensor, core: torch.Tensor) -> np.ndarray:
    """Base index 0..3 (n, width) at each window's core (−1 where not a base)."""
    ids = tokens[core].reshape(len(tokens), _core_width(core)).numpy() - BASE_TOKENS.start
    return np.where((ids >= 0) & (ids < 4), ids, -1)


def core_bits(probs: np.ndarray, bases: np.ndarray) -> np.ndarray:
    """Per window, the mean −log2 probability given to the true base over its core
    (positions that are not a base are left out)."""
    known = bases >= 0
    picked = np.take_along_axis(probs, np.clip(bases, 0, 3)[..., None], axis=-1)[..., 0]
    bits = -np.log2(np.clip(picked, 1e-12, None))
    return np.where(known, bits, 0).sum(1) / np.maximum(known.sum(1), 1)


def train_pretext(model: SiteMLM, train: tuple[torch.Tensor, torch.Tensor],
                  valid: tuple[torch.Tensor, torch.Tensor], settings: dict | None = None,
                  seed: int = 0, device: torch.device | None = None,
                  log: TextIO = sys.stderr) -> FitResult:
    """Train ``model`` in place on (tokens, core) pairs (module docstring); the history's
    ``valid_core_bits`` is the mean −log2 p(true base) over the valid cores."""
    s = {**PRETEXT_DEFAULTS, **(settings or {})}
    device = device or torch.device("cpu")
    model.to(device)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=s["lr"], weight_decay=s["weight_decay"])
    tokens, core = train
    vocab = model.encoder.vocab_size

    def step(rows: torch.Tensor) -> Step:
        batch, cores = tokens[rows], core[rows]
        inputs, labels = mask_tokens(batch, s["background_mask_rate"], "80/10/10", 1,
                                     generator, vocab)
        inputs = inputs.masked_fill(cores, MASK)
        labels = torch.where(cores, IGNORE, labels).to(device)    # background labels only
        logits = model(inputs.to(device)).float()
        core_labels = torch.where(cores, batch, IGNORE).to(device)
        loss = (mlm_loss(logits, core_labels)
                + s["background_weight"] * mlm_loss(logits, labels))
        return Step(loss, weight=float(len(rows)))

    def evaluate(m: nn.Module) -> dict:
        # every valid core base counts once, donors' and acceptors' alike
        probs = masked_core_probabilities(model, *valid)
        bases = valid[0][valid[1]].numpy() - BASE_TOKENS.start
        known = (bases >= 0) & (bases < 4)
        picked = probs[np.arange(len(bases))[known], bases[known]]
        return {"valid_core_bits": float(-np.log2(np.clip(picked, 1e-12, None)).mean())}

    fit_settings = FitSettings(epochs=s["epochs"], batch_size=s["batch_size"],
                               monitor="valid_core_bits", higher_is_better=False,
                               patience=s["patience"], max_grad_norm=1.0)
    before = evaluate(model)["valid_core_bits"]     # the weights to beat: the pretrained ones
    return fit(model, optimizer, step, len(tokens), fit_settings, generator, evaluate,
               start=(before, copy.deepcopy(model.state_dict())), device=device,
               label="splice pretext ", log=log)


class SiteClassifier(nn.Module):
    """Encoder features over the junction (:data:`JUNCTION_SPAN`) → one logit."""

    def __init__(self, encoder: nn.Module, flank: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.span = slice(flank + JUNCTION_SPAN[0], flank + JUNCTION_SPAN[1])
        self.head = nn.Linear(encoder.d_model, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(tokens)[:, self.span].mean(1)).squeeze(-1)


@torch.no_grad()
def classifier_scores(model: SiteClassifier, tokens: torch.Tensor, batch: int = 256) -> np.ndarray:
    """Logits (n,) of windows' tokens."""
    model.eval()
    device = next(model.parameters()).device
    return torch.cat([model(tokens[i:i + batch].to(device)).float().cpu()
                      for i in range(0, len(tokens), batch)]).numpy()


def train_classifier(encoder: nn.Module, flank: int, train: tuple[torch.Tensor, np.ndarray],
                     valid: tuple[torch.Tensor, np.ndarray], settings: dict | None = None,
                     seed: int = 0, device: torch.device | None = None, label: str = "",
                     log: TextIO = sys.stderr) -> tuple[SiteClassifier, FitResult]:
    """Fine-tune ``encoder`` (a copy) + a new head on (tokens, 0/1 labels); weights kept on
    valid AUROC."""
    s = {**CLASSIFIER_DEFAULTS, **(settings or {})}
    device = device or torch.device("cpu")
    torch.manual_seed(seed)
    model = SiteClassifier(copy.deepcopy(encoder), flank).to(device)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=s["lr"], weight_decay=s["weight_decay"])
    tokens, y = train
    target = torch.from_numpy(np.asarray(y, dtype=np.float32))

    def step(rows: torch.Tensor) -> Step:
        logits = model(tokens[rows].to(device)).float()
        loss = nn.functional.binary_cross_entropy_with_logits(logits, target[rows].to(device))
        return Step(loss, weight=float(len(rows)))

    def evaluate(m: nn.Module) -> dict:
        return {"valid_auroc": auroc_or_nan(valid[1], classifier_scores(model, valid[0]))}

    fit_settings = FitSettings(epochs=s["epochs"], batch_size=s["batch_size"],
                               patience=s["patience"], max_grad_norm=1.0)
    result = fit(model, optimizer, step, len(tokens), fit_settings, generator, evaluate,
                 device=device, label=label, log=log)
    return model, result
