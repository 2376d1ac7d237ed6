"""The motif step for one target: learned filters → PWMs → MEME → Tomtom vs JASPAR → logos.

Filters become PWMs by the DeepBind/Basset method (segments of the training-split
positives that drive a filter above a fraction of its maximum); the report says whether
the target's own JASPAR motif was recovered, by which filter, at what q-value and KL.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .files import read_json, write_tsv
from .models.cnn import load_model
from .motifs import (
    activation_pfms,
    aligned_kl,
    jaspar_motif,
    jaspar_motifs,
    pfm_to_ppm,
    plot_filter_logos,
    read_meme,
    tomtom_matches,
    trim_ppm,
    write_meme,
)
from .records import write_record
from .shards import load_split

RECOVERY_COLUMNS = ["target", "jaspar_id", "jaspar_name", "recovered", "best_filter", "q", "kl",
                    "n_filters", "n_filters_matched"]
MIN_SITES = 10


@torch.no_grad()
def filter_ppms(model: torch.nn.Module, X: np.ndarray, threshold: float,
                chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """PPMs of a CNN's first-layer filters, shape=(F, 4, kernel), and their site counts,
    shape=(F,); ``model`` has ``activations(X)`` and ``config.filters``/``config.kernel``.

    A site is a position where a filter exceeds ``threshold`` × its maximum over all of ``X``
    (the DeepBind/Basset method of :func:`helixflow.motifs.activation_pfms`), found in two
    passes over chunks so the activations of all windows are never held at once.
    """
    F, k = model.config.filters, model.config.kernel

    def acts(i: int) -> np.ndarray:
        xb = torch.from_numpy(np.asarray(X[i:i + chunk], dtype=np.float32))
        return model.activations(xb).numpy()

    peak = np.zeros(F)
    for i in range(0, len(X), chunk):
        peak = np.maximum(peak, acts(i).max(axis=(0, 2)))
    cut = np.where(peak > 0, threshold * peak, np.inf)
    pfms, nsites = np.zeros((F, 4, k)), np.zeros(F, dtype=np.int64)
    for i in range(0, len(X), chunk):
        sites = (acts(i) > cut[None, :, None]).astype(np.float32)
        counts, n = activation_pfms(sites, np.asarray(X[i:i + chunk]), k, threshold=0.5)
        pfms += counts
        nsites += n
    return pfm_to_ppm(pfms), nsites


def motif_report(target: str, shards: str | Path, model_dir: str | Path, out_dir: str | Path,
                 jaspar_id: str, tax_group: str, params: dict) -> dict:
    """Write filters.meme, tomtom.tsv, recovery.tsv and record.json (with sites per filter)."""
    out_dir = Path(out_dir)
    model = load_model(model_dir)
    train = load_split(shards, "train")
    positives = np.asarray(train.X)[np.asarray(train.y) == 1]
    ppms, nsites = filter_ppms(model, positives, params["activation_threshold"])
    queries, sites = {}, {}
    for i, (ppm, n) in enumerate(zip(ppms, nsites, strict=True)):
        if n >= MIN_SITES:
            name = f"filter{i:03d}"
            queries[name], _ = trim_ppm(ppm)
            sites[name] = int(n)
    print(f"{target}: {len(queries)}/{len(ppms)} filters with >= {MIN_SITES} sites",
          file=sys.stderr)
    write_meme(out_dir / "filters.meme", queries, nsites=sites)

    release = params.get("jaspar_release")
    targets = jaspar_motifs(tax_group, params["jaspar_collection"], release)
    own = jaspar_motif(jaspar_id, release) if jaspar_id else None
    if own is not None and own.matrix_id not in {t.matrix_id for t in targets}:
        targets = [*targets, own]
    table = tomtom_matches(queries, targets) if queries else pd.DataFrame(
        columns=["query", "target_id", "target_name", "p", "q", "offset", "strand"])
    rank = table.groupby("query").cumcount()
    is_own = table["target_id"] == (own.matrix_id if own else "")
    write_tsv(out_dir / "tomtom.tsv", table[(rank < 10) | is_own])

    q_threshold = params["q_threshold"]
    recovery = {"target": target, "jaspar_id": own.matrix_id if own else "",
                "jaspar_name": own.name if own else "", "recovered": False, "best_filter": "",
                "q": np.nan, "kl": np.nan, "n_filters": len(queries),
                "n_filters_matched": int(table.loc[table["q"] < q_threshold, "query"].nunique())}
    if own is not None and is_own.any():
        best = table[is_own].sort_values(["q", "p"]).iloc[0]
        recovery |= {"recovered": bool(best["q"] < q_threshold), "best_filter": best["query"],
                     "q": float(best["q"]),
                     "kl": aligned_kl(queries[best["query"]], own.ppm, int(best["offset"]),
                                      best["strand"])}
    rounded = recovery | {"q": float(f"{recovery['q']:.4g}"), "kl": round(recovery["kl"], 4)}
    write_tsv(out_dir / "recovery.tsv", pd.DataFrame([rounded], columns=RECOVERY_COLUMNS))

    write_record(out_dir / "record.json", "motifs", params,
                 {"shards": shards, "weights": Path(model_dir) / "model.safetensors"},
                 {**recovery, "jaspar_release": targets[0].release if targets else "",
                  "n_jaspar_targets": len(targets), "sites": sites})
    return recovery


def plot_motif_logos(motif_dir: str | Path, figure: str | Path, n_logos: int) -> None:
    """The logo figure of one target, drawn from the motif step's files alone."""
    motif_dir = Path(motif_dir)
    record = read_json(motif_dir / "record.json")
    queries = read_meme(motif_dir / "filters.meme")
    table = pd.read_csv(motif_dir / "tomtom.tsv", sep="\t")
    recovery = pd.read_csv(motif_dir / "recovery.tsv", sep="\t", keep_default_na=False,
                           na_values={"q": ["", "nan"], "kl": ["", "nan"]}).iloc[0].to_dict()
    release = record["results"]["jaspar_release"] or None
    targets = [jaspar_motif(i, release) for i in table["target_id"].unique()]
    verdict = (f"{recovery['jaspar_id']} {recovery['jaspar_name']} recovered by "
               f"{recovery['best_filter']} (q = {recovery['q']:.2g})" if recovery["recovered"]
               else f"{recovery['jaspar_id'] or 'no JASPAR motif given'}: not recovered")
    plot_filter_logos(figure, _logo_panels(table, queries, record["results"]["sites"], targets,
                                           recovery, n_logos),
                      title=f"{recovery['target']}: learned filters vs JASPAR ({verdict})")


