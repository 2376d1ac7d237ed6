"""Tests for helixflow.selection: the valid-chosen model per target and its baseline check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helixflow.errors import InputError
from helixflow.evaluate import write_predictions
from helixflow.files import write_json
from helixflow.report import selection_section
from helixflow.selection import choose_model, valid_auroc, verdict

N = 600


@pytest.fixture
def models(tmp_path):
    """Five models on the same 600 test windows. Planted: the transfer fine-tune is best on
    valid but only a coin flip on test; the CNN is second on valid and strong on test; the
    k-mer model is the better baseline on test."""
    rng = np.random.default_rng(0)
    y = (rng.random(N) < 0.3).astype(int)
    names = [f"chr1:{i * 1000}-{i * 1000 + 1000}" for i in range(N)]
    strength = {"cnn": 2.0, "kmer_logreg": 1.0, "pwm_jaspar": 0.5,
                "pretrained_finetune": 0.0, "cnn_multitask": 1.5}
    test = {}
    for model, shift in strength.items():
        test[model] = tmp_path / f"{model}.tsv"
        write_predictions(test[model], names, y, rng.normal(size=N) + shift * y)
    write_json(tmp_path / "cnn" / "record.json", {"results": {"valid_auroc": 0.90}})
    write_json(tmp_path / "kmer" / "record.json",
               {"results": {"chosen": {"k": 5, "C": 0.1, "valid_auroc": 0.70}}})
    write_json(tmp_path / "pwm" / "record.json", {"results": {"valid_auroc": 0.60}})
    pd.DataFrame({"encoder": ["pretrained"] * 4, "mode": ["finetune"] * 3 + ["freeze_unfreeze"],
                  "fraction": [1.0, 1.0, 0.1, 1.0], "seed": [1, 0, 0, 0],
                  "valid_auroc": [0.50, 0.95, 0.99, 0.61]}).to_csv(tmp_path / "runs.tsv",
                                                                   sep="\t")
    pd.DataFrame({"target": ["REB1"], "valid_auroc_multitask": [0.80]}).to_csv(
        tmp_path / "auroc.tsv", sep="\t", index=False)
    valid = {"cnn": tmp_path / "cnn" / "record.json",
             "pwm_jaspar": tmp_path / "pwm" / "record.json",
             "kmer_logreg": tmp_path / "kmer" / "record.json",
             "pretrained_finetune": tmp_path / "runs.tsv",
             "cnn_multitask": tmp_path / "auroc.tsv"}
    return valid, test


def test_each_stage_record_gives_its_valid_auroc(models):
    valid, _ = models
    read = {m: valid_auroc(m, path, "REB1") for m, path in valid.items()}
    # transfer: 100% of the labels, the first seed (not the 10% run, not seed 1)
    assert read == {"cnn": 0.90, "pwm_jaspar": 0.60, "kmer_logreg": 0.70,
                    "pretrained_finetune": 0.95, "cnn_multitask": 0.80}
    # a mode whose name has an underscore
    assert valid_auroc("pretrained_freeze_unfreeze", valid["pretrained_finetune"], "REB1") == 0.61


def test_the_best_valid_model_is_chosen_even_when_it_loses_on_test(models):
    valid, test = models
    table = choose_model("REB1", valid, test, n_boot=200)
    assert table.loc[table["chosen"], "model"].tolist() == ["pretrained_finetune"]
    assert (table["baseline"] == "kmer_logreg").all()       # the better baseline on test
    chosen = table[table["chosen"]].iloc[0]
    assert verdict(chosen) == "below"                        # a coin flip loses to k-mers
    cnn = table.set_index("model").loc["cnn"]
    assert verdict(cnn) == "above" and cnn["delta_auroc_lo"] > 0
    kmer = table.set_index("model").loc["kmer_logreg"]
    assert kmer["delta_auroc"] == 0.0
    # choosing on test instead would have picked the CNN: the choice never reads test AUROC
    assert table.loc[table["test_auroc"].idxmax(), "model"] == "cnn"


def test_selection_refuses_models_scored_on_other_windows(models, tmp_path):
    valid, test = models
    other = tmp_path / "other.tsv"
    write_predictions(other, [f"chr2:{i}-{i + 1}" for i in range(N)], np.arange(N) % 2,
                      np.zeros(N))
    with pytest.raises(InputError, match="not on the same windows"):
        choose_model("REB1", valid, {**test, "cnn": other}, n_boot=20)


def test_a_missing_valid_auroc_is_refused(models, tmp_path):
    valid, test = models
    write_json(tmp_path / "empty" / "record.json", {"results": {}})
    with pytest.raises(InputError, match="no valid AUROC recorded for cnn"):
        choose_model("REB1", {**valid, "cnn": tmp_path / "empty" / "record.json"}, test,
                     n_boot=20)


def test_report_names_the_pick_and_flags_a_loss(models):
    valid, test = models
    page = selection_section(choose_model("REB1", valid, test, n_boot=200))
    assert "<b>pretrained_finetune</b>" in page
    assert "cnn 0.900" in page                     # the runner-up on valid
    assert "<span class=no>below</span>" in page
    assert "For 0 of 1 targets" in page
