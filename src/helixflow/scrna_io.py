"""Single-cell RNA stage, edges: read 10x/h5ad counts (validated), QC, write, run, plot.

:func:`read_counts` reads a 10x matrix directory (Cell Ranger ≤ 2 ``genes.tsv`` layout or
≥ 3 ``features.tsv.gz`` layout), a 10x ``.h5`` (v1.2/2 per-genome groups, or v3) or an
``.h5ad``, after checks that name the file and line of a problem. :func:`qc` filters cells and
genes, selects highly variable genes and clusters the cells (scanpy). :func:`run_scrna` runs the
whole stage: QC → denoising benchmark (:mod:`helixflow.scrna_dae`) → batch-aware contrastive
embedding on an artificial shift (:mod:`helixflow.scrna_batch`) → tables, record, figures.
AnnData objects are cells × genes; ``.X`` always holds raw integer counts (float32, sparse).
"""

from __future__ import annotations

import contextlib
import sys
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import anndata as ad
import h5py
import matplotlib
import numpy as np
import pandas as pd
import scipy.sparse as sp
from matplotlib import patheffects
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from . import scrna_batch as batch_mod
from . import scrna_dae as dae
from .errors import InputError
from .files import atomic_path, is_gzip, open_text, write_tsv
from .plots import PALETTE, STYLE, new_figure, save_figure
from .records import write_record

FORMATS = {
    "10x_mtx": "a 10x matrix directory (matrix.mtx + genes.tsv + barcodes.tsv, or "
               "matrix.mtx.gz + features.tsv.gz + barcodes.tsv.gz)",
    "10x_h5": "a 10x HDF5 file (.h5, Cell Ranger 1.2–2 or ≥ 3)",
    "h5ad": "an AnnData file (.h5ad)",
}
LAYOUTS = {  # Cell Ranger ≤ 2 and ≥ 3 file names (what scanpy.read_10x_mtx reads)
    "legacy": ("matrix.mtx", "genes.tsv", "barcodes.tsv"),
    "v3": ("matrix.mtx.gz", "features.tsv.gz", "barcodes.tsv.gz"),
}


# ---------------------------------------------------------------------------- reading


def detect_format(path: str | Path) -> str:
    """'10x_mtx' for a directory, '10x_h5' for .h5, 'h5ad' for .h5ad; else InputError."""
    path = Path(path)
    if path.is_dir():
        return "10x_mtx"
    if path.name.endswith((".mtx", ".mtx.gz")):
        return "10x_mtx"
    if path.suffix == ".h5":
        return "10x_h5"
    if path.suffix == ".h5ad":
        return "h5ad"
    raise InputError("unknown single-cell count format", path=path,
                     fix="give " + "; or ".join(FORMATS.values()))


