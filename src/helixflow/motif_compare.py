"""Motifs from two routes side by side: learned first-layer filters and TF-MoDISco patterns.

The motif step (:mod:`helixflow.motif_report`) turns filters into PWMs and matches them to
JASPAR (``filters.meme``, ``tomtom.tsv``); the attribution step
(:mod:`helixflow.attribution_report`) clusters DeepLIFT/SHAP seqlets with TF-MoDISco and
matches those patterns the same way (``modisco.meme``, ``modisco_tomtom.tsv``). This module
reads both and draws them beside the JASPAR logo of the target's own motif, each labelled
with its best JASPAR match and q-value, and tabulates which route recovered the motif.

A logo whose match to the target's own motif is significant (q < ``q_threshold``, the motif
step's rule) is drawn in that JASPAR motif's frame: reverse complemented when Tomtom aligned
it on the "-" strand and shifted by Tomtom's offset, so its columns sit above the JASPAR
columns they were matched to (see :mod:`helixflow.motifs` for the frame). Other logos are
drawn as they are, from x = 0.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError
from .files import read_json, write_tsv
from .motifs import _ic_frame, jaspar_motif, read_meme, reverse_complement_ppm

SOURCE_COLUMNS = ["target", "source", "motif", "best_jaspar_id", "best_jaspar_name", "q",
                  "own_motif_recovered", "own_q", "own_strand", "own_offset", "n_sites"]
DEFAULTS = {"n_logos": 3, "q_threshold": 0.05, "jaspar_release": None}


# ----------------------------------------------------------------------------- reading

def _read_tomtom(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, sep="\t")
    except OSError as exc:
        raise InputError(f"cannot read Tomtom table ({exc.strerror})", path=path,
                         fix="run the motif and attribution steps for this target first") \
            from exc


def _read_motifs(meme: Path, tomtom: pd.DataFrame) -> dict[str, np.ndarray]:
    """The motifs of a MEME file; none when its Tomtom table is empty (TF-MoDISco can find
    no pattern, and then writes a MEME file without motifs)."""
    if tomtom.empty:
        return {}
    return read_meme(meme)


def _sites(record: Path, key: str) -> dict[str, int]:
    """Sites per motif from a step's record.json (``results[key]``); empty when absent."""
    try:
        return {str(k): int(v) for k, v in read_json(record)["results"].get(key, {}).items()}
    except (OSError, ValueError, KeyError, AttributeError):
        return {}


def source_rows(target: str, source: str, tomtom: pd.DataFrame, own_id: str,
                q_threshold: float, sites: dict[str, int] | None = None) -> pd.DataFrame:
    """One row per query of a Tomtom table (``SOURCE_COLUMNS``), best-first: queries that
    match ``own_id`` with q < q_threshold first (by that q), then the rest by best q."""
    if tomtom.empty:
        return pd.DataFrame(columns=SOURCE_COLUMNS)
    sites = sites or {}
    best = tomtom.sort_values(["q", "p"], kind="stable").drop_duplicates("query")
    own = (tomtom[tomtom["target_id"] == own_id].sort_values(["q", "p"], kind="stable")
           .drop_duplicates("query").set_index("query"))
    rows = pd.DataFrame({
        "target": target, "source": source, "motif": best["query"].to_numpy(),
        "best_jaspar_id": best["target_id"].to_numpy(),
        "best_jaspar_name": best["target_name"].to_numpy(),
        "q": best["q"].to_numpy(dtype=float)})
    rows["own_q"] = own["q"].reindex(rows["motif"]).to_numpy(dtype=float)
    rows["own_strand"] = own["strand"].reindex(rows["motif"]).to_numpy()
    rows["own_offset"] = own["offset"].reindex(rows["motif"]).to_numpy(dtype=float)
    rows["own_motif_recovered"] = rows["own_q"] < q_threshold
    rows["n_sites"] = [sites.get(m, np.nan) for m in rows["motif"]]
    rows["_key"] = np.where(rows["own_motif_recovered"], rows["own_q"], np.inf)
    rows = rows.sort_values(["_key", "q"], kind="stable").drop(columns="_key")
    return rows.reset_index(drop=True)[SOURCE_COLUMNS]


def motif_sources_table(target: str, motif_dir: str | Path, attribution_dir: str | Path,
                        jaspar_id: str, q_threshold: float = 0.05) -> pd.DataFrame:
    """Every filter (motif step) and every TF-MoDISco pattern (attribution step) with its
    best JASPAR match and q, and whether it matches the target's own motif ``jaspar_id``
    at q < q_threshold. Columns ``SOURCE_COLUMNS``; filters first, each source best-first."""
    motif_dir, attribution_dir = Path(motif_dir), Path(attribution_dir)
    parts = [source_rows(target, "filter", _read_tomtom(motif_dir / "tomtom.tsv"), jaspar_id,
                         q_threshold, _sites(motif_dir / "record.json", "sites")),
             source_rows(target, "modisco", _read_tomtom(attribution_dir / "modisco_tomtom.tsv"),
                         jaspar_id, q_threshold,
                         _sites(attribution_dir / "record.json", "patterns"))]
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=SOURCE_COLUMNS)
    return pd.concat(parts, ignore_index=True)


