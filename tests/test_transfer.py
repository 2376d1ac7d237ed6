"""Transfer to TF binding: tokens from shards, label subsets, the probe, every mode end to end
on tiny planted-motif shards with a briefly pretrained encoder, and the figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from helixflow.encode import decode, one_hot_batch
from helixflow.errors import InputError
from helixflow.evaluate import read_predictions
from helixflow.files import sha256sum, write_json
from helixflow.models.encoders import build_encoder, n_parameters, save_encoder
from helixflow.tokenize import MASK, SPECIALS, Tokenizer
from helixflow.transfer import (
    RUN_COLUMNS,
    adapter_bottleneck,
    comparison_table,
    fit_probe,
    label_subset,
    onehot_to_tokens,
    plot_label_efficiency,
    probe_as_head,
    probe_gain,
    resolve_params,
    run_probe,
    run_transfer,
)

pytestmark = pytest.mark.usefixtures("restore_torch_state")

MOTIF = "TTACCCGG"
LENGTH = 60
ENCODER = {"architecture": "dilated_cnn", "d_model": 32, "n_layers": 3, "kernel": 5,
           "rc_invariant": True, "rc_equivariant": True}


def planted(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Random windows; the odd-indexed half carry MOTIF (either strand) somewhere."""
    rng = np.random.default_rng(seed)
    rc_motif = MOTIF[::-1].translate(str.maketrans("ACGT", "TGCA"))
    seqs, y = [], np.arange(n) % 2
    for label in y:
        seq = list(rng.choice(list("ACGT"), LENGTH))
        if label:
            at = int(rng.integers(0, LENGTH - len(MOTIF) + 1))
            seq[at:at + len(MOTIF)] = MOTIF if rng.random() < 0.5 else rc_motif
        seqs.append("".join(seq))
    return seqs, y.astype(np.uint8)


def write_shards(root, sizes=(("train", 320), ("valid", 80), ("test", 80))):
    """A shard directory in helixflow.shards' layout (checksummed manifest)."""
    manifest = {"format": "helixflow-onehot-shards/1", "window": LENGTH, "splits": {}}
    for i, (split, n) in enumerate(sizes):
        seqs, y = planted(n, seed=i + 1)
        entry = {"n": n, "n_pos": int(y.sum()), "n_neg": int(n - y.sum())}
        for key, array in (("x", one_hot_batch(seqs)), ("y", y)):
            path = root / f"{split}.{key}.npy"
            np.save(path, array)
            entry[key] = {"file": path.name, "sha256": sha256sum(path)}
        names = root / f"{split}.names.txt"
        names.write_text("".join(f"{split}_{j}\n" for j in range(n)))
        entry["names"] = {"file": names.name, "sha256": sha256sum(names)}
        manifest["splits"][split] = entry
    write_json(root / "manifest.json", manifest)
    return root / "manifest.json"


def pretrain_tiny(config: dict, out_dir, steps: int = 40, seed: int = 0):
    """A few steps of a plain masked-token loss (15% -> [MASK]) on unlabeled planted windows."""
    torch.manual_seed(seed)
    encoder = build_encoder(config)
    head = torch.nn.Linear(encoder.d_model, encoder.vocab_size)
    optimizer = torch.optim.AdamW([*encoder.parameters(), *head.parameters()], lr=1e-3)
    seqs, _ = planted(256, seed=99)
    tokens = torch.from_numpy(np.stack([Tokenizer().encode(s) for s in seqs]).astype(np.int64))
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for step in range(steps):
        batch = tokens[torch.randint(0, len(tokens), (32,), generator=generator)]
        masked = torch.rand(batch.shape, generator=generator) < 0.15
        logits = head(encoder(batch.masked_fill(masked, MASK)))
        loss = torch.nn.functional.cross_entropy(logits[masked], batch[masked])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        del step
    save_encoder(encoder, out_dir)
    return losses


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("transfer")
    (root / "shards").mkdir()
    manifest = write_shards(root / "shards")
    losses = pretrain_tiny(ENCODER, root / "encoder")
    return root, manifest, losses


# --- pieces -------------------------------------------------------------------------------

@pytest.mark.parametrize(("k", "stride"), [(1, 1), (3, 1), (3, 3), (2, 2)])
def test_tokens_from_one_hot_match_the_tokenizer(k, stride):
    seqs, _ = planted(6, seed=3)
    seqs[2] = seqs[2][:10] + "N" + seqs[2][11:]                        # N becomes [UNK]
    X = one_hot_batch(seqs)
    tok = Tokenizer(k, stride)
    want = np.stack([tok.encode(decode(x)) for x in X]).astype(np.int64)
    got = onehot_to_tokens(X.astype(np.float32), tok, chunk=4)
    assert np.array_equal(got, want)
    assert (got[2] == SPECIALS.index("[UNK]")).any()