def read_counts(path: str | Path, fmt: str = "auto", genome: str | None = None) -> ad.AnnData:
    """Read raw UMI counts as AnnData (cells × genes, ``.X`` float32 CSR of integers).

    fmt: 'auto', '10x_mtx', '10x_h5' or 'h5ad'. genome: for multi-genome 10x data (v1.2/2
    ``.h5`` groups, or per-genome sub-directories; v3 ``.h5``: a ``features/genome`` value);
    None picks the only one and otherwise raises InputError listing them.
    var_names are gene symbols made unique; ``var['gene_ids']`` keeps the ids.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("file or directory not found", path=path)
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}", path=path,
                         fix="use fmt 'auto', " + ", ".join(repr(f) for f in FORMATS))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if fmt == "10x_mtx":
            adata = _read_mtx_dir(path.parent if path.is_file() else path, genome)
        elif fmt == "10x_h5":
            adata = _read_h5(path, genome)
        else:
            adata = _read_h5ad(path)
    return _tidy(adata)


def _tidy(adata: ad.AnnData) -> ad.AnnData:
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    adata.var_names_make_unique()
    adata.obs_names_make_unique()
    return adata


def mtx_files(directory: str | Path, genome: str | None = None) -> dict[str, Path]:
    """The matrix, features and barcodes files of a 10x directory (or its only genome subdir)."""
    directory = Path(directory)
    for layout in LAYOUTS.values():
        if (directory / layout[0]).is_file():
            break
    else:
        subdirs = sorted(p.name for p in directory.iterdir() if p.is_dir()
                         and any((p / layout[0]).is_file() for layout in LAYOUTS.values()))
        if genome is not None and genome in subdirs:
            return mtx_files(directory / genome)
        if genome is None and len(subdirs) == 1:
            return mtx_files(directory / subdirs[0])
        if subdirs:
            raise InputError(f"holds one matrix per genome ({', '.join(subdirs)})"
                             + (f", none named {genome!r}" if genome else ""), path=directory,
                             fix="pass genome=<one of them> or the genome's sub-directory")
        raise InputError("no matrix.mtx or matrix.mtx.gz here", path=directory,
                         fix="give " + FORMATS["10x_mtx"])
    names = layout if all((directory / name).is_file() for name in layout) else None
    if names is None:
        present = sorted(p.name for p in directory.iterdir() if p.is_file())
        raise InputError(f"a mix of 10x file names ({', '.join(present)})", path=directory,
                         fix="use " + " or ".join(" + ".join(v) for v in LAYOUTS.values())
                         + " (gzip or gunzip all three)")
    for name in names:     # scanpy decides gzip by the name: the bytes must agree with it
        gzipped = is_gzip(directory / name)
        if gzipped != name.endswith(".gz"):
            actual = "gzip-compressed" if gzipped else "plain text"
            raise InputError(f"{name} is {actual}, but its name says otherwise",
                             path=directory / name,
                             fix="gzip it or drop '.gz' so that the name says what it holds")
    return dict(zip(("matrix", "features", "barcodes"), (directory / n for n in names),
                    strict=True))


def mtx_header(path: Path) -> tuple[int, int, int, int, str]:
    """(n_rows, n_cols, n_entries, header line number, header text) of a MatrixMarket file."""
    with open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if number == 1 and not line.lower().startswith("%%matrixmarket matrix coordinate"):
                raise InputError(f"not a MatrixMarket coordinate matrix: {line.strip()[:60]!r}",
                                 path=path, line=1,
                                 fix="give the matrix.mtx written by Cell Ranger")
            if number == 1 and not any(f in line.lower() for f in ("integer", "real")):
                raise InputError(f"the matrix field must be integer or real: {line.strip()!r}",
                                 path=path, line=1)
            if line.startswith("%"):
                continue
            fields = line.split()
            if len(fields) != 3 or not all(f.isdigit() for f in fields):
                raise InputError(f"expected the size line 'rows columns entries', got "
                                 f"{line.strip()[:60]!r}", path=path, line=number)
            rows, cols, entries = (int(f) for f in fields)
            return rows, cols, entries, number, line.strip()
    raise InputError("no size line (the file is empty or only comments)", path=path)


def _count_lines(path: Path) -> tuple[int, int]:
    """(non-blank lines, tab-separated fields on the first line) of a text file."""
    with open_text(path) as handle:
        lines = [line for line in handle if line.strip()]
    return len(lines), (len(lines[0].rstrip("\n").split("\t")) if lines else 0)


def validate_mtx_dir(files: Mapping[str, Path]) -> None:
    """Check a 10x directory before reading it; raise InputError naming file and line.

    Features / barcodes line counts must equal the matrix header's rows / columns; every
    entry must be 'row col value' with in-range indices and a non-negative integer value.
    """
    matrix = files["matrix"]
    rows, cols, entries, header_line, header = mtx_header(matrix)
    for key, expected, what in (("features", rows, "rows (genes)"),
                                ("barcodes", cols, "columns (cells)")):
        n_lines, n_fields = _count_lines(files[key])
        if n_lines != expected:
            raise InputError(f"{files[key].name} has {n_lines} lines but {matrix.name} line "
                             f"{header_line} ('{header}') declares {expected} {what}",
                             path=files[key], fix="give the files of one Cell Ranger run")
        need = 3 if files[key].name.startswith("features") else 2
        if key == "features" and n_fields < need:
            raise InputError(f"expected {need} tab-separated columns (id, symbol"
                             + (", type" if need == 3 else "") + f"), found {n_fields}",
                             path=files[key], line=1)
    table = _mtx_entries(matrix, header_line)
    if len(table) != entries:
        raise InputError(f"{len(table)} entries but line {header_line} ('{header}') declares "
                         f"{entries}", path=matrix, line=header_line,
                         fix="the file is truncated or has extra lines")
    row, col, value = (table[c].to_numpy() for c in ("row", "col", "value"))
    checks = (
        (np.isnan(row) | np.isnan(col) | np.isnan(value), "expected 3 fields 'row col value'"),
        ((row < 1) | (row > rows) | (row != np.round(row)), f"row index outside 1..{rows}"),
        ((col < 1) | (col > cols) | (col != np.round(col)), f"column index outside 1..{cols}"),
        (value < 0, "negative count"),
        (value != np.round(value), "non-integer count"),
    )
    first = [(int(np.argmax(bad)), what) for bad, what in checks if bad.any()]
    if first:
        index, what = min(first)
        raise InputError(f"{what} in {table.iloc[index].tolist()}", path=matrix,
                         line=header_line + 1 + index,
                         fix="UMI counts are non-negative integers; give raw counts")


def _mtx_entries(matrix: Path, header_line: int) -> pd.DataFrame:
    """Entries (row, col, value as float64) after the size line; unparsable lines → InputError."""
    try:
        return pd.read_csv(matrix, sep=r"\s+", header=None, skiprows=header_line,
                           names=["row", "col", "value"], dtype=np.float64,
                           skip_blank_lines=False)
    except (ValueError, pd.errors.ParserError):
        pass
    with open_text(matrix) as handle:  # slow path: find the offending line
        for number, line in enumerate(handle, start=1):
            if number <= header_line:
                continue
            fields = line.split()
            try:
                ok = len(fields) == 3 and all(np.isfinite(float(f)) for f in fields)
            except ValueError:
                ok = False
            if not ok:
                raise InputError(f"expected 'row col value' numbers, got {line.strip()[:60]!r}",
                                 path=matrix, line=number,
                                 fix="UMI counts are non-negative integers; give raw counts")
    raise InputError("could not parse the entries", path=matrix)


def _read_mtx_dir(directory: Path, genome: str | None) -> ad.AnnData:
    import scanpy as sc

    files = mtx_files(directory, genome)
    validate_mtx_dir(files)
    return sc.read_10x_mtx(files["matrix"].parent, var_names="gene_symbols", make_unique=True)


def _check_h5_group(path: Path, group: h5py.Group, gene_key: str) -> None:
    shape = tuple(int(v) for v in group["shape"][()])
    for key, expected, axis in ((gene_key, shape[0], "genes"), ("barcodes", shape[1], "cells")):
        n = len(group[key])
        if n != expected:
            raise InputError(f"dataset {group.name}/{key} has {n} entries but "
                             f"{group.name}/shape declares {expected} {axis}", path=path)
    if len(group["indptr"]) != shape[1] + 1:
        raise InputError(f"{group.name}/indptr has {len(group['indptr'])} entries, expected "
                         f"{shape[1] + 1} (cells + 1)", path=path)
    data = group["data"][()]
    bad = np.flatnonzero((data < 0) | (data != np.round(data)))
    if len(bad):
        raise InputError(f"dataset {group.name}/data entry {bad[0]} is {data[bad[0]]} "
                         "(not a non-negative integer)", path=path,
                         fix="UMI counts are non-negative integers; give raw counts")


def _read_h5(path: Path, genome: str | None) -> ad.AnnData:
    import scanpy as sc

    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise InputError(f"not a readable HDF5 file ({error})", path=path) from None
    with handle:
        if "matrix" in handle:  # Cell Ranger ≥ 3
            group = handle["matrix"]
            _check_h5_group(path, group, "features/id")
            genomes = sorted({g.decode() for g in group["features/genome"][()]}) \
                if "features/genome" in group else []
            if genome is not None and genome not in genomes:
                raise InputError(f"no genome {genome!r}; it holds {', '.join(genomes)}",
                                 path=path, fix="pass genome=<one of them>")
        else:  # Cell Ranger 1.2–2: one group per genome
            genomes = sorted(k for k, v in handle.items()
                             if isinstance(v, h5py.Group) and "data" in v)
            if not genomes:
                raise InputError("no 10x matrix in this HDF5 file", path=path,
                                 fix="give " + FORMATS["10x_h5"])
            if genome is None and len(genomes) > 1:
                raise InputError(f"holds {len(genomes)} genomes: {', '.join(genomes)}",
                                 path=path, fix="pass genome=<one of them>")
            if genome is not None and genome not in genomes:
                raise InputError(f"no genome {genome!r}; it holds {', '.join(genomes)}",
                                 path=path, fix="pass genome=<one of them>")
            genome = genome or genomes[0]
            _check_h5_group(path, handle[genome], "genes")
    return sc.read_10x_h5(path, genome=genome)


def _read_h5ad(path: Path) -> ad.AnnData:
    try:
        adata = ad.read_h5ad(path)
    except OSError as error:
        raise InputError(f"not a readable .h5ad file ({error})", path=path) from None
    if "counts" in adata.layers:
        adata.X = adata.layers["counts"]
    values = adata.X.data if sp.issparse(adata.X) else np.asarray(adata.X).ravel()
    if values.size and (values.min() < 0 or not np.array_equal(values, np.round(values))):
        raise InputError(".X holds negative or non-integer values, not raw counts", path=path,
                         fix="store raw UMI counts in .X or in layers['counts']")
    return adata


# ---------------------------------------------------------------------------- QC


def hvg_flavor() -> str:
    """'seurat_v3' (on counts) when scikit-misc is installed, else 'seurat' (log-normalised)."""
    try:
        import skmisc.loess  # noqa: F401
    except ImportError:
        return "seurat"
    return "seurat_v3"


def qc(adata: ad.AnnData, min_genes: int = 20, min_cells: int = 3,
       max_mito_fraction: float = 0.2, n_top_genes: int = 2000, seed: int = 0,
       n_pcs: int = 30, resolution: float = 1.0) -> ad.AnnData:
    """Filter, normalise, select genes and cluster; returns a new AnnData (cells × genes).

    Keeps cells with ≥ ``min_genes`` detected genes and a mitochondrial fraction (genes named
    mt-/MT-) ≤ ``max_mito_fraction``, then genes detected in ≥ ``min_cells`` cells. ``.X``
    stays raw counts; ``layers['log1p_norm']`` = log1p(counts per 1e4); ``var['highly_variable']``
    marks ``n_top_genes`` genes (:func:`hvg_flavor`; all genes when there are fewer).
    Reference clusters: standard PCA of the HVGs (``obsm['X_pca']``) → k-NN → Leiden
    (``obs['leiden']``), all with ``random_state=seed``.
    """
    import scanpy as sc

    n_cells_in, n_genes_in = adata.shape
    adata = adata.copy()
    adata.var["mt"] = adata.var_names.str.lower().str.startswith("mt-")
    sc.pp.calculate_qc_metrics(adata, qc_vars=["mt"], percent_top=None, log1p=False,
                               inplace=True)
    keep = ((adata.obs["n_genes_by_counts"] >= min_genes)
            & (adata.obs["pct_counts_mt"].fillna(0) <= 100 * max_mito_fraction))
    adata = adata[keep.to_numpy()].copy()
    sc.pp.filter_genes(adata, min_cells=min_cells)
    if adata.n_obs < 10 or adata.n_vars < 10:
        raise InputError(f"QC left {adata.n_obs} cells × {adata.n_vars} genes of "
                         f"{n_cells_in} × {n_genes_in}",
                         fix="lower min_genes / min_cells or raise max_mito_fraction")
    adata.layers["log1p_norm"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=dae.TARGET_SUM, layer="log1p_norm")
    sc.pp.log1p(adata, layer="log1p_norm")
    flavor = hvg_flavor()
    if n_top_genes >= adata.n_vars:
        adata.var["highly_variable"] = True
    elif flavor == "seurat_v3":
        sc.pp.highly_variable_genes(adata, flavor=flavor, n_top_genes=n_top_genes)
    else:
        sc.pp.highly_variable_genes(adata, flavor=flavor, n_top_genes=n_top_genes,
                                    layer="log1p_norm")
    counts = adata.X[:, adata.var["highly_variable"].to_numpy()].toarray()
    adata.obsm["X_pca"] = dae.standard_pca(counts, n_pcs, seed)
    labels, _ = dae.neighbour_graph(adata.obsm["X_pca"], seed, resolution)
    adata.obs["leiden"] = pd.Categorical(labels.astype(str),
                                         categories=[str(c) for c in np.unique(labels)])
    adata.uns["qc"] = {
        "n_cells_in": n_cells_in, "n_genes_in": n_genes_in, "n_cells": adata.n_obs,
        "n_genes": adata.n_vars, "n_hvg": int(adata.var["highly_variable"].sum()),
        "n_mito_genes": int(adata.var["mt"].sum()), "hvg_flavor": flavor,
        "min_genes": min_genes, "min_cells": min_cells, "max_mito_fraction": max_mito_fraction,
        "n_top_genes": n_top_genes, "seed": seed, "n_pcs": int(adata.obsm["X_pca"].shape[1]),
        "leiden_resolution": resolution, "n_clusters": int(len(np.unique(labels))),
    }
    return adata


def write_h5ad(path: str | Path, adata: ad.AnnData) -> Path:
    """Write ``adata`` to ``path`` atomically (no partial file on failure)."""
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)
    return Path(path)


def hvg_counts(adata: ad.AnnData) -> np.ndarray:
    """Dense int64 counts (n_cells, n_hvg) of the highly variable genes."""
    x = adata.X[:, adata.var["highly_variable"].to_numpy()]
    return np.asarray(x.toarray() if sp.issparse(x) else x).astype(np.int64)


# ---------------------------------------------------------------------------- entry point


DEFAULT_PARAMS: dict[str, Any] = {
    "seed": 0,                  # numpy / torch / scanpy random_state
    "min_genes": 20,            # QC: genes detected per cell (mouse_10k_subset: median 65)
    "min_cells": 3,             # QC: cells per gene
    "max_mito_fraction": 0.2,   # QC: fraction of counts in mt-/MT- genes
    "n_top_genes": 2000,        # highly variable genes the models see (all when fewer pass QC)
    "latent_dim": 16,           # DAE latent / contrastive embedding / PCA dimensions
    "epochs": 30,               # each of the 4 networks
    "batch_size": 256,
    "lr": 1e-3,
    "heldout_fraction": 0.1,    # molecules held out per cell for the likelihood
    "thinning_keep": 0.5,       # corruption / augmentation: keep each molecule w.p.
    "n_batches": 3,             # artificial batches (depth 1, 0.75, 0.5 × gene factors)
    "threads": 2,               # BLAS / numba threads (PCA, k-NN, UMAP)
    "torch_threads": 1,         # the small MLPs train fastest single-threaded
    "max_cells": 10000,         # random subsample of cells (before QC) above this
    "genome": None,             # for multi-genome 10x input
    "count_loss": "nb",         # "nb" or "zinb" (zero-inflated NB-DAE)
    "penalty_weight": 10.0,     # within-group batch-mean penalty weight
    "leiden_resolution": 1.0,
    "n_pcs": 30,                # PCs of the reference clustering
}


def resolve_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """DEFAULT_PARAMS updated with ``params``; unknown keys raise InputError."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(DEFAULT_PARAMS))
    if unknown:
        raise InputError(f"unknown scrna param(s): {', '.join(unknown)}",
                         fix="use " + ", ".join(DEFAULT_PARAMS))
    merged = {**DEFAULT_PARAMS, **params}
    if merged["count_loss"] not in ("nb", "zinb"):
        raise InputError(f"count_loss must be 'nb' or 'zinb', got {merged['count_loss']!r}")
    if not 2 <= int(merged["n_batches"]) <= len(BATCH_COLOURS):
        raise InputError(f"n_batches must be 2 to {len(BATCH_COLOURS)}, got "
                         f"{merged['n_batches']}")
    return merged


