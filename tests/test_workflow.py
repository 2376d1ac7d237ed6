"""Workflow tests: lint, dry-run of the default, the tiny planted-motif project end to end,
partial re-runs, and bad inputs that must stop the run before any training."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from tiny_project import REPO, make_project, snakemake

pytestmark = pytest.mark.workflow


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """{rule: count} from the 'Job stats' table of a dry run (-n -q rules)."""
    jobs = {}
    for line in result.stdout.splitlines() + result.stderr.splitlines():
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if match and match.group(1) != "total":
            jobs[match.group(1)] = int(match.group(2))
    return jobs


def test_lint_is_clean():
    result = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr


@pytest.mark.usefixtures("data_mirror")      # fails, naming the fix, when the mirror is absent
def test_default_config_dry_run_plans_every_stage(tmp_path):
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-q", "rules",
                             "--forceall", "--nolock", "--cores", "2"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    jobs = planned_jobs(result)
    assert jobs["train_cnn"] == 5 and jobs["motifs"] == 5 and jobs["evaluate"] == 5
    assert jobs["sweep_arm"] == 8 and jobs["report_summary"] == 1
    assert jobs["methylation_mae"] == 1 and jobs["scrna"] == 1
    assert jobs["gene_finding"] == 1 and jobs["gene_finding_prokaryote"] == 1
    assert jobs["attributions"] == 5


def test_end_to_end_names_the_planted_motif(tiny_run):
    motifs = pd.read_csv(tiny_run / "results/motifs/summary.tsv", sep="\t")
    row = motifs.iloc[0]
    assert row["target"] == "Reb1" and row["jaspar_name"] == "REB1"
    assert bool(row["recovered"]) and row["q"] < 0.05
    summary_page = (tiny_run / "results/summary.html").read_text()
    assert "Reb1: recovered" in summary_page and "MA0363" in summary_page
    modisco = pd.read_csv(tiny_run / "results/attributions/summary.tsv", sep="\t").iloc[0]
    assert modisco["target"] == "Reb1" and modisco["jaspar_id"].startswith("MA0363")


def test_end_to_end_metrics_and_layout(tiny_run):
    summary = pd.read_csv(tiny_run / "results/metrics/summary.tsv", sep="\t")
    assert list(summary.columns) == ["target", "model", "split", "n_pos", "n_neg", "auroc",
                                     "auroc_lo", "auroc_hi", "auprc", "auprc_lo", "auprc_hi"]
    assert set(summary["model"]) == {"cnn", "pwm_jaspar", "kmer_logreg", "cnn_multitask"}
    assert (summary["split"] == "test").all()
    cnn = summary[summary["model"] == "cnn"].iloc[0]
    assert cnn["auroc"] > 0.9 and cnn["auroc_lo"] <= cnn["auroc"] <= cnn["auroc_hi"]
    # the model chosen on the valid split among all of Reb1's (360 peaks), and its check
    # against the best baseline on the test windows
    selection = pd.read_csv(tiny_run / "results/metrics/selection.tsv", sep="\t")
    assert set(selection["model"]) == set(summary["model"])
    chosen = selection[selection["chosen"]]
    assert list(chosen["target"]) == ["Reb1"]
    assert chosen["valid_auroc"].iloc[0] == selection["valid_auroc"].max()
    assert chosen["delta_auroc_hi"].iloc[0] >= 0, selection
    tomtom = pd.read_csv(tiny_run / "results/motifs/Reb1/tomtom.tsv", sep="\t")
    assert list(tomtom.columns[:7]) == ["query", "target_id", "target_name", "p", "q",
                                        "offset", "strand"]
    model_dir = tiny_run / "results/models/Reb1/cnn"
    for name in ("model.safetensors", "config.json", "history.tsv", "record.json"):
        assert (model_dir / name).stat().st_size > 0
    for stem in ("Reb1_roc_pr", "Reb1_filter_logos", "metrics_summary", "sweep_bias_variance",
                 "sweep_learning_curves"):
        for ext in ("png", "svg"):
            assert (tiny_run / f"results/figures/{stem}.{ext}").stat().st_size > 1000
    leftovers = [p for p in (tiny_run / "results").rglob(".*") if p.is_file()]
    assert leftovers == [], f"temporary files left behind: {leftovers}"


def test_report_is_built(tiny_run):
    result = snakemake(tiny_run, "--report", "results/report.html")
    assert result.returncode == 0, result.stderr[-3000:]
    page = (tiny_run / "results/report.html").read_text()
    assert "Reb1_filter_logos.png" in page and "summary.html" in page


def _dry_run_with(root: Path, change) -> dict[str, int]:
    config = yaml.safe_load((root / "config.yaml").read_text())
    change(config)
    changed = root / "config.changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    shutil.copy(changed, root / "config.dry.yaml")
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(root),
         "--configfile", str(changed), "-n", "-q", "rules", "--cores", "2"],
        capture_output=True, text=True, timeout=120, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return planned_jobs(result)


def test_nothing_reruns_when_nothing_changed(tiny_run):
    assert _dry_run_with(tiny_run, lambda c: None) == {}


def test_training_param_change_reruns_training_not_data(tiny_run):
    jobs = _dry_run_with(tiny_run, lambda c: c["cnn"]["training"].update(lr=0.02))
    assert {"train_cnn", "evaluate", "motifs", "report_summary"} <= set(jobs)
    assert not {"stage_input", "index_genome", "check_peaks", "windows", "check_splits",
                "shards", "kmer_baseline", "pwm_baseline"} & set(jobs)


def test_window_change_rebuilds_windows_and_downstream(tiny_run):
    jobs = _dry_run_with(tiny_run, lambda c: c["windows"].update(negative_ratio=2.0))
    assert {"windows", "shards", "train_cnn", "kmer_baseline", "pwm_baseline"} <= set(jobs)
    assert not {"stage_input", "index_genome", "check_peaks"} & set(jobs)


# ------------------------------------------------------------------ bad inputs


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _replace_peaks(root: Path, text: str) -> Path:
    peaks = root / "mirror/tiny/Reb1_peaks.bed"
    peaks.write_text(text)
    sheet = root / "chip.tsv"
    header, row = sheet.read_text().splitlines()
    fields = row.split("\t")
    fields[3] = _sha(peaks)
    sheet.write_text(header + "\n" + "\t".join(fields) + "\n")
    return peaks


def _assert_stopped_before_training(root: Path, result: subprocess.CompletedProcess,
                                    *expected: str) -> None:
    text = result.stdout + result.stderr
    assert result.returncode != 0
    for piece in expected:
        assert piece in text, f"{piece!r} not in output:\n{text[-3000:]}"
    assert not (root / "results/models").exists()
    results = root / "results"
    assert not list(results.rglob("windows/*.bed"))        # rglob of a missing dir is empty
    assert not [p for p in results.rglob(".*") if p.is_file()]


def test_unknown_config_key_stops_before_anything(tmp_path):
    make_project(tmp_path, cnn={"training": {"epohcs": 3}})
    result = snakemake(tmp_path)
    _assert_stopped_before_training(tmp_path, result, "cnn.training.epohcs",
                                    "did you mean 'epochs'")
    assert not (tmp_path / "results").exists()


def test_wrong_type_names_the_key(tmp_path):
    make_project(tmp_path, windows={"width": "wide"})
    result = snakemake(tmp_path)
    _assert_stopped_before_training(tmp_path, result, "windows.width", "must be integer")
    assert not (tmp_path / "results").exists()


def test_missing_input_names_file_and_fix(tmp_path):
    make_project(tmp_path)
    (tmp_path / "mirror/tiny/blacklist.bed").unlink()
    result = snakemake(tmp_path)
    _assert_stopped_before_training(tmp_path, result, "tiny/blacklist.bed", "data_mirror")


@pytest.mark.parametrize("bad_line, expected", [
    ("chr99\t100\t101\tbad\t0\t.\n", ["line 4", "chromosome 'chr99' is not in the genome",
                                      "chrom_aliases"]),
    ("2\t79990\t90000\tbad\t0\t.\n", ["line 4", "past the end of chr2"]),
])
def test_bad_peak_line_stops_before_training(tmp_path, bad_line, expected):
    make_project(tmp_path)
    good = (tmp_path / "mirror/tiny/Reb1_peaks.bed").read_text().splitlines(keepends=True)
    _replace_peaks(tmp_path, "".join(good[:3]) + bad_line + "".join(good[3:]))
    result = snakemake(tmp_path, "--show-failed-logs")
    _assert_stopped_before_training(tmp_path, result, "Reb1_peaks.bed", *expected)
    assert not (tmp_path / "results/data/tiny/checked/Reb1.json").exists()


def test_empty_peaks_file_stops_before_training(tmp_path):
    make_project(tmp_path)
    _replace_peaks(tmp_path, "# no peaks survived\n")
    result = snakemake(tmp_path, "--show-failed-logs")
    _assert_stopped_before_training(tmp_path, result, "Reb1_peaks.bed", "has no peaks")


def test_peaks_path_with_dotdot_leaves_the_users_file_alone(tmp_path):
    """resources/../my_peaks.bed is mirror/../my_peaks.bed: Snakemake would delete it."""
    make_project(tmp_path)
    user_file = tmp_path / "my_peaks.bed"
    shutil.copy(tmp_path / "mirror/tiny/Reb1_peaks.bed", user_file)
    before = user_file.read_bytes()
    sheet = tmp_path / "chip.tsv"
    sheet.write_text(sheet.read_text().replace("tiny/Reb1_peaks.bed", "../my_peaks.bed"))
    result = snakemake(tmp_path, "--until", "stage_input", timeout=300)
    _assert_stopped_before_training(tmp_path, result, "chip.tsv line 2: column 'peaks'",
                                    "'../my_peaks.bed' has a '..' component",
                                    "without '..'")
    assert user_file.read_bytes() == before
    assert not (tmp_path / "resources").exists()


def test_yaml_syntax_error_is_one_line_with_file_line_and_column(tmp_path):
    make_project(tmp_path)
    (tmp_path / "config").mkdir()
    (tmp_path / "config/config.yaml").write_text("seed: 1\nsplits:\n  valid: [chrI\n")
    result = snakemake(tmp_path, "-n")
    assert result.returncode != 0
    last = (result.stdout + result.stderr).strip().splitlines()[-1]
    assert last.startswith("helixflow: config/config.yaml line 4 column 1: not valid YAML")
    assert not (tmp_path / "results").exists()


def test_config_errors_name_the_files_that_were_merged(tmp_path):
    make_project(tmp_path, splits={"valid": ["chr2"], "test": ["chr2"], "train": []})
    result = snakemake(tmp_path, "-n")
    last = (result.stdout + result.stderr).strip().splitlines()[-1]
    assert result.returncode != 0
    assert last == (f"helixflow: config ({tmp_path / 'config.yaml'}): chromosome 'chr2' is "
                    "in splits.valid and in splits.test; list each chromosome in one split "
                    "only")


def test_sweep_null_turns_the_sweep_off(tmp_path):
    make_project(tmp_path, sweep=None)
    result = snakemake(tmp_path, "-n", "-q", "rules")
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = planned_jobs(result)
    assert jobs["train_cnn"] == 1 and "sweep_arm" not in jobs and "plot_sweep" not in jobs


def test_hg38_encode_example_dry_run(tmp_path):
    """The worked human config plans every stage (placeholder accessions, nothing fetched)."""
    example = REPO / "config/examples/hg38_encode"
    config = yaml.safe_load((example / "config.yaml").read_text())
    config["samples"] = str(example / "chip.tsv")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n", "-q", "rules")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result)
    assert jobs["stage_input"] == 5 and jobs["train_cnn"] == 3 and jobs["motifs"] == 3


def test_target_given_as_alignments_gets_macs3_peaks(tmp_path):
    """A sample-sheet row with ChIP + control BAMs: MACS3 calls peaks that feed the windows."""
    from tiny_project import make_bam_project

    from helixflow.peak_calling import summit_recall
    _, summits = make_bam_project(tmp_path)
    windows = "results/data/tiny/windows/Reb1.bed"
    result = snakemake(tmp_path, windows)
    assert result.returncode == 0, result.stderr[-3000:]
    called = tmp_path / "results/data/tiny/peaks/Reb1.narrowPeak"
    assert summit_recall(called, summits, tolerance=50) >= 0.9
    labelled = pd.read_csv(tmp_path / windows, sep="\t", header=None)
    assert labelled[6].sum() >= 0.8 * len(summits)   # column 7: label
    record = json.loads((tmp_path / "results/data/tiny/peaks/Reb1.record.json").read_text())
    assert record["results"]["peaks"] >= 0.9 * len(summits)


TINY_PRETRAINING = {
    "corpus": {"window_bp": 128, "stride_bp": 64, "heldout_stride_bp": 128},
    "params": {"steps": 120, "batch_size": 16, "checkpoint_every": 20, "log_every": 10,
               "eval_every": 0, "warmup_steps": 5,
               "encoder": {"architecture": "dilated_cnn", "d_model": 16, "n_layers": 2}},
    "diagnostics": {"max_windows": 100},
    "transfer": {"encoders": ["pretrained", "random"], "modes": ["probe"], "fractions": [1.0],
                 "seeds": [0]},
}


def _pretrain_outputs_equal(a: Path, b: Path) -> None:
    from safetensors.torch import load_file
    wa, wb = (load_file(str(p / "results/pretrain/model.safetensors")) for p in (a, b))
    assert wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)
    columns = ["step", "loss", "mlm_loss", "mlm_accuracy", "lr"]
    ma, mb = (pd.read_csv(p / "results/pretrain/metrics.tsv", sep="\t")[columns] for p in (a, b))
    pd.testing.assert_frame_equal(ma, mb, check_exact=True)


def test_killed_pretraining_resumes_to_the_same_result(tmp_path):
    """SIGKILL the workflow while it pretrains, run it again: it resumes from the last
    checkpoint and ends with the weights and metrics of an uninterrupted run."""
    import os
    import signal
    import time

    from tiny_project import make_project
    target = "results/pretrain/summary.json"
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    for root in (straight, killed):
        root.mkdir()
        make_project(root, pretraining=TINY_PRETRAINING)
    result = snakemake(straight, target)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not planned_jobs(snakemake(straight, target, "-n", "-q", "rules"))  # nothing to redo
    config = yaml.safe_load((straight / "config.yaml").read_text())
    config["pretraining"]["corpus"]["k"] = 2                   # another tokenizer
    (straight / "changed.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_jobs(snakemake(straight, target, "-n", "-q", "rules",
                                  configfile=straight / "changed.yaml"))
    assert set(jobs) == {"corpus", "pretrain"}, jobs          # the shards and what follows only

    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(killed),
           "--configfile", str(killed / "config.yaml"), "--cores", "2", target]
    run = subprocess.Popen(cmd, cwd=killed, env=env, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = killed / "results/pretrain/checkpoint.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and time.time() < deadline and run.poll() is None:
        time.sleep(0.2)
    assert checkpoint.exists(), "no checkpoint appeared before the run ended"
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert not (killed / "results/pretrain/model.safetensors").exists()

    assert snakemake(killed, "--unlock").returncode == 0   # what a user does after a kill
    again = snakemake(killed, target, "--rerun-incomplete")
    assert again.returncode == 0, again.stderr[-3000:]
    log = (killed / "results/logs/pretrain.log").read_text()
    resumed_at = int(re.search(r"resuming from \S+ at step (\d+)", log).group(1))
    assert 0 < resumed_at < TINY_PRETRAINING["params"]["steps"]
    _pretrain_outputs_equal(straight, killed)
