"""Tests for helixflow.genome (indexing, sizes, aliases, fetch) and helixflow.stage (staging).

Also home of the made-up genome that test_intervals and test_shards import.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pysam
import pytest

import helixflow.genome as genome_module
from helixflow.cli import main
from helixflow.errors import InputError
from helixflow.genome import Genome, index_genome, read_aliases, read_fai
from helixflow.stage import stage_input

CHROM_SIZES = {"chr1": 20_000, "chr2": 16_000, "chr3": 14_000, "chr4": 12_000}
SEGMENT = 500                 # the genome is built from 500-bp segments of one GC level
GC_RICH = 0.75
N_RUN = ("chr2", 6_000, 6_300)  # a run of N
SINGLE_N = ("chr1", 15_250)    # one N, so a 200-bp window over it keeps n_frac = 0.005
SOFT_MASKED = ("chr3", 3_000, 3_500)  # written in lower case
BLACKLIST = ("chr1", 1_000, 2_000)


@dataclass(frozen=True)
class ToyGenome:
    """A small made-up genome (also imported by test_intervals and test_shards)."""

    seqs: dict[str, str]              # exactly as written (mixed case, N)
    plain: Path                       # plain FASTA, 60-bp lines
    gz: Path                          # gzip copy of ``plain``
    fasta: Path                       # indexed uncompressed copy (index_genome)
    sizes_file: Path
    rich: dict[str, list[int]]        # starts of the GC-rich segments, per chromosome
    peaks: Path                       # BED: 41-bp peaks, midpoint = summit
    summits: dict[str, list[int]]
    n_run: tuple = N_RUN
    single_n: tuple = SINGLE_N
    soft_masked: tuple = SOFT_MASKED
    blacklist: tuple = BLACKLIST


def write_fasta(path: Path, seqs: dict[str, str], width: int = 60) -> None:
    lines = []
    for name, seq in seqs.items():
        lines.append(f">{name} made-up")
        lines.extend(seq[i:i + width] for i in range(0, len(seq), width))
    path.write_text("\n".join(lines) + "\n")


def _make_genome(seed: int) -> tuple[dict[str, str], dict[str, list[int]]]:
    rng = np.random.default_rng(seed)
    seqs, rich = {}, {}
    for chrom, size in CHROM_SIZES.items():
        parts, rich[chrom] = [], []
        for start in range(0, size, SEGMENT):
            gc = rng.choice([0.3, 0.5, GC_RICH], p=[0.25, 0.25, 0.5])
            p = [(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2]
            parts.append("".join(rng.choice(list("ACGT"), size=SEGMENT, p=p)))
            if gc == GC_RICH:
                rich[chrom].append(start)
        seq = list("".join(parts)[:size])
        if chrom == N_RUN[0]:
            seq[N_RUN[1]:N_RUN[2]] = "N" * (N_RUN[2] - N_RUN[1])
        if chrom == SINGLE_N[0]:
            seq[SINGLE_N[1]] = "N"
        if chrom == SOFT_MASKED[0]:
            lo, hi = SOFT_MASKED[1:]
            seq[lo:hi] = [b.lower() for b in seq[lo:hi]]
        seqs[chrom] = "".join(seq)
    return seqs, rich


def _hits(chrom: str, start: int, region: tuple) -> bool:
    return chrom == region[0] and start < region[-1] and region[1] < start + SEGMENT


def _place_summits(rich: dict[str, list[int]], seed: int) -> dict[str, list[int]]:
    """A few summits mid GC-rich segments, away from N and blacklist, plus two special ones."""
    rng = np.random.default_rng(seed)
    summits = {}
    for chrom, starts in rich.items():
        ok = [s for s in starts if not any(_hits(chrom, s, r) for r in
                                           (N_RUN, (*SINGLE_N, SINGLE_N[1] + 1), BLACKLIST))]
        picked = sorted(rng.choice(ok, size=CHROM_SIZES[chrom] // 4_000, replace=False))
        summits[chrom] = [int(s) + SEGMENT // 2 + int(rng.integers(-50, 51)) for s in picked]
    summits["chr1"].append(1_500)                          # inside the blacklist
    summits["chr4"].append(CHROM_SIZES["chr4"] - 30)       # window runs off the end
    return summits


def make_toy_genome(root: Path) -> ToyGenome:
    """Write the genome (plain, gzip, indexed) and its peaks under ``root``."""
    seqs, rich = _make_genome(seed=11)
    plain = root / "toy.fa"
    write_fasta(plain, seqs)
    gz = root / "toy.fa.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    fasta, sizes_file = root / "indexed" / "toy.fa", root / "indexed" / "toy.sizes"
    index_genome(gz, fasta, sizes_file)
    summits = _place_summits(rich, seed=5)
    peaks = root / "peaks.bed"
    rows = [f"{c}\t{s - 20}\t{s + 21}\tp_{c}_{s}\t0\t." for c, ss in summits.items() for s in ss]
    peaks.write_text("# made-up peaks\ntrack name=toy\n" + "\n".join(rows) + "\n")
    return ToyGenome(seqs=seqs, plain=plain, gz=gz, fasta=fasta, sizes_file=sizes_file,
                     rich=rich, peaks=peaks, summits=summits)


@pytest.fixture(scope="module")
def toy_genome(tmp_path_factory: pytest.TempPathFactory) -> ToyGenome:
    return make_toy_genome(tmp_path_factory.mktemp("genome"))


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


def _leftover_names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_damaged_gzip_names_file_and_fix_and_leaves_nothing(toy_genome, tmp_path, damage):
    data = toy_genome.gz.read_bytes()
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data = data[:200] + bytes(b ^ 0xFF for b in data[200:400]) + data[400:]
    bad = tmp_path / "genome.fa.gz"
    bad.write_bytes(data)
    out = tmp_path / "out"
    with pytest.raises(InputError, match="genome.fa.gz.*truncated or corrupt gzip") as err:
        index_genome(bad, out / "g.fa", out / "g.sizes")
    assert "download the file again" in str(err.value)
    assert _leftover_names(out) == []


@pytest.mark.parametrize("block", [1 << 22, 5, 1])      # header split across read blocks
def test_duplicated_name_reports_both_lines(tmp_path, monkeypatch, block):
    monkeypatch.setattr(genome_module, "BLOCK", block)
    bad = tmp_path / "dup.fa"
    bad.write_text(">chrI first\nACGT\nAC\n>chrII\nGGGG\n\n>chrI again\nTTTT\n")
    out = tmp_path / "out"
    with pytest.raises(InputError) as err:
        index_genome(bad, out / "g.fa", out / "g.sizes")
    assert err.value.line == 7
    assert "dup.fa line 7: chromosome name 'chrI' appears twice (first at line 1)" in \
        str(err.value)
    assert "rename" in err.value.fix
    assert _leftover_names(out) == []


@pytest.mark.parametrize("text, line, name", [
    (">a\nACGT\n>b\n>c\nAC\n", 3, "b"),               # empty record between two
    (">a\nACGT\n>b\n\n\n>c\nAC\n", 3, "b"),           # only blank lines
    (">a\nACGT\n>last\n", 3, "last"),                   # at the end, newline
    (">a\nACGT\n>last", 3, "last"),                      # at the end, no newline
])
def test_empty_sequence_names_record_and_line(tmp_path, text, line, name):
    bad = tmp_path / "empty.fa.gz"
    bad.write_bytes(gzip.compress(text.encode()))
    out = tmp_path / "out"
    with pytest.raises(InputError, match=f"empty.fa.gz line {line}: record '{name}' has an "
                                         "empty sequence") as err:
        index_genome(bad, out / "g.fa", out / "g.sizes")
    assert "remove the record" in err.value.fix
    assert _leftover_names(out) == []


def test_checks_accept_the_toy_genome_with_tiny_blocks(toy_genome, tmp_path, monkeypatch):
    monkeypatch.setattr(genome_module, "BLOCK", 7)
    sizes = index_genome(toy_genome.gz, tmp_path / "g.fa", tmp_path / "g.sizes")
    assert sizes == {c: len(s) for c, s in toy_genome.seqs.items()}
    assert (tmp_path / "g.fa").read_bytes() == toy_genome.plain.read_bytes()


def _expected_letters(seqs: dict[str, str]) -> dict:
    per = {name: {"N": seq.upper().count("N"),
                  "ambiguous": sum(seq.upper().count(c) for c in "RYSWKMBDHV"),
                  "soft_masked": sum(c.islower() for c in seq)} for name, seq in seqs.items()}
    totals = {k: sum(p[k] for p in per.values()) for k in ("N", "ambiguous", "soft_masked")}
    return totals | {"per_chromosome": per}


@pytest.mark.parametrize("block", [1 << 22, 7, 1])
def test_index_records_n_ambiguity_and_soft_masked_counts(toy_genome, tmp_path, monkeypatch,
                                                           capsys, block):
    monkeypatch.setattr(genome_module, "BLOCK", block)
    seqs = dict(toy_genome.seqs)
    seqs["chrAmb"] = "ACGTRYSWKMBDHVNnryswkmbdhvacgt" * 3
    source = tmp_path / "amb.fa.gz"
    write_fasta(tmp_path / "amb.fa", seqs)
    source.write_bytes(gzip.compress((tmp_path / "amb.fa").read_bytes()))
    out = tmp_path / "out"
    sizes = index_genome(source, out / "g.fa", out / "g.sizes", record_out=out / "g.json")
    assert sizes == {c: len(s) for c, s in seqs.items()}          # what it returns is unchanged
    record = json.loads((out / "g.json").read_text())
    letters = record["results"]["letters"]
    expected = _expected_letters(seqs)
    assert letters == expected | {"crlf_lines": 0}
    assert letters["N"] == 301 + 6 and letters["ambiguous"] == 60
    assert letters["soft_masked"] == 500 + 45
    assert record["step"] == "index_genome" and record["inputs"]["fasta"]["sha256"] == \
        hashlib.sha256(source.read_bytes()).hexdigest()
    assert f"{expected['N']:,} N" in capsys.readouterr().err


def test_index_genome_command_writes_the_record_beside_the_sizes(toy_genome, tmp_path):
    out = tmp_path / "data"
    code = main(["index-genome", "--fasta", str(toy_genome.gz), "--out", str(out / "genome.fa"),
                 "--sizes", str(out / "chrom.sizes"), "--record", str(out / "genome.record.json")])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["chrom.sizes", "genome.fa", "genome.fa.fai",
                                                     "genome.record.json"]
    letters = json.loads((out / "genome.record.json").read_text())["results"]["letters"]
    assert (letters["N"], letters["soft_masked"]) == (301, 500)


@pytest.mark.parametrize("letter", ["-", "*", "X", "x", "1", " ", "\t", ">", "U", "\xe9"])
@pytest.mark.parametrize("block", [1 << 22, 5, 1])
def test_non_iupac_letter_names_record_line_column_and_fix(tmp_path, monkeypatch, letter,
                                                           block):
    monkeypatch.setattr(genome_module, "BLOCK", block)
    bad = tmp_path / "bad.fa.gz"
    text = f">chrI first\nACGTAC\nACGTAC\n>chrII\nGGGGGG\nGGG{letter}GG\nGG\n"
    bad.write_bytes(gzip.compress(text.encode("latin-1")))
    out = tmp_path / "out"
    with pytest.raises(InputError) as err:
        index_genome(bad, out / "g.fa", out / "g.sizes", record_out=out / "g.json")
    assert (err.value.line, err.value.column) == (6, 4)
    assert "bad.fa.gz line 6 column 4: record 'chrII' has" in str(err.value)
    assert "not an IUPAC nucleotide code" in str(err.value)
    assert "A C G T N" in err.value.fix and "'-'" in err.value.fix
    assert _leftover_names(out) == []


def test_iupac_codes_of_either_case_are_accepted(tmp_path):
    source = tmp_path / "iupac.fa"
    source.write_text(">a\nACGTNRYSWKMBDHV\nacgtnryswkmbdhv\n")
    assert index_genome(source, tmp_path / "g.fa", tmp_path / "g.sizes") == {"a": 30}


@pytest.mark.parametrize("block", [1 << 22, 7, 2, 1])    # '\r' and '\n' in different blocks
def test_crlf_fasta_is_indexed_with_plain_newlines(toy_genome, tmp_path, monkeypatch, block):
    monkeypatch.setattr(genome_module, "BLOCK", block)
    lf = toy_genome.plain.read_bytes()
    source = tmp_path / "crlf.fa.gz"
    source.write_bytes(gzip.compress(lf.replace(b"\n", b"\r\n")))
    out = tmp_path / "out"
    sizes = index_genome(source, out / "g.fa", out / "g.sizes", record_out=out / "g.json")
    assert (out / "g.fa").read_bytes() == lf
    assert sizes == {c: len(s) for c, s in toy_genome.seqs.items()}
    letters = json.loads((out / "g.json").read_text())["results"]["letters"]
    assert letters["crlf_lines"] == lf.count(b"\n")
    assert letters["N"] == 301                      # no '\r' counted as a base
    genome = Genome(out / "g.fa")
    assert genome.fetch("chr1", 0, 200) == toy_genome.seqs["chr1"][:200].upper()
    genome.close()


def test_input_error_keeps_its_column_across_processes(tmp_path):
    bad = tmp_path / "bad.fa"
    bad.write_text(">a\nAC-T\n")
    with pytest.raises(InputError) as err:
        index_genome(bad, tmp_path / "out" / "g.fa", tmp_path / "out" / "g.sizes")
    back = pickle.loads(pickle.dumps(err.value))
    assert (back.line, back.column, str(back)) == (2, 3, str(err.value))


def test_lone_carriage_return_is_refused(tmp_path):
    bad = tmp_path / "cr.fa"
    bad.write_bytes(b">a\nACGT\rACGT\nAC\n")
    with pytest.raises(InputError, match="line 2 column 5: record 'a' has byte 0x0d"):
        index_genome(bad, tmp_path / "out" / "g.fa", tmp_path / "out" / "g.sizes")


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


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("name", ["aliases.tsv", "aliases.tsv.gz"])   # the name decides nothing
def test_read_aliases_bom_crlf_and_gzip_by_content(tmp_path, compress, name):
    data = "\ufeff1\tchrI\r\n# comment\r\nchrM\tchrMito\r\n".encode()
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if compress else data)
    assert read_aliases(path) == {"1": "chrI", "chrM": "chrMito"}


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


def test_a_download_without_a_pinned_checksum_prints_the_one_to_pin(mirror, tmp_path, capsys):
    """A url with sha256: null downloads once and says which sha256 to pin; a mirror copy
    (no download) says nothing."""
    root, payload, digest = mirror
    source = tmp_path / "elsewhere.fa"
    source.write_bytes(payload)
    out = tmp_path / "resources" / "other.fa"
    assert stage_input("other.fa", out, mirror=root, url=source.as_uri(), sha256=None) == digest
    assert f"its sha256 is {digest}: pin it in the config" in capsys.readouterr().err
    stage_input("yeast/g.fa", tmp_path / "resources" / "g.fa", mirror=root,
                url=source.as_uri(), sha256=None)
    assert "pin it" not in capsys.readouterr().err


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


@pytest.mark.parametrize("relpath, problem", [
    ("../my_peaks.bed", "has a '..' component"),
    ("yeast/../../my_peaks.bed", "has a '..' component"),
    ("/etc/passwd", "is an absolute path"),
])
def test_stage_refuses_paths_leaving_the_mirror(mirror, tmp_path, relpath, problem):
    root, _, _ = mirror
    user_file = tmp_path / "my_peaks.bed"          # mirror/../my_peaks.bed, resources/../ too
    user_file.write_bytes(b"chrI\t10\t20\n")
    digest = hashlib.sha256(user_file.read_bytes()).hexdigest()
    out = tmp_path / "resources" / relpath.lstrip("/")   # never /etc/passwd itself
    with pytest.raises(InputError) as err:
        stage_input(relpath, out, mirror=root, url=user_file.as_uri(), sha256=digest)
    assert f"input path '{relpath}' {problem}" in str(err.value)
    assert err.value.fix == "give a path relative to the data mirror, without '..'"
    assert user_file.read_bytes() == b"chrI\t10\t20\n"
    assert _leftovers(tmp_path / "resources") == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mirror", "my_peaks.bed"]


@pytest.mark.parametrize("linked", ["file", "directory"])
def test_stage_refuses_a_link_out_of_the_mirror(mirror, tmp_path, linked):
    root, _, _ = mirror
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.bed").write_bytes(b"secret")
    if linked == "file":
        (root / "yeast" / "peaks.bed").symlink_to(outside / "secret.bed")
        relpath = "yeast/peaks.bed"
    else:
        (root / "elsewhere").symlink_to(outside, target_is_directory=True)
        relpath = "elsewhere/secret.bed"
    out = tmp_path / "resources" / relpath
    with pytest.raises(InputError, match="outside the mirror") as err:
        stage_input(relpath, out, mirror=root, url=None, sha256=None)
    assert "copy the file into the mirror" in err.value.fix
    assert not out.exists() and _leftovers(out.parent) == []


def test_stage_follows_a_link_inside_the_mirror(mirror, tmp_path):
    root, payload, digest = mirror
    (root / "latest.fa").symlink_to(root / "yeast" / "g.fa")
    out = tmp_path / "resources" / "latest.fa"
    assert stage_input("latest.fa", out, mirror=root, url=None, sha256=digest) == digest
    assert out.read_bytes() == payload
