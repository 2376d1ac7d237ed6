"""The attribution step for one target: saliency, ISM, DeepLIFT/SHAP, IG → logos → TF-MoDISco.

:func:`run_attributions` takes the test-split positive windows the model scores highest,
attributes every method (:mod:`helixflow.attribution`), writes one ``.npz`` per method,
sequence-logo and saturation figures, and runs TF-MoDISco (modiscolite) on the DeepLIFT/SHAP
hypothetical contributions; its patterns go through Tomtom against JASPAR, and
``modisco_summary.tsv`` says whether the target's own motif was recovered.
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path

import numpy as np
import pandas as pd

from . import attribution as attr
from .files import atomic_path, write_tsv
from .models.cnn import load_model
from .motifs import jaspar_motif, jaspar_motifs, tomtom_matches, trim_ppm, write_meme
from .records import write_record
from .shards import load_split

METHODS = ["saliency", "ism", "deeplift_shap", "integrated_gradients"]
LABELS = {"saliency": "gradient × input", "ism": "ISM (−mean effect of mutating)",
          "deeplift_shap": "DeepLIFT/SHAP", "integrated_gradients": "integrated gradients"}
SUMMARY_COLUMNS = ["target", "n_patterns", "jaspar_id", "jaspar_name", "recovered",
                   "best_pattern", "q", "n_seqlets"]
DEFAULTS = {"seed": 0, "n_windows": 200, "n_shuffles": 10, "ig_steps": 50, "jaspar_id": "",
            "tax_group": "fungi", "jaspar_collection": "CORE", "jaspar_release": None,
            "q_threshold": 0.05, "modisco": {}}
MODISCO_DEFAULTS = {"sliding_window_size": 15, "flank_size": 5, "min_metacluster_size": 20,
                    "max_seqlets_per_metacluster": 2000, "target_seqlet_fdr": 0.05,
                    "n_leiden_runs": 2, "final_min_cluster_size": 20,
                    "trim_to_window_size": 20, "initial_flank_to_add": 5,
                    "nearest_neighbors_to_compute": 100}
LOGO_WIDTH = 50


def _save_npz(path: Path, **arrays) -> None:
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)


def top_positive_windows(model, split, n_windows: int) -> np.ndarray:
    """Indices of the ``n_windows`` positives of ``split`` with the highest logit (best first)."""
    pos = np.flatnonzero(np.asarray(split.y) == 1)
    score = attr.logits(model, np.asarray(split.X)[pos])
    return pos[np.argsort(-score, kind="stable")[:n_windows]]


def compute_attributions(model, X: np.ndarray, params: dict) -> tuple[dict, dict, np.ndarray]:
    """All methods on X (n, 4, L): (actual attributions by method, seconds by method, DeepLIFT
    hypothetical contributions). ``ism`` holds the per-position contributions
    (:func:`attribution.ism_contributions`); the raw mutation effects come as ``ism_raw``."""
    out, seconds = {}, {}
    t = time.perf_counter()
    refs = attr.dinucleotide_references(X, params["n_shuffles"], params["seed"])
    seconds["references"] = time.perf_counter() - t
    t = time.perf_counter()
    out["saliency"] = attr.saliency(model, X)
    seconds["saliency"] = time.perf_counter() - t
    t = time.perf_counter()
    out["ism_raw"] = attr.ism(model, X)
    out["ism"] = attr.ism_contributions(out["ism_raw"], X)
    seconds["ism"] = time.perf_counter() - t
    t = time.perf_counter()
    hyp = attr.deeplift_shap(model, X, hypothetical=True, references=refs)
    out["deeplift_shap"] = hyp * X
    seconds["deeplift_shap"] = time.perf_counter() - t
    t = time.perf_counter()
    out["integrated_gradients"] = attr.integrated_gradients(
        model, X, n_steps=params["ig_steps"], baseline="shuffle", references=refs)
    seconds["integrated_gradients"] = time.perf_counter() - t
    seconds["deltas"] = {
        "deeplift_shap": attr.relative_delta(model, X, out["deeplift_shap"], refs),
        "integrated_gradients": attr.relative_delta(model, X, out["integrated_gradients"], refs)}
    return out, seconds, hyp


# ----------------------------------------------------------------------------- figures

def _logo(ax, values: np.ndarray, start: int) -> None:
    """Attribution logo of values (4, w) (already × one-hot) with x = window coordinates."""
    import logomaker

    frame = pd.DataFrame(values.T, columns=list("ACGT"), index=np.arange(start,
                                                                          start + values.shape[1]))
    logomaker.Logo(frame, ax=ax, color_scheme="classic", flip_below=False)
    ax.axhline(0, color="#999999", lw=0.6)
    ax.grid(False)
    ax.tick_params(labelsize=8)


def _span(center: int, length: int, width: int = LOGO_WIDTH) -> tuple[int, int]:
    start = int(np.clip(center - width // 2, 0, max(length - width, 0)))
    return start, min(start + width, length)


def plot_attribution_logos(path_png: Path, target: str, atts: dict, names: list[str],
                           score: np.ndarray, n_examples: int = 3) -> None:
    """Rows = methods, columns = the top examples; each panel zooms on LOGO_WIDTH bp around
    the example's strongest DeepLIFT/SHAP position (same span for every method)."""
    import matplotlib

    from .plots import STYLE, new_figure, save_figure

    n = min(n_examples, len(names))
    methods = [m for m in METHODS if m in atts]
    with matplotlib.rc_context(STYLE):
        fig = new_figure(5.2 * max(n, 1), 1.7 * len(methods) + 0.6)
        axes = fig.subplots(len(methods), max(n, 1), squeeze=False)
        for j in range(n):
            L = atts[methods[0]].shape[2]
            center = int(np.abs(atts["deeplift_shap"][j].sum(0)).argmax()) \
                if "deeplift_shap" in atts else L // 2
            a, b = _span(center, L)
            for r, method in enumerate(methods):
                ax = axes[r, j]
                _logo(ax, atts[method][j][:, a:b], a)
                if r == 0:
                    ax.set_title(f"{names[j]}\nlogit {score[j]:.2f}", fontsize=9)
                if j == 0:
                    ax.set_ylabel(LABELS[method].replace(" (", "\n("), fontsize=8)
                if r == len(methods) - 1:
                    ax.set_xlabel("position in window (bp)")
        fig.suptitle(f"{target}: attributions of the top-scoring test positives "
                     f"({LOGO_WIDTH}-bp zoom on the strongest DeepLIFT/SHAP position)")
        save_figure(fig, path_png)


