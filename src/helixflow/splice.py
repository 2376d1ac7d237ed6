"""Splice sites from a GFF3 and the classical statistics around them (seed 000).

Introns are the gaps between consecutive exons of one transcript (exon lines grouped by
``Parent``). Each intron gives a donor site (its 5' end) and an acceptor site (its 3' end).
A site's window is ``2 * flank`` bases read on the transcript's strand with the junction
between window positions ``flank - 1`` and ``flank``, so that, whatever the strand:

    donor     exon ... | G T A T G T ... intron      core = window[flank : flank + 6]
    acceptor  intron ... Y A G | exon ...            core = window[flank - 3 : flank]

The cores are what the splice pretext masks (the GT/AG dinucleotides and the bases the
yeast consensus fixes beside them: donor GTATGT, acceptor YAG). Decoys for the site
classifiers are windows centred the same way on a GT (donor) or AG (acceptor) that is not an
annotated site. PWMs are (4, width) probability matrices, rows A, C, G, T, as
:mod:`helixflow.motifs` builds them (``pfm_to_ppm``, ``pwm_logodds``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import pandas as pd

from .encode import ALPHABET, one_hot_batch
from .files import open_text
from .genefind import reverse_complement

KINDS = ("donor", "acceptor")
CORE = {"donor": (0, 6), "acceptor": (-3, 0)}        # relative to the junction, intron side
CONSENSUS = {"donor": "GTATGT", "acceptor": "YAG", "branch": "TACTAAC"}
IUPAC = {"A": "A", "C": "C", "G": "G", "T": "T", "Y": "CT", "R": "AG", "N": "ACGT"}


def read_introns(gff: str, chroms: Iterable[str] | None = None) -> pd.DataFrame:
    """Introns of a GFF3: chrom, start, end (0-based half-open), strand, transcript; one row
    per gap between consecutive exons of a transcript (exons grouped by ``Parent``)."""
    keep = set(chroms) if chroms is not None else None
    exons: dict[tuple[str, str, str], list[tuple[int, int]]] = {}
    with open_text(gff) as handle:
        for line in handle:
            if line.startswith("##FASTA"):
                break
            fields = line.rstrip("\n").split("\t")
            if line.startswith("#") or len(fields) < 9 or fields[2] != "exon":
                continue
            if keep is not None and fields[0] not in keep:
                continue
            attributes = dict(item.split("=", 1) for item in fields[8].split(";") if "=" in item)
            for parent in attributes.get("Parent", "").split(","):
                if parent:
                    key = (fields[0], parent, fields[6])
                    exons.setdefault(key, []).append((int(fields[3]) - 1, int(fields[4])))
    rows = []
    for (chrom, parent, strand), spans in exons.items():
        spans.sort()
        rows += [(chrom, a_end, b_start, strand, parent) for (_, a_end), (b_start, _)
                 in zip(spans[:-1], spans[1:], strict=True) if b_start > a_end]
    return pd.DataFrame(rows, columns=["chrom", "start", "end", "strand", "transcript"])


def sites_of(introns: pd.DataFrame) -> pd.DataFrame:
    """One row per splice site: chrom, junction (the genomic boundary between exon and
    intron), strand, kind ("donor"/"acceptor"), transcript. The donor of a + intron is at its
    start, of a − intron at its end; the acceptor the other way round."""
    plus = introns["strand"] == "+"
    donor = introns.assign(junction=np.where(plus, introns["start"], introns["end"]),
                           kind="donor")
    acceptor = introns.assign(junction=np.where(plus, introns["end"], introns["start"]),
                              kind="acceptor")
    out = pd.concat([donor, acceptor], ignore_index=True)
    return out[["chrom", "junction", "strand", "kind", "transcript"]].sort_values(
        ["chrom", "junction", "kind"], kind="stable").reset_index(drop=True)


def oriented_window(chrom_seq: str, junction: int, strand: str, flank: int) -> str | None:
    """The ``2 * flank`` bases around ``junction`` on ``strand`` (module docstring), or None
    when the window runs off the chromosome."""
    if junction - flank < 0 or junction + flank > len(chrom_seq):
        return None
    seq = chrom_seq[junction - flank:junction + flank]
    return seq if strand == "+" else reverse_complement(seq)


def core_slice(kind: str, flank: int) -> slice:
    """Window positions of a site's core (module docstring)."""
    lo, hi = CORE[kind]
    return slice(flank + lo, flank + hi)


def decoy_junctions(chrom_seq: str, kind: str) -> pd.DataFrame:
    """Every junction on either strand whose window would be centred like a ``kind`` site:
    GT at the intron side of a donor, AG before an acceptor (columns junction, strand)."""
    # a donor junction j: + reads GT at [j, j+2); − reads GT at rc of [j-2, j) (AC on +)
    # an acceptor junction j: + reads AG at [j-2, j); − reads AG at rc of [j, j+2) (CT on +)
    patterns = {"donor": (("GT", 0), ("AC", 2)), "acceptor": (("AG", 2), ("CT", 0))}
    frames = []
    for (motif, shift), strand in zip(patterns[kind], "+-", strict=True):
        at = np.fromiter((m.start() for m in re.finditer(f"(?={motif})", chrom_seq)),
                         dtype=np.int64)
        frames.append(pd.DataFrame({"junction": at + shift, "strand": strand}))
    return pd.concat(frames, ignore_index=True)


def sample_decoys(chrom_seq: str, kind: str, n: int, exclude: np.ndarray, flank: int,
                  rng: np.random.Generator) -> pd.DataFrame:
    """``n`` decoy junctions of ``kind`` (without replacement) whose windows fit on the
    chromosome and lie more than ``flank`` bases from every junction in ``exclude``."""
    candidates = decoy_junctions(chrom_seq, kind)
    j = candidates["junction"].to_numpy()
    ok = (j - flank >= 0) & (j + flank <= len(chrom_seq))
    if len(exclude):
        near = np.sort(np.asarray(exclude))
        k = np.searchsorted(near, j)
        left = np.abs(j - near[np.clip(k - 1, 0, len(near) - 1)])
        right = np.abs(near[np.clip(k, 0, len(near) - 1)] - j)
        ok &= np.minimum(left, right) > flank
    candidates = candidates[ok]
    pick = rng.choice(len(candidates), min(n, len(candidates)), replace=False)
    return candidates.iloc[np.sort(pick)].reset_index(drop=True)


def base_counts(windows: list[str], part: slice) -> np.ndarray:
    """Counts (4, width) of A, C, G, T at the positions ``part`` of equal-length windows (any
    other letter counts nowhere)."""
    return one_hot_batch(windows)[:, :, part].sum(axis=0, dtype=np.float64)


def consensus_of(matrix: np.ndarray) -> str:
    """The most probable base of every column."""
    return "".join(ALPHABET[i] for i in np.argmax(matrix, axis=0))


def matches_consensus(sequence: str, consensus: str) -> bool:
    """Whether ``sequence`` fits the IUPAC ``consensus`` (same length) at every position."""
    return len(sequence) == len(consensus) and all(
        base in IUPAC[code] for base, code in zip(sequence, consensus, strict=True))


def pwm_scores(windows: list[str], log_odds: np.ndarray, part: slice) -> np.ndarray:
    """Sum of log odds (4, width) over the positions ``part`` of each window (N scores 0)."""
    return np.einsum("nbw,bw->n", one_hot_batch(windows)[:, :, part].astype(np.float64),
                     log_odds)
