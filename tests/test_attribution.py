"""Tests for helixflow.attribution and helixflow.attribution_report on a planted-motif toy."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from helixflow import attribution as A
from helixflow.encode import one_hot_batch
from helixflow.models.cnn import BindingCNN, CNNConfig, save_model
from helixflow.train import TrainConfig, train_cnn

pytestmark = pytest.mark.usefixtures("restore_torch_state")

MOTIF = "TTACCCGG"
LENGTH = 100


def planted(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random sequences; odd-indexed ones carry MOTIF (either strand); returns X, y, site start
    (-1 for negatives)."""
    rng = np.random.default_rng(seed)
    rc_motif = MOTIF[::-1].translate(str.maketrans("ACGT", "TGCA"))
    seqs, y, at = [], np.arange(n) % 2, np.full(n, -1)
    for i, label in enumerate(y):
        seq = list(rng.choice(list("ACGT"), LENGTH))
        if label:
            at[i] = int(rng.integers(0, LENGTH - len(MOTIF) + 1))
            seq[at[i]:at[i] + len(MOTIF)] = MOTIF if rng.random() < 0.5 else rc_motif
        seqs.append("".join(seq))
    return one_hot_batch(seqs), y.astype(np.uint8), at


@pytest.fixture(scope="module")
def trained():
    deterministic, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    X_train, y_train, _ = planted(600, seed=1)
    X_valid, y_valid, _ = planted(200, seed=2)
    model_cfg = CNNConfig(window=LENGTH, filters=8, kernel=9, pool=0, dense=8, dropout=0.0)
    cfg = TrainConfig(epochs=8, batch_size=32, lr=0.01, weight_decay=0.0, patience=0, seed=0,
                      threads=1, model=model_cfg)
    model = train_cnn(X_train, y_train, X_valid, y_valid, cfg)[0]
    torch.use_deterministic_algorithms(deterministic)
    torch.set_num_threads(threads)
    return model.eval()


@pytest.fixture(scope="module")
def test_set():
    X, y, at = planted(60, seed=3)
    keep = y == 1
    return X[keep], at[keep]


def hit_rate(scores: np.ndarray, at: np.ndarray, slack: int = 1) -> float:
    top = A.position_scores(scores).argmax(1)
    return float(np.mean((top >= at - slack) & (top < at + len(MOTIF) + slack)))


def test_shapes_and_dtypes(trained, test_set):
    X = test_set[0][:5]
    refs = A.dinucleotide_references(X, 3, seed=0)
    assert refs.shape == (5, 3, 4, LENGTH)
    assert (refs.sum(2) == 1).all()
    assert np.array_equal(refs.sum(3), np.repeat(X.sum(2)[:, None], 3, 1))  # base composition
    for out in (A.saliency(trained, X), A.ism(trained, X),
                A.deeplift_shap(trained, X, n_shuffles=3),
                A.deeplift_shap(trained, X, n_shuffles=3, hypothetical=True),
                A.integrated_gradients(trained, X, n_steps=8, n_shuffles=2),
                A.integrated_gradients(trained, X, n_steps=8, baseline="zeros")):
        assert out.shape == (5, 4, LENGTH) and out.dtype == np.float32
        assert np.isfinite(out).all()
    assert trained.training is False
    with pytest.raises(ValueError):
        A.saliency(trained, X[:, :3])


def test_ism_is_mutant_minus_reference(trained, test_set):
    X = test_set[0][:2].astype(np.float32)
    scores = A.ism(trained, X, batch_size=37)
    assert np.all(scores[X == 1] == 0)
    mutant = X[1:2].copy()
    mutant[0, :, 17] = 0
    base = int((X[1, :, 17].argmax() + 2) % 4)
    mutant[0, base, 17] = 1
    expected = A.logits(trained, mutant)[0] - A.logits(trained, X[1:2])[0]
    assert scores[1, base, 17] == pytest.approx(expected, abs=1e-5)
    contrib = A.ism_contributions(scores, X)
    assert np.allclose(contrib.sum(1), -scores.sum(1) / 3, atol=1e-6)


