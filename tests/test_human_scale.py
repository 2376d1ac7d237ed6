"""The workflow on the synthetic human genome at 1/64 of hg38 (48 Mb, 24 chromosomes plus
random/unplaced contigs, N gaps, soft-masked repeats) with three targets and every genome
stage on, at small training budgets: a regression at scale shows up here, not on a user's
cluster. Runs a few minutes on 2 cores."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from tiny_project import REPO, snakemake

from helixflow.resources import job_usage
from helixflow.simulate_genome import simulate

pytestmark = pytest.mark.workflow
TARGETS = ["CTCF", "FOXA1", "MAX"]


def scale_config(data_mirror) -> dict:
    """config/examples/hg38_scale at CI budgets (fewer epochs, steps and windows)."""
    config = yaml.safe_load((REPO / "config/examples/hg38_scale/config.yaml").read_text())
    config.update({
        "data_mirror": ["data/hg38_scale", str(data_mirror)],
        "threads": 2,
        "cnn": {**config["cnn"],
                "architecture": {"filters": 32, "kernel": 21, "pool": 0, "dense": 32,
                                 "dropout": 0.2},
                # at 1/64 a target has a few thousand windows: smaller batches, a higher rate
                "training": {**config["cnn"]["training"], "epochs": 25, "patience": 6,
                             "lr": 0.003, "batch_size": 32},
                "grid": [{}]},
        "evaluate": {**config["evaluate"], "n_boot": 100, "kmer_k": [5]},
        "sweep": {"target": "CTCF", "epochs": 3, "arms": [
            {"name": "small", "filters": 8, "dense": 0, "pool": 0, "regularized": True}]},
        "attributions": {"n_windows": 40, "n_shuffles": 4, "ig_steps": 10, "modisco": {}},
        "imbalance": {"target": "CTCF", "params": {
            "ratios": [1, 5], "losses": ["bce", "weighted_bce"], "train_seeds": [1],
            "n_boot": 50, "training": {"epochs": 3, "patience": 2}}},
        "mil": {"params": {"training": {"epochs": 3, "patience": 2}}},
        "multitask": {"extra_targets": [], "params": {
            "n_boot": 50, "training": {"epochs": 3, "patience": 2}}},
        "pretraining": {
            "corpus": {**config["pretraining"]["corpus"], "window_bp": 256, "stride_bp": 256,
                       "heldout_stride_bp": 256},
            "params": {"steps": 60, "batch_size": 16, "checkpoint_every": 30,
                       "log_every": 10, "eval_every": 0, "warmup_steps": 5,
                       "encoder": {"architecture": "dilated_cnn", "d_model": 16,
                                   "n_layers": 2}},
            "diagnostics": {"max_windows": 200},
            "transfer": {"encoders": ["pretrained", "random"], "modes": ["probe"],
                         "fractions": [1.0], "seeds": [0]}},
        "methylation": None,     # not genome-scale: covered by the default's own tests
        "scrna": None,
        "gene_finding": None,
    })
    return config


@pytest.fixture(scope="module")
def scale_run(tmp_path_factory, data_mirror):
    root = tmp_path_factory.mktemp("hg38_64")
    simulate(root / "data" / "hg38_scale", 1 / 64, seed=1, targets=TARGETS)
    (root / "config.yaml").write_text(yaml.safe_dump(scale_config(data_mirror)))
    result = snakemake(root, "--profile", str(REPO / "profiles" / "local"), timeout=2400)
    (root / "run.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stderr[-4000:]
    return root


def test_every_stage_ran_on_the_human_sized_genome(scale_run):
    usage = job_usage(scale_run, (scale_run / "run.log").read_text())
    for rule in ("genome_tiles", "windows", "shards", "train_cnn", "kmer_baseline", "motifs",
                 "attributions", "grammar", "multitask", "imbalance", "mil", "corpus",
                 "pretrain", "transfer"):
        assert rule in set(usage["rule"]), rule
    assert (scale_run / "results/summary.html").is_file()
    sizes = pd.read_csv(scale_run / "results/data/hg38_sim/chrom.sizes", sep="\t",
                        header=None, names=["chrom", "bp"])
    assert len(sizes) > 30 and sizes["bp"].sum() > 45e6     # placed + random/unplaced contigs


def test_no_job_used_more_memory_than_it_asked_for(scale_run):
    usage = job_usage(scale_run, (scale_run / "run.log").read_text())
    assert usage["mem_mb"].notna().all(), usage[usage["mem_mb"].isna()]
    over = usage[usage["max_rss_mb"] > usage["mem_mb"]]
    assert over.empty, over.to_string()


def test_windows_avoid_gaps_and_blacklist_and_splits_hold(scale_run):
    for target in TARGETS:
        record = json.loads((scale_run / f"results/data/hg38_sim/windows/{target}.record.json")
                            .read_text())
        assert record["results"]["counts"]["test"]["peak"] > 50, target
        ok = json.loads((scale_run / f"results/data/hg38_sim/windows/{target}.splits_ok.json")
                        .read_text())
        assert ok["ok"] and "chr1" in ok["chromosomes"]["test"]


def test_planted_motifs_are_found(scale_run):
    """The planted sites carry the signal (each target's own PWM separates its test windows);
    CTCF — the long motif with the most peaks — is learned by the CNN and recovered by a
    filter. (At 1/64 the short FOXA1 and MAX motifs have a few hundred training peaks: too
    few for a 1-kb CNN at this budget; measured and reported in the README.)"""
    metrics = pd.read_csv(scale_run / "results/metrics/summary.tsv", sep="\t")
    auroc = metrics.pivot_table(index="target", columns="model", values="auroc")
    assert (auroc["pwm_jaspar"] > 0.7).all(), auroc
    assert auroc.loc["CTCF", "cnn"] > 0.8, auroc
    motifs = pd.read_csv(scale_run / "results/motifs/summary.tsv", sep="\t").set_index("target")
    assert motifs.loc["CTCF", "recovered"], motifs.loc["CTCF"]
