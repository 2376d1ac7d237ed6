"""What re-runs when something changes (content, params, library code, the sample sheet),
and figures redrawn from results without retraining. Dry runs read Snakemake's plan."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml
from test_workflow import planned_jobs
from tiny_project import REPO, snakemake

pytestmark = pytest.mark.workflow
DATA_RULES = {"stage_input", "index_genome", "check_peaks", "windows", "check_splits",
              "shards"}
FIGURE_RULES = ["plot_roc_pr", "plot_logos", "plot_sweep", "plot_metrics", "motif_compare"]


@pytest.fixture
def project(tiny_run, tmp_path) -> Path:
    """A copy of the finished tiny project (results and Snakemake's records included)."""
    copy = tmp_path / "project"
    shutil.copytree(tiny_run, copy, symlinks=True)
    return copy


def plan(root: Path, *args: str, **kwargs) -> dict[str, int]:
    result = snakemake(root, *args, "-n", "-q", "rules", **kwargs)
    assert result.returncode == 0, result.stderr[-3000:]
    return planned_jobs(result)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_finished_copy_is_up_to_date(project):
    assert plan(project) == {}


def test_changed_peaks_content_reruns_only_their_dependants(project):
    peaks = project / "mirror/tiny/Reb1_peaks.bed"
    peaks.write_text("".join(peaks.read_text().splitlines(keepends=True)[:-10]))
    sheet = project / "chip.tsv"
    header, row = sheet.read_text().splitlines()
    fields = row.split("\t")
    fields[3] = _sha(peaks)
    sheet.write_text(f"{header}\n" + "\t".join(fields) + "\n")
    jobs = plan(project)
    assert jobs["stage_input"] == 1          # the peaks file only, not genome or blacklist
    assert {"check_peaks", "windows", "shards", "train_cnn", "motifs"} <= set(jobs)
    assert "index_genome" not in jobs


def test_touch_alone_reruns_nothing(project):
    """Snakemake 9 checksums small files: a newer mtime with the same content is no change."""
    peaks = project / "mirror/tiny/Reb1_peaks.bed"
    peaks.write_text(peaks.read_text())
    assert plan(project) == {}


def test_library_code_change_reruns_that_stage(project, tmp_path):
    """Editing the k-mer baseline's module re-runs the k-mer baseline and what reads it."""
    code = tmp_path / "code"
    code.mkdir()
    for part in ("Snakefile", "workflow", "envs"):
        source = REPO / part
        (shutil.copytree if source.is_dir() else shutil.copy)(source, code / part)
    shutil.copytree(REPO / "src", code / "src")
    with open(code / "src/helixflow/kmers.py", "a") as handle:
        handle.write("\n# a change to the k-mer baseline's code\n")
    jobs = plan(project, snakefile=code / "Snakefile",
                extra_env={"PYTHONPATH": str(code / "src")})
    assert "kmer_baseline" in jobs and "evaluate" in jobs
    assert not (DATA_RULES | {"train_cnn", "motifs", "sweep_arm", "pwm_baseline"}) & set(jobs)


def test_adding_a_target_runs_only_that_targets_rules(project):
    mirror = project / "mirror/tiny"
    subset = mirror / "Abf1_peaks.bed"
    subset.write_text("".join((mirror / "Reb1_peaks.bed").read_text().splitlines(
        keepends=True)[::2]))
    with open(project / "chip.tsv", "a") as sheet:
        sheet.write(f"Abf1\ttiny/Abf1_peaks.bed\t\t{_sha(subset)}\tbed\tfungi\tMA0265\n")
    jobs = plan(project)
    for rule in ("stage_input", "check_peaks", "windows", "shards", "train_cnn",
                 "kmer_baseline", "pwm_baseline", "evaluate", "motifs", "plot_roc_pr",
                 "plot_logos"):
        assert jobs.get(rule) == 1, (rule, jobs)     # the new target's job, nobody else's
    assert not {"index_genome", "sweep_arm"} & set(jobs)


def test_figures_redraw_from_results_without_training(project):
    jobs = plan(project, "figures", "--forcerun", *FIGURE_RULES)
    assert set(jobs) == set(FIGURE_RULES) | {"figures"}
    weights = project / "results/models/Reb1/cnn/model.safetensors"
    figure = project / "results/figures/Reb1_roc_pr.png"
    before = (weights.stat().st_mtime_ns, figure.stat().st_mtime_ns)
    result = snakemake(project, "figures", "--forcerun", *FIGURE_RULES)
    assert result.returncode == 0, result.stderr[-3000:]
    assert weights.stat().st_mtime_ns == before[0]
    assert figure.stat().st_mtime_ns > before[1]
    for png in (project / "results/figures").glob("*.png"):
        assert png.with_suffix(".svg").stat().st_size > 1000


def test_config_swap_to_a_new_training_setting(project):
    config = yaml.safe_load((project / "config.yaml").read_text())
    config["cnn"]["architecture"]["dropout"] = 0.3
    (project / "config.yaml").write_text(yaml.safe_dump(config))
    jobs = plan(project)
    assert "train_cnn" in jobs and not DATA_RULES & set(jobs)
