"""The gene finder's network (seed 002) and its training on tiles of a genome.

A Conv1d front-end finds local signals (codons, start and stop context); a bidirectional GRU
carries the long-range start-to-stop dependency; a linear head gives each base one of
:mod:`helixflow.genefind`'s seven classes. Training samples fixed tiles of the training
chromosomes through the shared loop (:func:`helixflow.fit.fit`), reading each batch from a
:class:`TileSource` (a FASTA and a CDS table, or arrays in memory), so memory follows the batch,
not the genome. The kept weights are those with the lowest cross-entropy on a fixed sample of
tiles of the valid chromosomes.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

import numpy as np
import torch
from torch import nn

from .encode import one_hot
from .fit import FitResult, FitSettings, Step, fit
from .genefind import N_CLASSES, CodingClasses
from .genome import Genome

DEFAULT_TRAINING = {"tile": 1500, "batch_size": 8, "epochs": 12, "tiles_per_epoch": 640,
                    "patience": 4, "lr": 2e-3, "weight_decay": 1e-4, "valid_tiles": 300,
                    "max_grad_norm": 1.0}
DEFAULT_ARCHITECTURE = {"channels": 64, "kernel": 9, "hidden": 64}


class GeneFinderNet(nn.Module):
    """Conv1d front-end → bidirectional GRU → per-base class logits."""

    def __init__(self, channels: int = 64, kernel: int = 9, hidden: int = 64) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv1d(4, channels, kernel, padding=kernel // 2), nn.ReLU(),
            nn.Conv1d(channels, channels, kernel, padding=kernel // 2), nn.ReLU())
        self.rnn = nn.GRU(channels, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, N_CLASSES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Front-end features, shape=(B, channels, L)."""
        return self.conv(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 4, L) one-hot → logits (B, L, N_CLASSES)."""
        out, _ = self.rnn(self.features(x).transpose(1, 2))
        return self.head(out)


class TileSource(Protocol):
    """One-hot sequence and per-base classes of any span of a genome."""

    sizes: dict[str, int]

    def onehot(self, chrom: str, start: int, end: int) -> np.ndarray: ...

    def classes(self, chrom: str, start: int, end: int) -> np.ndarray: ...


@dataclass
class ArrayTiles:
    """A genome held in memory: {chrom: one-hot (4, L)} and {chrom: classes (L,)}."""

    onehots: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]

    @property
    def sizes(self) -> dict[str, int]:
        return {chrom: x.shape[1] for chrom, x in self.onehots.items()}

    def onehot(self, chrom: str, start: int, end: int) -> np.ndarray:
        return self.onehots[chrom][:, start:end]

    def classes(self, chrom: str, start: int, end: int) -> np.ndarray:
        return self.labels[chrom][start:end]


class FastaTiles:
    """Spans read from an indexed FASTA, classes from coding segments (nothing genome-long)."""

    def __init__(self, fasta: str | Path, coding: CodingClasses) -> None:
        self.genome = Genome(fasta)
        self.sizes = self.genome.sizes
        self.coding = coding

    def onehot(self, chrom: str, start: int, end: int) -> np.ndarray:
        return one_hot(self.genome.fetch(chrom, start, end))

    def classes(self, chrom: str, start: int, end: int) -> np.ndarray:
        return self.coding.span(chrom, start, end)


def tiles(length: int, tile: int) -> list[tuple[int, int]]:
    """(start, end) tiles covering ``length``, the last one ending at ``length``."""
    starts = list(range(0, max(length - tile, 0) + 1, tile))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return [(s, min(s + tile, length)) for s in starts]


def _batch(source: TileSource, spans: list[tuple[str, int, int]]) -> np.ndarray:
    """One-hot float32 batch (B, 4, width) of ``spans``, zero-padded to the longest."""
    width = max(e - s for _, s, e in spans)
    x = np.zeros((len(spans), 4, width), dtype=np.float32)
    for j, (chrom, s, e) in enumerate(spans):
        x[j, :, :e - s] = source.onehot(chrom, s, e)
    return x


def predict_probabilities(model: GeneFinderNet, source: TileSource, chrom: str, start: int,
                          end: int, tile: int = 3000, margin: int = 300, batch: int = 16,
                          device: torch.device | None = None) -> np.ndarray:
    """Class probabilities (end − start, N_CLASSES) of a span, predicted tile by tile; each
    tile sees ``margin`` bases of context on either side, so no call is cut at a tile edge."""
    device = device or next(model.parameters()).device
    model.eval()
    size = source.sizes[chrom]
    out = np.zeros((end - start, N_CLASSES), dtype=np.float32)
    spans = [(s + start, e + start) for s, e in tiles(end - start, tile)]
    with torch.no_grad():
        for i in range(0, len(spans), batch):
            part = spans[i:i + batch]
            padded = [(chrom, max(s - margin, 0), min(e + margin, size)) for s, e in part]
            x = torch.from_numpy(_batch(source, padded)).to(device)
            probs = torch.softmax(model(x).float(), -1).cpu().numpy()
            for j, ((s, e), (_, ps, _pe)) in enumerate(zip(part, padded, strict=True)):
                out[s - start:e - start] = probs[j, s - ps:e - ps]
    return out


def predict_strand_coding(model: GeneFinderNet, source: TileSource, chrom: str,
                          tile: int = 3000, margin: int = 300,
                          device: torch.device | None = None,
                          chunk: int = 1_000_000) -> tuple[np.ndarray, np.ndarray]:
    """A whole chromosome, ``chunk`` bases at a time: the argmax class per base (int8) and
    P(coding on +), P(coding on −) per base (float16, shape=(2, L))."""
    size = source.sizes[chrom]
    classes = np.zeros(size, dtype=np.int8)
    strands = np.zeros((2, size), dtype=np.float16)
    for start in range(0, size, chunk):
        end = min(start + chunk, size)
        probs = predict_probabilities(model, source, chrom, start, end, tile, margin,
                                      device=device)
        classes[start:end] = probs.argmax(-1)
        strands[0, start:end] = probs[:, 1:4].sum(-1)
        strands[1, start:end] = probs[:, 4:7].sum(-1)
    return classes, strands


def held_out_scores(model: GeneFinderNet, source: TileSource,
                    spans: list[tuple[str, int, int]], device: torch.device,
                    batch: int = 16) -> dict[str, float]:
    """Over ``spans``: the mean per-base cross-entropy of the seven classes (``valid_loss``,
    what picks the kept weights: it needs strand and frame right) and the F1 of coding vs
    non-coding (``valid_f1``; in a gene-dense genome calling everything coding scores high)."""
    tp = fp = fn = 0
    loss, bases = 0.0, 0
    for i in range(0, len(spans), batch):
        part = spans[i:i + batch]
        x = torch.from_numpy(_batch(source, part)).to(device)
        logits = model(x).float()
        predicted = logits.argmax(-1).cpu().numpy() > 0
        for j, (chrom, s, e) in enumerate(part):
            classes = source.classes(chrom, s, e)
            loss += float(nn.functional.cross_entropy(
                logits[j, :e - s], torch.from_numpy(classes.astype(np.int64)).to(device),
                reduction="sum"))
            bases += e - s
            p, t = predicted[j, :e - s], classes > 0
            tp += int((p & t).sum())
            fp += int((p & ~t).sum())
            fn += int((~p & t).sum())
    return {"valid_loss": loss / bases, "valid_f1": 2 * tp / (2 * tp + fp + fn) if tp else 0.0}


def train_gene_finder(source: TileSource, train: list[str], valid: list[str],
                      training: dict | None = None, architecture: dict | None = None,
                      seed: int = 0, device: torch.device | None = None,
                      log: TextIO = sys.stderr) -> tuple[GeneFinderNet, FitResult]:
    """Cross-entropy over tiles of the ``train`` chromosomes (``tiles_per_epoch`` fresh ones
    per epoch); keeps the epoch with the lowest cross-entropy on ``valid_tiles`` fixed tiles
    of the ``valid`` chromosomes. ``training``/``architecture`` override the module defaults."""
    settings = {**DEFAULT_TRAINING, **(training or {})}
    device = device or torch.device("cpu")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = GeneFinderNet(**{**DEFAULT_ARCHITECTURE, **(architecture or {})}).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["lr"],
                                  weight_decay=settings["weight_decay"])
    tile = settings["tile"]
    spans = [(c, s, e) for c in train for s, e in tiles(source.sizes[c], tile)]
    held = [(c, s, e) for c in valid for s, e in tiles(source.sizes[c], tile)]
    rng = np.random.default_rng(seed)
    if len(held) > settings["valid_tiles"]:
        keep = np.sort(rng.choice(len(held), settings["valid_tiles"], replace=False))
        held = [held[i] for i in keep]

    def step(rows: torch.Tensor) -> Step:
        part = [spans[i] for i in rows.tolist()]
        x = torch.from_numpy(_batch(source, part)).to(device)
        y = np.full((len(part), x.shape[2]), -100, dtype=np.int64)   # -100: padding, ignored
        for j, (chrom, s, e) in enumerate(part):
            y[j, :e - s] = source.classes(chrom, s, e)
        logits = model(x)
        loss = nn.functional.cross_entropy(logits.reshape(-1, N_CLASSES).float(),
                                           torch.from_numpy(y).to(device).reshape(-1))
        return Step(loss, weight=float(len(part)))

    fit_settings = FitSettings(epochs=settings["epochs"], batch_size=settings["batch_size"],
                               monitor="valid_loss", higher_is_better=False,
                               patience=settings["patience"],
                               max_grad_norm=settings["max_grad_norm"],
                               rows_per_epoch=min(settings["tiles_per_epoch"], len(spans)))
    result = fit(model, optimizer, step, len(spans), fit_settings, generator,
                 lambda m: held_out_scores(m, source, held, device),
                 rngs=(rng,), device=device, label="gene-finder ", log=log)
    return model, result
