"""Pretraining corpus: tiling, N filter, counts, tokens, shards, checksums, no partial output.

Also home of the small pretraining genome that test_loader imports.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_genome import write_fasta

import helixflow.corpus as corpus_module
from helixflow.corpus import IUPAC, build_corpus, run_pretrain_corpus, verify_corpus
from helixflow.errors import InputError
from helixflow.genome import index_genome
from helixflow.tokenize import Tokenizer

SIZES = {"chrA": 5_000, "chrB": 3_337, "chrC": 2_100, "chrD": 900}
N_RUN = ("chrA", 1_000, 1_400)         # a run of N: windows over it are dropped
SOFT = ("chrB", 500, 1_700)            # lower case
IUPAC_AT = {("chrA", 3_000): "R", ("chrA", 3_001): "y", ("chrB", 2_000): "K",
            ("chrC", 50): "S", ("chrC", 51): "S", ("chrB", 100): "-"}   # '-' is no IUPAC code


def make_pretrain_genome(root: Path) -> tuple[dict[str, str], Path]:
    """A random genome with an N run, soft-masked bases and IUPAC codes, indexed; returns the
    sequences as written and the indexed FASTA."""
    rng = np.random.default_rng(3)
    seqs = {}
    for chrom, size in SIZES.items():
        seq = list("".join(rng.choice(list("ACGT"), size)))
        if chrom == N_RUN[0]:
            seq[N_RUN[1]:N_RUN[2]] = "N" * (N_RUN[2] - N_RUN[1])
        if chrom == SOFT[0]:
            seq[SOFT[1]:SOFT[2]] = [b.lower() for b in seq[SOFT[1]:SOFT[2]]]
        for (c, pos), code in IUPAC_AT.items():
            if c == chrom:
                seq[pos] = code
        seqs[chrom] = "".join(seq)
    # index_genome refuses a '-' (no IUPAC code): index with N there, then put the '-' into
    # the indexed copy, so that the corpus' own count of other letters is still tested
    gap = {chrom: [i for (c, i), code in IUPAC_AT.items() if c == chrom and code == "-"]
           for chrom in seqs}
    write_fasta(root / "raw.fa", {c: "".join("N" if i in gap[c] else b for i, b in
                                            enumerate(s)) for c, s in seqs.items()}, width=70)
    fasta = root / "indexed" / "g.fa"
    index_genome(root / "raw.fa", fasta, root / "indexed" / "g.sizes")
    fai = {line.split("\t")[0]: int(line.split("\t")[2])
           for line in Path(f"{fasta}.fai").read_text().splitlines()}
    with open(fasta, "r+b") as handle:
        for chrom, positions in gap.items():
            for i in positions:
                handle.seek(fai[chrom] + i // 70 * 71 + i % 70)
                handle.write(b"-")
    return seqs, fasta


@pytest.fixture(scope="module")
def genome(tmp_path_factory):
    return make_pretrain_genome(tmp_path_factory.mktemp("pretrain_genome"))


def expected_windows(seqs, chroms, window, stride, max_n_fraction):
    """Straightforward per-window answer: (chrom index, start, window as ACGTN) kept."""
    kept, dropped = [], 0
    for ci, chrom in enumerate(chroms):
        seq = seqs[chrom]
        for start in range(0, len(seq) - window + 1, stride):
            text = "".join(b if b in "ACGT" else "N" for b in seq[start:start + window].upper())
            if text.count("N") / window <= max_n_fraction:
                kept.append((ci, start, text))
            else:
                dropped += 1
    return kept, dropped


def load_rows(out_dir: Path, manifest: dict) -> tuple[np.ndarray, np.ndarray]:
    tokens = [np.load(out_dir / s["path"]) for s in manifest["shards"]]
    coords = [np.load(out_dir / s["coords"]) for s in manifest["shards"]]
    return np.concatenate(tokens), np.concatenate(coords)


@pytest.mark.parametrize("k, stride, chunk_bp", [(1, 1, 1 << 22), (1, 1, 700), (3, 1, 512),
                                                 (4, 2, 333), (3, 3, 1 << 22)])
def test_tokens_and_coords_match_per_window_encoding(genome, tmp_path, k, stride, chunk_bp):
    seqs, fasta = genome
    chroms = ["chrA", "chrB", "chrD"]
    tok = Tokenizer(k, stride)
    manifest = build_corpus(fasta, chroms, tmp_path, tok, window_bp=300, stride_bp=120,
                            max_n_fraction=0.1, shard_windows=7, workers=1, chunk_bp=chunk_bp)
    tokens, coords = load_rows(tmp_path, manifest)
    kept, dropped = expected_windows(seqs, chroms, 300, 120, 0.1)
    assert [tuple(c) for c in coords] == [(ci, s) for ci, s, _ in kept]
    assert tokens.dtype == tok.dtype and tokens.shape == (len(kept), tok.n_tokens(300))
    for row, (_, _, text) in zip(tokens, kept, strict=True):
        assert np.array_equal(row, tok.encode(text))
    assert manifest["counts"]["windows_kept"] == len(kept)
    assert manifest["counts"]["windows_dropped"] == dropped > 0
    # fixed-size shards, per chromosome: only each chromosome's last shard is short
    for chrom in chroms:
        sizes = [s["n_windows"] for s in manifest["shards"] if s["chrom"] == chrom]
        assert all(n == 7 for n in sizes[:-1]) and 1 <= sizes[-1] <= 7


def test_counts_match_an_independent_count(genome, tmp_path):
    seqs, fasta = genome
    manifest = build_corpus(fasta, list(SIZES), tmp_path, Tokenizer(1), window_bp=200,
                            stride_bp=200, max_n_fraction=0.05, shard_windows=50, workers=1,
                            chunk_bp=600)
    text = "".join(seqs.values())
    counts = manifest["counts"]
    assert counts["bp"] == sum(SIZES.values())
    assert counts["soft_masked_bp"] == sum(b.islower() for b in text) == SOFT[2] - SOFT[1] + 1
    assert counts["n_bp"] == text.upper().count("N") == N_RUN[2] - N_RUN[1]
    assert counts["iupac"] == {c: text.upper().count(c) for c in IUPAC}
    assert counts["iupac"]["S"] == 2 and counts["iupac"]["Y"] == 1
    assert counts["other_bp"] == 1                                   # the '-'
    per_chrom = manifest["counts_per_chromosome"]
    assert per_chrom["chrB"]["soft_masked_bp"] == SOFT[2] - SOFT[1]
    assert {c: v["bp"] for c, v in per_chrom.items()} == SIZES


def test_manifest_records_tokenizer_split_sources(genome, tmp_path):
    seqs, fasta = genome
    summary = run_pretrain_corpus(fasta, tmp_path, {"k": 2, "window_bp": 100, "stride_bp": 100,
                                                    "exclude_chroms": ["chrC"], "workers": 1})
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["chromosomes"] == ["chrA", "chrB", "chrD"]        # held-out chrC excluded
    assert manifest["excluded_chromosomes"] == ["chrC"]
    assert {s["chrom"] for s in manifest["shards"]} == {"chrA", "chrB", "chrD"}
    assert manifest["tokenizer"] == Tokenizer(2).manifest()
    assert manifest["split"] == "train" and manifest["n_tokens"] == 99
    assert len(manifest["source"]["fasta_sha256"]) == len(manifest["source"]["fai_sha256"]) == 64
    assert summary["windows_kept"] == manifest["counts"]["windows_kept"]
    assert summary["n_shards"] == len(manifest["shards"])
    with pytest.raises(InputError, match="chrZ.*not in the genome"):
        run_pretrain_corpus(fasta, tmp_path / "bad", {"exclude_chroms": ["chrZ"]})


def test_parallel_build_gives_the_same_bytes(genome, tmp_path):
    _, fasta = genome
    args = dict(tokenizer=Tokenizer(3), window_bp=250, stride_bp=100, max_n_fraction=0.2,
                shard_windows=9, chunk_bp=1000)
    one = build_corpus(fasta, list(SIZES), tmp_path / "one", workers=1, **args)
    two = build_corpus(fasta, list(SIZES), tmp_path / "two", workers=2, **args)
    assert one["shards"] == two["shards"]
    assert one["counts"] == two["counts"]


def test_changed_shard_is_detected(genome, tmp_path):
    _, fasta = genome
    build_corpus(fasta, ["chrA"], tmp_path, Tokenizer(1), window_bp=100, stride_bp=100,
                 max_n_fraction=0.0, shard_windows=10, workers=1)
    verify_corpus(tmp_path / "manifest.json")
    shard = tmp_path / "shard_00002.npy"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1                                       # one flipped bit in the last token
    shard.write_bytes(bytes(data))
    with pytest.raises(InputError, match="shard_00002.npy.*sha256") as err:
        verify_corpus(tmp_path / "manifest.json")
    assert "rebuild" in str(err.value)
    (tmp_path / "coords_00001.npy").unlink()
    with pytest.raises(InputError, match="coords_00001.npy.*missing"):
        verify_corpus(tmp_path / "manifest.json")


def test_failure_leaves_no_shard_or_manifest(genome, tmp_path, monkeypatch):
    _, fasta = genome
    args = dict(tokenizer=Tokenizer(1), window_bp=100, stride_bp=50, max_n_fraction=0.1,
                shard_windows=10, workers=1)
    build_corpus(fasta, ["chrD"], tmp_path, **args)                 # an older, good corpus
    calls, original = [], Tokenizer.encode_windows

    def failing_encode(self, idx, starts, window_bp):
        calls.append(1)
        if len(calls) == 3:                                          # after shards were written
            raise OSError("disk full")
        return original(self, idx, starts, window_bp)

    monkeypatch.setattr(corpus_module.Tokenizer, "encode_windows", failing_encode)
    with pytest.raises(OSError, match="disk full"):
        build_corpus(fasta, list(SIZES), tmp_path, chunk_bp=500, **args)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_missing_index_is_an_input_error(tmp_path):
    plain = tmp_path / "g.fa"
    plain.write_text(">a\nACGT\n")
    with pytest.raises(InputError, match="no .fai index"):
        build_corpus(plain, ["a"], tmp_path / "out", Tokenizer(1), 2, 2, 0.1, 5)


def test_worker_failure_in_the_pool_leaves_nothing(genome, tmp_path):
    """A FASTA cut short after indexing: a worker process fails reading the last chromosome."""
    _, fasta = genome
    cut = tmp_path / "cut.fa"
    data = fasta.read_bytes()
    cut.write_bytes(data[: len(data) - 300])
    Path(f"{cut}.fai").write_text(Path(f"{fasta}.fai").read_text())
    out = tmp_path / "out"
    with pytest.raises(InputError, match="cut.fa: read .* bases where the .fai promises") as err:
        build_corpus(cut, list(SIZES), out, Tokenizer(1), window_bp=100, stride_bp=50,
                     max_n_fraction=0.1, shard_windows=10, workers=2, chunk_bp=400)
    assert str(err.value).count("helixflow:") == 1 and err.value.fix.startswith("re-index")
    assert sorted(p.name for p in out.iterdir()) == []


def test_split_corpus_record_holds_the_fasta_digest(genome, tmp_path):
    from helixflow.corpus import run_split_corpus
    from helixflow.files import sha256sum
    _, fasta = genome
    params = {"k": 1, "token_stride": 1, "window_bp": 100, "stride_bp": 100,
              "heldout_stride_bp": 100, "max_n_fraction": 0.1, "shard_windows": 1000}
    run_split_corpus(fasta, tmp_path, "train", {"valid": ["chrC"], "test": ["chrD"]}, params)
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["inputs"]["fasta"]["sha256"] == sha256sum(fasta)
