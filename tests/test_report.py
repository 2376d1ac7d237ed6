"""The HTML report as a person sees it: built by Snakemake, opened in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
from matplotlib.image import imread
from tiny_project import snakemake

pytestmark = pytest.mark.workflow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=8000"]


def chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    result = snakemake(tiny_run, "--report", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_report_embeds_every_figure_and_table(report, tiny_run):
    page = report.read_text()
    embedded = set(re.findall(r'"filename": "([^"]+)"', page))
    figures = {p.name for p in (tiny_run / "results/figures").glob("*.png")}
    assert figures == {"Reb1_roc_pr.png", "Reb1_filter_logos.png", "metrics_summary.png",
                       "sweep_learning_curves.png", "sweep_bias_variance.png",
                       "Reb1_attributions.png", "Reb1_saturation.png", "Reb1_motifs_beside.png",
                       "Reb1_grammar.png", "multitask_auroc.png", "multitask_filters.png",
                       "multitask_learning_curves.png", "Reb1_imbalance.png", "Reb1_mil.png"}
    assert figures <= embedded
    assert {"summary.html", "summary.tsv", "paired_summary.tsv", "selection.tsv", "sweep.tsv",
            "imbalance.tsv", "receptive_field.tsv", "pairs_summary.tsv",
            "test_masked.tsv"} <= embedded


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (make test installs "
                    "it with apt-get: scripts/setup.sh --test)")
def test_report_renders_in_chromium(report, tmp_path):
    shot = tmp_path / "report.png"
    result = chromium(tmp_path, "--window-size=1400,1000", f"--screenshot={shot}",
                      report.as_uri())
    assert shot.is_file(), result.stderr[-2000:]
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (1000, 1400)
    # a blank page is one colour; a rendered report has text, a sidebar and the rule graph
    assert pixels.std() > 0.05 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
    dom = chromium(tmp_path, "--dump-dom", report.as_uri()).stdout
    # only what the page rendered: drop the embedded data and code
    dom = re.sub(r"<script.*?</script>", "", dom, flags=re.S)
    for category in ("1. Summary", "2. Held-out evaluation", "3. Overfitting experiment",
                     "4. Motifs", "7. Attributions", "8. Motif grammar", "9. Multi-task",
                     "10. Imbalance", "11. Multiple-instance learning"):
        assert category in dom, f"{category!r} missing from the rendered report"
