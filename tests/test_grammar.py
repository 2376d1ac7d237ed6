"""Motif grammar: co-activation at spacing Δ, with a planted known answer."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from helixflow import grammar as gr
from helixflow.errors import InputError
from helixflow.files import read_json, sha256sum
from helixflow.models.cnn import BindingCNN, CNNConfig, save_model
from helixflow.motifs import pwm_logodds

MOTIF_A, MOTIF_B = "TGACCGAT", "GCATTTCC"
SPACING = 12  # start of B − start of A


def one_hot(seq: str) -> np.ndarray:
    """ACGT string → (4, len) float32."""
    return np.eye(4, dtype=np.float32)[["ACGT".index(b) for b in seq]].T.copy()


def ppm_of(seq: str, p: float = 0.85) -> np.ndarray:
    return one_hot(seq) * (p - (1 - p) / 3) + (1 - p) / 3


def planted(n: int, length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n positives with A then B at SPACING (random start), n random negatives."""
    rng = np.random.default_rng(seed)
    X = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (2 * n, length))].transpose(0, 2, 1).copy()
    starts = rng.integers(0, length - SPACING - 10 + 1, n)  # B fits a 10-wide kernel
    for i, s in enumerate(starts):
        X[i, :, s:s + len(MOTIF_A)] = one_hot(MOTIF_A)
        X[i, :, s + SPACING:s + SPACING + len(MOTIF_B)] = one_hot(MOTIF_B)
    return X, np.r_[np.ones(n), np.zeros(n)].astype(np.uint8)


def pwm_conv(kernel: int = 8, extra: int = 0, seed: int = 0) -> torch.nn.Conv1d:
    """Conv1d whose first two filters are the log-odds PWMs of A and B (left-aligned)."""
    conv = torch.nn.Conv1d(4, 2 + extra, kernel)
    torch.manual_seed(seed)
    with torch.no_grad():
        conv.weight.normal_(0, 0.3)
        conv.bias.zero_()
        for f, motif in enumerate((MOTIF_A, MOTIF_B)):
            conv.weight[f] = 0
            conv.weight[f, :, :len(motif)] = torch.from_numpy(
                pwm_logodds(ppm_of(motif)).astype(np.float32))
    return conv


@pytest.fixture(scope="module")
def maps():
    X, y = planted(200, 100, seed=3)
    with torch.no_grad():
        A = torch.relu(pwm_conv()(torch.from_numpy(X))).numpy()
    return A[y == 1], A[y == 0]


def test_known_spacing_peaks_on_positives_and_is_flat_on_negatives(maps):
    A_pos, A_neg = maps
    cut = [0.5 * np.concatenate([A_pos, A_neg])[:, f].max() for f in (0, 1)]
    opts = {"cut_i": cut[0], "cut_j": cut[1], "radius": 2}
    pos = gr.coactivation_profile(A_pos[:, 0], A_pos[:, 1], 30, **opts)
    neg = gr.coactivation(A_neg[:, 0], A_neg[:, 1], 30, **opts)
    delta = pos["spacing"]
    assert delta[np.argmax(pos["score"])] == SPACING
    assert pos["n_pairs"][delta == SPACING][0] == 200
    assert pos["score"][delta == SPACING][0] > 20
    others = pos["score"][np.abs(delta - SPACING) > 0]
    assert others.max() < 3
    assert np.abs(neg - 1).max() < 1.5 and abs(neg[delta == SPACING][0] - 1) < 1
    # the mirrored pair sees B first: the peak moves to -SPACING
    back = gr.coactivation(A_pos[:, 1], A_pos[:, 0], 30, cut_i=cut[1], cut_j=cut[0], radius=2)
    assert delta[np.argmax(back)] == -SPACING


def test_weighted_scores_peak_at_the_same_spacing(maps):
    A_pos, _ = maps
    score = gr.coactivation(A_pos[:, 0], A_pos[:, 1], 30, weighted=True, radius=2)
    assert np.arange(-30, 31)[np.argmax(score)] == SPACING


