"""Tests for helixflow.sequence_table: labelled sequences without coordinates → shards."""

from __future__ import annotations

import gzip
from collections import Counter

import numpy as np
import pytest

from helixflow.encode import decode
from helixflow.errors import InputError
from helixflow.files import read_json
from helixflow.folds import TEST_FRACTION, VALID_FRACTION, fold_split
from helixflow.sequence_table import build_table_shards, read_sequence_table
from helixflow.shards import load_split


def _random(rng, n: int) -> str:
    return "".join(rng.choice(list("ACGT"), size=n))


def _dinucleotides(seq: str) -> Counter:
    return Counter(seq[i:i + 2] for i in range(len(seq) - 1))


def test_table_with_split_column_becomes_centred_shards(tmp_path):
    rows = [("a", "ACGTACGTAC", 1, "train"), ("b", "TTTT", 0, "train"),
            ("c", "GGGGCC", 1, "valid"), ("d", "ACACAC", 0, "valid"),
            ("e", "CCCCCCCC", 1, "test"), ("f", "nnACGT", 0, "TEST")]
    path = tmp_path / "set.tsv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("name\tsequence\tlabel\tsplit\n"
                     + "".join(f"{n}\t{s}\t{y}\t{sp}\n" for n, s, y, sp in rows))
    manifest = build_table_shards(path, tmp_path / "shards", "T", seed=1,
                                  checked=tmp_path / "checked.json")
    assert manifest["window"] == 10
    train = load_split(tmp_path / "shards" / "manifest.json", "train")
    assert train.names == ["a", "b"] and list(train.y) == [1, 0]
    assert decode(train.X[0]) == "ACGTACGTAC"
    assert decode(train.X[1]) == "NNNTTTTNNN"           # centred, padded with N (all zero)
    test = load_split(tmp_path / "shards" / "manifest.json", "test")
    assert test.names == ["e", "f"] and decode(test.X[1]) == "NNNNACGTNN"
    checked = read_json(tmp_path / "checked.json")["targets"]["T"]
    assert checked["sequences"] == 6 and checked["per_split"]["valid"] == {"n": 2, "n_pos": 1}


def test_fold_rule_is_deterministic_keeps_duplicates_together_and_has_the_fractions():
    rng = np.random.default_rng(0)
    sequences = [_random(rng, 30) for _ in range(5000)]
    splits = [fold_split(s, seed=3) for s in sequences]
    assert splits == [fold_split(s, seed=3) for s in sequences]
    assert [fold_split(s.lower(), seed=3) for s in sequences[:50]] == splits[:50]
    counts = Counter(splits)
    assert abs(counts["test"] / 5000 - TEST_FRACTION) < 0.015
    assert abs(counts["valid"] / 5000 - VALID_FRACTION) < 0.015
    assert [fold_split(s, seed=4) for s in sequences] != splits      # the seed moves them


def test_fasta_positives_get_shuffled_negatives_in_their_split(tmp_path):
    rng = np.random.default_rng(1)
    records = {f"p{i}": _random(rng, 40 + (i % 3)) for i in range(60)}
    path = tmp_path / "positives.fa"
    path.write_text("".join(f">{n} some description\n{s[:25]}\n{s[25:]}\n"
                            for n, s in records.items()))
    table = read_sequence_table(path, seed=2)
    assert len(table.names) == 120 and table.labels.sum() == 60
    assert table.names[:2] == ["p0", "p0_shuffle1"]
    build_table_shards(path, tmp_path / "shards", "T", seed=2, checked=tmp_path / "c.json")
    seen = 0
    for split in ("train", "valid", "test"):
        part = load_split(tmp_path / "shards" / "manifest.json", split)
        by_name = {n: decode(x).strip("N") for n, x in zip(part.names, part.X, strict=True)}
        for name, seq in by_name.items():
            if name.endswith("_shuffle1"):
                positive = records[name.removesuffix("_shuffle1")]
                assert by_name[name.removesuffix("_shuffle1")] == positive   # same split
                assert _dinucleotides(seq) == _dinucleotides(positive) and seq != positive
                seen += 1
    assert seen == 60


@pytest.mark.parametrize("text, name, expected", [
    ("sequence\tlabel\nACGT\t1\nACXT\t0\n", "t.tsv", "line 3: sequence has letters other"),
    ("sequence\tlabel\nACGT\t1\nACGT\tyes\n", "t.tsv", "line 3: label 'yes' is not 0 or 1"),
    ("sequence,label,split\nACGT,1,train\nACGT,0,dev\n", "t.csv", "line 3: split 'dev'"),
    ("seq\tlabel\nACGT\t1\n", "t.tsv", "line 1: missing column(s) sequence"),
    ("ACGT\n>a\nACGT\n", "t.fa", "line 1: sequence before the first '>'"),
    ("sequence\tlabel\nACGT\t1\n", "t.bed", "cannot tell the layout"),
])
def test_bad_tables_are_refused_naming_file_and_line(tmp_path, text, name, expected):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError) as err:
        build_table_shards(path, tmp_path / "shards", "T", seed=0, checked=tmp_path / "c.json")
    assert expected in str(err.value) and name in str(err.value)
    assert not (tmp_path / "shards" / "manifest.json").exists()


def test_a_split_without_both_classes_is_refused_before_writing(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("sequence\tlabel\tsplit\nACGT\t1\ttrain\nAAAA\t0\ttrain\n"
                    "CCCC\t1\tvalid\nGGGG\t1\ttest\nTTTT\t0\ttest\n")
    with pytest.raises(InputError, match="the valid split has 1 positives and 0 negatives"):
        build_table_shards(path, tmp_path / "shards", "T", seed=0, checked=tmp_path / "c.json")
    assert not (tmp_path / "shards").exists()