def test_saliency_matches_hand_gradient_on_linear_toy():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4 * 12, 1),
                                torch.nn.Flatten(0))
    X = planted(4, seed=5)[0][:, :, :12].astype(np.float32)
    weight = model[1].weight.detach().numpy().reshape(4, 12)
    assert np.allclose(A.gradients(model, X), np.broadcast_to(weight, X.shape), atol=1e-6)
    assert np.allclose(A.saliency(model, X), X * weight, atol=1e-6)
    # a linear model: DeepLIFT == IG == gradient × (x − ref), exactly
    refs = A.dinucleotide_references(X, 4, seed=1)
    expected = (weight * (X[:, None] - refs)).mean(1)
    assert np.allclose(A.integrated_gradients(model, X, n_steps=4, references=refs), expected,
                       atol=1e-5)
    assert np.allclose(A.deeplift_shap(model, X, references=refs), X * (
        weight - (weight * refs).sum(2, keepdims=True)).mean(1), atol=1e-5)


def test_ism_and_deeplift_find_the_planted_site(trained, test_set):
    X, at = test_set
    assert hit_rate(A.ism_contributions(A.ism(trained, X), X), at) >= 0.8
    assert hit_rate(A.deeplift_shap(trained, X, n_shuffles=5), at) >= 0.8


@pytest.mark.parametrize("dense", [0, 8])
def test_summation_to_delta(trained, test_set, dense):
    X = test_set[0][:12]
    model = trained
    if dense == 0:  # the real models' architecture: no dense layer, global max-pool
        torch.manual_seed(1)
        model = BindingCNN(CNNConfig(window=LENGTH, filters=6, kernel=7, pool=0, dense=0)).eval()
    refs = A.dinucleotide_references(X, 6, seed=2)
    dls = A.deeplift_shap(model, X, references=refs)
    assert np.abs(A.convergence_delta(model, X, dls, refs)).max() < 1e-4
    assert A.relative_delta(model, X, dls, refs) < 1e-4
    ig = A.integrated_gradients(model, X, n_steps=64, references=refs)
    assert A.relative_delta(model, X, ig, refs) < 0.05
    zeros = np.zeros_like(X, dtype=np.float32)
    ig0 = A.integrated_gradients(model, X, n_steps=64, baseline="zeros")
    assert A.relative_delta(model, X, ig0, zeros) < 0.05
    # pooled max-pool windows too (pool > 0)
    torch.manual_seed(2)
    pooled = BindingCNN(CNNConfig(window=LENGTH, filters=6, kernel=7, pool=10, dense=5)).eval()
    assert A.relative_delta(pooled, X, A.deeplift_shap(pooled, X, references=refs), refs) < 1e-4


def test_run_attributions_end_to_end(trained, tmp_path):
    from helixflow.attribution_report import run_attributions
    from helixflow.files import sha256sum

    shards = tmp_path / "shards"
    shards.mkdir()
    X, y, _ = planted(240, seed=4)
    names = [f"w{i}" for i in range(len(y))]
    manifest = {"format": "helixflow-onehot-shards/1", "alphabet": "ACGT", "window": LENGTH,
                "splits": {}}
    for split in ("train", "valid", "test"):
        np.save(shards / f"{split}.x.npy", X)
        np.save(shards / f"{split}.y.npy", y)
        (shards / f"{split}.names.txt").write_text("\n".join(names) + "\n")
        files = {"x": f"{split}.x.npy", "y": f"{split}.y.npy", "names": f"{split}.names.txt"}
        manifest["splits"][split] = {"n": len(y), **{
            k: {"file": f, "sha256": sha256sum(shards / f)} for k, f in files.items()}}
    (shards / "manifest.json").write_text(json.dumps(manifest))
    model_dir = tmp_path / "model"
    save_model(trained, model_dir)
    out, figs = tmp_path / "out", tmp_path / "figures"
    params = {"seed": 0, "n_windows": 100, "n_shuffles": 4, "ig_steps": 16,
              "jaspar_id": "MA0363", "tax_group": "fungi", "jaspar_collection": "CORE",
              "q_threshold": 0.05, "modisco": {}}
    result = run_attributions(model_dir, shards / "manifest.json", out, figs, "Toy", params)
    for method in ("saliency", "ism", "deeplift_shap", "integrated_gradients"):
        with np.load(out / f"{method}.npz") as npz:
            assert npz["attributions"].shape == (100, 4, LENGTH)
            assert list(npz["names"][:2]) and set(npz["names"]) <= set(names)
    for name in ("modisco.meme", "modisco_tomtom.tsv", "modisco_summary.tsv", "record.json"):
        assert (out / name).is_file(), name
    for stem in ("Toy_attributions", "Toy_saturation"):
        assert (figs / f"{stem}.png").stat().st_size > 0 and (figs / f"{stem}.svg").is_file()
    assert not [p for p in [*out.iterdir(), *figs.iterdir()] if p.name.startswith(".")]
    summary = pd.read_csv(out / "modisco_summary.tsv", sep="\t")
    assert list(summary["target"]) == ["Toy"] and summary["n_patterns"].iloc[0] >= 0
    record = json.loads((out / "record.json").read_text())
    assert record["results"]["relative_convergence_delta"]["deeplift_shap"] < 1e-4
    assert result["n_windows"] == 100
    # nice-to-have: the planted REB1 site (TTACCCGG) comes back from TF-MoDISco
    assert bool(summary["recovered"].iloc[0]), summary.to_dict("records")


