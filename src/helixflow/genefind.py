"""Gene finding (seed 002): a CNN front-end for local signals feeding a bidirectional GRU
that labels every position coding or non-coding, with strand and codon position.

Classes per position: 0 non-coding; 1, 2, 3 = first, second, third base of a codon of a
gene on the + strand; 4, 5, 6 = the same on the − strand (counted along the gene's own
direction). Labels come from the CDS lines of a GFF3 (segments of one spliced gene share a
``Name``; the codon position runs on across introns). Genes are called from the per-base
classes (:func:`call_genes`) and scored at gene level (exact start and stop; stop only) and
base level (coding F1) against the annotation, beside the classical baseline of a
longest-ORF scan (:func:`longest_orfs`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from .files import open_text

N_CLASSES = 7
STOPS = ("TAA", "TAG", "TGA")
_COMPLEMENT = str.maketrans("ACGTacgtNn", "TGCAtgcaNn")


@dataclass(frozen=True)
class Gene:
    """A coding sequence: 0-based half-open span from the first base of the start codon to
    the last base of the stop codon, on ``strand`` ('+' or '-')."""

    chrom: str
    start: int
    end: int
    strand: str

    @property
    def stop_end(self) -> int:
        """The genomic end of the stop codon: ``end`` on +, ``start`` on −."""
        return self.end if self.strand == "+" else self.start


def read_cds(gff: str, chroms: set[str] | None = None) -> pd.DataFrame:
    """CDS segments of a GFF3: chrom, start (0-based), end, strand, gene (the ``Name``,
    else ``Parent``, else ``ID``)."""
    rows = []
    with open_text(gff) as handle:
        for line in handle:
            if line.startswith("#") or not line.strip():
                if line.startswith("##FASTA"):
                    break
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 9 or fields[2] != "CDS":
                continue
            if chroms is not None and fields[0] not in chroms:
                continue
            attributes = dict(item.split("=", 1) for item in fields[8].split(";") if "=" in item)
            gene = attributes.get("Name") or attributes.get("Parent") or attributes.get("ID")
            rows.append((fields[0], int(fields[3]) - 1, int(fields[4]), fields[6], gene))
    return pd.DataFrame(rows, columns=["chrom", "start", "end", "strand", "gene"])


def genes_of(cds: pd.DataFrame) -> list[Gene]:
    """One :class:`Gene` per gene name: the span of its CDS segments."""
    spans = cds.groupby(["chrom", "gene", "strand"], sort=False).agg(
        start=("start", "min"), end=("end", "max")).reset_index()
    return [Gene(r.chrom, int(r.start), int(r.end), r.strand) for r in spans.itertuples()]


def position_labels(cds: pd.DataFrame, sizes: dict[str, int]) -> dict[str, np.ndarray]:
    """{chrom: int8 class per base} (module doc); where genes overlap, the later wins."""
    labels = {c: np.zeros(n, dtype=np.int8) for c, n in sizes.items()}
    for (chrom, _gene, strand), segments in cds.groupby(["chrom", "gene", "strand"],
                                                         sort=False):
        if chrom not in labels:
            continue
        segments = segments.sort_values("start", ascending=strand == "+")
        done = 0
        for seg in segments.itertuples():
            n = seg.end - seg.start
            codon = (done + np.arange(n)) % 3
            if strand == "+":
                labels[chrom][seg.start:seg.end] = 1 + codon
            else:
                labels[chrom][seg.start:seg.end] = (4 + codon)[::-1]
            done += n
    return labels


def reverse_complement(seq: str) -> str:
    return seq.translate(_COMPLEMENT)[::-1]


def _orfs_on_strand(seq: str, min_codons: int) -> list[tuple[int, int]]:
    """(start, end) on ``seq`` of every ATG..stop ORF (first ATG after the previous in-frame
    stop) with at least ``min_codons`` codons, stop included."""
    upper = seq.upper()
    found = []
    for frame in range(3):
        start = None
        for i in range(frame, len(upper) - 2, 3):
            codon = upper[i:i + 3]
            if start is None and codon == "ATG":
                start = i
            elif codon in STOPS:
                if start is not None and (i + 3 - start) // 3 >= min_codons:
                    found.append((start, i + 3))
                start = None
    return found


def longest_orfs(chrom: str, seq: str, min_codons: int = 100) -> list[Gene]:
    """The longest-ORF baseline: ORFs on both strands, longest first, each kept unless it
    overlaps one already kept (on either strand)."""
    n = len(seq)
    candidates = [Gene(chrom, s, e, "+") for s, e in _orfs_on_strand(seq, min_codons)]
    candidates += [Gene(chrom, n - e, n - s, "-")
                   for s, e in _orfs_on_strand(reverse_complement(seq), min_codons)]
    candidates.sort(key=lambda g: (-(g.end - g.start), g.start))
    taken = np.zeros(n, dtype=bool)
    kept = []
    for gene in candidates:
        if not taken[gene.start:gene.end].any():
            taken[gene.start:gene.end] = True
            kept.append(gene)
    return sorted(kept, key=lambda g: g.start)


def call_genes(chrom: str, classes: np.ndarray, seq: str, min_codons: int = 100) -> list[Gene]:
    """Genes from per-base classes: each run of + (or −) coding classes of at least
    ``min_codons`` codons, snapped to the ORF that covers most of it in its majority frame
    (start = that ORF's first ATG, end = its stop). Runs with no such ORF are dropped."""
    calls = []
    n = len(seq)
    rc = reverse_complement(seq)
    for strand, codes in (("+", (1, 2, 3)), ("-", (4, 5, 6))):
        coding = np.isin(classes, codes).astype(np.int8)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], coding, [0]])))
        orfs = _orfs_on_strand(seq if strand == "+" else rc, min_codons)
        for run_start, run_end in zip(edges[::2], edges[1::2], strict=True):
            if run_end - run_start < 3 * min_codons:
                continue
            s, e = (run_start, run_end) if strand == "+" else (n - run_end, n - run_start)
            best, overlap = None, 0
            for o_start, o_end in orfs:      # ORFs in the strand's own coordinates
                shared = min(e, o_end) - max(s, o_start)
                if shared > overlap:
                    best, overlap = (o_start, o_end), shared
            if best is None or overlap < 0.5 * (e - s):
                continue
            o_start, o_end = best
            calls.append(Gene(chrom, o_start, o_end, "+") if strand == "+"
                         else Gene(chrom, n - o_end, n - o_start, "-"))
    return sorted(set(calls), key=lambda g: (g.start, g.strand))


