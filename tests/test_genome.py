"""Tests for helixflow.genome (indexing, sizes, aliases, fetch) and helixflow.stage (staging)."""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pysam
import pytest

from helixflow.errors import InputError
from helixflow.genome import Genome, index_genome, read_aliases, read_fai
from helixflow.stage import stage_input

# ---------------------------------------------------------------- index_genome


def test_index_plain_gzip_and_plain_agree(toy_genome, tmp_path):
    out = {}
    for kind, source in (("gz", toy_genome.gz), ("plain", toy_genome.plain)):
        fasta, sizes = tmp_path / kind / "g.fa", tmp_path / kind / "g.sizes"
        out[kind] = index_genome(source, fasta, sizes)
        assert fasta.read_bytes() == toy_genome.plain.read_bytes()
        assert (tmp_path / kind / "g.fa.fai").is_file()
        assert read_fai(sizes) == out[kind]
        assert sizes.read_text().splitlines()[0] == "chr1\t20000"
    expected = {c: len(s) for c, s in toy_genome.seqs.items()}
    assert out["gz"] == out["plain"] == expected
    assert list(out["gz"]) == list(toy_genome.seqs)  # file order kept
    g_gz, g_plain = Genome(tmp_path / "gz" / "g.fa"), Genome(tmp_path / "plain" / "g.fa")
    for chrom, size in expected.items():
        assert g_gz.fetch(chrom, 0, size) == g_plain.fetch(chrom, 0, size)
    g_gz.close()
    g_plain.close()


def test_index_bgzip_input(toy_genome, tmp_path):
    bgz = tmp_path / "toy.fa.bgz"
    pysam.tabix_compress(str(toy_genome.plain), str(bgz))
    sizes = index_genome(bgz, tmp_path / "g.fa", tmp_path / "g.sizes")
    assert (tmp_path / "g.fa").read_bytes() == toy_genome.plain.read_bytes()
    assert sizes == {c: len(s) for c, s in toy_genome.seqs.items()}


@pytest.mark.parametrize("compress", [False, True])
def test_non_fasta_raises_naming_the_file_and_leaves_nothing(tmp_path, compress):
    bad = tmp_path / ("notes.txt.gz" if compress else "notes.txt")
    text = b"chr1\t100\t200\n"
    bad.write_bytes(gzip.compress(text) if compress else text)
    out = tmp_path / "out"
    with pytest.raises(InputError) as err:
        index_genome(bad, out / "g.fa", out / "g.sizes")
    assert bad.name in str(err.value)
    assert "FASTA" in str(err.value)
    assert err.value.fix
    assert sorted(p.name for p in out.iterdir()) == []


def test_ragged_fasta_raises(tmp_path):
    bad = tmp_path / "ragged.fa"
    bad.write_text(">a\nACGTACGT\nACG\nACGTACGT\n")
    with pytest.raises(InputError, match="ragged.fa.*cannot index") as err:
        index_genome(bad, tmp_path / "out" / "g.fa", tmp_path / "out" / "g.sizes")
    assert "equal length" in str(err.value)
    assert list((tmp_path / "out").iterdir()) == []


# ---------------------------------------------------------------- Genome


def test_fetch_matches_written_sequence(toy_genome):
    genome = Genome(toy_genome.fasta)
    assert genome.sizes == {c: len(s) for c, s in toy_genome.seqs.items()}
    rng = np.random.default_rng(0)
    for chrom, seq in toy_genome.seqs.items():
        size = len(seq)
        intervals = [(0, 1), (0, 200), (size - 200, size), (size - 1, size)]
        for _ in range(20):
            start = int(rng.integers(0, size - 1))
            intervals.append((start, int(rng.integers(start + 1, min(size, start + 700) + 1))))
        for start, end in intervals:
            got = genome.fetch(chrom, start, end)
            assert got == seq[start:end].upper()
            assert len(got) == end - start
    genome.close()


def test_fetch_upper_cases_soft_masked_and_keeps_n(toy_genome):
    genome = Genome(toy_genome.fasta)
    chrom, lo, hi = toy_genome.soft_masked
    assert toy_genome.seqs[chrom][lo:hi].islower()
    assert genome.fetch(chrom, lo, hi) == toy_genome.seqs[chrom][lo:hi].upper()
    chrom, lo, hi = toy_genome.n_run
    assert genome.fetch(chrom, lo - 1, hi + 1)[1:-1] == "N" * (hi - lo)
    genome.close()


