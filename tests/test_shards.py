"""Tests for helixflow.shards: one-hot shards per split, manifest, checksums, reproducibility."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from test_genome import make_toy_genome

from helixflow.encode import decode, one_hot_batch
from helixflow.errors import InputError
from helixflow.files import read_json
from helixflow.intervals import (
    SPLITS,
    WINDOW_COLUMNS,
    labelled_windows,
    read_blacklist,
    read_peaks,
    read_windows,
    resolve_splits,
)
from helixflow.shards import build_shards, load_split, shuffled_sequences
from helixflow.tiles import genome_tiles

WIDTH = 200


@pytest.fixture(scope="module")
def toy_genome(tmp_path_factory):
    return make_toy_genome(tmp_path_factory.mktemp("genome"))


@pytest.fixture(scope="module")
def shards(toy_genome, tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    sizes = {c: len(s) for c, s in toy_genome.seqs.items()}
    peaks = read_peaks(toy_genome.peaks, sizes, {})
    chrom, lo, hi = toy_genome.blacklist
    (root / "bl.bed").write_text(f"{chrom}\t{lo}\t{hi}\n")
    blacklist = read_blacklist(root / "bl.bed", sizes, {})
    split_of = resolve_splits(sizes, ["chr3"], ["chr4"])
    table, _ = labelled_windows(peaks, blacklist, toy_genome.fasta, sizes, split_of, WIDTH,
                                1.0, 1.0, 10, 0.01, seed=3,
                                tiles=genome_tiles(toy_genome.fasta, WIDTH))
    windows = root / "windows.bed"
    table.to_csv(windows, sep="\t", header=False, index=False)
    manifest = build_shards(windows, toy_genome.fasta, root / "a", seed=9,
                            sources={"genome": "abc"})
    return {"root": root, "windows": windows, "table": read_windows(windows),
            "manifest": manifest, "dir": root / "a"}


def _files(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.iterdir())}


def dinucleotides(seq: str) -> Counter:
    return Counter(seq[i:i + 2] for i in range(len(seq) - 1))


def test_shapes_labels_and_names(shards):
    table = shards["table"]
    for split in SPLITS:
        part = table[table["split"] == split].reset_index(drop=True)
        data = load_split(shards["dir"] / "manifest.json", split)
        assert data.X.shape == (len(part), 4, WIDTH)
        assert data.X.dtype == np.uint8 and data.y.dtype == np.uint8
        assert isinstance(data.X, np.memmap)
        np.testing.assert_array_equal(data.y, part["label"].to_numpy())
        assert data.names == part["name"].tolist()
        # every column is one-hot or all-zero
        assert set(np.unique(data.X.sum(axis=1))) <= {0, 1}


def test_peak_and_background_windows_decode_to_genome(shards, toy_genome):
    table = shards["table"]
    checked = 0
    for split in SPLITS:
        part = table[table["split"] == split].reset_index(drop=True)
        data = load_split(shards["dir"] / "manifest.json", split)
        for i, row in part[part["kind"] != "shuffle"].iterrows():
            expected = toy_genome.seqs[row["chrom"]][row["start"]:row["end"]].upper()
            assert decode(data.X[i]) == expected
            checked += 1
    assert checked == (table["kind"] != "shuffle").sum()


def test_shuffles_keep_dinucleotides_of_their_source(shards, toy_genome):
    table = shards["table"]
    n_shuffles = 0
    for split in SPLITS:
        part = table[table["split"] == split].reset_index(drop=True)
        data = load_split(shards["dir"] / "manifest.json", split)
        for i, row in part[part["kind"] == "shuffle"].iterrows():
            source = toy_genome.seqs[row["chrom"]][row["start"]:row["end"]].upper()
            shuffled = decode(data.X[i])
            assert shuffled != source
            assert dinucleotides(shuffled) == dinucleotides(source)
            assert row["name"].split(":", 1)[1] in set(part.loc[part["kind"] == "peak", "name"])
            n_shuffles += 1
    assert n_shuffles == (table["kind"] == "shuffle").sum() > 0


def test_manifest_counts(shards):
    table, manifest = shards["table"], shards["manifest"]
    assert manifest == read_json(shards["dir"] / "manifest.json")
    assert manifest["window"] == WIDTH
    assert manifest["alphabet"] == "ACGT"
    assert manifest["seed"] == 9
    assert manifest["sources"]["genome"] == "abc"
    assert manifest["sources"]["windows"] == hashlib.sha256(
        shards["windows"].read_bytes()).hexdigest()
    for split in SPLITS:
        part = table[table["split"] == split]
        entry = manifest["splits"][split]
        assert entry["n"] == len(part)
        assert entry["n_pos"] == (part["label"] == 1).sum()
        assert entry["n_neg"] == (part["label"] == 0).sum()
        assert entry["by_kind"] == part["kind"].value_counts().to_dict()
        assert entry["x"]["shape"] == [len(part), 4, WIDTH]
        for key in ("x", "y"):
            path = shards["dir"] / entry[key]["file"]
            assert entry[key]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("key", ["x", "y"])
def test_tampered_array_fails_checksum(shards, tmp_path, key):
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in shards["dir"].iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    target = copy / f"train.{key}.npy"
    data = bytearray(target.read_bytes())
    data[-1] ^= 1                                  # flip one bit of the last element
    target.write_bytes(bytes(data))
    with pytest.raises(InputError, match="checksum") as err:
        load_split(copy / "manifest.json", "train")
    assert target.name in str(err.value)
    # other splits are still fine, and verify=False loads the changed array
    load_split(copy / "manifest.json", "valid")
    loaded = load_split(copy / "manifest.json", "train", verify=False)
    assert loaded.X.shape[0] == shards["manifest"]["splits"]["train"]["n"]


def test_rebuild_is_byte_identical(shards, toy_genome):
    again = shards["root"] / "b"
    build_shards(shards["windows"], toy_genome.fasta, again, seed=9, sources={"genome": "abc"})
    assert _files(again) == _files(shards["dir"])


def test_other_seed_changes_only_the_shuffles(shards, toy_genome):
    other = shards["root"] / "c"
    build_shards(shards["windows"], toy_genome.fasta, other, seed=10)
    table = shards["table"]
    for split in SPLITS:
        part = table[table["split"] == split].reset_index(drop=True)
        a = load_split(shards["dir"] / "manifest.json", split).X
        b = load_split(other / "manifest.json", split).X
        is_shuffle = (part["kind"] == "shuffle").to_numpy()
        np.testing.assert_array_equal(a[~is_shuffle], b[~is_shuffle])
        assert not np.array_equal(a[is_shuffle], b[is_shuffle])


def test_several_widths_raise(shards, toy_genome, tmp_path):
    table = shards["table"].copy()
    table.loc[0, "end"] += 1
    path = tmp_path / "windows.bed"
    table.to_csv(path, sep="\t", header=False, index=False)
    with pytest.raises(InputError, match="several widths"):
        build_shards(path, toy_genome.fasta, tmp_path / "out", seed=0)


def test_empty_split_gives_empty_arrays(toy_genome, tmp_path):
    rows = [("chr1", 3000, 3200, "a", 0, ".", 1, "train", "peak", 0.5),
            ("chr3", 3000, 3200, "b", 0, ".", 0, "valid", "background", 0.5)]
    path = tmp_path / "windows.bed"
    pd.DataFrame(rows, columns=WINDOW_COLUMNS).to_csv(path, sep="\t", header=False, index=False)
    manifest = build_shards(path, toy_genome.fasta, tmp_path / "out", seed=0)
    assert manifest["splits"]["test"]["n"] == 0
    test = load_split(tmp_path / "out" / "manifest.json", "test")
    assert test.X.shape == (0, 4, 200) and test.y.shape == (0,) and test.names == []


def test_shuffled_sequences_keep_dinucleotides():
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), 120)) for _ in range(5)]
    X = one_hot_batch(seqs)
    S = shuffled_sequences(X, seed=1)
    assert S.shape == X.shape and S.dtype == np.uint8
    for seq, shuffled in zip(seqs, S, strict=True):
        assert dinucleotides(decode(shuffled)) == dinucleotides(seq)
    np.testing.assert_array_equal(S, shuffled_sequences(X, seed=1))


def test_shuffle_window_with_an_n_builds(toy_genome, tmp_path):
    """labelled_windows keeps windows with up to max_n_fraction N (default 0.01, 2 of 200 bp),
    and shuffle rows copy positives, so a shuffle source may hold an N.

    Fails before the fix: tangermeme's dinucleotide_shuffle rejects all-zero columns unless
    called with allow_N=True (shards.shuffled_sequences).
    """
    chrom, pos = toy_genome.single_n
    start = pos - 100
    rows = [(chrom, start, start + 200, "p", 0, ".", 1, "train", "peak", 0.5),
            (chrom, start, start + 200, "shuf0:p", 0, ".", 0, "train", "shuffle", 0.5),
            ("chr3", 3000, 3200, "v", 0, ".", 1, "valid", "peak", 0.5),
            ("chr4", 3000, 3200, "t", 0, ".", 1, "test", "peak", 0.5)]
    path = tmp_path / "windows.bed"
    pd.DataFrame(rows, columns=WINDOW_COLUMNS).to_csv(path, sep="\t", header=False, index=False)
    build_shards(path, toy_genome.fasta, tmp_path / "out", seed=0)
    X = load_split(tmp_path / "out" / "manifest.json", "train").X
    source, shuffled = decode(X[0]), decode(X[1])
    assert source.count("N") == 1
    assert shuffled.count("N") == 1
    assert dinucleotides(shuffled) == dinucleotides(source)


def test_small_chunks_write_the_same_bytes(shards, toy_genome, monkeypatch):
    """Chunked writing into the memmap: the chunk size of reading does not change a byte."""
    import helixflow.shards as shards_module
    monkeypatch.setattr(shards_module, "ROWS_PER_CHUNK", 7)
    again = shards["root"] / "chunked"
    build_shards(shards["windows"], toy_genome.fasta, again, seed=9, sources={"genome": "abc"})
    assert _files(again) == _files(shards["dir"])
    assert shards["manifest"]["splits"]["train"]["n"] > 7     # several chunks were written