def gene_metrics(predicted: list[Gene], truth: list[Gene]) -> dict[str, float]:
    """Sensitivity and precision of gene calls: exact (start and stop) and stop only."""
    out: dict[str, float] = {"n_true": len(truth), "n_called": len(predicted)}
    for name, key in (("exact", lambda g: (g.chrom, g.strand, g.start, g.end)),
                      ("stop", lambda g: (g.chrom, g.strand, g.stop_end))):
        true_keys, called_keys = {key(g) for g in truth}, {key(g) for g in predicted}
        hits = len(true_keys & called_keys)
        out[f"sensitivity_{name}"] = hits / len(true_keys) if true_keys else float("nan")
        out[f"precision_{name}"] = hits / len(called_keys) if called_keys else float("nan")
    return out


def coding_mask(genes: list[Gene], sizes: dict[str, int]) -> dict[str, np.ndarray]:
    mask = {c: np.zeros(n, dtype=bool) for c, n in sizes.items()}
    for g in genes:
        mask[g.chrom][g.start:g.end] = True
    return mask


def nucleotide_f1(predicted: dict[str, np.ndarray], truth: dict[str, np.ndarray]) -> float:
    """F1 of coding (either strand) vs non-coding over all bases of ``truth``'s chromosomes."""
    tp = fp = fn = 0
    for chrom, t in truth.items():
        p = predicted[chrom]
        tp += int((p & t).sum())
        fp += int((p & ~t).sum())
        fn += int((~p & t).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def period3_strength(signal: np.ndarray) -> float:
    """Power at period 3 over the mean power of the other non-zero frequencies (1 = none;
    coding sequence gives peaks well above 1). ``signal``: shape=(L,), L a multiple of 3."""
    signal = np.asarray(signal, dtype=np.float64)
    signal = signal - signal.mean()
    power = np.abs(np.fft.rfft(signal)) ** 2
    k = len(signal) // 3
    others = np.delete(power[1:], k - 1)
    return float(power[k] / others.mean()) if others.mean() > 0 else float("nan")


class GeneFinderNet(nn.Module):
    """Conv1d front-end (local signals: codons, start/stop context) → bidirectional GRU
    (the long-range start-to-stop dependency) → per-position class logits."""

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


def tiles(length: int, tile: int) -> list[tuple[int, int]]:
    """(start, end) tiles covering ``length``, the last one ending at ``length``."""
    starts = list(range(0, max(length - tile, 0) + 1, tile))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return [(s, min(s + tile, length)) for s in starts]


def predict_classes(model: GeneFinderNet, onehot: np.ndarray, tile: int = 3000,
                    batch: int = 16) -> np.ndarray:
    """Per-base argmax class over a whole chromosome (one-hot (4, L)), tile by tile."""
    model.eval()
    spans = tiles(onehot.shape[1], tile)
    classes = np.zeros(onehot.shape[1], dtype=np.int8)
    with torch.no_grad():
        for i in range(0, len(spans), batch):
            part = spans[i:i + batch]
            width = max(e - s for s, e in part)
            x = np.zeros((len(part), 4, width), dtype=np.float32)
            for j, (s, e) in enumerate(part):
                x[j, :, :e - s] = onehot[:, s:e]
            out = model(torch.from_numpy(x)).argmax(-1).numpy()
            for j, (s, e) in enumerate(part):
                classes[s:e] = out[j, :e - s]
    return classes


def train_gene_finder(onehots: dict[str, np.ndarray], labels: dict[str, np.ndarray],
                      train: list[str], valid: list[str], epochs: int = 10, tile: int = 3000,
                      batch: int = 8, lr: float = 3e-3, seed: int = 0,
                      model: GeneFinderNet | None = None,
                      log=None) -> tuple[GeneFinderNet, pd.DataFrame]:
    """Cross-entropy on random tiles of the ``train`` chromosomes; keeps the epoch with the
    best coding F1 on the ``valid`` chromosomes. Returns (model, history)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = model or GeneFinderNet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    spans = [(c, s, e) for c in train for s, e in tiles(onehots[c].shape[1], tile)]
    best, history, best_state = -1.0, [], None
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(spans), generator=generator).tolist()
        total = 0.0
        for i in range(0, len(order), batch):
            part = [spans[k] for k in order[i:i + batch]]
            x = torch.from_numpy(np.stack([onehots[c][:, s:e] for c, s, e in part])
                                 .astype(np.float32))
            y = torch.from_numpy(np.stack([labels[c][s:e] for c, s, e in part])
                                 .astype(np.int64))
            loss = nn.functional.cross_entropy(model(x).reshape(-1, N_CLASSES), y.reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(part)
        predicted = {c: predict_classes(model, onehots[c], tile) > 0 for c in valid}
        f1 = nucleotide_f1(predicted, {c: labels[c] > 0 for c in valid})
        history.append({"epoch": epoch, "train_loss": total / len(spans), "valid_f1": f1})
        if log is not None:
            print(f"gene-finder epoch {epoch}: loss {total / len(spans):.4f}, "
                  f"valid coding F1 {f1:.4f}", file=log, flush=True)
        if f1 > best:
            best, best_state = f1, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return model, pd.DataFrame(history)


def labels_from_genes(genes: list[Gene], sizes: dict[str, int]) -> dict[str, np.ndarray]:
    """Per-base classes of unspliced genes (a planted or prokaryotic annotation)."""
    cds = pd.DataFrame([(g.chrom, g.start, g.end, g.strand, f"g{i}")
                        for i, g in enumerate(genes)],
                       columns=["chrom", "start", "end", "strand", "gene"])
    return position_labels(cds, sizes)