@contextlib.contextmanager
def _thread_limits(threads: int) -> Iterator[None]:
    """Limit BLAS/OpenMP (threadpoolctl) and numba to ``threads`` inside the block."""
    from threadpoolctl import threadpool_limits

    try:
        import numba
    except ImportError:
        numba = None
    before = numba.get_num_threads() if numba else None
    if numba:
        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        with threadpool_limits(threads):
            yield
    finally:
        if numba:
            numba.set_num_threads(before)


def _denoise_stage(adata: ad.AnnData, counts: np.ndarray, clusters: np.ndarray,
                   p: Mapping[str, Any]) -> dae.DenoiseResult:
    """NB-DAE vs MSE-DAE vs gene means; latents and their UMAPs go into ``adata.obsm``."""
    cfg = dae.DAEConfig(loss=p["count_loss"], latent_dim=p["latent_dim"], epochs=p["epochs"],
                        batch_size=p["batch_size"], lr=p["lr"],
                        thinning_keep=p["thinning_keep"], seed=p["seed"],
                        threads=p["torch_threads"])
    den = dae.denoise_benchmark(counts, clusters, cfg, p["heldout_fraction"],
                                p["leiden_resolution"], umap=True)
    for name in ("nb_dae", "mse_dae"):
        adata.obsm[f"X_{name}"] = den.latents[name]
        adata.obsm[f"X_umap_{name}"] = den.umaps[name]
        adata.obs[f"leiden_{name}"] = pd.Categorical(den.leiden[name].astype(str))
    return den