# ----------------------------------------------------------------------------- figure

def aligned_placement(query: np.ndarray, offset: int, strand: str,
                      target_width: int) -> tuple[np.ndarray, int]:
    """Query ppm (4, w) oriented and placed in the frame of the target as given.

    Tomtom's frame (helixflow.motifs): on "+" query column j faces target column j + offset;
    on "-" the reverse-complemented query starts at target column ``w_t - w_q - offset``.
    Returns (ppm to draw, first x position).
    """
    query = np.asarray(query, dtype=np.float64)
    if strand == "+":
        return query, int(offset)
    if strand == "-":
        return reverse_complement_ppm(query), int(target_width - query.shape[1] - offset)
    raise ValueError(f"strand must be '+' or '-', got {strand!r}")


def _panel(row: pd.Series, ppm: np.ndarray, own_width: int | None, own_name: str,
           q_threshold: float) -> dict:
    """Logo panel dict (ppm, start, title) for one source row."""
    start = 0
    note = ""
    if own_width is not None and row["own_motif_recovered"]:
        ppm, start = aligned_placement(ppm, int(row["own_offset"]), row["own_strand"], own_width)
        note = f"aligned to {own_name}" + (" (reverse complement)"
                                           if row["own_strand"] == "-" else "")
    sites = f", {int(row['n_sites'])} {'sites' if row['source'] == 'filter' else 'seqlets'}" \
        if pd.notna(row["n_sites"]) else ""
    best = f"best {row['best_jaspar_id']} {row['best_jaspar_name']} q={row['q']:.2g}"
    lines = [f"{row['motif']}{sites}", best]
    if row["best_jaspar_name"] != own_name and pd.notna(row["own_q"]):
        lines.append(f"{own_name} q={row['own_q']:.2g}" + (" (significant)" if row["own_q"]
                                                             < q_threshold else ""))
    if note:
        lines.append(note)
    return {"ppm": ppm, "start": start, "title": "\n".join(lines),
            "highlight": bool(row["q"] < q_threshold)}


def plot_motifs_beside(target: str, motif_dir: str | Path, attribution_dir: str | Path,
                       jaspar_id: str, figure_png: str | Path, n: int = 3,
                       q_threshold: float = 0.05, release: str | None = None) -> dict:
    """Filter logos | TF-MoDISco pattern logos | JASPAR logo of ``jaspar_id``, one figure.

    Columns: the ``n`` best filters and ``n`` best patterns (own-motif matches first, then
    by best q), each titled with its best JASPAR match and q; the right column holds the
    target's own JASPAR motif. Own-motif matches are drawn in its frame (module docstring),
    so all logos share one x axis. ``release`` defaults to the one in the motif step's
    record.json. Writes ``figure_png`` and its SVG; returns the number of logos per column.
    """
    import logomaker
    import matplotlib

    from .plots import STYLE, new_figure, save_figure

    motif_dir, attribution_dir = Path(motif_dir), Path(attribution_dir)
    if release is None:
        try:
            release = read_json(motif_dir / "record.json")["results"].get("jaspar_release")
        except (OSError, KeyError, ValueError):
            release = None
    own = jaspar_motif(jaspar_id, release or None) if jaspar_id else None
    table = motif_sources_table(target, motif_dir, attribution_dir,
                                own.matrix_id if own else "", q_threshold)
    filter_tomtom = _read_tomtom(motif_dir / "tomtom.tsv")
    modisco_tomtom = _read_tomtom(attribution_dir / "modisco_tomtom.tsv")
    ppms = {"filter": _read_motifs(motif_dir / "filters.meme", filter_tomtom),
            "modisco": _read_motifs(attribution_dir / "modisco.meme", modisco_tomtom)}
    own_width = own.ppm.shape[1] if own else None
    own_name = own.name if own else ""
    columns = {}
    for source in ("filter", "modisco"):
        rows = table[table["source"] == source].head(n)
        columns[source] = [_panel(row, ppms[source][row["motif"]], own_width, own_name,
                                  q_threshold) for _, row in rows.iterrows()]
    panels = [p for col in columns.values() for p in col]
    lo = min([0] + [p["start"] for p in panels])
    hi = max([own_width or 1] + [p["start"] + p["ppm"].shape[1] for p in panels])
    n_rows = max(1, len(columns["filter"]), len(columns["modisco"]))
    headers = {"filter": "learned first-layer filters", "modisco": "TF-MoDISco patterns "
               "(DeepLIFT/SHAP)", "jaspar": "JASPAR: the target's own motif"}
    empty = {"filter": "no filter had enough sites", "modisco": "TF-MoDISco found no pattern"}
    with matplotlib.rc_context(STYLE):
        fig = new_figure(4.2 * 3, 0.9 + 1.9 * n_rows)
        axes = fig.subplots(n_rows, 3, squeeze=False)
        for c, source in enumerate(("filter", "modisco", "jaspar")):
            axes[0, c].annotate(headers[source], (0, 1.0), xycoords="axes fraction",
                                xytext=(0, 44), textcoords="offset points", fontsize=10,
                                fontweight="bold", color="#333333")
            logos = columns.get(source, [])
            if source == "jaspar" and own is not None:
                logos = [{"ppm": own.ppm, "start": 0, "title": f"{own.matrix_id} {own.name}\n"
                          f"{own.release}, {own.nsites} sites", "highlight": False}]
            for r in range(n_rows):
                ax = axes[r, c]
                if r >= len(logos):
                    if r == 0:
                        ax.text(0.5, 0.5, empty.get(source, "no JASPAR motif given"),
                                ha="center", va="center", transform=ax.transAxes, fontsize=9)
                        ax.set_xticks([])
                        ax.set_yticks([])
                        ax.grid(False)
                    else:
                        ax.set_axis_off()
                    continue
                logo = logos[r]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # a flat (zero-information) logo warns
                    logomaker.Logo(_ic_frame(logo["ppm"], start=logo["start"]), ax=ax,
                                   color_scheme="classic")
                ax.set_title(logo["title"], fontsize=8, loc="left",
                             color="#000000" if logo["highlight"] or source == "jaspar"
                             else "#777777")
                ax.set_xlim(lo - 0.5, hi - 0.5)
                ax.set_ylim(0, 2)
                ax.set_ylabel("bits", fontsize=8)
                ax.set_xticks([])
                ax.grid(False)
        verdict = []
        for source, label in (("filter", "filters"), ("modisco", "TF-MoDISco")):
            rows = table[table["source"] == source]
            hit = rows[rows["own_motif_recovered"]]
            if not len(rows):
                verdict.append(f"{label}: none")
            else:
                verdict.append(f"{label}: " + (f"{len(hit)} of {len(rows)} match {own_name}"
                                               if own else f"{len(rows)}"))
        fig.suptitle(f"{target}: motifs learned by the CNN's filters and found by TF-MoDISco"
                     + (f", beside JASPAR {own.matrix_id} {own.name}" if own else "")
                     + "\n" + "; ".join(verdict) + f" (Tomtom q < {q_threshold:g}; grey "
                     "title: best match not significant)", fontsize=11)
        save_figure(fig, figure_png)
    return {source: len(logos) for source, logos in columns.items()}


