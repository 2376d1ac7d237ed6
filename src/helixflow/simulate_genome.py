"""A deterministic, hg38-shaped synthetic genome with planted TF sites and ENCODE-like peaks.

No human genome can be downloaded in CI, so this writes a stand-in with the features the
workflow meets on hg38, at ``scale`` x hg38's size (1 = 3.1 Gb):

* Layout: hg38's chromosome names and lengths (chr1..chr22, chrX, chrY, chrM and a few
  unplaced/random contigs) x scale. N gaps: a telomere run at both ends of each placed
  chromosome, a centromere block at its hg38 position (the whole short arm of the acrocentric
  chr13/14/15/21/22, and the Yq12 heterochromatin, as in hg38) and a few smaller gaps.
* Composition: GC isochores of 100-500 kb (not scaled) with GC drawn from the L1/L2/H1/H2/H3
  families (~0.37-0.53); bases are independent within an isochore; after the repeats are
  inserted 75% of CpGs are deaminated (CpG depletion, as in hg38).
* Repeats, soft-masked (lower case): diverged copies (5-20% substitutions, either strand) of
  L1-like (5'-truncated), LTR-, MIR- and Alu-like consensuses and simple repeats, ~40% of
  the genome; satellite arrays at the centromere edges and high-copy clusters elsewhere,
  which also make up the blacklist.
* Peaks per target: summits on non-N sequence at least ``PEAK_REACH`` bp from any gap or end;
  80-90% of them carry a site sampled from the target's JASPAR matrix (random strand,
  summit +- 3 bp, upper case); the motif is also planted at 0.2-0.5 x as many background
  positions, so it is no perfect classifier; 0.2% of peaks are motif-less artifacts in
  blacklist regions. Intervals of 200-1000 bp, ENCODE IDR-thresholded narrowPeak columns.

Every random draw comes from ``numpy.random.default_rng`` streams keyed by (seed, chromosome
or target index, purpose), so a seed gives byte-identical files whatever the order of work.
Peaks and sites are decided first; the genome is then generated, planted and gzipped block by
block (``BLOCK`` bp), so memory stays well under 1 GB at scale 1.
"""

from __future__ import annotations

import gzip
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from .files import atomic_path, sha256sum, write_json
from .motifs import jaspar_motif, jaspar_release

HG38 = {  # UCSC hg38.chrom.sizes
    "chr1": 248956422, "chr2": 242193529, "chr3": 198295559, "chr4": 190214555,
    "chr5": 181538259, "chr6": 170805979, "chr7": 159345973, "chr8": 145138636,
    "chr9": 138394717, "chr10": 133797422, "chr11": 135086622, "chr12": 133275309,
    "chr13": 114364328, "chr14": 107043718, "chr15": 101991189, "chr16": 90338345,
    "chr17": 83257441, "chr18": 80373285, "chr19": 58617616, "chr20": 64444167,
    "chr21": 46709983, "chr22": 50818468, "chrX": 156040895, "chrY": 57227415, "chrM": 16569,
    "chr1_KI270706v1_random": 175055, "chr1_KI270707v1_random": 32032,
    "chr14_GL000225v1_random": 211173, "chr15_KI270727v1_random": 448248,
    "chr16_KI270728v1_random": 1872759, "chr17_KI270729v1_random": 280839,
    "chr22_KI270731v1_random": 150754, "chrY_KI270740v1_random": 37240,
    "chrUn_KI270742v1": 186739, "chrUn_GL000220v1": 161802,
}
CENTROMERE_MB = {  # midpoints of the hg38 cytoBand 'acen' bands
    "chr1": 123.4, "chr2": 93.9, "chr3": 90.9, "chr4": 50.0, "chr5": 48.8, "chr6": 59.8,
    "chr7": 60.1, "chr8": 45.2, "chr9": 43.0, "chr10": 39.8, "chr11": 53.4, "chr12": 35.5,
    "chr13": 17.7, "chr14": 17.2, "chr15": 19.0, "chr16": 36.8, "chr17": 25.1, "chr18": 18.5,
    "chr19": 26.2, "chr20": 28.1, "chr21": 12.0, "chr22": 15.0, "chrX": 60.6, "chrY": 10.4,
}
ACROCENTRIC = {"chr13", "chr14", "chr15", "chr21", "chr22"}
HETEROCHROMATIN_MB = {"chrY": (26.6, 56.8)}
TARGETS = {  # target: (JASPAR base id, ENCODE-like IDR peak count at scale 1)
    "CTCF": ("MA0139", 60_000), "REST": ("MA0138", 12_000), "GABPA": ("MA0062", 8_000),
    "FOXA1": ("MA0148", 40_000), "SP1": ("MA0079", 20_000), "USF1": ("MA0093", 15_000),
    "YY1": ("MA0095", 10_000), "NRF1": ("MA0506", 8_000), "MAX": ("MA0058", 25_000),
    "CEBPB": ("MA0466", 30_000),
}
ISOCHORES = ((0.37, 0.31), (0.41, 0.32), (0.46, 0.24), (0.50, 0.08), (0.53, 0.05))  # GC, share

