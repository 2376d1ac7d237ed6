"""Single-cell ingest (10x layouts, .h5 versions, .h5ad), validation errors, QC, the whole stage."""

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helixflow.errors import InputError
from helixflow.scrna_io import qc, read_counts, run_scrna, write_h5ad

# Under the data mirror (the data_mirror fixture, tests/conftest.py)
SCRNA = Path("scrna")
EXAMPLES = SCRNA / "10x_format_examples"
V12_DIR = EXAMPLES / "1.2.0/filtered_gene_bc_matrices/hg19_chr21"
V12_H5 = EXAMPLES / "1.2.0/filtered_gene_bc_matrices_h5.h5"
MULTI_H5 = EXAMPLES / "1.2.0/multiple_genomes.h5"
V3_DIR = EXAMPLES / "3.0.0/filtered_feature_bc_matrix"
V3_H5 = EXAMPLES / "3.0.0/filtered_feature_bc_matrix.h5"
PBMC = SCRNA / "pbmc_subset/filtered_feature_bc_matrix"


def assert_same(a, b):
    assert a.shape == b.shape
    assert list(a.obs_names) == list(b.obs_names)
    assert list(a.var_names) == list(b.var_names)
    assert (a.X != b.X).nnz == 0


def test_cell_ranger_1_2_directory_matches_its_h5(data_mirror):
    mtx, h5 = read_counts(data_mirror / V12_DIR), read_counts(data_mirror / V12_H5)
    assert mtx.shape == (12, 343)
    assert_same(mtx, h5)
    only_genome = data_mirror / V12_DIR.parent     # a folder with one genome sub-directory
    assert read_counts(only_genome).shape == (12, 343)


def test_cell_ranger_3_directory_matches_its_h5(data_mirror):
    mtx = read_counts(data_mirror / V3_DIR)
    h5 = read_counts(data_mirror / V3_H5, fmt="10x_h5")
    assert mtx.shape == (1107, 507)
    assert_same(mtx, h5)
    assert list(mtx.var["gene_ids"]) == list(h5.var["gene_ids"])
    x = mtx.X.data
    assert x.dtype == np.float32 and (x > 0).all() and np.array_equal(x, np.round(x))


def test_multi_genome_h5_needs_a_genome(data_mirror):
    multi = data_mirror / MULTI_H5
    with pytest.raises(InputError) as error:
        read_counts(multi)
    assert "another_genome" in str(error.value) and "hg19_chr21" in str(error.value)
    assert "multiple_genomes.h5" in str(error.value)
    assert_same(read_counts(multi, genome="hg19_chr21"), read_counts(data_mirror / V12_H5))
    assert read_counts(multi, genome="another_genome").shape == (12, 343)
    with pytest.raises(InputError, match="no genome 'mm10'"):
        read_counts(multi, genome="mm10")


def test_h5ad_round_trip_is_atomic(data_mirror, tmp_path):
    adata = read_counts(data_mirror / V3_DIR)
    path = write_h5ad(tmp_path / "counts.h5ad", adata)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counts.h5ad"]
    assert_same(read_counts(path), adata)