# ----------------------------------------------------------------------------- step

def run_motif_compare(target: str, motif_dir: str | Path, attribution_dir: str | Path,
                      jaspar_id: str, out_dir: str | Path, figure_png: str | Path,
                      params: dict | None = None) -> dict:
    """The side-by-side motif figure and ``motif_sources.tsv`` for one target.

    ``jaspar_id`` empty → the motif step's recovery.tsv decides. Writes
    ``out_dir/motif_sources.tsv`` (``SOURCE_COLUMNS``) and ``figure_png`` (+ .svg);
    returns a summary: for each source, the number of motifs, how many match the target's
    motif, and the best one with its q.
    """
    params = DEFAULTS | dict(params or {})
    motif_dir, out_dir = Path(motif_dir), Path(out_dir)
    if not jaspar_id:
        recovery = motif_dir / "recovery.tsv"
        if recovery.is_file():
            jaspar_id = str(pd.read_csv(recovery, sep="\t", keep_default_na=False)
                            ["jaspar_id"].iloc[0])
    release = params["jaspar_release"]
    if release is None and (motif_dir / "record.json").is_file():
        release = read_json(motif_dir / "record.json")["results"].get("jaspar_release") or None
    own = jaspar_motif(jaspar_id, release) if jaspar_id else None
    q_threshold = float(params["q_threshold"])
    table = motif_sources_table(target, motif_dir, attribution_dir,
                                own.matrix_id if own else "", q_threshold)
    write_tsv(out_dir / "motif_sources.tsv", table)
    plot_motifs_beside(target, motif_dir, attribution_dir, own.matrix_id if own else "",
                       figure_png, int(params["n_logos"]), q_threshold, release)
    summary: dict = {"target": target, "jaspar_id": own.matrix_id if own else "",
                     "jaspar_name": own.name if own else ""}
    for source in ("filter", "modisco"):
        rows = table[table["source"] == source]
        hit = rows[rows["own_motif_recovered"]]
        summary[source] = {"n": int(len(rows)), "n_own": int(len(hit)),
                           "recovered": bool(len(hit)),
                           "best": str(hit["motif"].iloc[0]) if len(hit) else "",
                           "q": float(hit["own_q"].iloc[0]) if len(hit) else None}
    summary["both_recovered"] = summary["filter"]["recovered"] and summary["modisco"]["recovered"]
    return summary