LINE = 60
BLOCK = LINE * 2**15        # bp generated at a time (whole lines, ~2 Mb)
MIN_LENGTH = 2_000          # shortest simulated sequence
MIN_PEAKS = 300
PEAK_REACH = 1_000          # bp between a summit and any N or sequence end
PEAK_SPACING = 200          # bp between two summits of one target
CLUSTER_BP = 5_000_000      # one high-copy repeat cluster per this many simulated bp
CPG_LOSS = 0.75
ARTIFACTS = 0.002           # fraction of peaks that are motif-less blacklist artifacts
LIBRARY_SEED = 20_240_613   # repeat consensuses are the same for every seed
A, C, G, T, N = b"ACGTN"
COMPLEMENT = np.arange(256, dtype=np.uint8)
COMPLEMENT[list(b"ACGTacgt")] = list(b"TGCAtgca")


@dataclass(frozen=True)
class Family:
    """A repeat family: copies of ``consensus`` ~ exponential(mean_len) in [min_len, len]."""

    name: str
    consensus: np.ndarray      # lower case; then its reverse complement (both strands)
    share: float               # bases covered by copies, before overlaps, per bp
    mean_len: float
    min_len: int
    three_prime: bool          # copies keep the 3' end (5'-truncated, as L1 and Alu)
    divergence: tuple[float, float] = (0.05, 0.20)

    @property
    def size(self) -> int:
        return self.consensus.size // 2

    @property
    def mean_copy(self) -> float:
        """E[clip(X, min_len, size)] for X ~ exponential(mean_len)."""
        m, a, b = self.mean_len, self.min_len, self.size
        return a + m * (np.exp(-a / m) - np.exp(-b / m))


