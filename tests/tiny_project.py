"""A tiny made-up genome with a planted REB1 motif, laid out as a HelixFlow project.

Six random chromosomes; peaks on every chromosome carry the motif near their summit, so a
CNN must find it in seconds and the motif report must name REB1 (JASPAR MA0363). Peaks
use Ensembl-style names ('1'..'6') and reach the genome ('chr1'..'chr6') through an alias
file, as real data does.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
MOTIF = "TTACCCGG"
CHROMS = [f"chr{i}" for i in range(1, 7)]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_genome(mirror: Path, seed: int = 7, length: int = 80_000,
                peaks_per_chrom: int = 60) -> list[tuple[str, int]]:
    """Write genome.fa.gz (plain gzip) and return the planted summits (genome names)."""
    rng = np.random.default_rng(seed)
    summits = []
    records = []
    for chrom in CHROMS:
        seq = rng.choice(list("ACGT"), size=length, p=[0.3, 0.2, 0.2, 0.3])
        positions = np.sort(rng.choice(np.arange(1, length // 1000 - 1), peaks_per_chrom,
                                       replace=False)) * 1000 + rng.integers(-200, 200,
                                                                             peaks_per_chrom)
        for summit in positions:
            motif = MOTIF if rng.random() < 0.5 else MOTIF[::-1].translate(
                str.maketrans("ACGT", "TGCA"))
            start = summit + int(rng.integers(-20, 12))
            seq[start:start + len(motif)] = list(motif)
            summits.append((chrom, int(summit)))
        text = "".join(seq)
        records.append(f">{chrom}\n" + "\n".join(text[i:i + 60] for i in range(0, length, 60)))
    (mirror / "tiny").mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(mirror / "tiny" / "genome.fa.gz", "wb", mtime=0) as handle:
        handle.write(("\n".join(records) + "\n").encode())   # mtime=0: same bytes each time
    return summits


def make_project(root: Path, **config_overrides) -> Path:
    """Create mirror + config in ``root``; returns the config path. Overrides merge shallowly
    into the top-level keys of the config."""
    mirror = root / "mirror"
    summits = make_genome(mirror)
    peaks = mirror / "tiny" / "Reb1_peaks.bed"
    peaks.write_text("".join(f"{c.removeprefix('chr')}\t{s}\t{s + 1}\tpeak{i}\t1000\t.\n"
                             for i, (c, s) in enumerate(summits)))
    aliases = mirror / "tiny" / "aliases.tsv"
    aliases.write_text("".join(f"{c.removeprefix('chr')}\t{c}\n" for c in CHROMS))
    blacklist = mirror / "tiny" / "blacklist.bed"
    blacklist.write_text("1\t0\t2500\nchr2\t30000\t32000\n")
    sheet = root / "chip.tsv"
    sheet.write_text("target\tpeaks\tpeaks_url\tpeaks_sha256\tpeak_format\ttax_group\tjaspar_id\n"
                     f"Reb1\ttiny/Reb1_peaks.bed\t\t{_sha(peaks)}\tbed\tfungi\tMA0363\n")
    config = {
        "seed": 1,
        "data_mirror": "mirror",  # relative to the project directory
        "samples": "chip.tsv",
        "genome": {
            "name": "tiny",
            "fasta": {"path": "tiny/genome.fa.gz", "url": None,
                      "sha256": _sha(mirror / "tiny" / "genome.fa.gz")},
            "blacklist": {"path": "tiny/blacklist.bed", "url": None, "sha256": _sha(blacklist)},
            "chrom_aliases": {"path": "tiny/aliases.tsv", "url": None, "sha256": _sha(aliases)},
        },
        "splits": {"valid": ["chr5"], "test": ["chr6"], "train": []},
        "windows": {"width": 100, "negative_ratio": 1.0},
        "cnn": {"architecture": {"filters": 8, "kernel": 11, "dense": 0},
                "training": {"epochs": 40, "patience": 8, "lr": 0.01, "batch_size": 32},
                "grid": []},
        "evaluate": {"n_boot": 100, "kmer_k": [4], "kmer_C": [0.1]},
        "motifs": {"n_logos": 2},
        "sweep": {"target": "Reb1", "epochs": 3, "arms": [
            {"name": "small", "filters": 2, "dense": 0, "pool": 0, "regularized": True},
            {"name": "big_noreg", "filters": 16, "dense": 16, "pool": 5, "regularized": False},
        ]},
        "threads": 1,
        "imbalance": {"target": "Reb1", "params": {
            "ratios": [1, 3], "losses": ["bce", "weighted_bce"], "train_seeds": [1],
            "n_boot": 50, "training": {"epochs": 4, "patience": 2}}},
        "mil": {"params": {"training": {"epochs": 4, "patience": 2}}},
        "multitask": {"extra_targets": [], "params": {
            "n_boot": 50, "training": {"epochs": 4, "patience": 2}}},
    }
    config.update(config_overrides)
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def make_bam_project(root: Path, **config_overrides) -> tuple[Path, list[tuple[str, int]]]:
    """The tiny project with its target given as ChIP + control BAMs (peaks called by MACS3).

    Reads are simulated around the planted summits (Ensembl-style names in the BAMs, reached
    through the alias file). Returns the config path and the planted summits.
    """
    from helixflow.simulate_reads import simulate_chip_reads
    config = make_project(root, **config_overrides)
    mirror = root / "mirror" / "tiny"
    summits = make_genome(root / "mirror")  # same seed: the genome make_project wrote
    plain = root / "genome_plain.fa"
    with gzip.open(mirror / "genome.fa.gz", "rb") as src:
        plain.write_bytes(src.read())
    names = {c: c.removeprefix("chr") for c in CHROMS}
    simulate_chip_reads(plain, summits, mirror / "chip.bam", n_reads_per_peak=80,
                        n_background=5_000, seed=3, bam_names=names)
    # the input is sequenced as deep as the ChIP (MACS would otherwise scale the ChIP down)
    simulate_chip_reads(plain, [], mirror / "input.bam", n_reads_per_peak=0,
                        n_background=35_000, seed=4, bam_names=names)
    (root / "chip.tsv").write_text(
        "target\tpeaks\ttreatment_bam\tcontrol_bam\tpeak_format\ttax_group\tjaspar_id\n"
        "Reb1\t\ttiny/chip.bam\ttiny/input.bam\tnarrowPeak\tfungi\tMA0363\n")
    return config, summits


def snakemake(workdir: Path, *args: str, timeout: int = 600, snakefile: Path | None = None,
              configfile: Path | None = None,
              extra_env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the project's Snakefile in ``workdir`` with the config there; capture output."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}"
               f"{os.environ.get('PATH', '')}", **(extra_env or {}))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile or REPO / "Snakefile"),
           "-d", str(workdir), "--configfile", str(configfile or workdir / "config.yaml"),
           "--cores", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=workdir)