def _logo_panels(table: pd.DataFrame, queries: dict, sites: dict, targets: list,
                 recovery: dict, n_logos: int) -> list[dict]:
    """The best-matching filters, the one that recovered the target's motif first."""
    by_id = {t.matrix_id: t for t in targets}
    best = table.sort_values(["q", "p"]).drop_duplicates("query")
    order = list(best["query"])
    if recovery["best_filter"]:
        order.remove(recovery["best_filter"])
        order.insert(0, recovery["best_filter"])
    panels = []
    for name in order[:n_logos]:
        row = (table[(table["query"] == name) & (table["target_id"] == recovery["jaspar_id"])]
               if name == recovery["best_filter"] else best[best["query"] == name]).iloc[0]
        match = by_id[row["target_id"]]
        panels.append({"title": f"{name} ({sites[name]} sites)", "query": queries[name],
                       "match": match.ppm, "match_title": f"{match.matrix_id} {match.name}  "
                       f"q={row['q']:.2g}", "offset": int(row["offset"]),
                       "strand": row["strand"]})
    if not panels:
        panels = [{"title": f"{name} ({sites[name]} sites)", "query": queries[name]}
                  for name in list(queries)[:n_logos]]
    return panels or [{"title": "no filter had enough sites", "query": np.full((4, 1), 0.25)}]