def test_pair_counts_match_a_brute_force_count():
    rng = np.random.default_rng(7)
    s_i = (rng.random((6, 25)) < 0.15).astype(float)
    s_j = rng.random((6, 25)) * (rng.random((6, 25)) < 0.2)
    observed, expected = gr.pair_counts(s_i, s_j, 10)
    n, P = s_i.shape
    for k, delta in enumerate(range(-10, 11)):
        def count(a: int, b: int, d: int = delta) -> float:
            return sum(s_i[a, p] * s_j[b, p + d] for p in range(P) if 0 <= p + d < P)
        assert observed[k] == pytest.approx(sum(count(a, a) for a in range(n)))
        # j's map from each other window in turn, averaged
        assert expected[k] == pytest.approx(
            sum(count(a, b) for a in range(n) for b in range(n) if b != a) / (n - 1))


def test_active_sites_keep_one_position_per_peak():
    A = np.array([[0, 1, 3, 2, 0, 0, 5, 4.9, 0, 0.2]])
    assert np.flatnonzero(gr.active_sites(A, 1.5)[0]).tolist() == [2, 3, 6, 7]
    assert np.flatnonzero(gr.active_sites(A, 1.5, radius=2)[0]).tolist() == [2, 6]


def test_distinct_windows_merges_overlapping_windows_of_one_locus():
    rng = np.random.default_rng(1)
    genome = np.eye(4, dtype=np.uint8)[rng.integers(0, 4, 1000)].T
    starts = [0, 30, 300, 310, 600, 900 - 100]
    X = np.stack([genome[:, s:s + 100] for s in starts])
    assert gr.distinct_windows(X, 50).tolist() == [0, 2, 4, 5]
    assert gr.distinct_windows(X, 0).tolist() == list(range(len(starts)))


def _matches() -> pd.DataFrame:
    rows = [  # query, target_id, target_name, p, q, strand
        ("f0", "MA1", "OWN", 1e-9, 1e-8, "+"), ("f1", "MA1", "OWN", 1e-7, 1e-6, "-"),
        ("f2", "MA7", "PARALOG", 1e-5, 1e-4, "+"), ("f2", "MA1", "OWN", 1e-4, 1e-3, "+"),
        ("f3", "MA2", "FKH1", 1e-6, 1e-5, "+"), ("f4", "MA2", "FKH1", 1e-4, 1e-3, "-"),
        ("f5", "MA3", "STE12", 1e-3, 1e-2, "-"), ("f6", "MA4", "GAL4", 0.1, 0.2, "+")]
    tomtom = pd.DataFrame(rows, columns=["query", "target_id", "target_name", "p", "q", "strand"])
    return gr.filter_matches(tomtom, "MA1", 0.05)


def test_choose_pairs_anchor_other_strand_and_one_filter_per_partner_motif():
    matches = _matches()
    assert matches.loc["f6", "motif"] == gr.UNMATCHED
    pairs = gr.choose_pairs(matches, 0.05, max_partners=4)
    assert [(p["role"], p["filter_a"], p["filter_b"]) for p in pairs] == [
        ("homotypic", "f0", "f0"), ("own_other_strand", "f0", "f1"),
        ("partner", "f0", "f3"), ("partner", "f0", "f5")]
    assert len(gr.choose_pairs(matches, 0.05, max_partners=1)) == 3


def test_choose_pairs_falls_back_to_the_most_active_filters():
    matches = _matches()
    only_own = matches.loc[["f0", "f1", "f6"]]
    activity = pd.Series({"f0": 5.0, "f1": 4.0, "f6": 3.0, "f9": 9.0})
    pairs = gr.choose_pairs(only_own, 0.05, max_partners=1, activity=activity)
    assert pairs[-1] == {"role": "top_active", "filter_a": "f0", "filter_b": "f9"}