BATCH_ROWS = {"uncorrected_pca": "Before: PCA of log-normalised shifted counts",
              "contrastive": "After: InfoNCE + within-group batch penalty"}


def _batch_stage(counts: np.ndarray, clusters: np.ndarray, p: Mapping[str, Any]) -> dict:
    """Shift counts into artificial batches; embed them four ways; score each.

    Returns table (one row per representation), umaps (for BATCH_ROWS), history, summary.
    Representations: uncorrected_pca; batch_centred_pca (its Leiden clusters are the
    putative groups); contrastive_no_penalty (InfoNCE only); contrastive (+ penalty).
    """
    shift = batch_mod.simulate_batches(counts, p["n_batches"], p["seed"])
    reps = {"uncorrected_pca": dae.standard_pca(shift.counts, p["latent_dim"], p["seed"]),
            "batch_centred_pca": batch_mod.batch_centred_pca(shift.counts, shift.batch,
                                                             p["latent_dim"], p["seed"])}
    rows, labels, umaps, histories = [], {}, {}, []

    def evaluate(name: str) -> None:
        metrics = batch_mod.batch_metrics(reps[name], shift.batch, clusters, p["seed"],
                                          p["leiden_resolution"], umap=name in BATCH_ROWS)
        labels[name], coords = metrics.pop("labels"), metrics.pop("umap")
        if coords is not None:
            umaps[name] = coords
        rows.append({"representation": name, **metrics})

    evaluate("uncorrected_pca")
    evaluate("batch_centred_pca")
    groups = labels["batch_centred_pca"]  # what batch_mod.putative_groups computes
    cfg = batch_mod.ContrastiveConfig(latent_dim=p["latent_dim"], epochs=p["epochs"],
                                      batch_size=p["batch_size"], lr=p["lr"],
                                      thinning_keep=p["thinning_keep"], seed=p["seed"],
                                      threads=p["torch_threads"])
    for name, weight in (("contrastive_no_penalty", 0.0), ("contrastive", p["penalty_weight"])):
        encoder, history = batch_mod.train_contrastive(shift.counts, shift.batch, groups,
                                                       replace(cfg, penalty_weight=weight))
        reps[name] = batch_mod.embed(encoder, shift.counts)
        histories.append(history.assign(model=name))
        evaluate(name)
    summary = {
        "depth_factors": shift.depth_factors.tolist(), "gene_log_sd": 0.5,
        "putative_groups": int(len(np.unique(groups))),
        "putative_group_batch_purity": batch_mod.batch_purity(groups, shift.batch),
        "uncorrected_leiden_batch_purity": batch_mod.batch_purity(labels["uncorrected_pca"],
                                                                  shift.batch),
    }
    return {"table": pd.DataFrame(rows), "umaps": umaps, "batch": shift.batch,
            "history": pd.concat(histories, ignore_index=True), "summary": summary}


