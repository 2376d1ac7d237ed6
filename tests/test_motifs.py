"""Tests for helixflow.motifs: filter PFMs, MEME I/O, JASPAR, Tomtom conventions, PWM scans."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from helixflow import motifs as mo
from helixflow.errors import InputError

MOTIF = "TTACCCGG"


def one_hot(seq: str) -> np.ndarray:
    """ACGT string → (4, len) float32; any other letter is an all-zero column."""
    out = np.zeros((4, len(seq)), dtype=np.float32)
    for j, base in enumerate(seq):
        if base in "ACGT":
            out["ACGT".index(base), j] = 1
    return out


def consensus(ppm: np.ndarray) -> str:
    return "".join("ACGT"[i] for i in np.argmax(ppm, axis=0))


def random_one_hot(rng: np.random.Generator, n: int, length: int) -> np.ndarray:
    return np.eye(4, dtype=np.float32)[rng.integers(0, 4, (n, length))].transpose(0, 2, 1).copy()


def rc_seqs(X: np.ndarray) -> np.ndarray:
    return X[:, ::-1, ::-1].copy()


def random_ppm(rng: np.random.Generator, w: int, concentration: float = 0.3) -> np.ndarray:
    return rng.dirichlet(np.full(4, concentration), size=w).T


# ----------------------------------------------------------------------------- activation_pfms

@pytest.fixture(scope="module")
def planted():
    """200 random 60 bp sequences, MOTIF planted once in the first 100; a matching filter."""
    rng = np.random.default_rng(1)
    X = random_one_hot(rng, 200, 60)
    starts = rng.integers(0, 60 - len(MOTIF) + 1, 100)
    for i, s in enumerate(starts):
        X[i, :, s:s + len(MOTIF)] = one_hot(MOTIF)
    weight = torch.from_numpy(np.stack([one_hot(MOTIF), np.zeros((4, len(MOTIF)), np.float32)]))
    acts = torch.relu(torch.nn.functional.conv1d(torch.from_numpy(X), weight)).numpy()
    return X, acts, starts


def test_activation_pfms_recovers_planted_motif(planted):
    X, acts, starts = planted
    pfms, nsites = mo.activation_pfms(acts, X, kernel=len(MOTIF), threshold=0.95)
    assert pfms.shape == (2, 4, len(MOTIF)) and nsites.shape == (2,)
    # only exact 8/8 matches exceed 0.95 * 8: the planted ones plus any chance occurrence
    exact = int((acts[:, 0] == len(MOTIF)).sum())
    assert nsites[0] == exact and 100 <= exact <= 102
    assert consensus(pfms[0]) == MOTIF
    np.testing.assert_allclose(pfms[0], one_hot(MOTIF) * exact)
    # filter 1 never fires: no sites, zero counts
    assert nsites[1] == 0 and not pfms[1].any()


def test_activation_pfms_threshold(planted):
    X, acts, _ = planted
    k = len(MOTIF)
    counts = [mo.activation_pfms(acts, X, k, threshold=t)[1][0] for t in (0.0, 0.5, 0.8, 0.95)]
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[1] > counts[3]
    # threshold 0 takes every position with a positive activation; > 0.5 means >= 5 of 8
    assert counts[0] == int((acts[:, 0] > 0).sum())
    assert counts[1] == int((acts[:, 0] >= 5).sum())
    pfms, nsites = mo.activation_pfms(acts, X, k, threshold=0.5)
    np.testing.assert_allclose(pfms[0].sum(axis=0), nsites[0])  # no N: every column sums to n
    # brute force on a few filters/sequences, with uint8 input and an N column
    Xn = X[:20].astype(np.uint8)
    Xn[0, :, 5] = 0
    a = acts[:20]
    got, _ = mo.activation_pfms(a, Xn, k, threshold=0.5)
    want = np.zeros((4, k))
    cut = 0.5 * a[:, 0].max()
    for i, p in zip(*np.nonzero(a[:, 0] > cut), strict=True):
        want += Xn[i, :, p:p + k]
    np.testing.assert_allclose(got[0], want)


def test_activation_pfms_shape_mismatch():
    with pytest.raises(ValueError, match="valid convolution"):
        mo.activation_pfms(np.zeros((2, 3, 10)), np.zeros((2, 4, 20)), kernel=5)


# ----------------------------------------------------------------------------- ppm helpers

def test_pfm_to_ppm_and_information():
    pfm = np.array([[[10, 0, 0], [0, 0, 0], [0, 5, 0], [0, 5, 0]]], dtype=float)
    ppm = mo.pfm_to_ppm(pfm)
    assert ppm.shape == (1, 4, 3)
    np.testing.assert_allclose(ppm.sum(axis=1), 1)
    np.testing.assert_allclose(ppm[0, :, 2], 0.25)  # zero-count column → uniform
    np.testing.assert_allclose(mo.pfm_to_ppm(pfm[0], pseudocount=0)[:, 2], 0.25)
    np.testing.assert_allclose(mo.pfm_to_ppm(pfm[0], pseudocount=0)[:, 0], [1, 0, 0, 0])
    ic = mo.information_content(mo.pfm_to_ppm(pfm[0], pseudocount=0))
    np.testing.assert_allclose(ic, [2, 1, 0])


def test_trim_and_reverse_complement():
    core = one_hot("GATTACA").astype(float)
    ppm = np.concatenate([np.full((4, 3), 0.25), core, np.full((4, 2), 0.25)], axis=1)
    trimmed, left = mo.trim_ppm(ppm)
    assert left == 3 and consensus(trimmed) == "GATTACA"
    one, left = mo.trim_ppm(np.full((4, 5), 0.25))
    assert one.shape == (4, 1) and left == 0
    assert consensus(mo.reverse_complement_ppm(core)) == "TGTAATC"
    stack = np.stack([core, core])
    np.testing.assert_array_equal(mo.reverse_complement_ppm(stack)[1],
                                  mo.reverse_complement_ppm(core))


# ----------------------------------------------------------------------------- MEME

def test_meme_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    motifs = {"filter_0": random_ppm(rng, 7), "filter_12": random_ppm(rng, 12)}
    path = tmp_path / "m.meme"
    mo.write_meme(path, motifs, nsites={"filter_0": 37})
    back = mo.read_meme(path)
    assert list(back) == list(motifs)
    for name in motifs:
        np.testing.assert_allclose(back[name], motifs[name], atol=1e-6)
    lines = path.read_text().splitlines()
    for expected in ["MEME version 4", "ALPHABET= ACGT", "strands: + -",
                     "Background letter frequencies",
                     "A 0.250000 C 0.250000 G 0.250000 T 0.250000", "MOTIF filter_0",
                     "letter-probability matrix: alength= 4 w= 7 nsites= 37 E= 0",
                     "letter-probability matrix: alength= 4 w= 12 nsites= 20 E= 0"]:
        assert expected in lines
    assert lines[0] == "MEME version 4"
    row = lines[lines.index("MOTIF filter_0") + 2].split()
    assert len(row) == 4 and all(len(v.split(".")[1]) == 6 for v in row)
    assert [p.name for p in tmp_path.iterdir()] == ["m.meme"]  # no temp file left behind


GOOD = """MEME version 4