def saturation_example(atts: dict) -> tuple[int, int, float]:
    """The example whose gradient × input at its top-ISM position is smallest relative to ISM.

    Each track is scaled by its own max |value| in the window; returns (example, position,
    ratio) with ratio = |scaled gradient| / scaled ISM at that position. Only examples whose
    ISM peak is in the top quarter of all peaks compete, so the pick is a decisive base, not
    a noisy window whose ISM maximum is small.
    """
    ism_pos = attr.position_scores(atts["ism"])
    sal_pos = attr.position_scores(atts["saliency"])
    top = ism_pos.argmax(1)
    rows = np.arange(len(top))
    scale = lambda v: v / np.maximum(np.abs(v).max(1, keepdims=True), 1e-12)  # noqa: E731
    ratio = np.abs(scale(sal_pos)[rows, top]) / np.maximum(scale(ism_pos)[rows, top], 1e-12)
    peak = ism_pos[rows, top]
    ratio = np.where(peak >= np.quantile(peak, 0.75), ratio, np.inf)
    i = int(np.argmin(ratio))
    return i, int(top[i]), float(ratio[i])


def plot_saturation(path_png: Path, target: str, atts: dict, names: list[str]) -> dict:
    import matplotlib

    from .plots import STYLE, new_figure, save_figure

    i, pos, ratio = saturation_example(atts)
    L = atts["ism"].shape[2]
    a, b = _span(pos, L)
    methods = [m for m in ["saliency", "ism", "deeplift_shap"] if m in atts]
    with matplotlib.rc_context(STYLE):
        fig = new_figure(10, 1.9 * len(methods) + 0.8)
        axes = fig.subplots(len(methods), 1, squeeze=False)[:, 0]
        for ax, method in zip(axes, methods, strict=True):
            _logo(ax, atts[method][i][:, a:b], a)
            ax.axvspan(pos - 0.5, pos + 0.5, color="#E69F00", alpha=0.25, lw=0)
            ax.set_ylabel(LABELS[method].replace(" (", "\n("), fontsize=8)
        axes[-1].set_xlabel("position in window (bp); shaded: the base with the largest positive "
                            "ISM contribution")
        fig.suptitle(f"{target} {names[i]}: gradient vs ISM/DeepLIFT at the largest positive "
                     f"ISM contribution (bp {pos})\nchosen as the example where gradient × input "
                     f"there is smallest relative to ISM (|gradient| = {ratio:.2f} × ISM, each "
                     "track scaled to its max; among the 25% strongest ISM peaks)", fontsize=10)
        save_figure(fig, path_png)
    return {"example": names[i], "position": pos, "gradient_over_ism": round(ratio, 4)}


