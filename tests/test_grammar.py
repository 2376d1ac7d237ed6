"""Motif grammar: co-activation at spacing Δ, with a planted known answer."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from helixflow import grammar as gr
from helixflow.errors import InputError
from helixflow.files import read_json, sha256sum
from helixflow.models.cnn import BindingCNN, CNNConfig, save_model
from helixflow.motifs import pwm_logodds

MOTIF_A, MOTIF_B = "TGACCGAT", "GCATTTCC"
SPACING = 12  # start of B − start of A


def one_hot(seq: str) -> np.ndarray:
    """ACGT string → (4, len) float32."""
    return np.eye(4, dtype=np.float32)[["ACGT".index(b) for b in seq]].T.copy()


def ppm_of(seq: str, p: float = 0.85) -> np.ndarray:
    return one_hot(seq) * (p - (1 - p) / 3) + (1 - p) / 3


def planted(n: int, length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n positives with A then B at SPACING (random start), n random negatives."""
    rng = np.random.default_rng(seed)
    X = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (2 * n, length))].transpose(0, 2, 1).copy()
    starts = rng.integers(0, length - SPACING - 10 + 1, n)  # B fits a 10-wide kernel
    for i, s in enumerate(starts):
        X[i, :, s:s + len(MOTIF_A)] = one_hot(MOTIF_A)
        X[i, :, s + SPACING:s + SPACING + len(MOTIF_B)] = one_hot(MOTIF_B)
    return X, np.r_[np.ones(n), np.zeros(n)].astype(np.uint8)


def pwm_conv(kernel: int = 8, extra: int = 0, seed: int = 0) -> torch.nn.Conv1d:
    """Conv1d whose first two filters are the log-odds PWMs of A and B (left-aligned)."""
    conv = torch.nn.Conv1d(4, 2 + extra, kernel)
    torch.manual_seed(seed)
    with torch.no_grad():
        conv.weight.normal_(0, 0.3)
        conv.bias.zero_()
        for f, motif in enumerate((MOTIF_A, MOTIF_B)):
            conv.weight[f] = 0
            conv.weight[f, :, :len(motif)] = torch.from_numpy(
                pwm_logodds(ppm_of(motif)).astype(np.float32))
    return conv


@pytest.fixture(scope="module")
def maps():
    X, y = planted(200, 100, seed=3)
    with torch.no_grad():
        A = torch.relu(pwm_conv()(torch.from_numpy(X))).numpy()
    return A[y == 1], A[y == 0]


def test_known_spacing_peaks_on_positives_and_is_flat_on_negatives(maps):
    A_pos, A_neg = maps
    cut = [0.5 * np.concatenate([A_pos, A_neg])[:, f].max() for f in (0, 1)]
    opts = {"cut_i": cut[0], "cut_j": cut[1], "radius": 2}
    pos = gr.coactivation_profile(A_pos[:, 0], A_pos[:, 1], 30, **opts)
    neg = gr.coactivation(A_neg[:, 0], A_neg[:, 1], 30, **opts)
    delta = pos["spacing"]
    assert delta[np.argmax(pos["score"])] == SPACING
    assert pos["n_pairs"][delta == SPACING][0] == 200
    assert pos["score"][delta == SPACING][0] > 20
    others = pos["score"][np.abs(delta - SPACING) > 0]
    assert others.max() < 3
    assert np.abs(neg - 1).max() < 1.5 and abs(neg[delta == SPACING][0] - 1) < 1
    # the mirrored pair sees B first: the peak moves to -SPACING
    back = gr.coactivation(A_pos[:, 1], A_pos[:, 0], 30, cut_i=cut[1], cut_j=cut[0], radius=2)
    assert delta[np.argmax(back)] == -SPACING


def test_weighted_scores_peak_at_the_same_spacing(maps):
    A_pos, _ = maps
    score = gr.coactivation(A_pos[:, 0], A_pos[:, 1], 30, weighted=True, radius=2)
    assert np.arange(-30, 31)[np.argmax(score)] == SPACING