def copy_dir(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    for path in dst.iterdir():
        path.chmod(0o644)
    return dst


def edit_lines(path: Path, edit) -> None:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        lines = handle.read().splitlines()
    lines = edit(lines)
    with opener(path, "wt") as handle:
        handle.write("\n".join(lines) + "\n")


def test_features_count_mismatch_names_file_and_header_line(data_mirror, tmp_path):
    folder = copy_dir(data_mirror / V12_DIR, tmp_path / "v12")
    edit_lines(folder / "genes.tsv", lambda lines: lines[:-1])
    with pytest.raises(InputError) as error:
        read_counts(folder)
    message = str(error.value)
    assert str(folder / "genes.tsv") in message
    assert "342 lines" in message and "matrix.mtx line 3" in message and "343" in message


def test_barcodes_count_mismatch(data_mirror, tmp_path):
    folder = copy_dir(data_mirror / V3_DIR, tmp_path / "v3")
    edit_lines(folder / "barcodes.tsv.gz", lambda lines: lines + ["TTTTTTTTTTTTTTTT-1"])
    with pytest.raises(InputError) as error:
        read_counts(folder)
    message = str(error.value)
    assert "barcodes.tsv.gz has 1108 lines" in message
    assert "matrix.mtx.gz line 3" in message and "1107 columns" in message


@pytest.mark.parametrize(("value", "what"), [("-2", "negative count"),
                                             ("1.5", "non-integer count")])
def test_bad_count_names_the_matrix_line(data_mirror, tmp_path, value, what):
    folder = copy_dir(data_mirror / V12_DIR, tmp_path / "v12")

    def corrupt(lines):  # entry lines start at line 4; corrupt line 9
        row, col, _ = lines[8].split()
        lines[8] = f"{row} {col} {value}"
        return lines

    edit_lines(folder / "matrix.mtx", corrupt)
    with pytest.raises(InputError) as error:
        read_counts(folder)
    assert error.value.line == 9
    assert f"{folder / 'matrix.mtx'} line 9: {what}" in str(error.value)


def test_bad_count_in_gzipped_matrix(data_mirror, tmp_path):
    folder = copy_dir(data_mirror / V3_DIR, tmp_path / "v3")

    def corrupt(lines):
        row, col, _ = lines[100].split()
        lines[100] = f"{row} {col} -7"
        return lines

    edit_lines(folder / "matrix.mtx.gz", corrupt)
    with pytest.raises(InputError, match=r"matrix.mtx.gz line 101: negative count"):
        read_counts(folder)


def test_a_gzip_whose_name_says_plain_text_is_refused_by_name(data_mirror, tmp_path):
    """scanpy decides compression by the file name: the bytes must agree with it."""
    folder = copy_dir(data_mirror / V12_DIR, tmp_path / "v12")
    barcodes = folder / "barcodes.tsv"
    barcodes.write_bytes(gzip.compress(barcodes.read_bytes()))
    with pytest.raises(InputError, match=r"barcodes.tsv: barcodes.tsv is gzip-compressed, but "
                       r"its name says otherwise; gzip it or drop '.gz'"):
        read_counts(folder)


def test_malformed_entry_line(data_mirror, tmp_path):
    folder = copy_dir(data_mirror / V12_DIR, tmp_path / "v12")
    edit_lines(folder / "matrix.mtx", lambda lines: lines[:5] + ["3 4 five"] + lines[6:])
    with pytest.raises(InputError, match="matrix.mtx line 6"):
        read_counts(folder)


def test_unknown_format_names_path_and_supported(data_mirror, tmp_path):
    path = tmp_path / "counts.csv"
    path.write_text("cell,gene\n")
    with pytest.raises(InputError) as error:
        read_counts(path)
    message = str(error.value)
    assert str(path) in message
    assert ".h5ad" in message and ".h5" in message and "features.tsv.gz" in message
    with pytest.raises(InputError, match="unknown format 'loom'"):
        read_counts(data_mirror / V3_H5, fmt="loom")


def test_qc_keeps_counts_and_clusters(data_mirror):
    adata = qc(read_counts(data_mirror / V3_DIR), min_genes=5, min_cells=3,
               max_mito_fraction=0.2, n_top_genes=100, seed=0)
    x = adata.X.data
    assert np.array_equal(x, np.round(x))  # raw integer counts stay in .X
    assert int(adata.var["highly_variable"].sum()) == 100
    assert "log1p_norm" in adata.layers and "leiden" in adata.obs
    assert (adata.obs["n_genes_by_counts"] >= 5).all()
    assert (adata.obs["pct_counts_mt"] <= 20).all()
    assert adata.uns["qc"]["n_cells"] == adata.n_obs


def test_run_scrna_end_to_end(data_mirror, tmp_path):
    pbmc = data_mirror / PBMC
    out, figures = tmp_path / "out", tmp_path / "figures"
    params = {"epochs": 4, "latent_dim": 8, "batch_size": 64, "n_batches": 2, "n_pcs": 15}
    results = run_scrna(pbmc, out, figures, params)
    expected = {"qc.h5ad", "denoise_metrics.tsv", "batch_metrics.tsv", "history.tsv",
                "record.json"}
    assert {p.name for p in out.iterdir()} == expected  # and no temporary files
    assert {p.name for p in figures.iterdir()} == {"scrna_umap.png", "scrna_umap.svg",
                                                   "scrna_batch.png", "scrna_batch.svg"}
    denoise = pd.read_csv(out / "denoise_metrics.tsv", sep="\t")
    assert list(denoise["model"]) == ["nb_dae", "mse_dae", "gene_mean"]
    assert {"heldout_nb_ll_per_cell", "heldout_nb_ll_per_molecule", "silhouette",
            "ari"} <= set(denoise.columns)
    assert np.isfinite(denoise["heldout_nb_ll_per_molecule"]).all()
    batch = pd.read_csv(out / "batch_metrics.tsv", sep="\t")
    assert {"uncorrected_pca", "contrastive"} <= set(batch["representation"])
    assert {"batch_entropy", "kbet_acceptance", "ari_unshifted_clusters"} <= set(batch.columns)
    history = pd.read_csv(out / "history.tsv", sep="\t")
    assert set(history["model"]) == {"nb_dae", "mse_dae", "contrastive_no_penalty",
                                     "contrastive"}
    record = json.loads((out / "record.json").read_text())
    assert record["step"] == "scrna" and record["params"]["epochs"] == 4
    assert set(record["inputs"]) == {"matrix", "features", "barcodes"}
    assert results["n_cells_used"] == record["results"]["n_cells_used"] <= 283
    with pytest.raises(InputError, match="unknown scrna param"):
        run_scrna(pbmc, out, figures, {"epochz": 3})
