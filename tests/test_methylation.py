"""Tests for helixflow.methylation: readers, validation with line numbers, merging, regions."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helixflow.errors import InputError
from helixflow.methylation import (
    block_split,
    detect_format,
    load_cpgs,
    make_regions,
    merge_replicates,
    read_methylation,
    subsample_regions,
)

BISMARK = "chr1\t100\t100\t75\t3\t1\nchr1\t150\t150\t0\t0\t2\nchr2\t7\t7\t100\t5\t0\n"
DSS = "chr\tpos\tN\tX\nchr1\t100\t4\t3\nchr1\t150\t2\t0\n"
BEDGRAPH = "track type=bedGraph\nchr1\t99\t100\t75\nchr1\t149\t150\t0\n"


def write(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["a.cov", "a.cov.gz"])
def test_bismark_reader(tmp_path, name):
    table = read_methylation(write(tmp_path / name, BISMARK))
    assert table.columns.tolist() == ["chrom", "pos", "meth", "total"]
    assert table["pos"].tolist() == [100, 150, 7]
    assert table["meth"].tolist() == [3, 0, 5]
    assert table["total"].tolist() == [4, 2, 5]


def test_dss_reader(tmp_path):
    table = read_methylation(write(tmp_path / "cond.txt", DSS))
    assert table[["pos", "meth", "total"]].to_numpy().tolist() == [[100, 3, 4], [150, 0, 2]]


def test_bedgraph_needs_assumed_coverage(tmp_path):
    path = write(tmp_path / "a.bedGraph", BEDGRAPH)
    with pytest.raises(InputError, match="no read counts") as err:
        read_methylation(path)
    assert str(path) in str(err.value) and "bedgraph_coverage" in str(err.value)
    table = read_methylation(path, bedgraph_coverage=8)
    assert table[["pos", "meth", "total"]].to_numpy().tolist() == [[100, 6, 8], [150, 0, 8]]


def test_bedgraph_fraction_scale(tmp_path):
    path = write(tmp_path / "a.bg", "chr1\t99\t100\t0.5\nchr1\t149\t150\t1\n")
    table = read_methylation(path, bedgraph_coverage=10)
    assert table["meth"].tolist() == [5, 10]


def test_detect_format(tmp_path):
    assert detect_format(write(tmp_path / "x.cov.gz", BISMARK)) == "bismark"
    assert detect_format(write(tmp_path / "x.txt", DSS)) == "dss"
    assert detect_format(write(tmp_path / "x.bedgraph.gz", BEDGRAPH[20:])) == "bedgraph"
    assert detect_format(write(tmp_path / "y.txt", BEDGRAPH)) == "bedgraph"  # track line


def test_unknown_format_names_file_and_fix(tmp_path):
    path = write(tmp_path / "x.tsv", BISMARK)
    with pytest.raises(InputError, match="cannot tell the methylation format") as err:
        read_methylation(path)
    assert str(path) in str(err.value) and "bismark" in str(err.value)
    assert read_methylation(path, fmt="bismark")["total"].sum() == 11  # explicit override
    with pytest.raises(InputError, match="unknown methylation format"):
        read_methylation(path, fmt="bsseq")


BAD = [  # (file name, text, bad line, words in the message)
    ("a.cov", "chr1\t1\t1\t50\t1\t1\nchr1\t2\t2\t50\t1\n", 2, "5 tab-separated columns"),
    ("a.cov", "chr1\t1\t1\t50\t1\t1\nchr1\t2\t2\t50\t1\t1\tx\n", 2, "7 tab-separated columns"),
    ("a.cov", "chr1\t1\t1\t50\t1\t1\nchr1\t2\t2\t0\t-1\t1\n", 2, "count_meth -1 is negative"),
    ("a.cov", "chr1\t1\t1\t50\t1\t1\nchr1\t2\t2\t50\t1.5\t1\n", 2, "'1.5' is not an integer"),
    ("a.cov", "chr1\t1\t1\t50\t1\t1\nchr1\t2\t2\t50\t1\t1\nchr1\t3x\t3\t50\t1\t1\n", 3,
     "start '3x' is not an integer"),
    ("a.cov", "chr1\t1\t1\t50\t1\t1\n\nchr1\t3\t3\t50\t1\t1\n", 2, "1 tab-separated columns"),
    ("a.cov", "chr1\t1\t1\t50\t1\t1\nchr1\t2\t2\t90\t1\t1\n", 2, "disagrees with the counts"),
    ("a.cov", "chr1\t5\t4\t50\t1\t1\n", 1, "end 4 is before start 5"),
    ("a.cov.gz", "chr1\t1\t1\t50\t1\t1\n" * 5 + "chr1\t2\t2\t50\tx\t1\n", 6, "not an integer"),
    ("d.txt", "chr\tpos\tN\tX\nchr1\t1\t5\t2\nchr1\t2\t5\t6\n", 3, "X 6 methylated reads exceed"),
    ("d.txt", "chr\tpos\tN\tX\nchr1\t1\t5\t2\nchr1\t2\t-5\t0\n", 3, "N -5 (reads) is negative"),
    ("d.txt", "chr\tpos\tN\tX\nchr1\t1.5\t5\t2\n", 2, "pos '1.5' is not an integer"),
    ("d.txt", "chr\tpos\tN\tX\nchr1\t1\t5\n", 2, "3 columns, expected 4"),
    ("b.bg", "chr1\t10\t10\t50\n", 1, "end 10 is not after start 10"),
    ("b.bg", "chr1\t10\t11\tabc\n", 1, "value 'abc' is not a number"),
    # a value error before a malformed line is reported first
    ("a.cov", "chr1\t1\t1\t50\t1\t1\nchr1\t2\t2\t0\t-1\t1\nchr1\t3\t3\t50\t1\n", 2, "negative"),
]


@pytest.mark.parametrize(("name", "text", "line", "words"), BAD)
def test_bad_lines_name_file_and_line(tmp_path, name, text, line, words):
    path = write(tmp_path / name, text)
    with pytest.raises(InputError) as err:
        read_methylation(path, bedgraph_coverage=10)
    message = str(err.value)
    assert err.value.line == line
    assert message.startswith(f"helixflow: {path} line {line}: ")
    assert words in message


def test_empty_file(tmp_path):
    with pytest.raises(InputError, match="no data lines"):
        read_methylation(write(tmp_path / "a.cov", ""))


def test_merge_sums_replicates(tmp_path):
    a = write(tmp_path / "r1.cov", "chr1\t10\t10\t50\t1\t1\nchr1\t20\t20\t100\t2\t0\n")
    b = write(tmp_path / "r2.txt", "chr\tpos\tN\tX\nchr1\t10\t4\t1\nchr1\t5\t3\t3\n")
    merged = load_cpgs([a, b])
    assert merged.columns.tolist() == ["chrom", "pos", "meth", "total", "beta"]
    assert merged[["pos", "meth", "total"]].to_numpy().tolist() == [[5, 3, 3], [10, 2, 6],
                                                                      [20, 2, 2]]
    assert merged["beta"].tolist() == pytest.approx([1.0, 2 / 6, 1.0])


def test_merge_zero_total_gives_nan_beta():
    table = pd.DataFrame({"chrom": ["c"], "pos": [1], "meth": [0], "total": [0]})
    assert np.isnan(merge_replicates([table])["beta"].iloc[0])


def test_every_file_checked_before_merging(tmp_path):
    good = write(tmp_path / "r1.cov", BISMARK)
    bad = write(tmp_path / "r2.cov", "chr1\t1\t1\t50\t1\n")
    with pytest.raises(InputError, match=f"{bad} line 1"):
        load_cpgs([good, bad])


def test_make_regions_tiles_per_chromosome():
    cpgs = pd.DataFrame({"chrom": ["a"] * 10 + ["b"] * 5, "pos": list(range(10, 0, -1)) +
                         list(range(5)), "meth": 1, "total": np.arange(15) % 3})
    regions = make_regions(cpgs, 4)
    assert len(regions) == 3 and regions.pos.shape == (3, 4)
    assert regions.chrom.tolist() == ["a", "a", "b"]
    assert regions.pos[0].tolist() == [1, 2, 3, 4]  # sorted along the chromosome
    assert regions.covered.dtype == bool and np.isnan(regions.beta[~regions.covered]).all()


def test_block_split_keeps_blocks_together():
    split = block_split(1000, 10, 0.1, 0.2, seed=3)
    blocks = split.reshape(100, 10)
    assert (blocks == blocks[:, :1]).all()
    counts = {name: int((blocks[:, 0] == name).sum()) for name in ("train", "valid", "test")}
    assert counts == {"train": 70, "valid": 10, "test": 20}
    assert (block_split(1000, 10, 0.1, 0.2, seed=3) == split).all()
    assert (block_split(1000, 10, 0.1, 0.2, seed=4) != split).any()
    with pytest.raises(ValueError, match="too few"):
        block_split(20, 10, 0.1, 0.2, seed=0)


def test_subsample_in_proportion():
    split = block_split(1000, 10, 0.1, 0.2, seed=0)
    keep = subsample_regions(split, 100, seed=0)
    assert len(keep) == 100 and (np.diff(keep) > 0).all()
    assert (split[keep] == "test").sum() == 20
    assert len(subsample_regions(split, 0, seed=0)) == 1000


def test_shared_bismark_example(data_mirror):
    table = read_methylation(data_mirror / "methylation" / "bismark_example.cov.gz")
    assert len(table) == 2013 and (table["meth"] <= table["total"]).all()


def test_shared_dss_file(data_mirror):
    table = read_methylation(data_mirror / "methylation" / "dss_rrbs_chr18" / "cond1_1.txt")
    assert len(table) == 20000 and table["chrom"].eq("chr18").all()
    assert table[["pos", "total", "meth"]].iloc[0].tolist() == [3014904, 26, 2]


def test_chunked_fast_path_matches_one_chunk(tmp_path):
    from helixflow.methylation import LAYOUTS, _parse_fast

    path = write(tmp_path / "a.cov.gz", BISMARK * 5)
    whole = _parse_fast(path, LAYOUTS["bismark"], 0)
    chunked = _parse_fast(path, LAYOUTS["bismark"], 0, chunk_lines=4)
    assert all((whole[k] == chunked[k]).all() for k in whole) and len(whole["chrom"]) == 15
    bad = write(tmp_path / "b.cov", BISMARK * 2 + "chr1\t1\t1\t50\tx\t1\n")
    assert _parse_fast(bad, LAYOUTS["bismark"], 0, chunk_lines=4) is None
    with pytest.raises(InputError, match="line 7"):
        read_methylation(bad)