def test_pair_counts_match_a_brute_force_count():
    rng = np.random.default_rng(7)
    s_i = (rng.random((6, 25)) < 0.15).astype(float)
    s_j = rng.random((6, 25)) * (rng.random((6, 25)) < 0.2)
    observed, expected = gr.pair_counts(s_i, s_j, 10)
    n, P = s_i.shape
    for k, delta in enumerate(range(-10, 11)):
        def count(a: int, b: int, d: int = delta) -> float:
            return sum(s_i[a, p] * s_j[b, p + d] for p in range(P) if 0 <= p + d < P)
        assert observed[k] == pytest.approx(sum(count(a, a) for a in range(n)))
        # j's map from each other window in turn, averaged
        assert expected[k] == pytest.approx(
            sum(count(a, b) for a in range(n) for b in range(n) if b != a) / (n - 1))


def test_active_sites_keep_one_position_per_peak():
    A = np.array([[0, 1, 3, 2, 0, 0, 5, 4.9, 0, 0.2]])
    assert np.flatnonzero(gr.active_sites(A, 1.5)[0]).tolist() == [2, 3, 6, 7]
    assert np.flatnonzero(gr.active_sites(A, 1.5, radius=2)[0]).tolist() == [2, 6]


def test_distinct_windows_merges_overlapping_windows_of_one_locus():
    rng = np.random.default_rng(1)
    genome = np.eye(4, dtype=np.uint8)[rng.integers(0, 4, 1000)].T
    starts = [0, 30, 300, 310, 600, 900 - 100]
    X = np.stack([genome[:, s:s + 100] for s in starts])
    assert gr.distinct_windows(X, 50).tolist() == [0, 2, 4, 5]
    assert gr.distinct_windows(X, 0).tolist() == list(range(len(starts)))


def _matches() -> pd.DataFrame:
    rows = [  # query, target_id, target_name, p, q, strand
        ("f0", "MA1", "OWN", 1e-9, 1e-8, "+"), ("f1", "MA1", "OWN", 1e-7, 1e-6, "-"),
        ("f2", "MA7", "PARALOG", 1e-5, 1e-4, "+"), ("f2", "MA1", "OWN", 1e-4, 1e-3, "+"),
        ("f3", "MA2", "FKH1", 1e-6, 1e-5, "+"), ("f4", "MA2", "FKH1", 1e-4, 1e-3, "-"),
        ("f5", "MA3", "STE12", 1e-3, 1e-2, "-"), ("f6", "MA4", "GAL4", 0.1, 0.2, "+")]
    tomtom = pd.DataFrame(rows, columns=["query", "target_id", "target_name", "p", "q", "strand"])
    return gr.filter_matches(tomtom, "MA1", 0.05)


def test_choose_pairs_anchor_other_strand_and_one_filter_per_partner_motif():
    matches = _matches()
    assert matches.loc["f6", "motif"] == gr.UNMATCHED
    pairs = gr.choose_pairs(matches, 0.05, max_partners=4)
    assert [(p["role"], p["filter_a"], p["filter_b"]) for p in pairs] == [
        ("homotypic", "f0", "f0"), ("own_other_strand", "f0", "f1"),
        ("partner", "f0", "f3"), ("partner", "f0", "f5")]
    assert len(gr.choose_pairs(matches, 0.05, max_partners=1)) == 3


def test_choose_pairs_falls_back_to_the_most_active_filters():
    matches = _matches()
    only_own = matches.loc[["f0", "f1", "f6"]]
    activity = pd.Series({"f0": 5.0, "f1": 4.0, "f6": 3.0, "f9": 9.0})
    pairs = gr.choose_pairs(only_own, 0.05, max_partners=1, activity=activity)
    assert pairs[-1] == {"role": "top_active", "filter_a": "f0", "filter_b": "f9"}


