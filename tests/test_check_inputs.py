"""`helixflow check-inputs` (rule check_peaks): the splits against the genome's names and
against each target's peaks, before any window is made; errors name the config file(s)."""

from __future__ import annotations

import json
from pathlib import Path

from test_genome import toy_genome  # noqa: F401  (fixture)

from helixflow.cli import main


def check(toy, tmp_path: Path, splits: dict, peaks: Path | None = None,
          source: str = "config (config/config.yaml)") -> int:
    return main(["check-inputs", "--sizes", str(toy.sizes_file), "--peaks",
                 f"Toy:bed:{peaks or toy.peaks}", "--splits", json.dumps(splits),
                 "--config-source", source, "--out", str(tmp_path / "checked.json")])


def test_peaks_per_split_are_counted(toy_genome, tmp_path):  # noqa: F811
    assert check(toy_genome, tmp_path, {"valid": ["chr3"], "test": ["chr4"], "train": []}) == 0
    summary = json.loads((tmp_path / "checked.json").read_text())
    counts = summary["targets"]["Toy"]["peaks_per_split"]
    expected = {s: sum(len(v) for c, v in toy_genome.summits.items() if c in chroms)
                for s, chroms in (("valid", ["chr3"]), ("test", ["chr4"]),
                                  ("train", ["chr1", "chr2"]))}
    assert counts == expected and min(counts.values()) > 0


def test_a_split_chromosome_the_genome_lacks_names_the_config(toy_genome, tmp_path,  # noqa: F811
                                                              capsys):
    source = "config (config/config.yaml + mine.yaml)"
    assert check(toy_genome, tmp_path, {"valid": ["chrIII"], "test": ["chr4"]},
                 source=source) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith(f"helixflow: {source}: ")
    assert "'chrIII', which is not in the genome" in message
    assert not (tmp_path / "checked.json").exists()


def test_a_target_without_peaks_on_a_held_out_split_stops_here(toy_genome, tmp_path,  # noqa: F811
                                                               capsys):
    lines = toy_genome.peaks.read_text().splitlines(keepends=True)
    peaks = tmp_path / "no_chr3.bed"
    peaks.write_text("".join(line for line in lines if not line.startswith("chr3\t")))
    assert check(toy_genome, tmp_path, {"valid": ["chr3"], "test": ["chr4"]}, peaks,
                 source="config (mine.yaml)") == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith(f"helixflow: {peaks}: target Toy has no peaks on the valid "
                              "chromosomes (chr3)")
    assert "'splits: valid' in config (mine.yaml)" in message
    assert not (tmp_path / "checked.json").exists()