@pytest.mark.parametrize("error", [
    BaseException("Could not construct partition: Cannot accept NaN weights."),
    ValueError("Input contains NaN."),
])
def test_modisco_failure_on_degenerate_seqlets_gives_no_patterns(monkeypatch, capsys, error):
    """A seqlet with all-zero contributions becomes NaN inside TF-MoDISco: leidenalg raises a
    BaseException on its graph (few seqlets), sklearn a ValueError in pattern merging (a
    seqlet aligned into a stretch a global max pool leaves without attribution; seen on the
    1/64 human run). The stage reports no patterns and says why instead of failing the run;
    any other error still fails it."""
    import modiscolite.tfmodisco

    from helixflow.attribution_report import run_modisco

    def fails(**_):
        raise error
    monkeypatch.setattr(modiscolite.tfmodisco, "TFMoDISco", fails)
    X = np.zeros((3, 4, 50), dtype=np.float32)
    assert run_modisco(X, X, {}) == []
    assert "no patterns" in capsys.readouterr().err


def test_modisco_other_errors_still_fail(monkeypatch):
    import modiscolite.tfmodisco

    from helixflow.attribution_report import run_modisco

    def fails(**_):
        raise ValueError("operands could not be broadcast together")
    monkeypatch.setattr(modiscolite.tfmodisco, "TFMoDISco", fails)
    X = np.zeros((3, 4, 50), dtype=np.float32)
    with pytest.raises(ValueError, match="broadcast"):
        run_modisco(X, X, {})


def test_integrated_gradients_batches_by_positions_not_sequences():
    """8,192 sequences of 1 kb at once took 6 GB on the synthetic human genome: the batch
    holds as many positions as 8,192 yeast windows of 200 bp, whatever the window length."""
    from helixflow.attribution import IG_POSITIONS, ig_batch

    assert ig_batch(32_000, 200) == 8192                   # the yeast default, unchanged
    assert ig_batch(32_000, 1000) == 1638 and IG_POSITIONS >= 1638 * 1000
    assert ig_batch(100, 1000) == 100 and ig_batch(5, 10**7) == 1


def test_modisco_empty_null_distribution_gives_no_patterns(monkeypatch, capsys):
    """modiscolite's seqlet extraction indexes an empty null distribution when no window has
    attribution outside its seqlets (MAX, full-size human run): no patterns, with the reason;
    the same IndexError from elsewhere still fails."""
    import modiscolite.tfmodisco

    from helixflow.attribution_report import run_modisco

    def _laplacian_null(**_):
        return np.empty((0,))[-1]

    def elsewhere(**_):
        return np.empty((0,))[-1]

    X = np.zeros((3, 4, 50), dtype=np.float32)
    monkeypatch.setattr(modiscolite.tfmodisco, "TFMoDISco", _laplacian_null)
    assert run_modisco(X, X, {}) == []
    assert "no patterns" in capsys.readouterr().err
    monkeypatch.setattr(modiscolite.tfmodisco, "TFMoDISco", elsewhere)
    with pytest.raises(IndexError):
        run_modisco(X, X, {})
