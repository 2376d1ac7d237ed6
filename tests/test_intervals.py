"""Tests for helixflow.intervals: peaks, splits, windows, GC-matched negatives, leakage check."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest
from test_genome import make_toy_genome

from helixflow.cli import main
from helixflow.errors import InputError
from helixflow.genome import index_genome
from helixflow.intervals import (
    DUPLICATES_MERGED,
    WINDOW_COLUMNS,
    check_no_leak,
    drop_overlapping,
    gc_matched_sample,
    labelled_windows,
    nucleotide_content,
    overlaps_any,
    peak_format,
    read_blacklist,
    read_peaks,
    read_windows,
    require_windows,
    resolve_splits,
    split_problems,
    summit_windows,
    usable_windows,
)
from helixflow.tiles import genome_tiles, write_genome_tiles

SIZES = {"chr1": 1_000, "chr2": 500, "chr3": 300, "chr4": 200}


@pytest.fixture(scope="module")
def toy_genome(tmp_path_factory):
    return make_toy_genome(tmp_path_factory.mktemp("genome"))


def write(path, text):
    path.write_text(text)
    return path


def overlaps(a_start, a_end, b_start, b_end) -> bool:
    return a_start < b_end and b_start < a_end


# ---------------------------------------------------------------- read_peaks


def test_bed_summit_is_midpoint(tmp_path):
    path = write(tmp_path / "p.bed", "chr1\t100\t200\tpA\nchr1\t300\t401\nchr2\t0\t3\t.\n")
    peaks = read_peaks(path, SIZES, {})
    assert list(peaks.columns) == ["chrom", "summit", "name"]
    assert peaks["summit"].tolist() == [150, 350, 1]
    # a missing or '.' name becomes peak<line number>
    assert peaks["name"].tolist() == ["pA", "peak2", "peak3"]


def test_one_bp_summit_bed_gives_its_own_position(tmp_path):
    path = write(tmp_path / "summits.bed", "chr1\t0\t1\nchr1\t437\t438\nchr2\t499\t500\n")
    assert read_peaks(path, SIZES, {})["summit"].tolist() == [0, 437, 499]


def test_narrowpeak_offset_and_minus_one(tmp_path):
    rows = ["chr1\t100\t300\tn1\t0\t.\t5.0\t-1\t-1\t30",
            "chr1\t100\t302\tn2\t0\t.\t5.0\t-1\t-1\t-1",
            "chr2\t10\t20\tn3\t0\t.\t5.0\t-1\t-1\t0"]
    path = write(tmp_path / "p.narrowPeak", "\n".join(rows) + "\n")
    peaks = read_peaks(path, SIZES, {})
    assert peaks["summit"].tolist() == [130, 201, 10]
    # the same file declared as BED uses midpoints only
    assert read_peaks(path, SIZES, {}, fmt="bed")["summit"].tolist() == [200, 201, 15]


def test_gzipped_peaks_and_header_lines(tmp_path):
    path = tmp_path / "p.bed.gz"
    path.write_bytes(gzip.compress(b"track name=x\nbrowser position chr1\n# c\n\nchr1\t10\t20\n"))
    assert read_peaks(path, SIZES, {})["summit"].tolist() == [15]


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("name", ["p.bed", "p.bed.gz"])      # the name decides nothing
def test_gzip_is_told_by_content_not_name(tmp_path, name, compress):
    data = b"chr1\t10\t20\nchr2\t30\t40\n"
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if compress else data)
    assert read_peaks(path, SIZES, {})["summit"].tolist() == [15, 35]
    assert read_blacklist(path, SIZES, {}).values.tolist() == [["chr1", 10, 20], ["chr2", 30, 40]]


@pytest.mark.parametrize("compress", [False, True])
def test_byte_order_mark_is_not_part_of_the_chromosome(tmp_path, compress):
    data = "\ufeffII\t10\t20\tpA\nII\t30\t40\tpB\n".encode()
    path = tmp_path / "p.bed"
    path.write_bytes(gzip.compress(data) if compress else data)
    peaks = read_peaks(path, SIZES, {"II": "chr2"})
    assert peaks["chrom"].tolist() == ["chr2", "chr2"]
    blacklist = tmp_path / "bl.bed"
    blacklist.write_bytes("\ufeffchr1\t5\t9\n".encode())
    assert read_blacklist(blacklist, SIZES, {}).values.tolist() == [["chr1", 5, 9]]


def test_crlf_line_endings_are_plain_newlines(tmp_path):
    bed = write(tmp_path / "p.bed", "")
    bed.write_bytes(b"# c\r\nchr1\t10\t20\tpA\r\nchr2\t30\t40\tpB\r\n")
    assert read_peaks(bed, SIZES, {})["name"].tolist() == ["pA", "pB"]
    narrow = tmp_path / "p.narrowPeak"
    narrow.write_bytes(b"chr1\t100\t300\tn1\t0\t.\t5.0\t-1\t-1\t30\r\n")
    assert read_peaks(narrow, SIZES, {})["summit"].tolist() == [130]


def test_text_that_is_not_utf8_names_line_and_column(tmp_path):
    path = tmp_path / "p.bed"
    path.write_bytes(b"chr1\t10\t20\tpA\nchr1\t30\t40\tp\xe9\n")
    with pytest.raises(InputError) as err:
        read_peaks(path, SIZES, {})
    assert (err.value.line, err.value.column) == (2, 13)
    assert "p.bed line 2 column 13: not UTF-8 text" in str(err.value)
    assert "UTF-8" in err.value.fix


def test_damaged_gzip_peaks_name_file_and_fix(tmp_path):
    path = tmp_path / "p.bed"
    path.write_bytes(gzip.compress(b"chr1\t10\t20\n" * 2000)[:-30])
    with pytest.raises(InputError, match="p.bed: truncated or corrupt gzip") as err:
        read_peaks(path, SIZES, {})
    assert "download the file again" in err.value.fix


def test_duplicate_peaks_are_merged_counted_and_reported(tmp_path, capsys):
    path = write(tmp_path / "p.bed", "chr1\t100\t200\tpA\nchr1\t100\t200\tpA\n"
                 "chr1\t140\t160\tpB\nchr2\t10\t20\tpC\nchr1\t100\t200\tpA\n")
    peaks = read_peaks(path, SIZES, {})
    assert peaks.values.tolist() == [["chr1", 150, "pA"], ["chr2", 15, "pC"]]
    assert peaks.attrs[DUPLICATES_MERGED] == 3
    assert "3 duplicate peaks (same chromosome and summit) merged" in capsys.readouterr().err
    unique = read_peaks(write(tmp_path / "u.bed", "chr1\t100\t200\n"), SIZES, {})
    assert unique.attrs[DUPLICATES_MERGED] == 0
    assert "duplicate" not in capsys.readouterr().err


def test_peak_format_guess():
    assert peak_format("a/Reb1.narrowPeak.gz") == "narrowPeak"
    assert peak_format("Reb1.np") == "narrowPeak"
    assert peak_format("Reb1_CX.bed") == "bed"
    assert peak_format("Reb1_CX.bed", "narrowPeak") == "narrowPeak"


def test_alias_applied(tmp_path):
    path = write(tmp_path / "p.bed", "1\t10\t20\nchr2\t10\t20\nII\t30\t40\n")
    peaks = read_peaks(path, SIZES, {"1": "chr1", "II": "chr2"})
    assert peaks["chrom"].tolist() == ["chr1", "chr2", "chr2"]


def test_alias_to_unknown_chromosome_is_an_error(tmp_path):
    path = write(tmp_path / "p.bed", "1\t10\t20\n")
    with pytest.raises(InputError, match="line 1"):
        read_peaks(path, SIZES, {"1": "chrI"})


GOOD = "# a comment\nchr1\t10\t20\n"
BAD_INPUTS = {
    "unknown chromosome": ("p.bed", GOOD + "chrZ\t10\t20\n", 3, ["chrZ", "chrom_aliases"]),
    "past chromosome end": ("p.bed", GOOD + "chr2\t450\t501\n", 3, ["past the end", "assembly"]),
    "non-integer start": ("p.bed", GOOD + "chr1\tten\t20\n", 3, ["not integers", "'ten'"]),
    "float coordinate": ("p.bed", GOOD + "chr1\t10.5\t20\n", 3, ["not integers"]),
    "start == end": ("p.bed", GOOD + "chr1\t20\t20\n", 3, ["start=20 end=20"]),
    "start > end": ("p.bed", GOOD + "chr1\t30\t20\n", 3, ["start < end"]),
    "negative start": ("p.bed", GOOD + "chr1\t-5\t20\n", 3, ["0 <= start"]),
    "too few columns": ("p.bed", GOOD + "chr1\t10\n", 3, ["2 columns", "tab"]),
    "spaces not tabs": ("p.bed", "chr1 10 20\n", 1, ["1 columns", "tab"]),
    "narrowPeak too short": ("p.narrowPeak", "chr1\t10\t20\tx\t0\t.\n", 1, ["needs at least 10"]),
    "summit outside peak": ("p.narrowPeak", "chr1\t10\t20\tx\t0\t.\t1\t-1\t-1\t10\n", 1,
                            ["offset 10"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_peaks_name_file_line_and_fix(tmp_path, case):
    name, text, line, words = BAD_INPUTS[case]
    path = write(tmp_path / name, text)
    with pytest.raises(InputError) as err:
        read_peaks(path, SIZES, {})
    message = str(err.value)
    assert str(path) in message
    assert f"line {line}:" in message
    assert err.value.line == line
    assert err.value.fix and err.value.fix in message
    for word in words:
        assert word in message


@pytest.mark.parametrize("text", ["", "# only a comment\ntrack name=x\n\n"])
def test_empty_peaks_file(tmp_path, text):
    path = write(tmp_path / "empty.bed", text)
    with pytest.raises(InputError, match="no peaks") as err:
        read_peaks(path, SIZES, {})
    assert str(path) in str(err.value)
    # there is no offending line to name; the message still carries the fix
    assert err.value.fix and err.value.fix in str(err.value)


# ---------------------------------------------------------------- blacklist


def test_read_blacklist_renames_and_drops_unknown(tmp_path):
    path = write(tmp_path / "bl.bed", "# x\nchr1\t5\t9\nchrUn\t0\t10\nII\t1\t2\textra\n")
    bl = read_blacklist(path, SIZES, {"II": "chr2"})
    assert bl.values.tolist() == [["chr1", 5, 9], ["chr2", 1, 2]]
    assert read_blacklist(None, SIZES, {}).empty


def test_read_blacklist_too_few_columns(tmp_path):
    path = write(tmp_path / "bl.bed", "chr1\t5\t9\nchr1\t5\n")
    with pytest.raises(InputError, match="line 2"):
        read_blacklist(path, SIZES, {})


# ---------------------------------------------------------------- splits


def test_resolve_splits_train_is_the_rest():
    split_of = resolve_splits(SIZES, ["chr3"], ["chr4"])
    assert split_of == {"chr1": "train", "chr2": "train", "chr3": "valid", "chr4": "test"}
    assert resolve_splits(SIZES, ["chr3"], ["chr4"], train=[]) == split_of


def test_resolve_splits_explicit_train():
    split_of = resolve_splits(SIZES, ["chr3"], ["chr4"], train=["chr1"])
    assert split_of == {"chr1": "train", "chr3": "valid", "chr4": "test"}


@pytest.mark.parametrize(("valid", "test", "train", "pattern"), [
    (["chr3"], ["chr3"], None, "chr3.*both 'valid' and 'test'"),
    (["chr3"], ["chr4"], ["chr1", "chr3"], "chr3.*both 'valid' and 'train'"),
    (["chr3", "chrX"], ["chr4"], None, "'chrX', which is not in the genome"),
    (["chr3"], ["chr4"], ["chr9"], "'chr9', which is not in the genome"),
    ([], ["chr4"], None, "valid split has no chromosomes"),
    (["chr3"], [], None, "test split has no chromosomes"),
    (["chr1", "chr2"], ["chr3", "chr4"], None, "train split has no chromosomes"),
])
def test_resolve_splits_errors(valid, test, train, pattern):
    with pytest.raises(InputError, match=pattern):
        resolve_splits(SIZES, valid, test, train)


# ---------------------------------------------------------------- windows


def test_summit_windows_exact_centred_and_dropped_at_ends():
    peaks = pd.DataFrame({"chrom": ["chr1"] * 6 + ["chr4"],
                          "summit": [100, 99, 500, 900, 901, 999, 100],
                          "name": list("abcdefg")})
    win = summit_windows(peaks, 200, SIZES)
    # 99 starts at -1, 901 ends at 1001, 999 ends past the end: dropped; 'g' fits chr4 exactly
    assert win["name"].tolist() == ["a", "c", "d", "g"]
    assert (win["end"] - win["start"] == 200).all()
    expected_start = peaks.set_index("name").loc[win["name"], "summit"].to_numpy() - 100
    np.testing.assert_array_equal(win["start"], expected_start)
    assert win.loc[win["name"] == "g", ["start", "end"]].values.tolist() == [[0, 200]]


def test_summit_windows_odd_width():
    peaks = pd.DataFrame({"chrom": ["chr1"], "summit": [500], "name": ["a"]})
    win = summit_windows(peaks, 201, SIZES)
    assert win[["start", "end"]].values.tolist() == [[400, 601]]


def test_drop_overlapping_is_half_open():
    windows = pd.DataFrame({"chrom": ["chr1", "chr1", "chr1", "chr2"],
                            "start": [0, 100, 300, 200], "end": [100, 200, 400, 300],
                            "name": ["a", "b", "c", "d"]})
    regions = pd.DataFrame({"chrom": ["chr1", "chr2"], "start": [199, 300], "end": [300, 310]})
    kept = drop_overlapping(windows, regions)
    # 'b' overlaps chr1:199-300 by one base; 'c' only touches it; 'd' only touches chr2:300
    assert kept["name"].tolist() == ["a", "c", "d"]
    assert drop_overlapping(windows, regions.iloc[:0])["name"].tolist() == list("abcd")


def test_nucleotide_content_matches_python(toy_genome):
    chrom, lo, hi = toy_genome.soft_masked
    n_chrom, n_lo, n_hi = toy_genome.n_run
    windows = pd.DataFrame({"chrom": ["chr1", chrom, n_chrom, n_chrom, "chr1"],
                            "start": [5000, lo, n_lo - 50, n_lo + 10, 0],
                            "end": [5200, lo + 200, n_lo + 150, n_lo + 210, 200]})
    content = nucleotide_content(windows, toy_genome.fasta)
    assert len(content) == len(windows)
    for row, gc, n_frac in zip(windows.itertuples(), content["gc"], content["n_frac"],
                               strict=True):
        seq = toy_genome.seqs[row.chrom][row.start:row.end].upper()
        called = sum(b in "ACGT" for b in seq)
        expected_gc = sum(b in "GC" for b in seq) / called if called else 0.0
        assert gc == pytest.approx(expected_gc)
        assert n_frac == pytest.approx(1 - called / len(seq))
    assert content["n_frac"].iloc[3] == 1.0
    assert content["gc"].iloc[3] == 0.0


def test_overlaps_any_matches_brute_force():
    rng = np.random.default_rng(3)
    starts = rng.integers(0, 5_000, 400)
    windows = pd.DataFrame({"chrom": rng.choice(["chr1", "chr2", "chr3"], 400),
                            "start": starts, "end": starts + rng.integers(1, 300, 400)})
    r_starts = rng.integers(0, 5_000, 60)
    regions = pd.DataFrame({"chrom": rng.choice(["chr1", "chr2"], 60), "start": r_starts,
                            "end": r_starts + rng.integers(1, 400, 60)})
    expected = [any(c == rc and overlaps(s, e, rs, re) for rc, rs, re in
                    zip(regions["chrom"], regions["start"], regions["end"], strict=True))
                for c, s, e in zip(windows["chrom"], windows["start"], windows["end"],
                                   strict=True)]
    hit = overlaps_any(windows, regions)
    assert hit.tolist() == expected
    assert 50 < hit.sum() < 350                     # both outcomes are exercised


# ---------------------------------------------------------------- gc_matched_sample


def _bins(gc, n_bins):
    return np.clip(np.digitize(gc, np.linspace(0, 1, n_bins + 1)[1:-1]), 0, n_bins - 1)


def test_gc_matched_sample_matches_histogram():
    rng = np.random.default_rng(0)
    pos = rng.beta(12, 6, size=300)                 # GC-rich positives, mean ~0.67
    cand = rng.uniform(0, 1, size=20_000)           # background, mean 0.5
    picked = gc_matched_sample(pos, cand, 2.0, 20, np.random.default_rng(1))
    assert len(np.unique(picked)) == len(picked) == 600  # without replacement
    np.testing.assert_array_equal(np.bincount(_bins(cand[picked], 20), minlength=20),
                                  2 * np.bincount(_bins(pos, 20), minlength=20))
    assert abs(cand[picked].mean() - pos.mean()) < 0.01
    assert abs(cand.mean() - pos.mean()) > 0.1     # so the matching had work to do


def test_gc_matched_sample_rounds_ratio_per_bin():
    pos = np.array([0.05, 0.05, 0.05, 0.55, 0.95])
    cand = np.linspace(0, 1, 1001)
    picked = gc_matched_sample(pos, cand, 0.5, 10, np.random.default_rng(0))
    counts = np.bincount(_bins(cand[picked], 10), minlength=10)
    need = np.round(np.bincount(_bins(pos, 10), minlength=10) * 0.5).astype(int)
    np.testing.assert_array_equal(counts, need)
    assert abs(len(picked) - 0.5 * len(pos)) <= np.count_nonzero(np.bincount(_bins(pos, 10)))


def test_gc_matched_sample_falls_back_to_nearest_bins():
    pos = np.full(10, 0.55)                                  # all in bin 5 of 10
    cand = np.concatenate([np.full(3, 0.52), np.full(4, 0.45),  # bin 5: 3, bin 4: 4
                           np.full(50, 0.65), np.full(100, 0.05)])  # bin 6: 50, bin 0: 100
    picked = gc_matched_sample(pos, cand, 1.0, 10, np.random.default_rng(0))
    bins = np.bincount(_bins(cand[picked], 10), minlength=10)
    assert len(picked) == 10
    assert bins[5] == 3          # every candidate of the bin itself
    assert bins[4] == 4          # then the nearest bins, lower first on a tie
    assert bins[6] == 3
    assert bins[0] == 0          # never a far bin while near ones have candidates


def test_gc_matched_sample_short_of_candidates_takes_what_there_is():
    pos = np.full(10, 0.5)
    cand = np.array([0.1, 0.5, 0.9])
    picked = gc_matched_sample(pos, cand, 1.0, 10, np.random.default_rng(0))
    assert sorted(picked.tolist()) == [0, 1, 2]


def test_gc_matched_sample_deterministic_for_seed():
    rng = np.random.default_rng(3)
    pos, cand = rng.uniform(0.3, 0.7, 200), rng.uniform(0, 1, 5000)
    a = gc_matched_sample(pos, cand, 1.0, 20, np.random.default_rng(42))
    b = gc_matched_sample(pos, cand, 1.0, 20, np.random.default_rng(42))
    c = gc_matched_sample(pos, cand, 1.0, 20, np.random.default_rng(43))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


# ---------------------------------------------------------------- labelled_windows


WIDTH, RATIO, SHUFFLED, BINS, MAX_N = 200, 2.0, 0.5, 10, 0.01


@pytest.fixture(scope="module")
def labelled(toy_genome, tmp_path_factory):
    sizes = {c: len(s) for c, s in toy_genome.seqs.items()}
    peaks = read_peaks(toy_genome.peaks, sizes, {})
    bl_path = tmp_path_factory.mktemp("bl") / "blacklist.bed"
    chrom, lo, hi = toy_genome.blacklist
    bl_path.write_text(f"{chrom}\t{lo}\t{hi}\nchrUn\t0\t100\n")
    blacklist = read_blacklist(bl_path, sizes, {})
    split_of = resolve_splits(sizes, ["chr3"], ["chr4"])
    args = (peaks, blacklist, toy_genome.fasta, sizes, split_of, WIDTH, RATIO, SHUFFLED, BINS,
            MAX_N)
    tiles = genome_tiles(toy_genome.fasta, WIDTH)
    table, stats = labelled_windows(*args, seed=7, tiles=tiles)
    again, _ = labelled_windows(*args, seed=7, tiles=tiles)
    other, _ = labelled_windows(*args, seed=8, tiles=tiles)
    return {"table": table, "stats": stats, "again": again, "other": other, "peaks": peaks,
            "blacklist": blacklist, "split_of": split_of, "sizes": sizes}


def test_labelled_columns_and_stats(labelled):
    table, stats = labelled["table"], labelled["stats"]
    assert list(table.columns) == WINDOW_COLUMNS
    assert stats == {"peaks": len(labelled["peaks"]), "off_chromosome_end": 1,
                     "blacklisted": 1, "not_in_split": 0, "too_many_n": 0}
    assert (table["end"] - table["start"] == WIDTH).all()
    assert set(table["kind"]) == {"peak", "background", "shuffle"}
    assert set(table["split"]) == {"train", "valid", "test"}


def test_positives_are_summit_windows(labelled, toy_genome):
    table = labelled["table"]
    pos = table[table["kind"] == "peak"]
    assert (pos["label"] == 1).all()
    assert (table[table["kind"] != "peak"]["label"] == 0).all()
    expected = {(c, s - WIDTH // 2) for c, ss in toy_genome.summits.items() for s in ss
                if s - WIDTH // 2 >= 0 and s + WIDTH // 2 <= len(toy_genome.seqs[c])}
    chrom, lo, hi = toy_genome.blacklist
    expected = {(c, s) for c, s in expected if not (c == chrom and overlaps(s, s + WIDTH, lo, hi))}
    assert set(zip(pos["chrom"], pos["start"], strict=True)) == expected
    assert (pos["split"] == pos["chrom"].map(labelled["split_of"])).all()


def test_negatives_never_overlap_any_summit_window(labelled):
    table = labelled["table"]
    # every summit window, including those later dropped as blacklisted
    all_pos = summit_windows(labelled["peaks"], WIDTH, labelled["sizes"])
    neg = table[table["kind"] == "background"]
    assert len(neg) > 0
    for n in neg.itertuples():
        same = all_pos[all_pos["chrom"] == n.chrom]
        hits = [p.name for p in same.itertuples() if overlaps(n.start, n.end, p.start, p.end)]
        assert not hits, f"negative {n.name} overlaps {hits}"


def test_negatives_do_not_overlap_each_other(labelled):
    neg = labelled["table"].query("kind == 'background'").sort_values(["chrom", "start"])
    for _, group in neg.groupby("chrom"):
        assert (group["start"].to_numpy()[1:] >= group["end"].to_numpy()[:-1]).all()


def test_negatives_on_own_split_avoid_blacklist_and_n(labelled, toy_genome):
    table = labelled["table"]
    neg = table[table["kind"] == "background"]
    assert (neg["chrom"].map(labelled["split_of"]) == neg["split"]).all()
    chrom, lo, hi = toy_genome.blacklist
    assert not any(overlaps(r.start, r.end, lo, hi) for r in neg.itertuples()
                   if r.chrom == chrom)
    for r in neg.itertuples():
        seq = toy_genome.seqs[r.chrom][r.start:r.end]
        assert seq.upper().count("N") <= MAX_N * WIDTH
        assert r.name == f"bg:{r.chrom}:{r.start}"


def test_negatives_gc_matched_per_split(labelled, toy_genome):
    table = labelled["table"]
    for split in ("train", "valid", "test"):
        part = table[table["split"] == split]
        pos_gc = part.loc[part["kind"] == "peak", "gc"]
        neg_gc = part.loc[part["kind"] == "background", "gc"]
        assert abs(pos_gc.mean() - neg_gc.mean()) < 0.05, split
    # the gc column is the window's real GC
    for r in table.sample(20, random_state=0).itertuples():
        seq = toy_genome.seqs[r.chrom][r.start:r.end].upper()
        called = sum(b in "ACGT" for b in seq)
        assert r.gc == pytest.approx(sum(b in "GC" for b in seq) / called, abs=1e-4)
    # unmatched background would be far off: the genome's tiles average much lower GC
    genome_gc = genome_tiles(toy_genome.fasta, WIDTH)["gc"].mean()
    assert table.loc[table["kind"] == "peak", "gc"].mean() - genome_gc > 0.1


def test_negative_ratio_per_split(labelled):
    table = labelled["table"]
    for split in ("train", "valid", "test"):
        part = table[table["split"] == split]
        pos_gc = part.loc[part["kind"] == "peak", "gc"].to_numpy()
        n_neg = (part["kind"] == "background").sum()
        need = np.round(np.bincount(_bins(pos_gc, BINS), minlength=BINS) * RATIO).sum()
        assert n_neg == need, split
        assert abs(n_neg - RATIO * len(pos_gc)) <= np.count_nonzero(np.bincount(_bins(pos_gc,
                                                                                      BINS)))


def test_shuffle_rows(labelled):
    table = labelled["table"]
    for split in ("train", "valid", "test"):
        part = table[table["split"] == split]
        pos = part[part["kind"] == "peak"]
        shuf = part[part["kind"] == "shuffle"]
        assert len(shuf) == round(SHUFFLED * len(pos))
        assert (shuf["label"] == 0).all()
        pos_coords = set(zip(pos["chrom"], pos["start"], pos["end"], strict=True))
        assert set(zip(shuf["chrom"], shuf["start"], shuf["end"], strict=True)) <= pos_coords
        assert shuf["name"].str.match(r"^shuf\d+:").all()


def test_labelled_windows_deterministic(labelled):
    pd.testing.assert_frame_equal(labelled["table"], labelled["again"])
    def part(name, query):
        return labelled[name].query(query).reset_index(drop=True)

    # another seed draws other negatives around the same positives
    assert not part("table", "kind != 'peak'").equals(part("other", "kind != 'peak'"))
    pd.testing.assert_frame_equal(part("table", "kind == 'peak'"), part("other", "kind == 'peak'"))


def test_labelled_windows_have_no_split_problems(labelled):
    assert split_problems(labelled["table"], labelled["split_of"]) == []


def test_labelled_windows_zero_ratios(labelled, toy_genome):
    table, _ = labelled_windows(labelled["peaks"], labelled["blacklist"], toy_genome.fasta,
                                labelled["sizes"], labelled["split_of"], WIDTH, 0.0, 0.0, BINS,
                                MAX_N, seed=7, tiles=genome_tiles(toy_genome.fasta, WIDTH))
    assert set(table["kind"]) == {"peak"}


def test_read_windows_round_trip(labelled, tmp_path):
    path = tmp_path / "windows.bed"
    labelled["table"].to_csv(path, sep="\t", header=False, index=False)
    back = read_windows(path)
    pd.testing.assert_frame_equal(back, labelled["table"], check_dtype=False)


def test_duplicated_peak_lines_give_each_window_once(labelled, toy_genome, tmp_path):
    lines = toy_genome.peaks.read_text().splitlines(keepends=True)
    doubled = write(tmp_path / "doubled.bed", "".join(lines + lines[2:]))
    peaks = read_peaks(doubled, labelled["sizes"], {})
    assert peaks.attrs[DUPLICATES_MERGED] == len(labelled["peaks"])
    pd.testing.assert_frame_equal(peaks, labelled["peaks"])
    table, _ = labelled_windows(peaks, labelled["blacklist"], toy_genome.fasta,
                                labelled["sizes"], labelled["split_of"], WIDTH, RATIO, SHUFFLED,
                                BINS, MAX_N, seed=7, tiles=genome_tiles(toy_genome.fasta, WIDTH))
    positives = table[table["label"] == 1]
    assert not positives.duplicated(["chrom", "start", "split"]).any()
    pd.testing.assert_frame_equal(table, labelled["table"])


def test_no_window_left_names_every_drop_reason(labelled, toy_genome):
    sizes = labelled["sizes"]
    everything = pd.DataFrame({"chrom": list(sizes), "start": 0, "end": list(sizes.values())})
    table, stats = labelled_windows(labelled["peaks"], everything, toy_genome.fasta, sizes,
                                    labelled["split_of"], WIDTH, RATIO, SHUFFLED, BINS, MAX_N,
                                    seed=7, tiles=genome_tiles(toy_genome.fasta, WIDTH))
    assert table.empty
    n = len(labelled["peaks"])
    with pytest.raises(InputError) as err:
        require_windows(table, stats, "peaks.bed")
    assert f"peaks.bed: no peak window is left of {n} peaks (1 ran off a chromosome end, " \
        f"{n - 1} overlap the blacklist)" in str(err.value)
    assert "blacklist belongs to the genome" in err.value.fix
    require_windows(labelled["table"], labelled["stats"], "peaks.bed")     # windows: no error


def _windows_cli(toy_genome, tmp_path, peaks_text: str) -> tuple[int, list]:
    peaks = write(tmp_path / "peaks.bed", peaks_text)
    tiles = tmp_path / "tiles.tsv.gz"
    write_genome_tiles(toy_genome.fasta, WIDTH, tiles)
    params = {"seed": 1, "splits": {"valid": ["chr3"], "test": ["chr4"]},
              "windows": {"width": WIDTH, "negative_ratio": 1.0, "shuffled_ratio": 0.0,
                          "gc_bins": BINS, "max_n_fraction": MAX_N}}
    code = main(["windows", "--peaks", str(peaks), "--sizes", str(toy_genome.sizes_file),
                 "--fasta", str(toy_genome.fasta), "--tiles", str(tiles),
                 "--out", str(tmp_path / "w.bed"), "--record", str(tmp_path / "w.json"),
                 "--params", json.dumps(params)])
    return code, sorted(p.name for p in tmp_path.iterdir())


def test_windows_step_fails_instead_of_writing_an_empty_bed(toy_genome, tmp_path, capsys):
    chrom, lo, hi = toy_genome.n_run                    # every window there is N
    code, files = _windows_cli(toy_genome, tmp_path, f"{chrom}\t{lo + 140}\t{lo + 160}\n")
    assert code == 2
    assert files == ["peaks.bed", "tiles.tsv.gz"]       # no BED, no record
    err = capsys.readouterr().err
    assert "peaks.bed: no peak window is left of 1 peaks (1 have too many N" in err
    assert "max_n_fraction" in err


def test_windows_record_counts_merged_duplicates(toy_genome, tmp_path):
    lines = toy_genome.peaks.read_text().splitlines(keepends=True)
    code, files = _windows_cli(toy_genome, tmp_path, "".join(lines + lines[-3:]))
    assert code == 0 and "w.bed" in files
    record = json.loads((tmp_path / "w.json").read_text())
    assert record["results"][DUPLICATES_MERGED] == 3


def test_crlf_genome_windows_keep_their_n_fraction(toy_genome, tmp_path):
    """bedtools nuc counted '\r' as a base: every window failed the N filter."""
    crlf = tmp_path / "crlf.fa"
    crlf.write_bytes(toy_genome.plain.read_bytes().replace(b"\n", b"\r\n"))
    index_genome(crlf, tmp_path / "g.fa", tmp_path / "g.sizes")
    windows = pd.DataFrame({"chrom": ["chr1", "chr2", "chr3"], "start": [0, 6_000, 2_950],
                            "end": [200, 6_200, 3_150]})
    expected = nucleotide_content(windows, toy_genome.fasta)
    got = nucleotide_content(windows, tmp_path / "g.fa")
    pd.testing.assert_frame_equal(got, expected)
    assert got["n_frac"].tolist() == [0.0, 1.0, 0.0]


# ---------------------------------------------------------------- split_problems


SPLIT_OF = {"chr1": "train", "chr2": "train", "chr3": "valid", "chr4": "test"}


def _table(rows):
    df = pd.DataFrame(rows, columns=["chrom", "start", "end", "name", "split"])
    return df.assign(score=0, strand=".", label=1, kind="peak", gc=0.5)[WINDOW_COLUMNS]


def test_split_problems_clean():
    table = _table([("chr1", 0, 100, "a", "train"), ("chr1", 100, 200, "b", "train"),
                    ("chr3", 0, 100, "c", "valid"), ("chr4", 0, 100, "d", "test")])
    assert split_problems(table, SPLIT_OF) == []


def test_split_problems_wrong_chromosome():
    table = _table([("chr1", 0, 100, "a", "train"), ("chr3", 500, 600, "c", "test"),
                    ("chr4", 0, 100, "d", "test")])
    problems = split_problems(table, SPLIT_OF)
    assert len(problems) == 1
    assert "window c (chr3:500-600)" in problems[0]
    assert "'test'" in problems[0] and "'valid'" in problems[0]


def test_split_problems_unknown_chromosome():
    table = _table([("chrM", 0, 100, "m", "train")])
    problems = split_problems(table, SPLIT_OF)
    assert len(problems) == 1 and "no split" in problems[0]


def test_split_problems_cross_split_overlap():
    table = _table([("chr1", 0, 100, "a", "train"), ("chr1", 50, 150, "b", "valid"),
                    ("chr1", 300, 400, "c", "train"), ("chr1", 400, 500, "d", "test"),
                    ("chr3", 0, 100, "e", "valid")])
    problems = split_problems(table, SPLIT_OF)
    wrong_chrom = [p for p in problems if "belongs to" in p]
    overlap = [p for p in problems if "overlaps" in p]
    assert len(wrong_chrom) == 2          # b and d are on a train chromosome
    assert overlap == ["window a (chr1:0-100) of split 'train' overlaps a window of split "
                       "'valid'"]          # c and d only touch (half-open)


def test_check_no_leak_stops_a_stage_whose_windows_cross_splits():
    clean = _table([("chr1", 0, 100, "a", "train"), ("chr3", 0, 100, "c", "valid")])
    check_no_leak(clean, SPLIT_OF, "MIL bags")
    leaky = _table([("chr1", 0, 100, "a", "train"), ("chr1", 50, 150, "b", "train"),
                    ("chr3", 0, 100, "c", "test")])
    with pytest.raises(InputError, match=r"1 MIL bags leak across splits:\n  window c"):
        check_no_leak(leaky, SPLIT_OF, "MIL bags")


def test_usable_windows_is_the_filter_the_positives_pass(labelled, toy_genome):
    """The one filter of every stage's positives: the summit windows it keeps are exactly the
    windows step's positives, in order, with their GC and split."""
    windows = summit_windows(labelled["peaks"], WIDTH, labelled["sizes"])
    usable, dropped = usable_windows(windows, labelled["blacklist"], toy_genome.fasta,
                                     labelled["split_of"], MAX_N)
    peaks = labelled["table"][labelled["table"]["kind"] == "peak"]
    assert sorted(usable["name"]) == sorted(peaks["name"])
    merged = usable.merge(peaks, on="name", suffixes=("", "_step"))
    assert (merged["split"] == merged["split_step"]).all()
    assert np.allclose(merged["gc"].round(4), merged["gc_step"])
    assert dropped == {k: labelled["stats"][k] for k in ("blacklisted", "not_in_split",
                                                          "too_many_n")}
    assert dropped["blacklisted"] > 0
