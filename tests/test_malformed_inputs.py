"""Malformed and unusual inputs through the whole workflow (the tiny project): each is either
refused before any window or training, with a `helixflow:` message naming the file (and
line) and the fix, or read correctly (CRLF, a misnamed gzip, a byte-order mark, duplicates).
Unit tests of each check are beside its module; these prove the workflow wires them."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml
from tiny_project import make_project, snakemake

pytestmark = pytest.mark.workflow


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _set_config(root: Path, change) -> None:
    path = root / "config.yaml"
    config = yaml.safe_load(path.read_text())
    change(config)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def _rewrite_genome(root: Path, edit) -> None:
    genome = root / "mirror/tiny/genome.fa.gz"
    data = edit(gzip.decompress(genome.read_bytes()))
    genome.write_bytes(gzip.compress(data, mtime=0))
    _set_config(root, lambda c: c["genome"]["fasta"].update(sha256=_sha(genome)))


def _rewrite_peaks(root: Path, data: bytes, name: str = "Reb1_peaks.bed") -> Path:
    peaks = root / "mirror/tiny" / name
    peaks.write_bytes(data)
    sheet = root / "chip.tsv"
    header, row = sheet.read_text().splitlines()
    fields = row.split("\t")
    fields[1], fields[3] = f"tiny/{name}", _sha(peaks)
    sheet.write_text(header + "\n" + "\t".join(fields) + "\n")
    return peaks


def _peaks(root: Path) -> bytes:
    return (root / "mirror/tiny/Reb1_peaks.bed").read_bytes()


def _refused(root: Path, *expected: str) -> str:
    """Run the workflow; it must fail, and its last ``helixflow:`` line (printed after
    Snakemake's error blocks, not only in a job's log) must hold every expected piece."""
    result = snakemake(root, timeout=600)
    text = result.stdout + result.stderr
    assert result.returncode != 0, text[-3000:]
    refusals = [line for line in text.splitlines() if line.startswith("helixflow: ")]
    assert refusals, f"no helixflow: line in the output:\n{text[-3000:]}"
    for piece in expected:
        assert piece in refusals[-1], f"{piece!r} not in the last refusal:\n{text[-3000:]}"
    assert "Traceback" not in text, text[-3000:]
    results = root / "results"
    assert not list(results.rglob("windows/*.bed")) and not (results / "models").exists()
    return text


def _windows(root: Path) -> tuple[list[str], dict]:
    result = snakemake(root, "--until", "windows", timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    data = root / "results/data/tiny/windows"
    lines = (data / "Reb1.bed").read_text().splitlines()
    return lines, json.loads((data / "Reb1.record.json").read_text())


# ---------------------------------------------------------------- refused

def test_a_digit_inside_the_genome(tmp_path):
    make_project(tmp_path)

    def digit_on_line_3(data: bytes) -> bytes:
        lines = data.split(b"\n")
        lines[2] = b"AC7" + lines[2][3:]
        return b"\n".join(lines)

    _rewrite_genome(tmp_path, digit_on_line_3)
    _refused(tmp_path, "genome.fa.gz", "line 3 column 3", "'7'")
    assert not (tmp_path / "results/data/tiny/genome.fa").exists()


def test_an_absolute_peaks_path(tmp_path):
    make_project(tmp_path)
    sheet = tmp_path / "chip.tsv"
    sheet.write_text(sheet.read_text().replace("tiny/Reb1_peaks.bed", "/etc/passwd"))
    _refused(tmp_path, "chip.tsv line 2: column 'peaks'", "'/etc/passwd'", "without '..'")
    assert not (tmp_path / "resources").exists()


def test_a_split_chromosome_the_genome_does_not_have(tmp_path):
    make_project(tmp_path, splits={"valid": ["chrV"], "test": ["chr6"], "train": []})
    _refused(tmp_path, f"{tmp_path / 'config.yaml'}: split 'valid' names "
             "chromosome 'chrV', which is not in the genome; use the genome's chromosome names")


def test_a_target_without_peaks_on_the_valid_chromosomes(tmp_path):
    make_project(tmp_path)
    lines = _peaks(tmp_path).decode().splitlines(keepends=True)
    _rewrite_peaks(tmp_path, "".join(x for x in lines if not x.startswith("5\t")).encode())
    _refused(tmp_path, "Reb1_peaks.bed: target Reb1 has no peaks on the valid chromosomes "
             "(chr5)", "'splits: valid'")


# ---------------------------------------------------------------- read correctly

def test_crlf_genome_gives_the_same_windows(tmp_path):
    plain = tmp_path / "plain"
    crlf = tmp_path / "crlf"
    for root in (plain, crlf):
        root.mkdir()
        make_project(root)
    _rewrite_genome(crlf, lambda data: data.replace(b"\n", b"\r\n"))
    expected, _ = _windows(plain)
    got, _ = _windows(crlf)
    assert got == expected and len(got) > 100


def test_gzipped_peaks_named_bed_and_a_byte_order_mark(tmp_path):
    plain = tmp_path / "plain"
    odd = tmp_path / "odd"
    for root in (plain, odd):
        root.mkdir()
        make_project(root)
    _rewrite_peaks(odd, gzip.compress(b"\xef\xbb\xbf" + _peaks(odd), mtime=0), "peaks.bed")
    expected, _ = _windows(plain)
    got, _ = _windows(odd)
    assert got == expected


def test_duplicate_peak_lines_are_merged_and_counted(tmp_path):
    make_project(tmp_path)
    lines = _peaks(tmp_path).decode().splitlines(keepends=True)
    _rewrite_peaks(tmp_path, "".join(lines + lines[:7]).encode())
    windows, record = _windows(tmp_path)
    names = [line.split("\t")[3] for line in windows]
    assert len(names) == len(set(names))
    assert json.dumps(record).count('"duplicate_peaks_merged": 7') == 1
    shutil.rmtree(tmp_path / "results")
