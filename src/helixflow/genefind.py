"""Gene finding (seed 002): a CNN front-end for local signals feeding a bidirectional GRU
that labels every position coding or non-coding, with strand and codon position.

Classes per position: 0 non-coding; 1, 2, 3 = first, second, third base of a codon of a
gene on the + strand; 4, 5, 6 = the same on the − strand (counted along the gene's own
direction). Labels come from the CDS lines of a GFF3 (segments of one spliced gene share a
``Name``; the codon position runs on across introns). Genes are called from the per-base
probabilities (:func:`call_genes`) and scored at gene level (exact start and stop; stop only) and
base level (coding F1) against the annotation, beside the classical baseline of a
longest-ORF scan (:func:`longest_orfs`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

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


def coding_segments(cds: pd.DataFrame) -> pd.DataFrame:
    """CDS segments with ``offset``: the gene's coding bases before the segment, counted in
    the gene's own direction (the codon position runs on across introns). Sorted by chrom
    and start; ``order`` keeps the annotation's gene order (later genes win overlaps)."""
    parts = []
    for order, (_key, segments) in enumerate(cds.groupby(["chrom", "gene", "strand"],
                                                         sort=False)):
        segments = segments.sort_values("start", ascending=segments["strand"].iat[0] == "+")
        lengths = (segments["end"] - segments["start"]).to_numpy()
        parts.append(segments.assign(offset=np.concatenate([[0], np.cumsum(lengths)[:-1]]),
                                     order=order))
    columns = ["chrom", "start", "end", "strand", "gene", "offset", "order"]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts)[columns].sort_values(["chrom", "start"], ignore_index=True)


class CodingClasses:
    """Per-base classes (module doc) of any span, from coding segments, without holding a
    chromosome-long array: what a genome-scale training loop samples tiles from."""

    def __init__(self, segments: pd.DataFrame) -> None:
        self.by_chrom = {chrom: group for chrom, group in segments.groupby("chrom")}
        self.longest = int((segments["end"] - segments["start"]).max()) if len(segments) \
            else 0

    def span(self, chrom: str, start: int, end: int) -> np.ndarray:
        """int8 classes of ``chrom[start:end]``."""
        out = np.zeros(end - start, dtype=np.int8)
        group = self.by_chrom.get(chrom)
        if group is None:
            return out
        starts = group["start"].to_numpy()
        lo, hi = np.searchsorted(starts, [start - self.longest, end])
        near = group.iloc[lo:hi]
        near = near[near["end"] > start].sort_values("order")
        for seg in near.itertuples():
            s, e = max(seg.start, start), min(seg.end, end)
            positions = np.arange(s, e)
            if seg.strand == "+":
                out[s - start:e - start] = 1 + (seg.offset + positions - seg.start) % 3
            else:
                out[s - start:e - start] = 4 + (seg.offset + seg.end - 1 - positions) % 3
        return out


def position_labels(cds: pd.DataFrame, sizes: dict[str, int]) -> dict[str, np.ndarray]:
    """{chrom: int8 class per base} (module doc); where genes overlap, the later wins."""
    classes = CodingClasses(coding_segments(cds))
    return {chrom: classes.span(chrom, 0, n) for chrom, n in sizes.items()}


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


def call_genes(chrom: str, strand_coding: np.ndarray, seq: str, min_codons: int = 100,
               threshold: float = 0.5) -> list[Gene]:
    """Genes from the network's output: every ORF of at least ``min_codons`` codons (first
    ATG after the previous in-frame stop) whose mean probability of coding on its strand is at
    least ``threshold``, kept like the longest-ORF scan (best-scoring first, then longest,
    none overlapping one already kept). ``strand_coding``: shape=(2, L), P(coding on +) and
    P(coding on −) per base."""
    n = len(seq)
    plus = [Gene(chrom, s, e, "+") for s, e in _orfs_on_strand(seq, min_codons)]
    minus = [Gene(chrom, n - e, n - s, "-")
             for s, e in _orfs_on_strand(reverse_complement(seq), min_codons)]
    cumulative = np.concatenate([np.zeros((2, 1)), np.cumsum(strand_coding, axis=1,
                                                             dtype=np.float64)], axis=1)
    scored = []
    for row, genes in ((0, plus), (1, minus)):
        for g in genes:
            score = (cumulative[row, g.end] - cumulative[row, g.start]) / (g.end - g.start)
            if score >= threshold:
                scored.append((round(score, 1), g.end - g.start, g))
    scored.sort(key=lambda t: (-t[0], -t[1], t[2].start))
    taken = np.zeros(n, dtype=bool)
    kept = []
    for _, _, gene in scored:
        if not taken[gene.start:gene.end].any():
            taken[gene.start:gene.end] = True
            kept.append(gene)
    return sorted(kept, key=lambda g: (g.start, g.strand))


def gene_metrics(predicted: list[Gene], truth: list[Gene]) -> dict[str, float]:
    """Sensitivity and precision of gene calls, exact (start and stop) and stop only, with
    the number of matched genes (``matched_exact``, ``matched_stop``)."""
    out: dict[str, float] = {"n_true": len(truth), "n_called": len(predicted)}
    for name, key in (("exact", lambda g: (g.chrom, g.strand, g.start, g.end)),
                      ("stop", lambda g: (g.chrom, g.strand, g.stop_end))):
        true_keys, called_keys = {key(g) for g in truth}, {key(g) for g in predicted}
        hits = len(true_keys & called_keys)
        out[f"matched_{name}"] = hits
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


def labels_from_genes(genes: list[Gene], sizes: dict[str, int]) -> dict[str, np.ndarray]:
    """Per-base classes of unspliced genes (a planted or prokaryotic annotation)."""
    cds = pd.DataFrame([(g.chrom, g.start, g.end, g.strand, f"g{i}")
                        for i, g in enumerate(genes)],
                       columns=["chrom", "start", "end", "strand", "gene"])
    return position_labels(cds, sizes)