ALPHABET= ACGT

strands: + -

Background letter frequencies
A 0.25 C 0.25 G 0.25 T 0.25

MOTIF one
letter-probability matrix: alength= 4 w= 2 nsites= 5 E= 0
0.1 0.2 0.3 0.4
0.25 0.25 0.25 0.25
"""


@pytest.mark.parametrize(("bad_text", "line", "message"), [
    (GOOD.replace("0.25 0.25 0.25 0.25", "0.25 0.25 0.5"), 13, "3 values"),
    (GOOD.replace("w= 2", "w= 3"), 14, "w= 3"),
    (GOOD.replace("0.25 0.25 0.25 0.25", "0.25 0.25 0.25 0.25\n0.25 0.25 0.25 0.25"), 14,
     "more rows"),
    (GOOD.replace("0.1 0.2 0.3 0.4", "0.1 0.2 0.3 0.9"), 12, "sums to 1.5"),
    (GOOD.replace("0.1 0.2 0.3 0.4", "0.1 0.2 x 0.4"), 12, "non-numbers"),
])
def test_read_meme_errors_name_file_and_line(tmp_path, bad_text, line, message):
    path = tmp_path / "bad.meme"
    path.write_text(bad_text)
    with pytest.raises(InputError, match=message) as info:
        mo.read_meme(path)
    assert info.value.line == line and info.value.path == path
    assert f"bad.meme line {line}" in str(info.value)


def test_read_meme_good_and_missing(tmp_path):
    path = tmp_path / "good.meme"
    path.write_text(GOOD)
    assert mo.read_meme(path)["one"].shape == (4, 2)
    with pytest.raises(InputError, match="cannot read"):
        mo.read_meme(tmp_path / "absent.meme")


# ----------------------------------------------------------------------------- JASPAR

def test_jaspar_motif_reb1():
    reb1 = mo.jaspar_motif("MA0363")
    assert reb1.name == "REB1" and reb1.matrix_id.startswith("MA0363.")
    assert "TTACCCG" in consensus(reb1.ppm)
    np.testing.assert_allclose(reb1.ppm.sum(axis=0), 1)
    assert reb1.release == mo.jaspar_release() and reb1.nsites > 0
    assert mo.jaspar_motif(reb1.matrix_id).matrix_id == reb1.matrix_id
    with pytest.raises(ValueError):
        reb1.ppm[0, 0] = 1  # frozen: the matrix is read-only too


def test_jaspar_errors():
    with pytest.raises(InputError, match="not found") as info:
        mo.jaspar_motif("MA9999")
    assert info.value.fix
    with pytest.raises(InputError, match="not a JASPAR matrix ID"):
        mo.jaspar_motif("REB1")
    with pytest.raises(InputError, match="unknown JASPAR release"):
        mo.jaspar_release("JASPAR1999")
    with pytest.raises(InputError, match="tax group"):
        mo.jaspar_motifs(tax_group="martians")


def test_jaspar_motifs_fungi():
    fungi = mo.jaspar_motifs("fungi")
    ids = [m.matrix_id for m in fungi]
    assert len(fungi) > 100 and len(set(ids)) == len(ids)
    assert mo.jaspar_motif("MA0363").matrix_id in ids
    assert all(np.allclose(m.ppm.sum(axis=0), 1) and (m.ppm > 0).all() for m in fungi)


# ----------------------------------------------------------------------------- Tomtom

@pytest.fixture(scope="module")
def tomtom_run():
    fungi = mo.jaspar_motifs("fungi")
    reb1 = mo.jaspar_motif("MA0363").ppm
    wt = reb1.shape[1]
    queries = {
        "reb1": reb1,
        "reb1_rc": mo.reverse_complement_ppm(reb1),
        "sub2": reb1[:, 2:8].copy(),  # target columns 2..7
        "sub2_rc": mo.reverse_complement_ppm(reb1[:, 2:8]),
        "pad3": np.concatenate([np.full((4, 3), 0.25), reb1], axis=1),
    }
    return fungi, reb1, wt, queries, mo.tomtom_matches(queries, fungi)


def test_tomtom_table_shape_and_order(tomtom_run):
    fungi, _, _, queries, table = tomtom_run
    assert list(table.columns) == mo.TOMTOM_COLUMNS
    assert len(table) == len(queries) * len(fungi)
    assert list(dict.fromkeys(table["query"])) == list(queries)
    for _, group in table.groupby("query", sort=False):
        assert group["p"].is_monotonic_increasing
        np.testing.assert_allclose(group["q"], mo.benjamini_hochberg(group["p"].to_numpy()))
    assert set(table["strand"]) <= {"+", "-"}


def test_tomtom_finds_reb1_on_both_strands(tomtom_run):
    *_, table = tomtom_run
    top = table.groupby("query", sort=False).head(1).set_index("query")
    for name, strand in [("reb1", "+"), ("reb1_rc", "-")]:
        assert top.loc[name, "target_id"].startswith("MA0363.")
        assert top.loc[name, "target_name"] == "REB1"
        assert top.loc[name, "q"] < 0.05 and top.loc[name, "strand"] == strand
        assert top.loc[name, "offset"] == 0 and top.loc[name, "overlap"] == 9


def test_tomtom_offset_convention_and_aligned_kl(tomtom_run):
    """memelite: query column j faces column j + offset of the (strand-oriented) target."""
    _, reb1, wt, queries, table = tomtom_run
    rows = table[table["target_id"].str.startswith("MA0363.")].set_index("query")
    assert rows.loc["sub2", ["offset", "strand"]].tolist() == [2, "+"]
    assert rows.loc["pad3", ["offset", "strand"]].tolist() == [-3, "+"]
    # on "-" the offset is in the reverse-complemented target: wt - 8 = 1 here, not 2
    assert rows.loc["sub2_rc", ["offset", "strand"]].tolist() == [wt - 8, "-"]
    for name in ["reb1", "reb1_rc", "sub2", "sub2_rc", "pad3"]:
        off, strand = rows.loc[name, "offset"], rows.loc[name, "strand"]
        right = mo.aligned_kl(queries[name], reb1, off, strand)
        assert right < 0.05, name
        wrong = mo.aligned_kl(queries[name], reb1, off + 1, strand)
        assert wrong > 1.0, name
    # the uniform padding does not overlap the target at offset -3
    assert mo.aligned_kl(queries["pad3"], reb1, -3, "+") == pytest.approx(0, abs=1e-9)


def test_best_kl_to_finds_planted_window():
    rng = np.random.default_rng(3)
    target = random_ppm(rng, 14)
    query = target[:, 5:11].copy()
    kl, off, strand = mo.best_kl_to(query, target)
    assert (off, strand) == (5, "+") and kl == pytest.approx(0, abs=1e-9)
    kl, off, strand = mo.best_kl_to(mo.reverse_complement_ppm(query), target)
    assert (off, strand) == (14 - 6 - 5, "-") and kl == pytest.approx(0, abs=1e-9)
    assert kl == pytest.approx(mo.aligned_kl(mo.reverse_complement_ppm(query), target, off, "-"))


def test_benjamini_hochberg_hand_example():
    p = np.array([0.04, 0.01, 0.03, 0.2, 0.9])
    # sorted 0.01 0.03 0.04 0.2 0.9; p*m/rank = .05 .075 .0667 .25 .9; running min from right
    np.testing.assert_allclose(mo.benjamini_hochberg(p), [0.2 / 3, 0.05, 0.2 / 3, 0.25, 0.9])
    assert mo.benjamini_hochberg(np.array([0.9, 1.0, 1.5])).max() == 1.0
    assert mo.benjamini_hochberg(np.array([])).size == 0


# ----------------------------------------------------------------------------- PWM baseline

def test_max_pwm_score_brute_force_and_strands():
    rng = np.random.default_rng(4)
    X = random_one_hot(rng, 6, 25)
    X[2, :, 7:9] = 0  # N
    lo = mo.pwm_logodds(random_ppm(rng, 5), background=np.array([0.3, 0.2, 0.2, 0.3]))
    assert np.isfinite(lo).all()
    got = mo.max_pwm_score(X, lo)
    rc_lo = lo[::-1, ::-1]
    for i in range(len(X)):
        best = -np.inf
        for p, w in itertools.product(range(25 - 5 + 1), [lo, rc_lo]):
            best = max(best, float(sum(X[i, a, p + j] * w[a, j]
                                       for a in range(4) for j in range(5))))
        assert got[i] == pytest.approx(best, abs=1e-4)
    np.testing.assert_allclose(mo.max_pwm_score(rc_seqs(X), lo), got, atol=1e-5)
    assert mo.max_pwm_score(X, mo.pwm_logodds(np.full((4, 5), 0.25))).max() == 0


def test_pwm_finds_reb1_site():
    reb1 = mo.jaspar_motif("MA0363").ppm
    rng = np.random.default_rng(5)
    X = random_one_hot(rng, 2, 100)
    X[0, :, 40:48] = one_hot(MOTIF)
    scores = mo.max_pwm_score(X, mo.pwm_logodds(reb1))
    assert scores[0] > scores[1] + 3


# ----------------------------------------------------------------------------- logos

def test_plot_filter_logos(tmp_path):
    reb1 = mo.jaspar_motif("MA0363").ppm
    panels = [
        {"title": "filter 3 (120 sites)", "query": reb1[:, 2:8], "match": reb1,
         "match_title": "MA0363 REB1", "offset": 2, "strand": "+"},
        {"title": "filter 7", "query": mo.reverse_complement_ppm(reb1[:, 2:8]), "match": reb1,
         "match_title": "MA0363 REB1", "offset": 1, "strand": "-"},
        {"title": "filter 9 (no match)", "query": np.full((4, 6), 0.25)},
    ]
    png = tmp_path / "logos.png"
    mo.plot_filter_logos(png, panels)
    svg = tmp_path / "logos.svg"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert "<svg" in svg.read_text()[:2000]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logos.png", "logos.svg"]