def _json_safe(records: list[dict]) -> list[dict]:
    return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v)
             for k, v in row.items()} for row in records]


def run_scrna(input_path: str | Path, out_dir: str | Path, figure_dir: str | Path,
              params: Mapping[str, Any] | None = None, log=sys.stderr) -> dict:
    """Run the single-cell stage on one count matrix; returns the record's results.

    read (subsample to ``max_cells``) → :func:`qc` → denoising benchmark → batch benchmark.
    Writes ``out_dir``/qc.h5ad (QC'd counts, reference clusters, DAE latents and UMAPs),
    denoise_metrics.tsv, batch_metrics.tsv, history.tsv (per-epoch losses of the four
    networks), record.json, and ``figure_dir``/scrna_umap and scrna_batch (.png + .svg).
    ``params``: keys of DEFAULT_PARAMS (commented there); missing keys take the defaults.
    """
    p = resolve_params(params)
    out_dir, figure_dir, input_path = Path(out_dir), Path(figure_dir), Path(input_path)
    timings: dict[str, float] = {}
    started = tic = time.time()

    def lap(step: str) -> None:
        nonlocal tic
        timings[step] = round(time.time() - tic, 2)
        print(f"scrna: {step} {timings[step]:.1f}s", file=log, flush=True)
        tic = time.time()

    with _thread_limits(p["threads"]):
        raw = read_counts(input_path, genome=p["genome"])
        n_input = raw.n_obs
        if raw.n_obs > p["max_cells"]:
            rng = np.random.default_rng(p["seed"])
            raw = raw[np.sort(rng.choice(raw.n_obs, p["max_cells"], replace=False))].copy()
        adata = qc(raw, p["min_genes"], p["min_cells"], p["max_mito_fraction"],
                   p["n_top_genes"], p["seed"], p["n_pcs"], p["leiden_resolution"])
        clusters = adata.obs["leiden"].astype(int).to_numpy()
        counts = hvg_counts(adata)
        lap("read_qc")
        den = _denoise_stage(adata, counts, clusters, p)
        write_h5ad(out_dir / "qc.h5ad", adata)
        lap("denoise")
        bat = _batch_stage(counts, clusters, p)
        lap("batch")

        count_name = f"{p['count_loss']}_dae"
        denoise_table = den.metrics.replace({"model": {"nb_dae": count_name}})
        history = pd.concat([den.history, bat["history"]], ignore_index=True).reindex(
            columns=["model", "epoch", "loss", "infonce", "penalty", "seconds"])
        history["model"] = history["model"].replace({"nb_dae": count_name})
        write_tsv(out_dir / "denoise_metrics.tsv", denoise_table, float_format="%.6g")
        write_tsv(out_dir / "batch_metrics.tsv", bat["table"], float_format="%.6g")
        write_tsv(out_dir / "history.tsv", history, float_format="%.6g")
        plot_latent_umaps(figure_dir / "scrna_umap.png", den.umaps, clusters,
                          denoise_table.set_index("model"), count_name)
        plot_batch_embeddings(figure_dir / "scrna_batch.png", bat["umaps"], bat["batch"],
                              clusters, bat["table"].set_index("representation"))
        lap("write")

    results = {
        "n_cells_input": int(n_input), "n_cells_used": int(raw.n_obs),
        "subsampled": bool(n_input > raw.n_obs),
        "qc": {k: (v.item() if hasattr(v, "item") else v) for k, v in adata.uns["qc"].items()},
        "denoise": _json_safe(denoise_table.to_dict(orient="records")),
        "batch": _json_safe(bat["table"].to_dict(orient="records")),
        "batch_shift": bat["summary"],
        "seconds": {**timings, "total": round(time.time() - started, 2)},
    }
    inputs = mtx_files(input_path, p["genome"]) if input_path.is_dir() else {"counts": input_path}
    write_record(out_dir / "record.json", "scrna", p, inputs, results)
    return results