# ----------------------------------------------------------------------------- modisco

# TF-MoDISco divides a seqlet's contributions by their norm. A seqlet whose contributions are
# all zero (too few seqlets for leidenalg's graph, or one aligned into a stretch that a global
# max pool leaves without attribution) turns into NaN, which these two errors report.
DEGENERATE_SEQLETS = ("Cannot accept NaN", "Input contains NaN")


def degenerate_seqlets(err: BaseException) -> bool:
    """Whether TF-MoDISco failed for want of usable seqlets: NaN similarities (above), or an
    empty null distribution when no window has attribution outside its seqlets (an
    IndexError in modiscolite's ``_laplacian_null``; seen at full human scale)."""
    if any(message in str(err) for message in DEGENERATE_SEQLETS):
        return True
    frames = traceback.extract_tb(err.__traceback__)
    return isinstance(err, IndexError) and any(f.name == "_laplacian_null" for f in frames)


def run_modisco(hyp: np.ndarray, X: np.ndarray, settings: dict) -> list[dict]:
    """TF-MoDISco on hypothetical contributions (n, 4, L); patterns as dicts with name,
    ppm (4, w) trimmed, n_seqlets. Positive metacluster first; empty when none is found."""
    from modiscolite.tfmodisco import TFMoDISco

    one_hot = np.ascontiguousarray(np.transpose(X, (0, 2, 1)), dtype=np.float32)
    contribs = np.ascontiguousarray(np.transpose(hyp, (0, 2, 1)), dtype=np.float32)
    try:
        pos, neg = TFMoDISco(one_hot=one_hot, hypothetical_contribs=contribs,
                             **(MODISCO_DEFAULTS | settings))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as err:   # leidenalg raises a bare BaseException
        if not degenerate_seqlets(err):
            raise
        print(f"TF-MoDISco found no patterns: {type(err).__name__}: {err} (a seqlet whose "
              "contributions are all zero has no similarity to others: too few seqlets, or "
              "attributions confined to a few positions, as a global max pool gives; attribute "
              "more windows to find some)", file=sys.stderr)
        return []
    patterns = []
    for sign, found in (("pos", pos), ("neg", neg)):
        for k, pattern in enumerate(found or []):
            ppm = np.asarray(pattern.sequence, dtype=np.float64).T
            ppm = ppm / np.maximum(ppm.sum(0, keepdims=True), 1e-12)
            trimmed, _ = trim_ppm(ppm)
            patterns.append({"name": f"{sign}_pattern_{k}", "ppm": trimmed,
                             "n_seqlets": len(pattern.seqlets)})
    return patterns


