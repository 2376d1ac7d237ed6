"""Multi-task CNN: masked loss, label matrix, heads, and a planted-motif run end to end."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
import torch

from helixflow.errors import InputError
from helixflow.evaluate import read_predictions
from helixflow.genome import index_genome
from helixflow.intervals import labelled_windows, read_peaks, resolve_splits
from helixflow.models.multitask import (
    UNKNOWN,
    MultiTaskCNN,
    MultiTaskConfig,
    load_multitask,
    masked_bce,
    save_multitask,
)
from helixflow.motifs import activation_pfms, pfm_to_ppm
from helixflow.multitask import (
    AUROC_COLUMNS,
    FILTER_COLUMNS,
    MultiTaskTrainConfig,
    check_same_test,
    filter_importance,
    filter_ppms,
    label_matrix,
    merged_centres,
    nearest_distance,
    positive_weights,
    run_multitask,
    shard_chromosome,
    train_multitask,
)
from helixflow.shards import build_shards, load_split
from helixflow.tiles import genome_tiles

REB1 = "TTACCCGG"      # JASPAR MA0363 core
CBF1 = "TCACGTGA"      # E-box, palindromic


# ---------------------------------------------------------------- masked loss

def test_masked_entries_get_zero_gradient_and_do_not_count():
    torch.manual_seed(0)
    logits = torch.randn(6, 3, requires_grad=True)
    labels = torch.tensor([[1, 0, -1], [0, -1, -1], [1, 1, 0], [-1, 0, 1], [0, 0, 0],
                           [-1, -1, -1]])
    loss = masked_bce(logits, labels)
    loss.backward()
    loss = loss.detach()
    known = labels != UNKNOWN
    assert torch.all(logits.grad[~known] == 0)
    assert torch.all(logits.grad[known] != 0)
    # independent formula: mean of -[y log s + (1 - y) log(1 - s)] over the known entries
    s = torch.sigmoid(logits.detach())[known].double()
    y = labels[known].double()
    expected = -(y * torch.log(s) + (1 - y) * torch.log(1 - s)).mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    # what a masked entry holds does not matter
    changed = torch.where(known, logits.detach(), torch.full_like(logits, 1e4))
    assert float(masked_bce(changed, labels)) == pytest.approx(float(loss), rel=1e-6)


def test_positive_weight_scales_positive_terms_only():
    logits = torch.tensor([[0.3, -1.0], [2.0, 0.5], [-0.7, 0.1]])
    labels = torch.tensor([[1, 0], [0, -1], [1, 1]])
    w = torch.tensor([4.0, 0.5])
    s = torch.sigmoid(logits).double()
    terms = torch.where(labels == 1, -w.double() * torch.log(s), -torch.log(1 - s))
    expected = terms[labels != UNKNOWN].mean()
    assert float(masked_bce(logits, labels, w)) == pytest.approx(float(expected), rel=1e-6)
    Y = np.array([[1, 0], [0, 0], [0, -1], [0, 1], [-1, 1]])
    assert np.allclose(positive_weights(Y, "balanced"), [3.0, 1.0])
    assert np.allclose(positive_weights(Y, "sqrt"), np.sqrt([3.0, 1.0]))
    assert positive_weights(Y, "none") is None


def test_all_unknown_loss_is_zero_and_finite():
    logits = torch.randn(3, 2, requires_grad=True)
    loss = masked_bce(logits, torch.full((3, 2), UNKNOWN))
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.all(logits.grad == 0)


# ---------------------------------------------------------------- windows and labels

def test_nearest_distance_matches_brute_force():
    rng = np.random.default_rng(0)
    centres, positions = rng.integers(0, 10_000, 300), rng.integers(0, 10_000, 40)
    brute = np.abs(centres[:, None] - positions[None]).min(axis=1)
    assert np.array_equal(nearest_distance(centres, positions), brute)
    assert np.isinf(nearest_distance(centres, np.array([], dtype=int))).all()


def test_merged_centres_greedy_rule():
    a = pd.DataFrame({"chrom": ["c1", "c1", "c2"], "summit": [100, 200, 50]})
    b = pd.DataFrame({"chrom": ["c1", "c1"], "summit": [110, 125]})
    got = merged_centres({"a": a, "b": b}, merge_bp=20)
    assert list(zip(got["chrom"], got["centre"], strict=True)) == [
        ("c1", 100), ("c1", 125), ("c1", 200), ("c2", 50)]


def test_label_matrix_planted_distances_and_blacklist():
    # windows of 200 bp centred at 1000, 5000 and 9000; radius 50, flank 50 → 0 beyond 150
    windows = pd.DataFrame({"chrom": ["c"] * 3, "start": [900, 4900, 8900],
                            "end": [1100, 5100, 9100]})
    summits = {
        "at_40": pd.DataFrame({"chrom": ["c"], "summit": [1040]}),        # 1, 0, 0
        "at_60": pd.DataFrame({"chrom": ["c"], "summit": [5060]}),        # 0, ?, 0
        "edge": pd.DataFrame({"chrom": ["c", "c"], "summit": [1150, 9151]}),  # ?, 0, 0
        "none": pd.DataFrame({"chrom": ["other"], "summit": [1000]}),     # 0, 0, 0
    }
    labels = label_matrix(windows, summits, positive_radius=50, negative_flank=50)
    expected = np.array([[1, 0, -1, 0], [0, -1, 0, 0], [0, 0, 0, 0]], dtype=np.int8)
    assert np.array_equal(labels, expected)
    # a blacklisted region within the flank of window 3 (9100 + 50): its 0s become unknown
    black = pd.DataFrame({"chrom": ["c", "c"], "start": [9140, 900], "end": [9145, 901]})
    labels = label_matrix(windows, summits, 50, 50, black)
    assert np.array_equal(labels[2], [UNKNOWN] * 4)
    assert labels[0, 0] == 1 and np.array_equal(labels[0, 1:], [UNKNOWN] * 3)
    assert np.array_equal(labels[1], expected[1])


# ---------------------------------------------------------------- model

def test_heads_are_independent_and_importance_is_head_weight_times_sd():
    torch.manual_seed(0)
    model = MultiTaskCNN(MultiTaskConfig(targets=["a", "b", "c"], window=50, filters=6,
                                         kernel=7, dense=0)).eval()
    X = torch.from_numpy(np.eye(4, dtype=np.float32)[np.random.default_rng(0).integers(
        0, 4, (20, 50))].transpose(0, 2, 1).copy())
    out = model(X)
    assert out.shape == (20, 3)
    out[:, 1].sum().backward()
    grad = model.heads.weight.grad
    assert torch.all(grad[[0, 2]] == 0) and torch.any(grad[1] != 0)
    importance = filter_importance(model, X.numpy().astype(np.uint8))
    sd = model.pooled(X).detach().numpy().std(axis=0)
    expected = model.heads.weight.detach().numpy().T * sd[:, None]
    assert np.allclose(importance, expected, atol=1e-6)


def test_chunked_filter_ppms_equal_one_pass_over_all_windows():
    torch.manual_seed(2)
    model = MultiTaskCNN(MultiTaskConfig(targets=["a"], window=30, filters=5, kernel=6)).eval()
    X = np.eye(4, dtype=np.uint8)[np.random.default_rng(2).integers(0, 4, (23, 30))]
    X = X.transpose(0, 2, 1).copy()
    ppms, nsites = filter_ppms(model, X, threshold=0.6, chunk=4)
    with torch.no_grad():
        acts = model.activations(torch.from_numpy(X.astype(np.float32))).numpy()
    pfms, expected_sites = activation_pfms(acts, X, 6, threshold=0.6)
    assert np.array_equal(nsites, expected_sites) and nsites.sum() > 0
    assert np.allclose(ppms, pfm_to_ppm(pfms))


def test_save_load_round_trip(tmp_path):
    model = MultiTaskCNN(MultiTaskConfig(targets=["a", "b"], window=40, filters=4, kernel=5,
                                         dense=8)).eval()
    save_multitask(model, tmp_path)
    again = load_multitask(tmp_path)
    X = torch.rand(3, 4, 40)
    assert again.config.targets == ["a", "b"]
    assert torch.equal(model(X), again(X))


def test_same_seed_same_training(restore_torch_state):
    rng = np.random.default_rng(1)
    X = np.eye(4, dtype=np.uint8)[rng.integers(0, 4, (120, 40))].transpose(0, 2, 1).copy()
    Y = rng.integers(-1, 2, (120, 2)).astype(np.int8)
    Y[:4] = [[1, 1], [0, 0], [1, 0], [0, 1]]
    cfg = MultiTaskTrainConfig(epochs=2, batch_size=32, patience=0, monitor=50, seed=3,
                               model=MultiTaskConfig(targets=["a", "b"], window=40, filters=4,
                                                     kernel=5))
    runs = [train_multitask(X[:80], Y[:80], X[80:], Y[80:], cfg) for _ in range(2)]
    assert runs[0][1].drop(columns="seconds").equals(runs[1][1].drop(columns="seconds"))
    assert all(torch.equal(a, b) for a, b in zip(runs[0][0].state_dict().values(),
                                                 runs[1][0].state_dict().values(), strict=True))


def test_shard_names_and_same_test_check():
    sizes = {"chrI": 10, "chrIV": 10, "chrVII": 10}
    aliases = {"chr4": "chrIV", "chr1": "chrI"}
    assert shard_chromosome("bg:chrIV:10200", sizes, aliases) == "chrIV"
    assert shard_chromosome("chr4_38359_38360", sizes, aliases) == "chrIV"
    assert shard_chromosome("peak17", sizes, aliases) is None
    split_of = {"chrI": "train", "chrIV": "test", "chrVII": "valid"}
    assert check_same_test(["bg:chrIV:1", "chr4_1_2", "peak3"], split_of, sizes, aliases,
                           "m.json") == 2
    with pytest.raises(InputError, match="chrVII.*valid"):
        check_same_test(["bg:chrVII:5"], split_of, sizes, aliases, "m.json")


# ---------------------------------------------------------------- end to end

def _rc(s: str) -> str:
    return s[::-1].translate(str.maketrans("ACGT", "TGCA"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Six random chromosomes; 'Reb1' summits carry REB1, 'Cbf1' summits an E-box, 'Gf' none."""
    root = tmp_path_factory.mktemp("mt")
    rng = np.random.default_rng(5)
    length, records, peaks = 36_000, [], {"Reb1": [], "Cbf1": [], "Gf": []}
    for c in range(1, 7):
        seq = rng.choice(list("ACGT"), size=length, p=[0.3, 0.2, 0.2, 0.3])
        slots = rng.permutation(np.arange(2, length // 400 - 2))[:84] * 400
        for k, slot in enumerate(slots):
            target = ["Reb1", "Cbf1", "Gf"][k % 3]
            summit = int(slot + rng.integers(-40, 40))
            if target != "Gf":
                motif = REB1 if target == "Reb1" else CBF1
                motif = motif if rng.random() < 0.5 else _rc(motif)
                at = summit + int(rng.integers(-12, 4))
                seq[at:at + len(motif)] = list(motif)
            peaks[target].append((str(c), summit))
        text = "".join(seq)
        records.append(f">chr{c}\n" + "\n".join(text[i:i + 60] for i in range(0, length, 60)))
    with gzip.open(root / "genome.fa.gz", "wt") as handle:
        handle.write("\n".join(records) + "\n")
    fasta = root / "genome.fa"
    sizes = index_genome(root / "genome.fa.gz", fasta, root / "sizes.tsv")
    aliases = {str(c): f"chr{c}" for c in range(1, 7)}
    paths = {}
    for target, rows in peaks.items():
        paths[target] = root / f"{target}.bed"
        paths[target].write_text("".join(f"{c}\t{s}\t{s + 1}\t{c}_{s}_{s + 1}\n"
                                         for c, s in rows))
    black = root / "black.bed"
    black.write_text("1\t0\t700\n")
    splits = {"valid": ["chr5"], "test": ["chr6"], "train": []}
    # the single-task shards of Reb1, as the spine builds them
    split_of = resolve_splits(sizes, splits["valid"], splits["test"])
    table, _ = labelled_windows(read_peaks(paths["Reb1"], sizes, aliases),
                                pd.DataFrame(columns=["chrom", "start", "end"]), fasta, sizes,
                                split_of, 200, 1.0, 0.0, 10, 0.01, seed=0,
                                tiles=genome_tiles(fasta, 200))
    table.to_csv(root / "windows.bed", sep="\t", header=False, index=False)
    build_shards(root / "windows.bed", fasta, root / "shards", seed=0)
    metrics = root / "summary.tsv"
    metrics.write_text("target\tmodel\tsplit\tn_pos\tn_neg\tauroc\tauroc_lo\tauroc_hi\tauprc\t"
                       "auprc_lo\tauprc_hi\nReb1\tcnn\ttest\t16\t16\t0.9\t0.8\t0.97\t0.9\t0.8\t"
                       "0.97\n")
    params = {"splits": splits, "seed": 1, "n_boot": 200,
              "model": {"filters": 12, "kernel": 11, "dense": 0, "dropout": 0.1},
              "training": {"epochs": 60, "batch_size": 32, "lr": 0.01, "patience": 10,
                           "monitor": 200},
              "motifs": {"min_sites": 5}}
    out = root / "out"
    results = run_multitask(fasta, sizes, aliases, black, paths,
                            {"Reb1": root / "shards" / "manifest.json"}, metrics, out,
                            root / "figures", params)
    return {"root": root, "out": out, "results": results, "split_of": split_of}


@pytest.mark.usefixtures("restore_torch_state")
def test_run_finds_planted_motifs_and_compares_on_own_windows(tiny):
    out, results = tiny["out"], tiny["results"]
    auroc = pd.read_csv(out / "auroc.tsv", sep="\t")
    assert list(auroc.columns) == AUROC_COLUMNS and list(auroc["target"]) == ["Reb1"]
    row = auroc.iloc[0]
    assert row["auroc_multitask"] > 0.9
    assert row["auroc_multitask_lo"] <= row["auroc_multitask"] <= row["auroc_multitask_hi"]
    assert row["auroc_single_task"] == 0.9  # copied from the metrics table
    assert row["valid_auroc_multitask"] > 0.9   # the head on the shard's own valid windows
    # predictions are on the single-task shard's own test windows
    test = load_split(tiny["root"] / "shards" / "manifest.json", "test")
    pred = read_predictions(out / "predictions" / "Reb1.tsv")
    assert list(pred["name"]) == test.names and np.array_equal(pred["label"], test.y)
    masked = pd.read_csv(out / "test_masked.tsv", sep="\t").set_index("target")
    assert masked.loc["Reb1", "auroc"] > 0.9 and masked.loc["Cbf1", "auroc"] > 0.9
    filters = pd.read_csv(out / "filters_tomtom.tsv", sep="\t")
    assert list(filters.columns) == FILTER_COLUMNS
    # the filter each motif target's head weighs most is that target's JASPAR motif (Nsi1,
    # Reb1's paralog, has the same TTACCC site in JASPAR, so either name is the planted one)
    importance = pd.read_csv(out / "filter_importance.tsv", sep="\t").set_index("filter")
    tomtom = pd.read_csv(out / "tomtom.tsv", sep="\t")
    for target, motifs in (("Reb1", {"REB1", "NSI1"}), ("Cbf1", {"CBF1"})):
        top = importance[target].idxmax()
        hits = tomtom[(tomtom["query"] == top) & (tomtom["q"] < 0.05)]
        assert motifs & set(hits["target_name"]), (target, top, hits)
    assert results["filters"]["n_filters_matched"] >= 2
    for name in ("multitask_auroc", "multitask_filters", "multitask_learning_curves"):
        assert (tiny["root"] / "figures" / f"{name}.png").is_file()
        assert (tiny["root"] / "figures" / f"{name}.svg").is_file()
    assert (out / "model" / "model.safetensors").is_file() and (out / "record.json").is_file()


def test_run_windows_respect_splits_and_labels(tiny):
    windows = pd.read_csv(tiny["out"] / "windows.tsv", sep="\t")
    assert (windows["chrom"].map(tiny["split_of"]) == windows["split"]).all()
    assert set(windows["split"]) == {"train", "valid", "test"}
    labels = windows[["Reb1", "Cbf1", "Gf"]].to_numpy()
    assert set(np.unique(labels)) <= {-1, 0, 1}
    # background windows are negative (or unknown) for every target; each summit window is
    # positive for some target; nothing overlaps the blacklist (chr1:0-700)
    assert (labels[windows["kind"] == "background"] <= 0).all()
    assert (labels[windows["kind"] == "summit"] == 1).any(axis=1).all()
    assert not ((windows["chrom"] == "chr1") & (windows["start"] < 700)).any()
