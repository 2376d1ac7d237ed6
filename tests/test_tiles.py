"""Tests for helixflow.tiles: the per-genome background tile table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_genome import make_toy_genome

from helixflow.intervals import nucleotide_content
from helixflow.tiles import (
    TILE_COLUMNS,
    genome_tiles,
    read_genome_tiles,
    tiles_for,
    write_genome_tiles,
)


@pytest.fixture(scope="module")
def toy_genome(tmp_path_factory):
    return make_toy_genome(tmp_path_factory.mktemp("genome"))


def test_tiles_cover_each_chromosome_in_full_width_steps(toy_genome):
    tiles = genome_tiles(toy_genome.fasta, 200)
    assert list(tiles.columns) == TILE_COLUMNS
    for chrom, seq in toy_genome.seqs.items():
        starts = tiles.loc[tiles["chrom"] == chrom, "start"].to_numpy()
        np.testing.assert_array_equal(starts, np.arange(0, len(seq) - 199, 200))
    assert (tiles["end"] - tiles["start"] == 200).all()


def test_tile_gc_and_n_agree_with_bedtools_nuc(toy_genome):
    """Soft-masked and N-rich tiles included: the same numbers bedtools nuc gives."""
    tiles = genome_tiles(toy_genome.fasta, 150)
    content = nucleotide_content(tiles, toy_genome.fasta)
    np.testing.assert_allclose(tiles["gc"], content["gc"], atol=1e-4)
    np.testing.assert_allclose(tiles["n_frac"], content["n_frac"], atol=1e-4)
    assert tiles["n_frac"].max() == 1.0 and tiles["n_frac"].min() == 0.0


def test_tiles_streamed_in_chunks_equal_one_pass(toy_genome, tmp_path):
    import pysam

    from helixflow.tiles import chromosome_tiles
    with pysam.FastaFile(str(toy_genome.fasta)) as fasta:
        chrom = fasta.references[0]
        small = pd.concat(list(chromosome_tiles(fasta, chrom, 100, chunk_tiles=7)))
        whole = pd.concat(list(chromosome_tiles(fasta, chrom, 100, chunk_tiles=10**6)))
    pd.testing.assert_frame_equal(small.reset_index(drop=True), whole.reset_index(drop=True))


def test_written_table_round_trips(toy_genome, tmp_path):
    out = tmp_path / "tiles" / "200.tsv.gz"
    counts = write_genome_tiles(toy_genome.fasta, 200, out)
    table = read_genome_tiles(out)
    expected = genome_tiles(toy_genome.fasta, 200)
    assert counts["tiles"] == len(table) == len(expected)
    pd.testing.assert_frame_equal(table, expected)
    chrom = expected["chrom"].iloc[0]
    assert set(read_genome_tiles(out, [chrom])["chrom"]) == {chrom}
    pd.testing.assert_frame_equal(tiles_for(out, toy_genome.fasta, 200), expected)
    pd.testing.assert_frame_equal(tiles_for(None, toy_genome.fasta, 200), expected)
    assert [p.name for p in out.parent.iterdir()] == ["200.tsv.gz"]   # no temporary left
