"""Tests for helixflow.chromatin_view and helixflow.chromatin_contrastive: exact counts per bin,
split discipline, errors a person can act on, tie-aware retrieval, and a planted genome where
each protein binds its own motif, so sequence ↔ chromatin retrieval must beat chance."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from helixflow.chromatin_contrastive import (
    PairedEncoders,
    merge_params,
    retrieval_table,
    run_chromatin_contrastive,
    topk_hits,
    train_contrastive,
)
from helixflow.chromatin_view import build_pairs, peak_files, protein_name
from helixflow.errors import InputError
from helixflow.models.encoders import build_encoder
from helixflow.report import chromatin_section

pytestmark = pytest.mark.usefixtures("restore_torch_state")

BIN = 64
MOTIFS = {"P1": "TTACCCGG", "P2": "CGTTAACG", "P3": "CACGTGAC", "P4": "TGACTCAT",
          "P5": "AATTGGCC", "P6": "GGGATTAC"}
SPLITS = {"valid": ["chrV"], "test": ["chrT"], "train": []}
TINY = {"view": {"bin_bp": BIN},
        "encoder": {"architecture": "dilated_cnn", "d_model": 32, "n_layers": 3},
        "chromatin_encoder": {"hidden": 64, "layers": 1, "dropout": 0.0}, "proj_dim": 32,
        "training": {"epochs": 40, "batch_size": 64, "rows_per_epoch": None, "lr": 3e-3,
                     "encoder_lr": 3e-3, "patience": 0, "valid_bins": 256},
        "retrieval": {"pool_size": 32, "ks": [1, 5]},
        "probe": {"targets": ["P1", "P2"], "train_bins": None, "valid_bins": None,
                  "n_boot": 200, "C": [0.1, 1.0]}}


def write_fasta(path, seqs: dict[str, str]) -> None:
    path.write_text("".join(f">{c}\n{s}\n" for c, s in seqs.items()))


def write_bed(path, rows) -> None:
    path.write_text("".join("\t".join(map(str, r)) + "\n" for r in rows))


def planted_project(root, bins: dict[str, int], seed: int = 0):
    """Random chromosomes of ``BIN``-bp bins; in each bin every motif is planted with p 0.35
    (slot chosen at random) and its protein gets a summit at the motif's centre; a protein
    'NOISE' has summits in random bins. Peaks name chromosomes '1', '2', ... (aliases given)."""
    rng = np.random.default_rng(seed)
    seqs, peaks = {}, {p: [] for p in [*MOTIFS, "NOISE"]}
    aliases = []
    for c, (chrom, n) in enumerate(bins.items(), start=1):
        seq = rng.choice(list("ACGT"), size=n * BIN)
        for b in range(n):
            slots = rng.permutation(7)
            for m, (protein, motif) in enumerate(MOTIFS.items()):
                if rng.random() < 0.35:
                    at = b * BIN + 1 + 9 * slots[m]
                    seq[at:at + 8] = list(motif)
                    peaks[protein].append((str(c), at + 4, at + 5, "peak", 1000, "."))
            if rng.random() < 0.2:
                at = b * BIN + int(rng.integers(BIN))
                peaks["NOISE"].append((str(c), at, at + 1, "peak", 1000, "."))
        seqs[chrom] = "".join(seq)
        aliases.append(f"{c}\t{chrom}\n")
    write_fasta(root / "genome.fa", seqs)
    (root / "aliases.tsv").write_text("".join(aliases))
    (root / "peaks").mkdir()
    for protein, rows in peaks.items():
        write_bed(root / "peaks" / f"{protein}_CX.bed", rows)
    return root / "genome.fa", root / "peaks", root / "aliases.tsv"


# --------------------------------------------------------------------------- data builder

def test_protein_names_from_both_rossi_file_patterns():
    assert protein_name("Reb1_CX.bed") == "REB1"
    assert protein_name("11760_EAF3_chexmix_filtered_new.bed") == "EAF3"
    assert protein_name("/x/Matalpha2_CX.bed.gz") == "MATALPHA2"
    assert protein_name("my_factor.narrowPeak") == "MY_FACTOR"


def test_counts_per_bin_are_exact_and_duplicates_are_counted_once(tmp_path):
    write_fasta(tmp_path / "g.fa", {"chrA": "ACGT" * 262 + "AC", "chrB": "A" * 300,
                                    "chrC": "C" * 200})
    (tmp_path / "peaks").mkdir()
    # chrA is 1050 bp → 10 whole bins of 100; summit 1020 lies in the dropped partial bin
    write_bed(tmp_path / "peaks" / "Abc1_CX.bed",
              [("1", 5, 6), ("1", 50, 51), ("1", 198, 202), ("1", 150, 151), ("1", 1020, 1021),
               ("2", 10, 11)])
    write_bed(tmp_path / "peaks" / "Xyz2_CX.bed", [("chrA", 55, 56), ("chrA", 999, 1000)])
    (tmp_path / "peaks" / "123_ABC1_chexmix_filtered_new.bed").write_bytes(
        (tmp_path / "peaks" / "Abc1_CX.bed").read_bytes())          # the same bytes: once
    # another file of XYZ2 (sorted first by name, so "Xyz2_CX.bed" becomes XYZ2_2)
    write_bed(tmp_path / "peaks" / "9_XYZ2_chexmix.bed", [("chrA", 55, 56)])
    pairs = build_pairs(tmp_path / "g.fa", tmp_path / "peaks",
                        {"valid": ["chrB"], "test": ["chrA"]}, {"1": "chrA", "2": "chrB"},
                        bin_bp=100)
    assert pairs.proteins == ["ABC1", "XYZ2", "XYZ2_2"]
    assert pairs.stats["duplicate_files"] == [{"file": "Abc1_CX.bed",
                                                "same_as": "123_ABC1_chexmix_filtered_new.bed"}]
    table = pairs.peak_table.set_index("protein")
    assert table.loc["ABC1", "outside_bins"] == 1 and table.loc["ABC1", "peaks"] == 5
    counts = pairs.counts.toarray()
    got = {(c, s): tuple(row) for c, s, row in zip(pairs.bins["chrom"], pairs.bins["start"],
                                                     counts.tolist(), strict=True)}
    assert got == {("chrA", 0): (2, 1, 1), ("chrA", 100): (1, 0, 0), ("chrA", 200): (1, 0, 0),
                   ("chrA", 900): (0, 0, 1), ("chrB", 0): (1, 0, 0)}
    view, columns = pairs.view("log1p")
    assert columns == pairs.proteins
    assert view[0].tolist() == pytest.approx(np.log1p([2, 1, 1]).tolist())
    presence, columns = pairs.view("presence", drop=["XYZ2"])
    assert columns == ["ABC1", "XYZ2_2"] and presence[0].tolist() == [1.0, 1.0]
    assert pairs.tokens.shape == (5, 100) and pairs.tokens.dtype == np.uint8


def test_bins_with_many_n_are_dropped(tmp_path):
    write_fasta(tmp_path / "g.fa", {"chrA": "A" * 100 + "N" * 60 + "A" * 40, "chrB": "C" * 200,
                                    "chrC": "G" * 200})
    (tmp_path / "peaks").mkdir()
    write_bed(tmp_path / "peaks" / "P_CX.bed", [("chrA", 10, 11), ("chrA", 110, 111),
                                                ("chrB", 10, 11), ("chrC", 10, 11)])
    pairs = build_pairs(tmp_path / "g.fa", tmp_path / "peaks",
                        {"valid": ["chrB"], "test": ["chrC"]}, None, bin_bp=100,
                        max_n_fraction=0.5)
    assert list(zip(pairs.bins["chrom"], pairs.bins["start"], strict=True)) == [
        ("chrA", 0), ("chrB", 0), ("chrC", 0)]
    assert pairs.stats["dropped_for_n"] == 1


def test_no_test_chromosome_bin_reaches_training(tmp_path):
    # the test chromosome first: a trainer that confused rows with bins would read it
    fasta, peaks, aliases = planted_project(tmp_path, {"chrT": 30, "chr1": 60, "chrV": 30})
    pairs = build_pairs(fasta, peaks, SPLITS, aliases, bin_bp=BIN)
    split_of = {"chr1": "train", "chrV": "valid", "chrT": "test"}
    assert (pairs.bins["chrom"].map(split_of) == pairs.bins["split"]).all()
    assert set(pairs.bins.loc[pairs.rows("train"), "chrom"]) == {"chr1"}
    # training never reads a test bin: scrambling every test bin leaves the run unchanged
    params = merge_params({**TINY, "training": {**TINY["training"], "epochs": 2}})
    view = pairs.view()[0]
    histories = []
    for scramble in (False, True):
        tokens, v = pairs.tokens.copy(), view.copy()
        if scramble:
            test = pairs.rows("test")
            tokens[test] = np.random.default_rng(1).integers(5, 9, tokens[test].shape)
            v[test] = 7.0
        torch.manual_seed(0)
        model = PairedEncoders(build_encoder(params["encoder"]), v.shape[1], proj_dim=32,
                               hidden=64, layers=1, dropout=0.0)
        fitted = train_contrastive(model, tokens, v, pairs.rows("train"), pairs.rows("valid"),
                                   params, seed=0)
        histories.append(fitted.history.drop(columns="seconds"))
    pd.testing.assert_frame_equal(*histories)


def test_no_peak_files_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no peak files") as err:
        peak_files(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(err.value)


def test_peaks_on_no_genome_chromosome_name_the_file_and_the_fix(tmp_path):
    write_fasta(tmp_path / "g.fa", {"chrI": "ACGT" * 100, "chrII": "ACGT" * 100,
                                    "chrIII": "ACGT" * 100})
    (tmp_path / "peaks").mkdir()
    write_bed(tmp_path / "peaks" / "Reb1_CX.bed", [("chr1", 10, 11), ("chr2", 20, 21)])
    with pytest.raises(InputError, match="chrom_aliases") as err:
        build_pairs(tmp_path / "g.fa", tmp_path / "peaks", {"valid": ["chrI"],
                                                            "test": ["chrII"]}, None, bin_bp=100)
    assert "Reb1_CX.bed" in str(err.value) and "chr1" in str(err.value)
    # with the aliases it works, and a peak line on an unknown chromosome is only counted
    write_bed(tmp_path / "peaks" / "Reb1_CX.bed", [("chr1", 10, 11), ("chrM", 5, 6)])
    pairs = build_pairs(tmp_path / "g.fa", tmp_path / "peaks", {"valid": ["chrI"],
                        "test": ["chrII"]}, {"chr1": "chrI"}, bin_bp=100)
    assert pairs.stats["unknown_chrom_lines"] == 1


@pytest.mark.parametrize("line, what", [("chrI\t10\n", "2 column"),
                                        ("chrI\tten\t11\n", "not integers"),
                                        ("chrI\t12\t11\n", "bad interval"),
                                        ("chrI\t398\t420\n", "past the end")])
def test_a_malformed_line_names_file_and_line(tmp_path, line, what):
    write_fasta(tmp_path / "g.fa", {"chrI": "ACGT" * 100, "chrII": "ACGT" * 100,
                                    "chrIII": "ACGT" * 100})
    (tmp_path / "peaks").mkdir()
    (tmp_path / "peaks" / "Abf1_CX.bed").write_text("# header\nchrI\t5\t6\n" + line)
    with pytest.raises(InputError, match=what) as err:
        build_pairs(tmp_path / "g.fa", tmp_path / "peaks", {"valid": ["chrI"],
                                                            "test": ["chrII"]}, None, bin_bp=100)
    assert "Abf1_CX.bed line 3" in str(err.value)


# --------------------------------------------------------------------------- retrieval

def test_identical_views_are_ties_and_set_the_ceiling():
    z = np.eye(4, dtype=np.float32)
    view = np.array([[1.0], [1.0], [1.0], [2.0]])          # three bins share one view
    hits = topk_hits(z, z, [1, 2], tie_groups=np.array([0, 0, 0, 1]))
    np.testing.assert_allclose(hits[:, 0], [1 / 3, 1 / 3, 1 / 3, 1.0])
    np.testing.assert_allclose(hits[:, 1], [2 / 3, 2 / 3, 2 / 3, 1.0])
    table = retrieval_table(z, z, view, ks=(1,), pool_size=4).set_index(["pool", "direction"])
    assert table.loc[("all", "sequence_to_chromatin"), "accuracy"] == pytest.approx(0.5)
    assert table.loc[("all", "chromatin_to_sequence"), "accuracy"] == pytest.approx(1.0)
    assert table.loc[("all", "sequence_to_chromatin"), "ceiling"] == pytest.approx(0.5)
    assert table.loc[("pools", "sequence_to_chromatin"), "chance"] == pytest.approx(0.25)


def test_random_embeddings_retrieve_at_chance():
    rng = np.random.default_rng(0)
    z1, z2 = (rng.normal(size=(2048, 16)) for _ in range(2))
    z1, z2 = (z / np.linalg.norm(z, axis=1, keepdims=True) for z in (z1, z2))
    table = retrieval_table(z1, z2, rng.normal(size=(2048, 3)), ks=(5,), pool_size=64)
    pools = table[table["pool"] == "pools"]
    assert (pools["accuracy_lo"] < 5 / 64).all() and (pools["accuracy_hi"] > 5 / 64).all()


# --------------------------------------------------------------------------- planted genome

@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("chromatin")
    fasta, peaks, aliases = planted_project(root, {"chr1": 500, "chr2": 500, "chrV": 150,
                                                   "chrT": 300})
    metrics = run_chromatin_contrastive(fasta, peaks, SPLITS, root / "out",
                                        root / "figure.png", aliases, None, TINY, seed=0)
    torch.set_num_threads(threads)
    return root, metrics


def test_planted_retrieval_far_above_chance_and_above_untrained(planted_run):
    _, metrics = planted_run
    pools = metrics[(metrics["pool"] == "pools") & (metrics["variant"] == "all_proteins")]
    for direction in ("sequence_to_chromatin", "chromatin_to_sequence"):
        rows = pools[pools["direction"] == direction].set_index(["model", "k"])
        trained, untrained = rows.loc[("contrastive", 1)], rows.loc[("untrained", 1)]
        assert trained["chance"] == pytest.approx(1 / 32)
        assert trained["accuracy_lo"] > 4 * trained["chance"], direction
        assert trained["accuracy"] > untrained["accuracy"] + 0.1, direction
        assert rows.loc[("contrastive", 5), "accuracy"] > 0.5


def test_planted_run_writes_outputs_and_probes_see_the_aligned_motif(planted_run):
    root, _ = planted_run
    out = root / "out"
    for name in ("metrics.tsv", "probes.tsv", "probe_gain.tsv", "history.tsv", "proteins.tsv",
                 "record.json", "encoder_all_proteins/model.safetensors",
                 "encoder_probed_held_out/config.json"):
        assert (out / name).exists(), name
    assert (root / "figure.png").exists() and (root / "figure.svg").exists()
    record = json.loads((out / "record.json").read_text())
    assert record["results"]["bins"]["ignored_for_selection"] == ["P1", "P2"]
    probes = pd.read_csv(out / "probes.tsv", sep="\t").set_index(["target", "encoder"])
    assert set(probes.index.get_level_values("encoder")) == {
        "contrastive_all_proteins", "contrastive_probed_held_out", "initial", "random"}
    for target in ("P1", "P2"):
        # aligned to a view that holds the target's own track, the encoder reads its motif
        # better than a random one, and better than when that track was held out
        aligned = probes.loc[(target, "contrastive_all_proteins"), "auroc"]
        assert probes.loc[(target, "contrastive_all_proteins"), "track_in_view"]
        assert aligned > 0.95 and aligned > probes.loc[(target, "random"), "auroc"] + 0.05
        assert aligned > probes.loc[(target, "contrastive_probed_held_out"), "auroc"] + 0.05
    history = pd.read_csv(out / "history.tsv", sep="\t")
    assert set(history["variant"]) == {"all_proteins", "probed_held_out"}


def test_summary_section_shows_retrieval_and_probes(planted_run):
    root, _ = planted_run
    page = chromatin_section(root / "out" / "metrics.tsv")
    assert "pools of 32 bins (chance k/32)" in page
    assert "sequence → chromatin" in page and "chromatin → sequence" in page
    assert "contrastive (probed TFs left out)" in page and "P1" in page