# ---------------------------------------------------------------- aliases and sizes


def test_read_aliases(tmp_path):
    path = tmp_path / "aliases.tsv"
    path.write_text("# peaks\tgenome\n1\tchrI\n\nchrM\tchrMito\n")
    assert read_aliases(path) == {"1": "chrI", "chrM": "chrMito"}
    assert read_aliases(None) == {}
    assert read_aliases("") == {}


def test_read_aliases_bad_line_names_line(tmp_path):
    path = tmp_path / "aliases.tsv"
    path.write_text("1\tchrI\n2 chrII\n")
    with pytest.raises(InputError) as err:
        read_aliases(path)
    assert "aliases.tsv line 2" in str(err.value)
    assert "name_in_peaks" in str(err.value)


def test_read_fai_keeps_order(tmp_path):
    path = tmp_path / "g.fa.fai"
    path.write_text("chrB\t10\t4\t60\t61\nchrA\t5\t20\t60\t61\n")
    assert list(read_fai(path).items()) == [("chrB", 10), ("chrA", 5)]


# ---------------------------------------------------------------- stage_input


@pytest.fixture
def mirror(tmp_path):
    root = tmp_path / "mirror"
    (root / "yeast").mkdir(parents=True)
    payload = b">chr1\nACGT\n" * 100
    (root / "yeast" / "g.fa").write_bytes(payload)
    return root, payload, hashlib.sha256(payload).hexdigest()


def _leftovers(directory):
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_stage_from_mirror(mirror, tmp_path):
    root, payload, digest = mirror
    out = tmp_path / "resources" / "yeast" / "g.fa"
    assert stage_input("yeast/g.fa", out, mirror=root, url=None, sha256=None) == digest
    assert out.read_bytes() == payload
    out.unlink()
    assert stage_input("yeast/g.fa", out, mirror=root, url="http://invalid.example/g.fa",
                       sha256=digest) == digest
    assert out.read_bytes() == payload
    assert _leftovers(out.parent) == ["g.fa"]


def test_stage_wrong_sha_leaves_no_output_or_temp(mirror, tmp_path):
    root, _, digest = mirror
    out = tmp_path / "resources" / "g.fa"
    wrong = "0" * 64
    with pytest.raises(InputError) as err:
        stage_input("yeast/g.fa", out, mirror=root, url=None, sha256=wrong)
    message = str(err.value)
    assert wrong in message and digest in message and "sha256" in message
    assert not out.exists()
    assert _leftovers(out.parent) == []


def test_stage_wrong_sha_keeps_previous_output(mirror, tmp_path):
    root, _, _ = mirror
    out = tmp_path / "resources" / "g.fa"
    out.parent.mkdir(parents=True)
    out.write_bytes(b"previous")
    with pytest.raises(InputError):
        stage_input("yeast/g.fa", out, mirror=root, url=None, sha256="f" * 64)
    assert out.read_bytes() == b"previous"
    assert _leftovers(out.parent) == ["g.fa"]


@pytest.mark.parametrize("use_mirror", [True, False])
def test_stage_missing_without_url_raises(mirror, tmp_path, use_mirror):
    root, _, _ = mirror
    out = tmp_path / "resources" / "absent.fa"
    with pytest.raises(InputError, match="not in the mirror and has no url"):
        stage_input("yeast/absent.fa", out, mirror=root if use_mirror else None, url=None,
                    sha256=None)
    assert _leftovers(out.parent) == []


def test_stage_downloads_when_mirror_lacks_file(mirror, tmp_path):
    root, payload, digest = mirror
    source = tmp_path / "elsewhere.fa"
    source.write_bytes(payload)
    out = tmp_path / "resources" / "other.fa"
    assert stage_input("other.fa", out, mirror=root, url=source.as_uri(),
                       sha256=digest) == digest
    assert out.read_bytes() == payload


def test_stage_failed_download_raises_input_error(mirror, tmp_path):
    root, _, _ = mirror
    out = tmp_path / "resources" / "other.fa"
    url = (tmp_path / "no_such_file.fa").as_uri()
    with pytest.raises(InputError, match="downloading .* failed"):
        stage_input("other.fa", out, mirror=root, url=url, sha256=None)
    assert _leftovers(out.parent) == []