def _bases(rng: np.random.Generator, n: int, gc: float) -> bytes:
    p = [(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2]
    return np.frombuffer(b"ACGT", np.uint8)[rng.choice(4, n, p=p)].tobytes()


def _both_strands(seq: bytes) -> np.ndarray:
    fwd = np.frombuffer(seq.lower(), np.uint8)
    return np.concatenate([fwd, COMPLEMENT[fwd[::-1]]])


def repeat_library() -> tuple[tuple[Family, ...], tuple[np.ndarray, ...]]:
    """Interspersed/simple repeat families (inserted in this order) and satellite units."""
    rng = np.random.default_rng(LIBRARY_SEED)
    fam = [("L1", _bases(rng, 6000, 0.40) + b"A" * 20, 0.21, 1000, 100, True),
           ("LTR", _bases(rng, 500, 0.45), 0.10, 400, 80, False),
           ("MIR", _bases(rng, 260, 0.48), 0.04, 150, 50, False),
           ("Alu", _bases(rng, 282, 0.56) + b"A" * 30, 0.14, 900, 50, True)]
    families = [Family(name, _both_strands(s), *rest) for name, s, *rest in fam]
    families += [Family(f"({u})n", _both_strands(u.encode() * (120 // len(u))), 0.004, 40, 15,
                        False, (0.02, 0.10)) for u in ("CA", "A", "TTTC")]
    satellites = (_bases(rng, 171, 0.38), b"GGAAT", _bases(rng, 68, 0.50))  # alpha, HSAT, beta
    return tuple(families), tuple(np.frombuffer(s.lower(), np.uint8) for s in satellites)


FAMILIES, SATELLITES = repeat_library()


@dataclass
class Chrom:
    """Layout of one sequence, decided before any base is drawn."""

    index: int
    name: str
    length: int
    gaps: np.ndarray           # (k, 2) merged N intervals
    bounds: np.ndarray         # (m + 1,) isochore boundaries
    gc: np.ndarray             # (m,) isochore GC
    arrays: list[tuple[int, int, int]]  # satellite/cluster arrays: start, end, satellite


def _merge(intervals: list[tuple[int, int]] | np.ndarray, length: int) -> np.ndarray:
    """Sorted, merged, clipped (k, 2) intervals."""
    iv = np.clip(np.asarray(intervals, dtype=np.int64).reshape(-1, 2), 0, length)
    iv = iv[np.argsort(iv[:, 0], kind="stable")]
    merged: list[list[int]] = []
    for s, e in iv[iv[:, 1] > iv[:, 0]].tolist():
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return np.array(merged, dtype=np.int64).reshape(-1, 2)


def _complement(iv: np.ndarray, length: int) -> np.ndarray:
    starts = np.concatenate([[0], iv[:, 1]])
    ends = np.concatenate([iv[:, 0], [length]])
    return np.stack([starts, ends], axis=1)[ends > starts]


def _intersect(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lo = np.maximum(a[:, None, 0], b[None, :, 0]).ravel()
    hi = np.minimum(a[:, None, 1], b[None, :, 1]).ravel()
    return np.stack([lo, hi], axis=1)[hi > lo]


def layout(index: int, name: str, scale: float, seed: int) -> Chrom:
    """Gaps, isochores and satellite arrays of one sequence (rng stream (seed, index, 0))."""
    rng = np.random.default_rng([seed, index, 0])
    real = HG38[name]
    L = max(MIN_LENGTH, round(real * scale))
    gaps: list[tuple[int, int]] = []
    arrays: list[tuple[int, int, int]] = []
    if name in CENTROMERE_MB:
        tel = max(100, round(10_000 * scale))
        half = round(rng.uniform(1.5e6, 4e6) * scale / 2)
        mid = round(CENTROMERE_MB[name] * 1e6 * scale)
        cen = (0 if name in ACROCENTRIC else max(tel, mid - half), min(L - tel, mid + half))
        gaps += [(0, tel), (L - tel, L), cen]
        if name in HETEROCHROMATIN_MB:
            gaps.append(tuple(round(x * 1e6 * scale) for x in HETEROCHROMATIN_MB[name]))
        for _ in range(2 + rng.poisson(real / 40e6)):
            size = max(50, round(rng.uniform(1e4, 1e5) * scale))
            start = int(rng.integers(0, L - size))
            gaps.append((start, start + size))
        for edge, side in ((cen[0], -1), (cen[1], 1)):
            size = max(300, round(rng.uniform(5e4, 3e5) * scale))
            s, e = sorted((edge, edge + side * size))
            if max(s, 0) < min(e, L) and edge > 0:
                arrays.append((max(s, 0), min(e, L), 0))
    for _ in range(rng.poisson(L / CLUSTER_BP)):
        size = int(min(rng.integers(2_000, 30_000), L // 20))
        start = int(rng.integers(0, L - size))
        arrays.append((start, start + size, int(rng.integers(len(SATELLITES)))))
    bounds = np.cumsum(np.concatenate([[0], rng.integers(100_000, 500_001, L // 100_000 + 1)]))
    bounds = np.append(bounds[bounds < L], L)
    family = rng.choice(len(ISOCHORES), bounds.size - 1, p=[s for _, s in ISOCHORES])
    gc = np.clip(rng.normal([ISOCHORES[f][0] for f in family], 0.012), 0.33, 0.58)
    return Chrom(index, name, L, _merge(gaps, L), bounds, gc, arrays)


def peak_space(chrom: Chrom) -> np.ndarray:
    """Intervals where a summit may lie: >= PEAK_REACH bp from every N and both ends."""
    R, L = PEAK_REACH, chrom.length
    cuts = [(0, R), (L - R, L)] + [(s - R, e + R) for s, e in chrom.gaps.tolist()]
    return _complement(_merge(cuts, L), L)


def blacklist(chrom: Chrom) -> np.ndarray:
    """Satellite arrays and high-copy clusters, padded by 500 bp, merged."""
    return _merge([(s - 500, e + 500) for s, e, _ in chrom.arrays], chrom.length)


def _sample(rng: np.random.Generator, spaces: list[np.ndarray], n: int,
            spacing: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n`` (chrom index, position) uniform over ``spaces``, sorted, >= spacing apart."""
    iv = np.concatenate([np.column_stack([np.full(len(s), i), s]) for i, s in enumerate(spaces)])
    size = iv[:, 2] - iv[:, 1]
    if n <= 0 or size.sum() <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    ends = np.cumsum(size)
    u = np.sort(rng.integers(0, ends[-1], n + n // 10 + 10))
    if spacing:
        u = u[np.concatenate([[True], np.diff(u) >= spacing])]
    u = np.sort(rng.choice(u, min(n, u.size), replace=False))
    k = np.searchsorted(ends, u, side="right")
    return iv[k, 0], iv[k, 1] + u - (ends[k] - size[k])


def _n_inside(iv: np.ndarray, pos: np.ndarray) -> int:
    """How many of ``pos`` fall inside the sorted, disjoint intervals ``iv``."""
    k = np.searchsorted(iv[:, 0], pos, side="right") - 1
    return int(((k >= 0) & (pos < iv[np.maximum(k, 0), 1])).sum()) if iv.size else 0


def _draw_sites(rng: np.random.Generator, ppm: np.ndarray, k: int) -> np.ndarray:
    """(k, w) upper-case sites, each column drawn from the ppm, each on a random strand."""
    cdf = np.cumsum(ppm, axis=0)
    idx = np.minimum((rng.random((k, 1, ppm.shape[1])) > cdf[None]).sum(axis=1), 3)
    sites = np.frombuffer(b"ACGT", np.uint8)[idx]
    minus = rng.random(k) < 0.5
    sites[minus] = COMPLEMENT[sites[minus, ::-1]]
    return sites


@dataclass
class Target:
    """One target's peaks (arrays of one row per peak) and its planted sites."""

    name: str
    jaspar_id: str
    chrom: np.ndarray
    summit: np.ndarray
    planted: np.ndarray
    artifact: np.ndarray
    site_chrom: np.ndarray     # planted sites, peaks first, then background
    site_start: np.ndarray
    site_row: np.ndarray       # peak row, or -1 for a background site
    sites: np.ndarray          # (n_sites, w) letters
    n_background: int = 0


def plan_target(ti: int, name: str, chroms: list[Chrom], scale: float, seed: int) -> Target:
    """Peaks, occupancy and sites of one target (rng stream (seed, 1000 + ti))."""
    rng = np.random.default_rng([seed, 1000 + ti])
    motif = jaspar_motif(TARGETS[name][0])
    n = max(MIN_PEAKS, round(TARGETS[name][1] * scale))
    spaces = [peak_space(c) for c in chroms]
    bad = [_intersect(s, blacklist(c)) for s, c in zip(spaces, chroms, strict=True)]
    art_c, art_s = _sample(rng, bad, max(1, round(ARTIFACTS * n)))
    chrom, summit = _sample(rng, spaces, n - art_c.size, PEAK_SPACING)
    artifact = np.arange(chrom.size + art_c.size) >= chrom.size
    chrom, summit = np.concatenate([chrom, art_c]), np.concatenate([summit, art_s])
    planted = (rng.random(chrom.size) < rng.uniform(0.8, 0.9)) & ~artifact
    rows = np.flatnonzero(planted)
    w = motif.ppm.shape[1]
    jitter = rng.integers(-3, 4, rows.size)
    bg_c, bg_s = _sample(rng, spaces, round(rng.uniform(0.2, 0.5) * chrom.size))
    return Target(name, motif.matrix_id, chrom, summit, planted, artifact,
                  np.concatenate([chrom[rows], bg_c]),
                  np.concatenate([summit[rows] + jitter - w // 2, bg_s - w // 2]),
                  np.concatenate([rows, np.full(bg_c.size, -1)]),
                  _draw_sites(rng, motif.ppm, rows.size + bg_c.size))


def place_sites(targets: list[Target], n_chroms: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per sequence, sorted (position, letter) of every site; overlapping sites are dropped.

    A dropped peak site leaves that peak unplanted (``Target.planted`` is updated).
    """
    key = np.concatenate([(t.site_chrom << 40) + t.site_start for t in targets])
    end = key + np.concatenate([np.full(t.site_start.size, t.sites.shape[1]) for t in targets])
    order = np.argsort(key, kind="stable")
    prev_end = np.concatenate([[-1], np.maximum.accumulate(end[order])[:-1]])
    keep = np.empty(key.size, bool)
    keep[order] = key[order] >= prev_end
    pos, letters, offset = [], [], 0
    for t in targets:
        mine = keep[offset:offset + t.site_start.size]
        offset += t.site_start.size
        t.planted[t.site_row[(t.site_row >= 0) & ~mine]] = False
        t.n_background = int((mine & (t.site_row < 0)).sum())
        w = t.sites.shape[1]
        pos.append((((t.site_chrom << 40) + t.site_start)[mine, None] + np.arange(w)).ravel())
        letters.append(t.sites[mine].ravel())
    pos, letters = np.concatenate(pos), np.concatenate(letters)
    order = np.argsort(pos, kind="stable")
    pos, letters = pos[order], letters[order]
    cut = np.searchsorted(pos >> 40, np.arange(n_chroms + 1))
    return [(pos[a:b] & ((1 << 40) - 1), letters[a:b]) for a, b in zip(cut[:-1], cut[1:],
                                                                          strict=True)]


def _gc_lut(gc: float) -> np.ndarray:
    """Random byte -> base, with P(C) = P(G) = gc / 2."""
    t = int(round(gc * 256))
    lut = np.full(256, T, np.uint8)
    lut[:t // 2], lut[t // 2:t], lut[t:t + (256 - t) // 2] = C, G, A
    return lut


def _insert_repeats(rng: np.random.Generator, seq: np.ndarray) -> None:
    n = seq.size
    lower = np.frombuffer(b"acgt", np.uint8)
    for fam in FAMILIES:
        k = rng.poisson(fam.share * n / fam.mean_copy)
        length = np.clip(rng.exponential(fam.mean_len, k).astype(np.int64), fam.min_len,
                         fam.size)
        start = rng.integers(0, n, k)
        length = np.minimum(length, n - start)
        src = fam.size - length if fam.three_prime else \
            (rng.random(k) * (fam.size - length + 1)).astype(np.int64)
        src = np.where(rng.random(k) < 0.5, 2 * fam.size - src - length, src)  # minus strand
        offs = np.arange(length.sum()) - np.repeat(np.cumsum(length) - length, length)
        bases = fam.consensus[np.repeat(src, length) + offs]
        mutate = rng.random(bases.size, np.float32) < np.repeat(
            rng.uniform(*fam.divergence, k).astype(np.float32), length)
        bases[mutate] = lower[rng.integers(0, 4, int(mutate.sum()))]
        seq[np.repeat(start, length) + offs] = bases


def generate_block(rng: np.random.Generator, chrom: Chrom, b0: int, b1: int,
                   sites: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Bases [b0, b1) of ``chrom``: isochore background, repeats, satellites, CpG loss,
    planted sites, then N gaps."""
    raw = np.frombuffer(rng.bytes(b1 - b0), np.uint8)
    seq = np.empty(b1 - b0, np.uint8)
    k = int(np.searchsorted(chrom.bounds, b0, side="right")) - 1
    while chrom.bounds[k] < b1:
        s, e = max(chrom.bounds[k], b0) - b0, min(chrom.bounds[k + 1], b1) - b0
        seq[s:e] = _gc_lut(chrom.gc[k])[raw[s:e]]
        k += 1
    _insert_repeats(rng, seq)
    for a, b, sat in chrom.arrays:
        s, e = max(a, b0), min(b, b1)
        if s < e:
            unit = SATELLITES[sat]
            seq[s - b0:e - b0] = unit[(np.arange(s, e) - a) % unit.size]
            hit = s - b0 + np.flatnonzero(rng.random(e - s) < 0.03)
            seq[hit] = np.frombuffer(b"acgt", np.uint8)[rng.integers(0, 4, hit.size)]
    upper = seq & 0xDF  # CpG loss (deamination), repeats included; case is kept
    cg = np.flatnonzero((upper[:-1] == C) & (upper[1:] == G))
    cg = cg[rng.random(cg.size) < CPG_LOSS]
    flip = rng.random(cg.size) < 0.5
    seq[cg[flip]] = T | (seq[cg[flip]] & 0x20)
    seq[cg[~flip] + 1] = A | (seq[cg[~flip] + 1] & 0x20)
    pos, letters = sites
    lo, hi = np.searchsorted(pos, [b0, b1])
    seq[pos[lo:hi] - b0] = letters[lo:hi]
    for a, b in chrom.gaps.tolist():
        if a < b1 and b > b0:
            seq[max(a, b0) - b0:min(b, b1) - b0] = N
    return seq


def _lines(seq: np.ndarray) -> bytes:
    full = seq.size // LINE
    rows = np.empty((full, LINE + 1), np.uint8)
    rows[:, :LINE] = seq[:full * LINE].reshape(full, LINE)
    rows[:, LINE] = ord("\n")
    tail = seq[full * LINE:].tobytes()
    return rows.tobytes() + (tail + b"\n" if tail else b"")


def _gzip_writer(raw, compresslevel: int) -> gzip.GzipFile:
    """Plain gzip without file name or time stamp, so the bytes depend on the content only."""
    return gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=compresslevel,
                         mtime=0)


def write_genome(path: Path, chroms: list[Chrom], sites: list, seed: int,
                 compresslevel: int = 1) -> dict:
    """Generate and write the FASTA (rng stream (seed, index, 1) per sequence); base counts."""
    counts = {"length": 0, "n": 0, "lower": 0, "gc": 0}
    t0 = time.perf_counter()
    with atomic_path(path) as tmp, open(tmp, "wb") as raw, _gzip_writer(raw, compresslevel) as gz:
        for chrom in chroms:
            rng = np.random.default_rng([seed, chrom.index, 1])
            gz.write(f">{chrom.name}\n".encode())
            for b0 in range(0, chrom.length, BLOCK):
                seq = generate_block(rng, chrom, b0, min(chrom.length, b0 + BLOCK),
                                     sites[chrom.index])
                upper = seq & 0xDF
                counts["n"] += int(np.count_nonzero(seq == N))
                counts["lower"] += int(np.count_nonzero(seq >= ord("a")))
                counts["gc"] += int(np.count_nonzero((upper == C) | (upper == G)))
                gz.write(_lines(seq))
            counts["length"] += chrom.length
            dt = time.perf_counter() - t0
            print(f"simulate-genome: {chrom.name} {chrom.length:,} bp; {counts['length']:,} bp "
                  f"in {dt:.1f} s ({counts['length'] / 1e6 / max(dt, 1e-9):.1f} Mb/s)",
                  file=sys.stderr, flush=True)
    return counts


def _write_gz_text(path: Path, lines: list[str], compresslevel: int) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as raw, _gzip_writer(raw, compresslevel) as gz:
        gz.write("".join(lines).encode())


def narrowpeak_lines(t: Target, chroms: list[Chrom], seed: int, ti: int) -> list[str]:
    """ENCODE IDR-thresholded narrowPeak rows, sorted by chromosome name and start."""
    rng = np.random.default_rng([seed, 1000 + ti, 1])
    n = t.summit.size
    width = np.clip(np.round(rng.lognormal(np.log(400), 0.35, n)), 200, 1000).astype(np.int64)
    left = np.round(width * rng.uniform(0.3, 0.7, n)).astype(np.int64)
    signal = rng.lognormal(2.3, 0.6, n) * np.where(t.artifact, 3.0,
                                                   np.where(t.planted, 1.0, 0.6))
    p = signal * rng.uniform(2.5, 4.0, n) + 3
    q = p * rng.uniform(0.7, 0.95, n)
    rank = np.empty(n, np.int64)
    rank[np.argsort(-signal, kind="stable")] = np.arange(1, n + 1)
    start = t.summit - left
    by_name = np.argsort(np.argsort([c.name for c in chroms]))  # chromosome -> sort rank
    return [f"{chroms[t.chrom[i]].name}\t{start[i]}\t{start[i] + width[i]}\t"
            f"{t.name}_peak{rank[i]}\t{min(1000, int(signal[i] * 40))}\t.\t{signal[i]:.5f}\t"
            f"{p[i]:.5f}\t{q[i]:.5f}\t{left[i]}\n" for i in np.lexsort((start, by_name[t.chrom]))]


def parse_scale(text: str) -> Fraction:
    """'1/64', '0.125' or '1' → the scale as a fraction in (0, 1]; ValueError otherwise."""
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError) as err:
        raise ValueError(f"not a fraction: {text!r}") from err
    if not 0 < value <= 1:
        raise ValueError(f"scale must be in (0, 1], got {text}")
    return value


def simulate(out_dir: str | Path, scale: float, seed: int, targets: list[str] | None = None,
             compresslevel: int = 1) -> dict:
    """Write genome, blacklist, peaks, chip.tsv and manifest.json under ``out_dir``.

    Returns the manifest. ``targets`` is a subset of ``TARGETS`` (None = all).
    """
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    unknown = set(targets or []) - set(TARGETS)
    if unknown:
        raise ValueError(f"unknown targets {sorted(unknown)}; known: {', '.join(TARGETS)}")
    names = [t for t in TARGETS if targets is None or t in targets]
    if not names:
        raise ValueError("no targets chosen")
    out = Path(out_dir)
    chroms = [layout(i, name, scale, seed) for i, name in enumerate(HG38)]
    plans = [plan_target(list(TARGETS).index(t), t, chroms, scale, seed) for t in names]
    sites = place_sites(plans, len(chroms))
    genome, black = out / "hg38_sim" / "hg38_sim.fa.gz", out / "hg38_sim" / "blacklist.bed.gz"
    counts = write_genome(genome, chroms, sites, seed, compresslevel)
    black_iv = [blacklist(c) for c in chroms]
    regions = sorted((c.name, s, e) for c, iv in zip(chroms, black_iv, strict=True)
                     for s, e in iv.tolist())
    _write_gz_text(black, [f"{c}\t{s}\t{e}\n" for c, s, e in regions], compresslevel)
    sheet = ["target\tpeaks\tpeaks_url\tpeaks_sha256\tpeak_format\ttax_group\tjaspar_id\n"]
    per_target = {}
    for t in plans:
        path = out / "peaks" / f"{t.name}.bed.gz"
        _write_gz_text(path, narrowpeak_lines(t, chroms, seed, list(TARGETS).index(t.name)),
                       compresslevel)
        sheet.append(f"{t.name}\t{path.relative_to(out)}\t\t{sha256sum(path)}\tnarrowPeak\t"
                     f"vertebrates\t{TARGETS[t.name][0]}\n")
        per_target[t.name] = {"jaspar_id": t.jaspar_id, "motif_width": int(t.sites.shape[1]),
                              "n_peaks": int(t.summit.size),
                              "n_planted_at_peaks": int(t.planted.sum()),
                              "n_planted_background": t.n_background,
                              "n_blacklist_artifacts": int(t.artifact.sum()),
                              "n_summits_in_blacklist": sum(
                                  _n_inside(black_iv[c], t.summit[t.chrom == c])
                                  for c in np.unique(t.chrom))}
    with atomic_path(out / "chip.tsv") as tmp:
        tmp.write_text("".join(sheet))
    written = [genome, black, *(out / "peaks" / f"{t}.bed.gz" for t in names), out / "chip.tsv"]
    non_n = counts["length"] - counts["n"]
    manifest = {
        "generator": "helixflow.simulate_genome", "seed": seed, "scale": scale,
        "jaspar_release": jaspar_release(),
        "genome": {"n_sequences": len(chroms), "length": counts["length"],
                   "n_bases_N": counts["n"], "fraction_soft_masked": counts["lower"] / non_n,
                   "gc": counts["gc"] / non_n,
                   "sequences": {c.name: c.length for c in chroms}},
        "blacklist": {"n_regions": len(regions), "bp": sum(e - s for _, s, e in regions)},
        "targets": per_target,
        "sha256": {str(p.relative_to(out)): sha256sum(p) for p in written},
    }
    write_json(out / "manifest.json", manifest)
    return manifest