def _summary(target: str, patterns: list[dict], table: pd.DataFrame, own, q_threshold: float
             ) -> dict:
    row = {"target": target, "n_patterns": len(patterns),
           "jaspar_id": own.matrix_id if own else "", "jaspar_name": own.name if own else "",
           "recovered": False, "best_pattern": "", "q": np.nan, "n_seqlets": 0}
    if own is not None and len(table):
        mine = table[table["target_id"] == own.matrix_id].sort_values(["q", "p"])
        if len(mine):
            best = mine.iloc[0]
            seqlets = {p["name"]: p["n_seqlets"] for p in patterns}
            row |= {"recovered": bool(best["q"] < q_threshold), "best_pattern": best["query"],
                    "q": float(best["q"]), "n_seqlets": int(seqlets[best["query"]])}
    return row


# ----------------------------------------------------------------------------- step

def run_attributions(model_dir: str | Path, shards: str | Path, out_dir: str | Path,
                     figure_dir: str | Path, target: str, params: dict) -> dict:
    """Attributions, figures and TF-MoDISco for one target.

    Writes into ``out_dir``: ``{method}.npz`` for saliency, ism (+ ``ism_raw``),
    deeplift_shap (+ ``hypothetical``), integrated_gradients — each with ``attributions``
    float16 (n, 4, L), ``names`` and ``logits``; ``modisco.meme``, ``modisco_tomtom.tsv``,
    ``modisco_summary.tsv`` and ``record.json``; into ``figure_dir``:
    ``{target}_attributions.png/.svg`` and ``{target}_saturation.png/.svg``.
    Returns the summary row (plus timings).
    """
    params = DEFAULTS | dict(params)
    out_dir, figure_dir = Path(out_dir), Path(figure_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = load_model(model_dir)
    test = load_split(shards, "test")
    idx = top_positive_windows(model, test, int(params["n_windows"]))
    X = np.asarray(test.X)[idx].astype(np.float32)
    names = [str(n) for n in np.asarray(test.names)[idx]]
    score = attr.logits(model, X)

    atts, seconds, hyp = compute_attributions(model, X, params)
    deltas = seconds.pop("deltas")
    for method in METHODS:
        extra = {"ism_raw": atts["ism_raw"].astype(np.float16)} if method == "ism" else {}
        if method == "deeplift_shap":
            extra = {"hypothetical": hyp.astype(np.float16)}
        _save_npz(out_dir / f"{method}.npz", attributions=atts[method].astype(np.float16),
                  names=np.asarray(names), logits=score.astype(np.float32), **extra)

    t = time.perf_counter()
    plot_attribution_logos(figure_dir / f"{target}_attributions.png", target, atts, names, score)
    saturation = plot_saturation(figure_dir / f"{target}_saturation.png", target, atts, names)
    seconds["figures"] = time.perf_counter() - t

    t = time.perf_counter()
    patterns = run_modisco(hyp, X, dict(params["modisco"])) if len(X) else []
    seconds["modisco"] = time.perf_counter() - t
    queries = {p["name"]: p["ppm"] for p in patterns}
    write_meme(out_dir / "modisco.meme", queries,
               nsites={p["name"]: p["n_seqlets"] for p in patterns})
    release = params.get("jaspar_release")
    targets = jaspar_motifs(params["tax_group"], params["jaspar_collection"], release)
    own = jaspar_motif(params["jaspar_id"], release) if params["jaspar_id"] else None
    if own is not None and own.matrix_id not in {m.matrix_id for m in targets}:
        targets = [*targets, own]
    table = tomtom_matches(queries, targets)
    write_tsv(out_dir / "modisco_tomtom.tsv", table)
    summary = _summary(target, patterns, table, own, params["q_threshold"])
    write_tsv(out_dir / "modisco_summary.tsv", pd.DataFrame([summary], columns=SUMMARY_COLUMNS))
    if not patterns:
        print(f"{target}: TF-MoDISco found no patterns in {len(X)} windows", file=sys.stderr)

    results = {**summary, "n_windows": len(X), "seconds": {k: round(v, 3) for k, v in
                                                            seconds.items()},
               "relative_convergence_delta": deltas, "saturation": saturation,
               "patterns": {p["name"]: p["n_seqlets"] for p in patterns}}
    write_record(out_dir / "record.json", "attributions", params,
                 {"shards": shards, "weights": Path(model_dir) / "model.safetensors"}, results)
    return results