# ---------------------------------------------------------------------------- figures


# Paul Tol's colour-blind-safe "muted" hues, apart from the cluster colours
BATCH_COLOURS = ["#332288", "#DDCC77", "#CC6677", "#88CCEE", "#117733", "#AA4499"]


def cluster_colours(n: int) -> list:
    """n distinct colours: Okabe–Ito for ≤ 8; else tab10, then tab20's light shades, tab20b."""
    if n <= len(PALETTE):
        return PALETTE[:n]
    tab20 = list(matplotlib.colormaps["tab20"].colors)
    cmap = tab20[0::2] + tab20[1::2] + list(matplotlib.colormaps["tab20b"].colors)
    return [cmap[i % len(cmap)] for i in range(n)]



def _scatter(ax, coords: np.ndarray, labels: np.ndarray, colours: list, annotate: bool) -> None:
    """Cells as small dots (rasterised), coloured by integer labels, shuffled draw order."""
    order = np.random.default_rng(0).permutation(len(coords))
    size = float(np.clip(3000 / len(coords), 1.0, 12.0))
    ax.scatter(coords[order, 0], coords[order, 1], c=[colours[i] for i in labels[order]],
               s=size, linewidths=0, alpha=0.8, rasterized=True)
    if annotate:
        for label in np.unique(labels):
            x, y = np.median(coords[labels == label], axis=0)
            ax.text(x, y, str(label), ha="center", va="center", fontsize=8, weight="bold",
                    path_effects=[patheffects.withStroke(linewidth=2.5, foreground="white")])
    ax.set(xlabel="UMAP 1", ylabel="UMAP 2", xticks=[], yticks=[])
    ax.grid(False)