def test_label_subsets_are_stratified_nested_and_seeded():
    y = np.array([1] * 40 + [0] * 160)
    small, mid, full = (label_subset(y, f, seed=3) for f in (0.01, 0.1, 1.0))
    assert (y[small] == 1).sum() == 5 and (y[small] == 0).sum() == 5   # min_per_class floor
    assert (y[mid] == 1).sum() == 5 and (y[mid] == 0).sum() == 16     # ceil(10%) of each class
    assert np.array_equal(full, np.arange(200))
    assert set(small) <= set(mid) <= set(full)
    assert np.array_equal(mid, label_subset(y, 0.1, seed=3))
    assert not np.array_equal(mid, label_subset(y, 0.1, seed=4))


def test_probe_recovers_a_planted_linear_signal_and_not_noise():
    rng = np.random.default_rng(0)
    y = {s: rng.integers(0, 2, n) for s, n in (("train", 200), ("valid", 100), ("test", 100))}
    signal = {s: np.c_[v + 0.5 * rng.normal(size=len(v)), rng.normal(size=(len(v), 7))]
              for s, v in y.items()}
    noise = {s: rng.normal(size=(len(v), 8)) for s, v in y.items()}
    settings = {"C": [0.01, 1.0], "max_iter": 1000}
    score, valid_auc, choice = run_probe(signal["train"], y["train"], signal["valid"],
                                         y["valid"], signal["test"], settings)
    assert roc_auc_score(y["test"], score) > 0.9 and valid_auc > 0.9 and choice.startswith("C=")
    score, _, _ = run_probe(noise["train"], y["train"], noise["valid"], y["valid"],
                            noise["test"], settings)
    assert abs(roc_auc_score(y["test"], score) - 0.5) < 0.15


def test_adapter_width_targets_one_percent():
    for config in ({"architecture": "transformer"}, {"architecture": "dilated_cnn"},
                   {"architecture": "dilated_cnn", "rc_equivariant": True}):
        enc = build_encoder(config)
        b = adapter_bottleneck(enc, 0.01)
        from helixflow.models.adapters import add_adapters
        assert abs(add_adapters(enc, b) / n_parameters(enc) - 0.01) < 0.004


def test_bad_params_and_missing_encoder_are_input_errors(project):
    root, manifest, _ = project
    with pytest.raises(InputError, match="unknown transfer parameter"):
        resolve_params({"mode": ["probe"]})
    with pytest.raises(InputError, match="mode"):
        resolve_params({"modes": ["linear"]})
    with pytest.raises(InputError, match="encoder directory"):
        run_transfer("X", manifest, None, root / "none", {"encoders": ["pretrained"]})


# --- end to end ---------------------------------------------------------------------------

FAST = {"fractions": [0.1, 1.0], "seeds": [0], "min_per_class": 4,
        "modes": ["probe", "finetune", "freeze_unfreeze", "adapters"],
        "probe": {"C": [0.01, 1.0]},
        "finetune": {"lr": 2e-3, "epochs": 10, "patience": 4, "min_batches": 8},
        "freeze_unfreeze": {"lr": 1e-3, "epochs": 3, "head_epochs": 20, "min_batches": 4},
        "adapters": {"lr": 3e-3, "epochs": 3, "min_batches": 4},
        "cnn": {"architecture": {"filters": 8, "kernel": 9, "dense": 0},
                "training": {"epochs": 15, "patience": 5, "lr": 0.01}},
        "device": "cpu"}


@pytest.fixture(scope="module")
def transfer_run(project):
    root, manifest, _ = project
    out = root / "out"
    summary = run_transfer("Planted", manifest, root / "encoder", out, FAST)
    return out, summary


def test_tiny_pretraining_lowers_the_masked_token_loss(project):
    losses = project[2]
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.02