def _write_split(out, split: str, X: np.ndarray, y: np.ndarray) -> dict:
    entry = {}
    for key, array in (("x", X.astype(np.uint8)), ("y", y)):
        path = out / f"{split}.{key}.npy"
        np.save(path, array)
        entry[key] = {"file": path.name, "sha256": sha256sum(path)}
    names = out / f"{split}.names.txt"
    names.write_text("".join(f"w{i}\n" for i in range(len(y))))
    entry["names"] = {"file": names.name, "sha256": sha256sum(names)}
    return entry


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Shards of planted windows, a BindingCNN whose filters 0/1 are A/B, a motif dir."""
    tmp_path = tmp_path_factory.mktemp("grammar")
    X, y = planted(150, 100, seed=5)
    shards = tmp_path / "shards"
    shards.mkdir()
    manifest = {"window": 100, "splits": {"test": _write_split(shards, "test", X, y)}}
    (shards / "manifest.json").write_text(json.dumps(manifest))
    model = BindingCNN(CNNConfig(window=100, filters=4, kernel=10, pool=0, dense=0))
    with torch.no_grad():
        model.conv.load_state_dict(pwm_conv(kernel=10, extra=2).state_dict())
    save_model(model, tmp_path / "model")
    motifs = tmp_path / "motifs"
    motifs.mkdir()
    pd.DataFrame({"query": ["filter000", "filter001", "filter002", "filter003"],
                  "target_id": ["MA9.1", "MA8.1", "MA7.1", "MA7.1"],
                  "target_name": ["AAA", "BBB", "CCC", "CCC"], "p": [1e-8, 1e-7, 0.3, 0.4],
                  "q": [1e-6, 1e-5, 0.5, 0.6], "offset": 0, "strand": "+"}).to_csv(
        motifs / "tomtom.tsv", sep="\t", index=False)
    pd.DataFrame({"target": ["T"], "jaspar_id": ["MA9.1"]}).to_csv(
        motifs / "recovery.tsv", sep="\t", index=False)
    return tmp_path


def test_run_grammar_end_to_end_finds_the_planted_spacing(project, tmp_path):
    shards, motifs = project / "shards", project / "motifs"
    summary = gr.run_grammar("T", project / "model", shards / "manifest.json", motifs,
                             tmp_path / "out", tmp_path / "fig" / "T_grammar.png",
                             {"max_spacing": 30})
    pairs = pd.read_csv(tmp_path / "out" / "pairs.tsv", sep="\t")
    partner = pairs[pairs["role"] == "partner"].iloc[0]
    assert (partner["filter_b"], partner["motif_b"]) == ("filter001", "BBB")
    assert partner["best_spacing"] == SPACING and partner["best_core_spacing"] == SPACING
    assert partner["n_pos_pairs"] == 150 and partner["p_bonferroni"] < 1e-10
    spacing = pd.read_csv(tmp_path / "out" / "spacing.tsv", sep="\t")
    assert list(spacing.columns) == gr.SPACING_COLUMNS
    assert len(spacing) == len(pairs) * 61
    assert spacing.loc[spacing["spacing"].abs() < 8, "overlap"].all()
    fields = pd.read_csv(tmp_path / "out" / "receptive_field.tsv", sep="\t")
    assert fields["receptive_field_bp"].tolist() == [10, 100]   # conv, global max
    assert summary["receptive_field_bp"] == 100 and summary["max_learnable_spacing_bp"] == 0
    assert (tmp_path / "fig" / "T_grammar.png").stat().st_size > 0
    assert (tmp_path / "fig" / "T_grammar.svg").is_file()
    assert read_json(tmp_path / "out" / "record.json")["step"] == "grammar"


def test_run_grammar_without_the_motif_step_names_the_missing_file(project, tmp_path):
    with pytest.raises(InputError, match="recovery.tsv"):
        gr.run_grammar("T", project / "model", project / "shards" / "manifest.json",
                       tmp_path / "no_motifs", tmp_path / "out", tmp_path / "g.png", {})


# ---------------------------------------------------------------- streaming = the whole-array code
# The functions below are the implementation before the grammar step was streamed (maps held
# whole, windows merged by sequence with a Python loop), kept verbatim as the reference.

def ref_active_sites(A: np.ndarray, cut: float, radius: int = 0) -> np.ndarray:
    from scipy.ndimage import maximum_filter1d

    acts = np.asarray(A, dtype=np.float64)
    above = acts > cut
    if radius <= 0 or acts.size == 0:
        return above
    local_max = maximum_filter1d(acts, size=2 * radius + 1, axis=1, mode="constant",
                                 cval=-np.inf)
    return above & (acts >= local_max)


def ref_pair_counts(s_i: np.ndarray, s_j: np.ndarray, max_spacing: int):
    s_i, s_j = np.asarray(s_i, dtype=np.float64), np.asarray(s_j, dtype=np.float64)
    n, P = s_i.shape
    S_i, S_j = s_i.sum(axis=0), s_j.sum(axis=0)
    spacings = np.arange(-max_spacing, max_spacing + 1)
    observed = np.zeros(len(spacings))
    across = np.zeros(len(spacings))
    for k, delta in enumerate(spacings):
        lo, hi = max(0, -delta), min(P, P - delta)
        if hi <= lo:
            continue
        observed[k] = np.einsum("np,np->", s_i[:, lo:hi], s_j[:, lo + delta:hi + delta])
        across[k] = S_i[lo:hi] @ S_j[lo + delta:hi + delta]
    expected = (across - observed) / (n - 1) if n > 1 else np.full(len(spacings), np.nan)
    return observed, expected


def ref_profile(A_i, A_j, max_spacing, cut_i, cut_j, radius, weighted, pseudocount):
    from scipy import stats

    site_i, site_j = ref_active_sites(A_i, cut_i, radius), ref_active_sites(A_j, cut_j, radius)
    n_pairs, expected = ref_pair_counts(site_i, site_j, max_spacing)
    if weighted:
        obs_w, exp_w = ref_pair_counts(np.where(site_i, A_i, 0.0), np.where(site_j, A_j, 0.0),
                                       max_spacing)
    else:
        obs_w, exp_w = n_pairs, expected
    return {"spacing": np.arange(-max_spacing, max_spacing + 1),
            "score": (obs_w + pseudocount) / (exp_w + pseudocount),
            "n_pairs": n_pairs, "expected": expected,
            "p": stats.poisson.sf(n_pairs - 1, np.maximum(expected, 1e-12))}


def ref_distinct_windows(X: np.ndarray, min_overlap: int = 50) -> np.ndarray:
    X = np.asarray(X)
    n, _, L = X.shape
    if n == 0 or min_overlap <= 0 or min_overlap > L:
        return np.arange(n, dtype=np.int64)
    codes = np.where(X.sum(axis=1) > 0, X.argmax(axis=1), 4).astype(np.uint8)
    prefix = {}
    for i in range(n):
        if (codes[i, :min_overlap] < 4).all():
            prefix.setdefault(codes[i, :min_overlap].tobytes(), []).append(i)
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        for start in range(L - min_overlap + 1):
            for j in prefix.get(codes[i, start:start + min_overlap].tobytes(), ()):
                if j != i:
                    a, b = root(i), root(j)
                    parent[max(a, b)] = min(a, b)
    return np.array([i for i in range(n) if root(i) == i], dtype=np.int64)


def ref_spacing_table(target, pairs, A_pos, A_neg, names, matches, cores, params):
    params = gr.DEFAULTS | dict(params)
    index = {name: k for k, name in enumerate(names)}
    peaks = [maps.max(axis=(0, 2)) for maps in (A_pos, A_neg) if maps.size]
    peak = np.max(peaks, axis=0) if peaks else np.zeros(len(names))
    left, width = cores
    frames = []
    for pair in pairs:
        a, b = index[pair["filter_a"]], index[pair["filter_b"]]
        opts = {"cut_i": params["threshold"] * peak[a], "cut_j": params["threshold"] * peak[b],
                "radius": int(params["nms_radius"]), "weighted": bool(params["weighted"]),
                "pseudocount": float(params["pseudocount"])}
        pos = ref_profile(A_pos[:, a], A_pos[:, b], int(params["max_spacing"]), **opts)
        neg = ref_profile(A_neg[:, a], A_neg[:, b], int(params["max_spacing"]), **opts)
        core = pos["spacing"] + left[b] - left[a]
        frames.append(pd.DataFrame({
            "target": target, "filter_a": pair["filter_a"],
            "motif_a": gr._motif(matches, pair["filter_a"]), "filter_b": pair["filter_b"],
            "motif_b": gr._motif(matches, pair["filter_b"]), "spacing": pos["spacing"],
            "core_spacing": core, "overlap": (core < width[a]) & (-core < width[b]),
            "score_pos": pos["score"], "score_neg": neg["score"],
            "n_pos_pairs": pos["n_pairs"].astype(np.int64), "expected_pos": pos["expected"],
            "n_neg_pairs": neg["n_pairs"].astype(np.int64), "expected_neg": neg["expected"],
            "p_pos": pos["p"]}))
    return pd.concat(frames, ignore_index=True)[gr.SPACING_COLUMNS]


def ref_grammar_tables(model, X, y, motif_dir, params):
    """spacing.tsv and pairs.tsv contents as the whole-array implementation computed them."""
    from helixflow.motifs import activation_pfms, pfm_to_ppm, trim_ppm

    params = gr.DEFAULTS | params
    keep = np.sort(np.concatenate([
        np.flatnonzero(y == label)[ref_distinct_windows(X[y == label],
                                                        int(params["distinct_overlap"]))]
        for label in (0, 1)]))
    X, y = X[keep], y[keep]
    A = gr.first_layer_activations(model, X)
    A_pos, A_neg = A[y == 1], A[y == 0]
    names = [f"filter{i:03d}" for i in range(A.shape[1])]
    kernel = int(model.conv.kernel_size[0])
    own_id = gr._own_id(motif_dir)
    matches = gr.filter_matches(pd.read_csv(motif_dir / "tomtom.tsv", sep="\t"), own_id,
                                float(params["q_threshold"]))
    activity = pd.Series(A_pos.max(axis=2).mean(axis=0), index=names)
    activity = activity[activity.index.isin(matches.index)]
    pairs = gr.choose_pairs(matches, float(params["q_threshold"]),
                            int(params["max_partners"]), activity)
    pfms, _ = activation_pfms(A_pos, X[y == 1].astype(np.float32), kernel,
                              params["threshold"])
    trimmed = [trim_ppm(ppm) for ppm in pfm_to_ppm(pfms)]
    cores = (np.array([left for _, left in trimmed]),
             np.array([ppm.shape[1] for ppm, _ in trimmed]))
    table = ref_spacing_table("T", pairs, A_pos, A_neg, names, matches, cores, params)
    cut = params["threshold"] * A.max(axis=(0, 2))
    sites_pos = {name: int(ref_active_sites(A_pos[:, k], cut[k],
                                            int(params["nms_radius"])).sum())
                 for k, name in enumerate(names)}
    best = gr.best_spacings(table, pairs, matches, sites_pos, int(params["min_pairs"]),
                            float(params["pseudocount"]))
    return table, best, int(len(A_pos)), int(len(A_neg))


# Two chromosomes; on each, loci with A then B at SPACING, and windows starting at these
# offsets from the locus: several windows a few bases apart (one locus: merged), a chain of
# three (-70/-30 and -30/10 overlap by 60 bp, -70/10 by 20), a pair overlapping by 40 < 50 bp
# (two loci). Negatives: background tiles away from the loci and "shuffles" (permuted copies
# of positive windows, carrying the positive's coordinates).
LOCUS_SHIFTS = [(0,), (0, -7), (0, -3, -9), (-70, -30, 10), (-60, 0), (0,), (0, -25), (0,)]


def _genome_windows(seed: int) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    rng = np.random.default_rng(seed)
    genome, rows = {}, []
    for c, chrom in enumerate(("chr1", "chr2")):
        seq = np.eye(4, dtype=np.uint8)[rng.integers(0, 4, 12_000)].T.copy()
        for i, shifts in enumerate(LOCUS_SHIFTS):
            site = 500 + 600 * i + int(rng.integers(0, 50))
            seq[:, site:site + 8] = one_hot(MOTIF_A)
            seq[:, site + SPACING:site + SPACING + 8] = one_hot(MOTIF_B)
            first = site - int(rng.integers(2, 6))
            for k, shift in enumerate(shifts):
                rows.append((chrom, first + shift, f"peak{c}_{i}_{k}", 1, "peak"))
        for t in range(14):
            rows.append((chrom, 6_000 + 400 * t, f"bg:{chrom}:{6_000 + 400 * t}", 0,
                         "background"))
        genome[chrom] = seq
    table = pd.DataFrame(rows, columns=["chrom", "start", "name", "label", "kind"])
    peaks = table[table["kind"] == "peak"]
    shuffles = peaks.iloc[rng.choice(len(peaks), 6, replace=True)].assign(
        label=0, kind="shuffle", name=lambda d: [f"shuf{i}:{n}" for i, n in enumerate(d["name"])])
    table = pd.concat([table, shuffles], ignore_index=True).assign(
        end=lambda d: d["start"] + 100, score=0, strand=".", gc=0.5,
        split=lambda d: d["chrom"].map({"chr1": "test", "chr2": "valid"}))
    table = table.sort_values(["chrom", "start", "label", "name"], kind="stable")
    return genome, table[["chrom", "start", "end", "name", "score", "strand", "label", "split",
                          "kind", "gc"]].reset_index(drop=True)


def _encode(genome: dict[str, np.ndarray], windows: pd.DataFrame, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = np.stack([genome[r.chrom][:, r.start:r.end] for r in windows.itertuples()])
    for i in np.flatnonzero(windows["kind"].to_numpy() == "shuffle"):
        X[i] = X[i][:, rng.permutation(X.shape[2])]
    return X.astype(np.uint8)


@pytest.fixture(scope="module")
def located(project):
    """The planted project's model and motifs with shards built from genomic windows, and
    the windows BED they came from."""
    out = project / "located"
    out.mkdir()
    genome, windows = _genome_windows(seed=11)
    bed = out / "windows.bed"
    windows.to_csv(bed, sep="\t", header=False, index=False)
    shards = out / "shards"
    shards.mkdir()
    splits = {}
    for split in ("valid", "test"):
        part = windows[windows["split"] == split].reset_index(drop=True)
        splits[split] = _write_split(shards, split, _encode(genome, part, seed=len(split)),
                                     part["label"].to_numpy(np.uint8))
        names = shards / f"{split}.names.txt"
        names.write_text("".join(f"{n}\n" for n in part["name"]))
        splits[split]["names"]["sha256"] = sha256sum(names)
    manifest = {"window": 100, "splits": splits, "sources": {"windows": sha256sum(bed)}}
    (shards / "manifest.json").write_text(json.dumps(manifest))
    return {"model": project / "model", "motifs": project / "motifs",
            "manifest": shards / "manifest.json", "bed": bed, "windows": windows}


def _reference_files(located, tmp_path, params: dict) -> tuple[bytes, bytes, tuple[int, int]]:
    from helixflow.files import write_tsv
    from helixflow.models.cnn import load_model
    from helixflow.shards import load_split

    parts = [load_split(located["manifest"], s) for s in params["split"]]
    X = np.concatenate([np.asarray(p.X) for p in parts])
    y = np.concatenate([np.asarray(p.y) for p in parts])
    table, best, n_pos, n_neg = ref_grammar_tables(load_model(located["model"]), X, y,
                                                   located["motifs"], params)
    write_tsv(tmp_path / "ref_spacing.tsv", table.round(6))
    write_tsv(tmp_path / "ref_pairs.tsv", best.round(6))
    return ((tmp_path / "ref_spacing.tsv").read_bytes(),
            (tmp_path / "ref_pairs.tsv").read_bytes(), (n_pos, n_neg))


@pytest.mark.parametrize("weighted", [False, True])
def test_streamed_grammar_writes_the_tables_of_the_whole_array_code(located, tmp_path,
                                                                    weighted):
    params = {"split": ["valid", "test"], "max_spacing": 30, "weighted": weighted}
    ref_spacing, ref_pairs, (n_pos, n_neg) = _reference_files(located, tmp_path, params)
    windows = located["windows"]
    assert n_pos < (windows["label"] == 1).sum()  # the example does merge windows
    # by coordinates (BED) and by sequence (fallback), 3 windows of maps at a time
    one_window = 4 * 4 * (100 - 10 + 1)
    for name, source in (("bed", located["bed"]), ("frame", windows), ("none", None)):
        if isinstance(source, pd.DataFrame):  # a table aligned with valid then test rows
            source = pd.concat([windows[windows["split"] == s] for s in params["split"]])
        out = tmp_path / name
        summary = gr.run_grammar("T", located["model"], located["manifest"], located["motifs"],
                                 out, tmp_path / f"{name}.png", params, windows=source,
                                 chunk_bytes=3 * one_window)
        assert (summary["n_pos"], summary["n_neg"]) == (n_pos, n_neg)
        assert summary["dedup"] == ("sequence" if source is None else "coordinates")
        assert (out / "spacing.tsv").read_bytes() == ref_spacing
        assert (out / "pairs.tsv").read_bytes() == ref_pairs


def test_grammar_holds_one_chunk_of_maps_at_a_time(located, tmp_path, monkeypatch):
    seen = []
    real = gr.first_layer_activations

    def spy(model, X, batch=512):
        seen.append(len(X))
        return real(model, X, batch)

    monkeypatch.setattr(gr, "first_layer_activations", spy)
    one_window = 4 * 4 * (100 - 10 + 1)
    summary = gr.run_grammar("T", located["model"], located["manifest"], located["motifs"],
                             tmp_path / "out", tmp_path / "g.png", {"split": ["valid", "test"]},
                             windows=located["bed"], chunk_bytes=5 * one_window)
    # one window to size the chunks, then two passes over every distinct window
    assert max(seen) == 5
    assert sum(seen) == 1 + 2 * (summary["n_pos"] + summary["n_neg"])


def test_grammar_rejects_windows_that_are_not_the_shards(located, tmp_path):
    other = tmp_path / "other.bed"
    located["windows"].iloc[::-1].to_csv(other, sep="\t", header=False, index=False)
    with pytest.raises(InputError, match="not the windows BED"):
        gr.run_grammar("T", located["model"], located["manifest"], located["motifs"],
                       tmp_path / "out", tmp_path / "g.png", {"split": "test"}, windows=other)
    shuffled = located["windows"].sample(frac=1, random_state=0)
    with pytest.raises(InputError, match="names differ"):
        gr.window_coordinates(shuffled[shuffled["split"] == "test"], located["manifest"],
                              ["test"], [list(located["windows"].query("split == 'test'")
                                              ["name"])])


# ---------------------------------------------------------------- de-duplication

def test_distinct_loci_merges_chains_of_overlaps_and_keeps_the_first_row():
    windows = pd.DataFrame({
        "chrom": ["c1", "c1", "c2", "c1", "c1", "c1", "c1", "c2", "c1"],
        "start": [300, 0, 0, 40, 80, 500, 560, 30, 290],
        "kind": ["peak"] * 7 + ["shuffle", "peak"]})
    windows["end"] = windows["start"] + 100
    # rows 1, 3, 4: a chain (0-40 and 40-80 overlap by 60; 0-80 only by 20), first row 1;
    # row 8 lies left of row 0 but comes later: row 0 is kept; rows 5, 6 overlap by
    # 40 < 50: two loci; row 7 is a shuffle on top of row 2: kept
    assert gr.distinct_loci(windows, 50).tolist() == [0, 1, 2, 5, 6, 7]
    assert gr.distinct_loci(windows, 40).tolist() == [0, 1, 2, 5, 7]
    assert gr.distinct_loci(windows, 0).tolist() == list(range(9))
    assert gr.distinct_loci(windows, 101).tolist() == list(range(9))
    no_kind = windows.drop(columns="kind")
    assert gr.distinct_loci(no_kind, 50).tolist() == [0, 1, 2, 5, 6]
    with pytest.raises(ValueError, match="one width"):
        gr.distinct_loci(windows.assign(end=windows["end"] + np.arange(9)), 50)


def test_distinct_windows_equals_the_loop_on_random_overlaps():
    rng = np.random.default_rng(4)
    genome = np.eye(4, dtype=np.uint8)[rng.integers(0, 4, 3000)].T
    starts = np.sort(rng.integers(0, 2900, 60))
    X = np.stack([genome[:, s:s + 100] for s in rng.permutation(starts)])
    X[5, :, 10] = 0  # an N inside a prefix: that window's prefix matches nothing
    X[7] = X[3]  # an exact copy elsewhere collapses by sequence
    for overlap in (0, 20, 50, 100, 101):
        np.testing.assert_array_equal(gr.distinct_windows(X, overlap),
                                      ref_distinct_windows(X, overlap))
    assert len(gr.distinct_windows(X, 50)) < 59


def test_rows_reads_chosen_rows_across_arrays():
    a, b = np.arange(5 * 4 * 3).reshape(5, 4, 3), 100 + np.arange(4 * 4 * 3).reshape(4, 4, 3)
    rows = gr.Rows([a, b], np.array([1, 4, 5, 8]))
    assert rows.shape == (4, 4, 3)
    np.testing.assert_array_equal(rows[0:4], np.concatenate([a[[1, 4]], b[[0, 3]]]))
    np.testing.assert_array_equal(rows[1:3], np.concatenate([a[[4]], b[[0]]]))
    with pytest.raises(IndexError):
        gr.Rows([a, b], np.array([9]))


# ---------------------------------------------------------------- running sums

def test_site_sums_over_chunks_equal_the_whole_array_profiles(maps):
    A_pos, _ = maps
    peak = A_pos.max(axis=(0, 2))
    cut = 0.5 * peak
    for weighted in (False, True):
        sums = gr.SiteSums(cut, [], [(0, 1), (1, 0), (0, 0)], radius=2, max_spacing=30,
                           weighted=weighted)
        for start in range(0, len(A_pos), 37):
            sums.add(A_pos[start:start + 37])
        for a, b in [(0, 1), (1, 0), (0, 0)]:
            got = sums.profile(a, b, 1.0)
            want = ref_profile(A_pos[:, a], A_pos[:, b], 30, cut[a], cut[b], 2, weighted, 1.0)
            np.testing.assert_array_equal(got["n_pairs"], want["n_pairs"])
            np.testing.assert_allclose(got["expected"], want["expected"], rtol=1e-12)
            np.testing.assert_allclose(got["score"], want["score"], rtol=1e-12)
        for f in (0, 1):
            assert sums.sites[f] == ref_active_sites(A_pos[:, f], cut[f], 2).sum()


def test_segment_counts_over_chunks_equal_activation_pfms(maps):
    from helixflow.motifs import activation_pfms

    X, y = planted(200, 100, seed=3)
    A_pos = maps[0]
    pfms, _ = activation_pfms(A_pos, X[y == 1], 8, 0.5)
    cut = np.where(A_pos.max(axis=(0, 2)) > 0, 0.5 * A_pos.max(axis=(0, 2)), np.inf)
    counts = sum(gr._segment_counts(A_pos[s:s + 23], X[y == 1][s:s + 23], 8, cut)
                 for s in range(0, len(A_pos), 23))
    np.testing.assert_array_equal(counts.reshape(pfms.shape), pfms)
    assert pfms.sum() > 0