def _cluster_legend(fig: Figure, clusters: np.ndarray, colours: list, title: str) -> None:
    sizes = np.bincount(clusters)
    handles = [Line2D([], [], marker="o", linestyle="none", markersize=6, color=colours[k],
                      label=f"{k}  ({sizes[k]:,} cells)") for k in np.unique(clusters)]
    fig.legend(handles=handles, loc="outside right upper", title=title,
               ncols=1 if len(handles) <= 14 else 2, handletextpad=0.2, columnspacing=0.8)


def plot_latent_umaps(path_png: str | Path, umaps: Mapping[str, np.ndarray],
                      clusters: np.ndarray, metrics: pd.DataFrame,
                      count_name: str = "nb_dae") -> tuple[Path, Path]:
    """UMAP (n, 2) of the NB-DAE and MSE-DAE latents, coloured by the full-data Leiden clusters."""
    names = {"nb_dae": f"{count_name.split('_')[0].upper()}-DAE latent",
             "mse_dae": "MSE-DAE latent"}
    colours = cluster_colours(int(clusters.max()) + 1)
    with matplotlib.rc_context(STYLE):
        fig = new_figure(10.5, 5.0)
        axes = fig.subplots(1, 2)
        for ax, (name, coords) in zip(axes, umaps.items(), strict=True):
            row = metrics.loc[count_name if name == "nb_dae" else name]
            _scatter(ax, coords, clusters, colours, annotate=True)
            ax.set_title(f"{names[name]}\nsilhouette {row['silhouette']:.2f} · ARI (Leiden on "
                         f"latent vs colours) {row['ari']:.2f}\nheld-out NB log-likelihood "
                         f"{row['heldout_nb_ll_per_molecule']:.3f} per molecule", fontsize=9.5)
        _cluster_legend(fig, clusters, colours, "Leiden cluster\n(PCA of all QC'd cells)")
        fig.suptitle(f"Denoising autoencoder latent spaces ({len(clusters):,} cells)")
        return save_figure(fig, path_png)


