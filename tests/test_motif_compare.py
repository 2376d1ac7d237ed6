"""Filters and TF-MoDISco patterns beside the target's JASPAR motif."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helixflow import motif_compare as mc
from helixflow.errors import InputError
from helixflow.files import write_json, write_tsv
from helixflow.motifs import (
    JasparMotif,
    jaspar_motif,
    jaspar_motifs,
    reverse_complement_ppm,
    tomtom_matches,
    write_meme,
)


def _random_ppm(rng: np.random.Generator, w: int) -> np.ndarray:
    return rng.dirichlet(np.full(4, 0.2), size=w).T


@pytest.mark.parametrize("strand", ["+", "-"])
def test_aligned_placement_puts_each_column_on_its_match(strand):
    rng = np.random.default_rng(4)
    target = _random_ppm(rng, 14)
    piece = target[:, 3:10]
    query = piece if strand == "+" else reverse_complement_ppm(piece)
    decoys = [JasparMotif(f"MA9{i:03d}.1", f"D{i}", _random_ppm(rng, 12)) for i in range(30)]
    table = tomtom_matches({"q": query}, [JasparMotif("MA0001.1", "T", target), *decoys])
    best = table.iloc[0]
    assert best["target_id"] == "MA0001.1" and best["strand"] == strand
    ppm, start = mc.aligned_placement(query, int(best["offset"]), best["strand"], 14)
    assert start == 3
    np.testing.assert_allclose(ppm, piece)


@pytest.fixture(scope="module")
def reb1_dirs(tmp_path_factory):
    """A motif dir with a REB1-like filter (reverse strand), a flat one and a random one, and
    an attribution dir with one REB1-like pattern; JASPAR fungi as the Tomtom targets."""
    root = tmp_path_factory.mktemp("compare")
    rng = np.random.default_rng(0)
    own = jaspar_motif("MA0363")
    targets = jaspar_motifs("fungi")
    filters = {"filter000": _random_ppm(rng, 9),
               "filter001": reverse_complement_ppm(own.ppm[:, 1:9]),
               "filter002": np.full((4, 6), 0.25)}
    motif_dir, att_dir = root / "motifs", root / "attributions"
    write_meme(motif_dir / "filters.meme", filters)
    write_tsv(motif_dir / "tomtom.tsv", tomtom_matches(filters, targets))
    write_json(motif_dir / "record.json", {"results": {
        "jaspar_release": own.release, "sites": {"filter000": 12, "filter001": 80,
                                                 "filter002": 15}}})
    pd.DataFrame({"target": ["Reb1"], "jaspar_id": [own.matrix_id]}).to_csv(
        motif_dir / "recovery.tsv", sep="\t", index=False)
    patterns = {"pos_pattern_0": own.ppm[:, 0:8] * 0.9 + 0.025}
    write_meme(att_dir / "modisco.meme", patterns)
    write_tsv(att_dir / "modisco_tomtom.tsv", tomtom_matches(patterns, targets))
    write_json(att_dir / "record.json", {"results": {"patterns": {"pos_pattern_0": 50}}})
    return own, motif_dir, att_dir


def test_sources_table_says_which_route_found_the_motif(reb1_dirs):
    own, motif_dir, att_dir = reb1_dirs
    table = mc.motif_sources_table("Reb1", motif_dir, att_dir, own.matrix_id)
    assert list(table.columns) == mc.SOURCE_COLUMNS
    assert table["source"].tolist() == ["filter"] * 3 + ["modisco"]
    first = table.iloc[0]  # own-motif matches come first
    assert (first["motif"], first["best_jaspar_name"], first["own_strand"]) == \
        ("filter001", "REB1", "-")
    assert bool(first["own_motif_recovered"]) and first["n_sites"] == 80
    assert not table.loc[table["motif"] == "filter002", "own_motif_recovered"].iloc[0]
    modisco = table[table["source"] == "modisco"].iloc[0]
    assert bool(modisco["own_motif_recovered"]) and modisco["own_strand"] == "+"


def test_run_motif_compare_writes_table_and_figure(reb1_dirs, tmp_path):
    _, motif_dir, att_dir = reb1_dirs
    summary = mc.run_motif_compare("Reb1", motif_dir, att_dir, "", tmp_path / "out",
                                   tmp_path / "Reb1_motifs.png", {"n_logos": 2})
    assert summary["jaspar_name"] == "REB1" and summary["both_recovered"]
    assert summary["filter"] == {"n": 3, "n_own": 1, "recovered": True, "best": "filter001",
                                 "q": pytest.approx(summary["filter"]["q"])}
    assert summary["filter"]["q"] < 0.05
    assert (tmp_path / "out" / "motif_sources.tsv").is_file()
    assert (tmp_path / "Reb1_motifs.png").stat().st_size > 10_000
    assert (tmp_path / "Reb1_motifs.svg").is_file()


def test_no_modisco_pattern_still_gives_the_figure(reb1_dirs, tmp_path):
    own, motif_dir, _ = reb1_dirs
    att_dir = tmp_path / "attributions"
    write_meme(att_dir / "modisco.meme", {})  # what the attribution step writes then
    write_tsv(att_dir / "modisco_tomtom.tsv", tomtom_matches({}, []))
    counts = mc.plot_motifs_beside("Mcm1", motif_dir, att_dir, own.matrix_id,
                                   tmp_path / "fig.png", n=3)
    assert counts == {"filter": 3, "modisco": 0}
    table = mc.motif_sources_table("Mcm1", motif_dir, att_dir, own.matrix_id)
    assert set(table["source"]) == {"filter"}


def test_missing_attribution_step_names_the_file(reb1_dirs, tmp_path):
    own, motif_dir, _ = reb1_dirs
    with pytest.raises(InputError, match="modisco_tomtom.tsv"):
        mc.motif_sources_table("Reb1", motif_dir, tmp_path / "nothing", own.matrix_id)
