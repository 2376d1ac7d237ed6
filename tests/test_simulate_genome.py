"""Tests for helixflow.simulate_genome: a tiny (1/2048) hg38-shaped genome with two targets."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyfaidx
import pytest
import yaml

from helixflow import simulate_genome as sim
from helixflow.config import read_sample_sheet, validate_config
from helixflow.files import sha256sum
from helixflow.genome import index_genome
from helixflow.intervals import read_blacklist, read_peaks
from helixflow.motifs import jaspar_motif

SCALE = 1 / 2048
TARGETS = ["CTCF", "REST"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """Seed 1 twice (into different directories) and seed 2 once."""
    base = tmp_path_factory.mktemp("simulate")
    return {name: (base / name, sim.simulate(base / name, SCALE, seed, TARGETS))
            for name, seed in (("a", 1), ("b", 1), ("c", 2))}


@pytest.fixture(scope="module")
def genome(runs) -> dict[str, str]:
    """The FASTA of run a as {name: sequence}, parsed by hand (60-bp lines checked)."""
    seqs: dict[str, list[str]] = {}
    with gzip.open(runs["a"][0] / "hg38_sim" / "hg38_sim.fa.gz", "rt") as handle:
        lines = handle.read().splitlines()
    for line in lines:
        if line.startswith(">"):
            name = line[1:]
            seqs[name] = []
        else:
            seqs[name].append(line)
    for name, rows in seqs.items():
        assert all(len(r) == 60 for r in rows[:-1]) and 0 < len(rows[-1]) <= 60, name
    return {name: "".join(rows) for name, rows in seqs.items()}


def narrowpeaks(path: Path) -> list[list[str]]:
    with gzip.open(path, "rt") as handle:
        return [line.rstrip("\n").split("\t") for line in handle]


def test_same_seed_same_bytes_other_seed_differs(runs):
    (a, ma), (b, mb), (c, mc) = runs["a"], runs["b"], runs["c"]
    assert ma == mb
    for rel, digest in ma["sha256"].items():
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
        assert sha256sum(a / rel) == digest, rel
    assert (a / "manifest.json").read_bytes() == (b / "manifest.json").read_bytes()
    for rel in ("hg38_sim/hg38_sim.fa.gz", "peaks/CTCF.bed.gz", "peaks/REST.bed.gz"):
        assert mc["sha256"][rel] != ma["sha256"][rel], rel
        assert (c / rel).read_bytes() != (a / rel).read_bytes(), rel


def test_names_and_lengths_follow_hg38(runs, genome, tmp_path):
    assert sim.HG38["chr1"] == 248_956_422 and sim.HG38["chrM"] == 16_569
    expected = {name: max(sim.MIN_LENGTH, round(length * SCALE))
                for name, length in sim.HG38.items()}
    assert {f"chr{i}" for i in [*range(1, 23), "X", "Y", "M"]} < set(expected)
    assert {n: len(s) for n, s in genome.items()} == expected
    assert list(genome) == list(sim.HG38)
    manifest = runs["a"][1]
    assert manifest["genome"]["sequences"] == expected
    assert manifest["genome"]["length"] == sum(expected.values())
    # readable by the project's indexer and by pyfaidx
    sizes = index_genome(runs["a"][0] / "hg38_sim" / "hg38_sim.fa.gz", tmp_path / "g.fa",
                         tmp_path / "g.sizes")
    assert sizes == expected
    fasta = pyfaidx.Fasta(str(tmp_path / "g.fa"), sequence_always_upper=False)
    assert str(fasta["chr2"][1000:1500]) == genome["chr2"][1000:1500]


def test_gaps_repeats_and_composition(runs, genome):
    manifest = runs["a"][1]["genome"]
    placed = [f"chr{i}" for i in [*range(1, 23), "X", "Y"]]
    for name in placed:
        seq = genome[name]
        assert set(seq[:100]) == {"N"} and set(seq[-100:]) == {"N"}, name
        assert seq.count("N") >= 500, name                      # centromere block too
    assert "N" not in genome["chrM"] and "N" not in genome["chrUn_KI270742v1"]
    n_total = sum(s.count("N") for s in genome.values())
    length = sum(map(len, genome.values()))
    assert n_total == manifest["n_bases_N"] and 0.02 < n_total / length < 0.15
    lower = sum(sum(s.count(ch) for ch in "acgt") for s in genome.values())
    soft = lower / (length - n_total)
    assert soft == pytest.approx(manifest["fraction_soft_masked"]) and 0.30 <= soft <= 0.45
    text = "".join(genome.values()).upper().replace("N", "")
    assert set(text) == set("ACGT")
    gc = (text.count("G") + text.count("C")) / len(text)
    assert 0.38 < gc < 0.46
    assert text.count("CG") / len(text) < 0.5 * (gc / 2) ** 2   # CpG depletion


def best_log_odds(seq: str, lo: np.ndarray) -> float:
    """Best PWM log-odds (bits) over positions and both strands; -inf when the window has N."""
    code = np.array(["ACGT".find(ch) for ch in seq.upper()])
    if (code < 0).any():
        return -np.inf
    w = lo.shape[1]
    windows = np.lib.stride_tricks.sliding_window_view(code, w)
    fwd = lo[windows, np.arange(w)].sum(axis=1)
    rev = lo[::-1, ::-1][windows, np.arange(w)].sum(axis=1)
    return float(max(fwd.max(), rev.max()))


@pytest.mark.parametrize("target", TARGETS)
def test_planted_site_at_most_summits(runs, genome, target):
    out, manifest = runs["a"]
    info = manifest["targets"][target]
    motif = jaspar_motif(info["jaspar_id"])
    assert motif.matrix_id.startswith(sim.TARGETS[target][0])
    lo = np.log2(motif.ppm / 0.25)
    w = lo.shape[1]
    reach = w + 4
    rows = narrowpeaks(out / "peaks" / f"{target}.bed.gz")
    summits = [(r[0], int(r[1]) + int(r[9])) for r in rows]
    at_peaks = np.array([best_log_odds(genome[c][s - reach:s + reach], lo) for c, s in summits])
    rng = np.random.default_rng(0)
    names = [n for n in genome if len(genome[n]) > 10_000]
    background = []
    while len(background) < 1000:
        c = names[rng.integers(len(names))]
        s = int(rng.integers(reach, len(genome[c]) - reach))
        score = best_log_odds(genome[c][s - reach:s + reach], lo)
        if np.isfinite(score):
            background.append(score)
    background = np.array(background)
    assert np.median(at_peaks) > np.median(background) + 6
    planted = info["n_planted_at_peaks"] / info["n_peaks"]
    assert 0.75 <= planted <= 0.92
    assert (at_peaks > np.quantile(background, 0.95)).mean() > 0.8 * planted


def test_planned_sites_are_in_the_sequence(runs, genome):
    """Re-plan run a: every kept site (at peaks and in the background) is in the FASTA."""
    manifest = runs["a"][1]
    chroms = [sim.layout(i, name, SCALE, 1) for i, name in enumerate(sim.HG38)]
    plans = [sim.plan_target(list(sim.TARGETS).index(t), t, chroms, SCALE, 1) for t in TARGETS]
    sites = sim.place_sites(plans, len(chroms))
    for plan in plans:
        info = manifest["targets"][plan.name]
        assert int(plan.planted.sum()) == info["n_planted_at_peaks"]
        assert plan.n_background == info["n_planted_background"] >= 0.15 * info["n_peaks"]
    assert sum(pos.size for pos, _ in sites) > 0
    for chrom, (pos, letters) in zip(chroms, sites, strict=True):
        seq = genome[chrom.name]
        assert "".join(seq[p] for p in pos) == letters.tobytes().decode(), chrom.name


@pytest.mark.parametrize("target", TARGETS)
def test_peaks_are_sorted_valid_narrowpeak(runs, genome, target):
    out, manifest = runs["a"]
    rows = narrowpeaks(out / "peaks" / f"{target}.bed.gz")
    assert len(rows) == manifest["targets"][target]["n_peaks"] >= sim.MIN_PEAKS
    keys = [(r[0], int(r[1])) for r in rows]
    assert keys == sorted(keys)
    for r in rows:
        assert len(r) == 10 and r[5] == "."
        chrom, start, end, offset = r[0], int(r[1]), int(r[2]), int(r[9])
        assert 200 <= end - start <= 1000 and 0 <= offset < end - start
        assert 0 <= int(r[4]) <= 1000 and float(r[6]) > 0 and float(r[7]) >= float(r[8]) > 0
        summit = start + offset
        near = genome[chrom][summit - sim.PEAK_REACH:summit + sim.PEAK_REACH]
        assert len(near) == 2 * sim.PEAK_REACH and "N" not in near.upper(), r
    assert len({r[3] for r in rows}) == len(rows)
    sizes = {n: len(s) for n, s in genome.items()}
    assert len(read_peaks(out / "peaks" / f"{target}.bed.gz", sizes, {}, "narrowPeak")) \
        == len(rows)


def test_blacklist_well_formed(runs, genome):
    out, manifest = runs["a"]
    rows = narrowpeaks(out / "hg38_sim" / "blacklist.bed.gz")
    assert len(rows) == manifest["blacklist"]["n_regions"] >= 24
    keys = [(r[0], int(r[1]), int(r[2])) for r in rows]
    assert keys == sorted(keys) and all(len(r) == 3 for r in rows)
    for (c, s, e), nxt in zip(keys, [*keys[1:], None], strict=True):
        assert 0 <= s < e <= len(genome[c])
        assert nxt is None or nxt[0] != c or nxt[1] > e          # merged
    # satellite arrays at the centromere edges: every autosome has some
    assert {c for c, _, _ in keys} >= {f"chr{i}" for i in range(1, 23)}
    sizes = {n: len(s) for n, s in genome.items()}
    assert len(read_blacklist(out / "hg38_sim" / "blacklist.bed.gz", sizes, {})) == len(rows)
    for target in TARGETS:
        peaks = narrowpeaks(out / "peaks" / f"{target}.bed.gz")
        inside = sum(any(c == p[0] and s <= int(p[1]) + int(p[9]) < e for c, s, e in keys)
                     for p in peaks)
        info = manifest["targets"][target]
        assert inside == info["n_summits_in_blacklist"] >= info["n_blacklist_artifacts"]


def test_sample_sheet_and_manifest(runs):
    out, manifest = runs["a"]
    header = (ROOT / "config/examples/hg38_encode/chip.tsv").read_text().splitlines()[0]
    lines = (out / "chip.tsv").read_text().splitlines()
    assert lines[0] == header
    sheet = read_sample_sheet(out / "chip.tsv")
    assert list(sheet["target"]) == TARGETS
    for row in sheet.itertuples():
        assert row.peaks == f"peaks/{row.target}.bed.gz" and row.peaks_url == ""
        assert row.peaks_sha256 == sha256sum(out / row.peaks)
        assert (row.peak_format, row.tax_group) == ("narrowPeak", "vertebrates")
        assert row.jaspar_id == sim.TARGETS[row.target][0]
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest and (on_disk["seed"], on_disk["scale"]) == (1, SCALE)
    assert set(on_disk["sha256"]) == {"hg38_sim/hg38_sim.fa.gz", "hg38_sim/blacklist.bed.gz",
                                      "peaks/CTCF.bed.gz", "peaks/REST.bed.gz", "chip.tsv"}
    assert not list(out.rglob(".*"))                           # no temporary files left


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown targets"):
        sim.simulate(tmp_path, SCALE, 1, ["NOPE"])
    with pytest.raises(ValueError, match="scale"):
        sim.simulate(tmp_path, 2.0, 1)


def _merge(base: dict, over: dict) -> dict:
    """Snakemake's merge of --configfile over the Snakefile's configfile."""
    merged = dict(base)
    for key, value in over.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(
            base.get(key), dict) else value
    return merged


def test_example_config_validates():
    base = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    example = yaml.safe_load((ROOT / "config/examples/hg38_scale/config.yaml").read_text())
    config = validate_config(_merge(base, example))
    assert config["genome"]["fasta"]["path"] == "hg38_sim/hg38_sim.fa.gz"
    assert config["samples"] == f"{config['data_mirror'][0]}/chip.tsv"
    for stage in ("sweep", "attributions", "grammar", "multitask", "imbalance", "mil",
                  "pretraining", "methylation", "scrna"):
        assert config[stage], stage
    assert {config["sweep"]["target"], config["imbalance"]["target"]} <= set(sim.TARGETS)
    assert not config["multitask"]["extra_targets"]


@pytest.mark.parametrize("scale", [1 / 64, 1.0])
def test_plan_at_larger_scales(scale):
    """Layout and peaks only (no sequence): counts scale, artifacts sit in the blacklist."""
    chroms = [sim.layout(i, name, scale, 1) for i, name in enumerate(sim.HG38)]
    assert chroms[0].length == round(248_956_422 * scale)
    black = [sim.blacklist(c) for c in chroms]
    n_regions = sum(len(b) for b in black)
    assert (300 <= n_regions <= 1000) if scale == 1 else (24 <= n_regions < 300)
    plan = sim.plan_target(0, "CTCF", chroms, scale, 1)
    assert plan.summit.size == round(60_000 * scale)
    assert plan.artifact.sum() == round(sim.ARTIFACTS * plan.summit.size) >= 1
    assert not plan.planted[plan.artifact].any()
    spaces = [sim.peak_space(c) for c in chroms]
    for i, (c, s) in enumerate(zip(plan.chrom, plan.summit, strict=True)):
        space = spaces[c]
        assert ((space[:, 0] <= s) & (s < space[:, 1])).any()
        if plan.artifact[i]:
            assert ((black[c][:, 0] <= s) & (s < black[c][:, 1])).any()
    placed = np.isin(plan.chrom, [i for i, name in enumerate(sim.HG38) if "_" not in name])
    assert placed.mean() > 0.99