def plot_batch_embeddings(path_png: str | Path, umaps: Mapping[str, np.ndarray],
                          batch: np.ndarray, clusters: np.ndarray,
                          metrics: pd.DataFrame) -> tuple[Path, Path]:
    """One row per representation (UMAP (n, 2)): coloured by artificial batch, and by cluster."""
    batch_colours = BATCH_COLOURS[:int(batch.max()) + 1]
    colours = cluster_colours(int(clusters.max()) + 1)
    with matplotlib.rc_context(STYLE):
        fig = new_figure(10.0, 3.9 * len(umaps))
        axes = fig.subplots(len(umaps), 2, squeeze=False)
        for (ax_b, ax_c), (name, coords) in zip(axes, umaps.items(), strict=True):
            row = metrics.loc[name]
            _scatter(ax_b, coords, batch, batch_colours, annotate=False)
            _scatter(ax_c, coords, clusters, colours, annotate=True)
            ax_b.set_title(f"{BATCH_ROWS.get(name, name)}\nby batch: k-NN batch entropy "
                           f"{row['batch_entropy']:.2f} · kBET acceptance "
                           f"{row['kbet_acceptance']:.2f}", fontsize=9.5)
            ax_c.set_title(f"same embedding, by cluster of the unshifted data\nARI "
                           f"{row['ari_unshifted_clusters']:.2f} · silhouette "
                           f"{row['silhouette_unshifted_clusters']:.2f}", fontsize=9.5)
        handles = [Line2D([], [], marker="o", linestyle="none", markersize=6, color=c,
                          label=f"batch {b}") for b, c in enumerate(batch_colours)]
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles),
                   title="artificial batch (depth × gene-factor shift)")
        _cluster_legend(fig, clusters, colours, "Leiden cluster\n(unshifted data)")
        fig.suptitle(f"Batch-aware contrastive embedding ({len(batch):,} cells, UMAP)")
        return save_figure(fig, path_png)