def _write_split(out, split: str, X: np.ndarray, y: np.ndarray) -> dict:
    entry = {}
    for key, array in (("x", X.astype(np.uint8)), ("y", y)):
        path = out / f"{split}.{key}.npy"
        np.save(path, array)
        entry[key] = {"file": path.name, "sha256": sha256sum(path)}
    names = out / f"{split}.names.txt"
    names.write_text("".join(f"w{i}\n" for i in range(len(y))))
    entry["names"] = {"file": names.name, "sha256": sha256sum(names)}
    return entry


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Shards of planted windows, a BindingCNN whose filters 0/1 are A/B, a motif dir."""
    tmp_path = tmp_path_factory.mktemp("grammar")
    X, y = planted(150, 100, seed=5)
    shards = tmp_path / "shards"
    shards.mkdir()
    manifest = {"window": 100, "splits": {"test": _write_split(shards, "test", X, y)}}
    (shards / "manifest.json").write_text(json.dumps(manifest))
    model = BindingCNN(CNNConfig(window=100, filters=4, kernel=10, pool=0, dense=0))
    with torch.no_grad():
        model.conv.load_state_dict(pwm_conv(kernel=10, extra=2).state_dict())
    save_model(model, tmp_path / "model")
    motifs = tmp_path / "motifs"
    motifs.mkdir()
    pd.DataFrame({"query": ["filter000", "filter001", "filter002", "filter003"],
                  "target_id": ["MA9.1", "MA8.1", "MA7.1", "MA7.1"],
                  "target_name": ["AAA", "BBB", "CCC", "CCC"], "p": [1e-8, 1e-7, 0.3, 0.4],
                  "q": [1e-6, 1e-5, 0.5, 0.6], "offset": 0, "strand": "+"}).to_csv(
        motifs / "tomtom.tsv", sep="\t", index=False)
    pd.DataFrame({"target": ["T"], "jaspar_id": ["MA9.1"]}).to_csv(
        motifs / "recovery.tsv", sep="\t", index=False)
    return tmp_path


def test_run_grammar_end_to_end_finds_the_planted_spacing(project, tmp_path):
    shards, motifs = project / "shards", project / "motifs"
    summary = gr.run_grammar("T", project / "model", shards / "manifest.json", motifs,
                             tmp_path / "out", tmp_path / "fig" / "T_grammar.png",
                             {"max_spacing": 30})
    pairs = pd.read_csv(tmp_path / "out" / "pairs.tsv", sep="\t")
    partner = pairs[pairs["role"] == "partner"].iloc[0]
    assert (partner["filter_b"], partner["motif_b"]) == ("filter001", "BBB")
    assert partner["best_spacing"] == SPACING and partner["best_core_spacing"] == SPACING
    assert partner["n_pos_pairs"] == 150 and partner["p_bonferroni"] < 1e-10
    spacing = pd.read_csv(tmp_path / "out" / "spacing.tsv", sep="\t")
    assert list(spacing.columns) == gr.SPACING_COLUMNS
    assert len(spacing) == len(pairs) * 61
    assert spacing.loc[spacing["spacing"].abs() < 8, "overlap"].all()
    fields = pd.read_csv(tmp_path / "out" / "receptive_field.tsv", sep="\t")
    assert fields["receptive_field_bp"].tolist() == [10, 100, 100]
    assert summary["receptive_field_bp"] == 100 and summary["max_learnable_spacing_bp"] == 0
    assert (tmp_path / "fig" / "T_grammar.png").stat().st_size > 0
    assert (tmp_path / "fig" / "T_grammar.svg").is_file()
    assert read_json(tmp_path / "out" / "record.json")["step"] == "grammar"


def test_run_grammar_without_the_motif_step_names_the_missing_file(project, tmp_path):
    with pytest.raises(InputError, match="recovery.tsv"):
        gr.run_grammar("T", project / "model", project / "shards" / "manifest.json",
                       tmp_path / "no_motifs", tmp_path / "out", tmp_path / "g.png", {})
