"""A target given as a table of labelled sequences (no coordinates) through the workflow: the
tiny project's genome stays for the genome stages, the table's target gets the CNN, the
baselines, the valid-chosen model and the motif report."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
from test_workflow import planned_jobs
from tiny_project import MOTIF, make_project, snakemake

pytestmark = pytest.mark.workflow
SHEET = "target\tpeaks\tsequences\tpeak_format\ttax_group\tjaspar_id\n"
OFF = {"sweep": None, "attributions": None, "grammar": None, "multitask": None,
       "imbalance": None, "mil": None}


def write_table(path, n: int = 2000, length: int = 100, seed: int = 11) -> None:
    """Half the sequences carry the planted REB1 site (either strand) and are labelled 1."""
    rng = np.random.default_rng(seed)
    reverse = MOTIF[::-1].translate(str.maketrans("ACGT", "TGCA"))
    lines = ["sequence\tlabel"]
    for i in range(n):
        seq = list(rng.choice(list("ACGT"), size=length, p=[0.3, 0.2, 0.2, 0.3]))
        label = i % 2
        if label:
            at = int(rng.integers(0, length - len(MOTIF)))
            seq[at:at + len(MOTIF)] = list(MOTIF if rng.random() < 0.5 else reverse)
        lines.append(f"{''.join(seq)}\t{label}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(lines) + "\n")


def test_a_mixed_sheet_plans_genome_stages_for_peak_targets_only(tmp_path):
    make_project(tmp_path, sweep=None)
    write_table(tmp_path / "mirror" / "tables" / "reb1.tsv.gz")
    header, reb1 = (tmp_path / "chip.tsv").read_text().splitlines()
    (tmp_path / "chip.tsv").write_text(f"{header}\tsequences\n{reb1}\t\n"
                                       "Reb1tab\t\t\t\tauto\tfungi\tMA0363\ttables/reb1.tsv.gz\n")
    result = snakemake(tmp_path, "-n", "-q", "rules")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result)
    assert jobs["sequence_shards"] == 1 and jobs["windows"] == 1 and jobs["check_peaks"] == 1
    assert jobs["train_cnn"] == 2 and jobs["motifs"] == 2 and jobs["choose_model"] == 2
    assert jobs["multitask"] == 1 and jobs["mil"] == 1      # the peaks target's only


def test_sequence_table_target_end_to_end_names_its_motif(tmp_path):
    make_project(tmp_path, **OFF)
    write_table(tmp_path / "mirror" / "tables" / "reb1.tsv.gz")
    (tmp_path / "chip.tsv").write_text(SHEET + "Reb1tab\t\ttables/reb1.tsv.gz\t\tfungi\tMA0363\n")
    result = snakemake(tmp_path, "--show-failed-logs", timeout=1200)
    assert result.returncode == 0, result.stderr[-5000:]
    assert not (tmp_path / "results/data/tiny/windows").exists()     # no coordinates needed
    metrics = pd.read_csv(tmp_path / "results/metrics/summary.tsv", sep="\t")
    auroc = metrics.set_index("model")["auroc"]
    assert auroc["cnn"] > 0.9 and auroc["pwm_jaspar"] > 0.8, auroc
    motifs = pd.read_csv(tmp_path / "results/motifs/summary.tsv", sep="\t").set_index("target")
    assert motifs.loc["Reb1tab", "recovered"], motifs
    selection = pd.read_csv(tmp_path / "results/metrics/selection.tsv", sep="\t")
    assert selection["chosen"].sum() == 1
    page = (tmp_path / "results/summary.html").read_text()
    assert "sequences Reb1tab" in page and "2000 sequences" in page