def test_runs_table_has_every_run_and_honest_parameter_counts(transfer_run):
    out, summary = transfer_run
    runs = pd.read_csv(out / "runs.tsv", sep="\t")
    assert list(runs.columns) == RUN_COLUMNS
    assert len(runs) == 2 * 4 * 2 + 2                # encoders x modes x fractions, + cnn
    assert set(runs.loc[runs["fraction"] == 0.1, "n_train"]) == {32}  # 10% of 160/160 per class
    total = runs.loc[runs["mode"] == "finetune", "params_total"].iloc[0]
    by_mode = runs.groupby("mode")["params_trained"].first()
    d, depths = 32, ENCODER["n_layers"] + 1
    assert by_mode["probe"] == depths * d + 1          # mean of each block and the output + bias
    finetune = runs[runs["mode"] == "finetune"].iloc[0]         # its head: the probe's features
    unfreeze = runs[runs["mode"] == "freeze_unfreeze"].iloc[0]  # its head: the final features
    assert finetune["params_trained"] == total == unfreeze["params_total"] + (depths - 1) * d
    assert unfreeze["params_trained"] == unfreeze["params_total"]
    adapters = runs[runs["mode"] == "adapters"].iloc[0]
    assert 0.003 < (adapters["params_trained"] - d - 1) / (adapters["params_total"]
                                                        - adapters["params_trained"]) < 0.03
    assert runs[["valid_auroc", "test_auroc", "test_auprc"]].stack().between(0, 1).all()
    assert (runs["wall_s"] > 0).all()
    assert runs.loc[runs["mode"] == "probe", "shared_s"].gt(0).all()
    assert "pretrained_probe" in summary["test_auroc_mean"]
    assert "probe_gain_pretrained_minus_random" in summary


def test_fine_tuning_learns_the_planted_motif(transfer_run):
    runs = pd.read_csv(transfer_run[0] / "runs.tsv", sep="\t")
    full = runs[runs["fraction"] == 1.0].groupby(["encoder", "mode"])["test_auroc"].mean()
    assert full[("random", "finetune")] > 0.8
    assert full[("cnn", "scratch")] > 0.8


def test_fine_tuning_starts_from_the_probe_and_never_ends_below_it_on_valid(transfer_run):
    runs = pd.read_csv(transfer_run[0] / "runs.tsv", sep="\t")
    keys = ["encoder", "fraction", "seed"]
    probe = runs[runs["mode"] == "probe"].set_index(keys)["valid_auroc"]
    finetune = runs[runs["mode"] == "finetune"].set_index(keys)
    assert finetune["choice"].str.startswith("probe_head,C=").all()
    assert (finetune["valid_auroc"] >= probe.loc[finetune.index] - 1e-12).all()


def test_the_probe_folded_into_a_head_gives_the_probe_scores():
    rng = np.random.default_rng(0)
    F = rng.normal(3.0, [0.5, 2.0, 10.0], size=(200, 3)).astype(np.float32)
    y = (F[:, 0] - 0.1 * F[:, 2] + rng.normal(0, 0.3, 200) > 3.5).astype(int)
    scaler, clf, _, _ = fit_probe(F[:150], y[:150], F[150:], y[150:],
                                  {"C": [0.1, 1.0], "max_iter": 1000})
    weight, bias = probe_as_head(scaler, clf)
    head = torch.from_numpy(F) @ weight.T + bias
    assert np.allclose(head.squeeze(-1).numpy(), clf.decision_function(scaler.transform(F)),
                       atol=1e-4)


def test_predictions_are_written_for_every_run(transfer_run):
    out, summary = transfer_run
    files = sorted((out / "predictions").glob("*.tsv"))
    assert len(files) == 18
    table = read_predictions(out / "predictions" / "pretrained_adapters_f1_s0.tsv")
    assert len(table) == 80 and table["label"].sum() == 40
    assert table["name"].iloc[0] == "test_0"
    assert set(summary["headline_predictions"]) == {
        f"{e}_{m}" for e in ("pretrained", "random")
        for m in ("probe", "finetune", "freeze_unfreeze", "adapters")} | {"cnn_scratch"}
    assert (out / "label_efficiency.png").exists() and (out / "label_efficiency.svg").exists()


def test_transfer_is_deterministic(project, tmp_path):
    root, manifest, _ = project
    params = {**FAST, "encoders": ["pretrained"], "modes": ["finetune", "probe"],
              "fractions": [0.1], "seeds": [0]}
    first = run_transfer("Planted", manifest, root / "encoder", tmp_path / "a", params)
    second = run_transfer("Planted", manifest, root / "encoder", tmp_path / "b", params)
    assert first["test_auroc_mean"] == second["test_auroc_mean"]
    a = read_predictions(tmp_path / "a" / "predictions" / "pretrained_finetune_f0.1_s0.tsv")
    b = read_predictions(tmp_path / "b" / "predictions" / "pretrained_finetune_f0.1_s0.tsv")
    assert np.array_equal(a["score"], b["score"])


def test_random_encoder_seeds_are_initialisations(project, tmp_path):
    root, manifest, _ = project
    params = {**FAST, "encoders": ["pretrained", "random"], "modes": ["probe"],
              "fractions": [1.0], "seeds": [0, 1], "probe": {"C": [1.0], "features": "final"}}
    run_transfer("Planted", manifest, root / "encoder", tmp_path, params)
    runs = pd.read_csv(tmp_path / "runs.tsv", sep="\t")
    assert set(runs["params_trained"]) == {33}                    # final features: d + bias

    def scores(encoder: str, seed: int) -> np.ndarray:
        path = tmp_path / "predictions" / f"{encoder}_probe_f1_s{seed}.tsv"
        return read_predictions(path)["score"].to_numpy()
    # at 100% of the labels the seeds of one encoder see the same windows ...
    assert np.array_equal(scores("pretrained", 0), scores("pretrained", 1))
    # ... so a random encoder's seeds differ only by its initialisation
    assert not np.allclose(scores("random", 0), scores("random", 1))

    gain = probe_gain(runs, tmp_path, n_boot=200)
    full = runs.groupby("encoder")["test_auroc"]
    assert gain["n_random"] == 2
    assert gain["gain"] == pytest.approx(full.mean()["pretrained"] - full.mean()["random"])
    assert gain["gain_lo"] <= gain["gain"] <= gain["gain_hi"]
    assert probe_gain(runs[runs["encoder"] == "pretrained"], tmp_path) is None


def test_label_efficiency_figure_with_the_spine_cnn(transfer_run, tmp_path):
    out, _ = transfer_run
    metrics = pd.DataFrame([{"target": "Planted", "model": "cnn", "split": "test", "n_pos": 40,
                             "n_neg": 40, "auroc": 0.9, "auroc_lo": 0.85, "auroc_hi": 0.95,
                             "auprc": 0.9, "auprc_lo": 0.85, "auprc_hi": 0.95}])
    runs = pd.read_csv(out / "runs.tsv", sep="\t")
    other = runs.assign(target="Other")
    png, svg = plot_label_efficiency([out / "runs.tsv"], metrics, tmp_path / "le.png")
    assert png.stat().st_size > 10_000 and svg.exists()
    png, _ = plot_label_efficiency(pd.concat([runs, other]), None, tmp_path / "two.png")
    assert png.exists()


def test_report_section_counts_wins_against_the_mean_and_the_best_random_encoder(tmp_path):
    from helixflow.report import transfer_section
    rows = []
    for target, pretrained, randoms in (("A", 0.80, [0.74, 0.75, 0.76]),
                                        ("B", 0.70, [0.64, 0.67, 0.72])):
        rows.append({"target": target, "encoder": "pretrained", "mode": "probe", "fraction": 1.0,
                     "seed": 0, "test_auroc": pretrained, "valid_auroc": 0.8,
                     "params_trained": 10, "params_total": 100, "wall_s": 0.1})
        rows += [{**rows[-1], "encoder": "random", "seed": seed, "test_auroc": auc}
                 for seed, auc in enumerate(randoms)]
    path = tmp_path / "comparison.tsv"
    table = comparison_table(pd.DataFrame(rows))
    table.to_csv(path, sep="\t", index=False)
    html = transfer_section(path)
    assert "(mean of 3 initialisations) for 2 of 2 targets" in html
    assert "the best of those initialisations for 1." in html
    assert "Gain over" not in html                                # no intervals computed
    first = table["encoder"].eq("pretrained") & table["target"].eq("A")
    table["probe_gain"] = np.where(first, 0.05, np.nan)
    table["probe_gain_lo"] = np.where(first, 0.01, np.nan)
    table["probe_gain_hi"] = np.where(first, 0.09, np.nan)
    table.to_csv(path, sep="\t", index=False)
    html = transfer_section(path)
    assert "<td>+0.050\u00a0[+0.010,\u00a0+0.090]</td>" in html and "<td>–</td>" in html
    assert "excludes 0 for 1 of 1." in html


def test_subsample_caps_train_and_valid_windows_reproducibly():
    from helixflow.shards import Split
    from helixflow.transfer import subsample
    X = np.arange(50 * 4 * 3, dtype=np.uint8).reshape(50, 4, 3)
    split = Split(X=X, y=np.arange(50) % 2, names=[f"w{i}" for i in range(50)])
    part = subsample(split, 20, seed=3)
    assert len(part.y) == len(part.names) == len(part.X) == 20
    rows = [int(n[1:]) for n in part.names]
    assert rows == sorted(rows) and len(set(rows)) == 20           # a subset, in shard order
    np.testing.assert_array_equal(part.X, X[rows])
    assert subsample(split, 20, seed=3).names == part.names
    assert subsample(split, 20, seed=4).names != part.names
    assert subsample(split, 0, seed=3) is split and subsample(split, 80, seed=3) is split
