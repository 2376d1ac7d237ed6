"""Splice sites (seed 000): introns from exon lines, oriented windows, decoys, PWMs, and the
stage end to end on a made-up genome whose introns carry a planted consensus."""

from __future__ import annotations

import gzip
import io
import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from helixflow.errors import InputError
from helixflow.genome import index_genome
from helixflow.models.encoders import build_encoder, save_encoder
from helixflow.motifs import kl_columns, pfm_to_ppm
from helixflow.objectives import MLMHead
from helixflow.report import splice_section
from helixflow.splice import (
    base_counts,
    consensus_of,
    core_slice,
    decoy_junctions,
    matches_consensus,
    oriented_window,
    read_introns,
    reverse_complement,
    sample_decoys,
    sites_of,
)
from helixflow.splice_model import (
    core_mask,
    core_probabilities,
    encode,
    load_site_mlm,
    mask_core,
    masked_core_probabilities,
)
from helixflow.splice_run import run_splice
from helixflow.tokenize import MASK

pytestmark = pytest.mark.usefixtures("restore_torch_state")

DONOR, BRANCH, ACCEPTOR = "GTATGT", "TACTAAC", "CAG"
SMALL_ENCODER = {"architecture": "dilated_cnn", "d_model": 16, "n_layers": 3}


def write_gff(path, exons: list[tuple[str, int, int, str, str]]) -> None:
    """exons: (chrom, start 0-based, end, strand, parent)."""
    lines = ["##gff-version 3"] + [
        f"{c}\ttest\texon\t{s + 1}\t{e}\t.\t{strand}\t.\tParent={parent}"
        for c, s, e, strand, parent in exons]
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(lines) + "\n")


def planted_genome(tmp_path, n_introns: int = 25, length: int = 24_000, seed: int = 0):
    """Three random chromosomes (train, valid, test); each holds ``n_introns`` two-exon
    transcripts, half on each strand, whose introns read DONOR ... BRANCH .. ACCEPTOR on the
    transcript's strand. Returns (fasta, gff, splits)."""
    rng = np.random.default_rng(seed)
    records, exons = [], []
    for chrom in ("chrTrain", "chrValid", "chrTest"):
        seq = list(rng.choice(list("ACGT"), length))
        for i in range(n_introns):
            start = 300 + i * (length - 600) // n_introns       # intron start on +
            size = int(rng.integers(70, 120))
            body = "".join(rng.choice(list("ACGT"), size - len(DONOR) - len(BRANCH) - 12
                                      - len(ACCEPTOR)))
            intron = DONOR + body + BRANCH + "TTTTTTTTTTTT" + ACCEPTOR
            strand = "+" if i % 2 == 0 else "-"
            seq[start:start + size] = intron if strand == "+" else reverse_complement(intron)
            parent = f"{chrom}-t{i}"
            exons += [(chrom, start - 150, start, strand, parent),
                      (chrom, start + size, start + size + 150, strand, parent)]
        records.append(f">{chrom}\n" + "".join(seq) + "\n")
    raw = tmp_path / "raw.fa"
    raw.write_text("".join(records))
    fasta = tmp_path / "genome.fa"
    index_genome(raw, fasta, tmp_path / "sizes.tsv")
    gff = tmp_path / "genes.gff3.gz"
    write_gff(gff, exons)
    return str(fasta), str(gff), {"train": [], "valid": ["chrValid"], "test": ["chrTest"]}


# ------------------------------------------------------------------ annotation and windows


def test_introns_sites_and_windows_on_both_strands(tmp_path):
    #          0         1         2         3
    #          0123456789012345678901234567890123456
    genome = "AAAACCCCGTATGTAAAAAAAATACTAACTTCAGGGGG"
    gff = tmp_path / "g.gff3.gz"
    # + transcript: exons [0, 8) and [34, 38): intron [8, 34) = GTATGT ... CAG
    write_gff(gff, [("c", 0, 8, "+", "p"), ("c", 34, 38, "+", "p"),
                    ("c", 0, 8, "-", "m"), ("c", 34, 38, "-", "m"),
                    ("c", 0, 8, "+", "single")])
    introns = read_introns(str(gff))
    assert introns[["chrom", "start", "end", "strand"]].values.tolist() == [
        ["c", 8, 34, "+"], ["c", 8, 34, "-"]]
    sites = sites_of(introns)
    plus = sites[sites["strand"] == "+"].set_index("kind")["junction"]
    minus = sites[sites["strand"] == "-"].set_index("kind")["junction"]
    assert (plus["donor"], plus["acceptor"]) == (8, 34)
    assert (minus["donor"], minus["acceptor"]) == (34, 8)    # − reads from the right
    flank = 4
    donor = oriented_window(genome, 8, "+", flank)
    assert donor == "CCCCGTAT" and donor[core_slice("donor", flank)] == "GTAT"  # 8 bp window
    acceptor = oriented_window(genome, 34, "+", flank)
    assert acceptor[core_slice("acceptor", flank)] == "CAG"
    # the − transcript's "donor" window is the reverse complement around 34
    assert oriented_window(genome, 34, "-", flank) == reverse_complement(genome[30:38])
    assert oriented_window(genome, 2, "+", flank) is None


def test_decoys_are_centred_like_sites_and_keep_away_from_them():
    rng = np.random.default_rng(1)
    seq = "".join(rng.choice(list("ACGT"), 5000))
    flank = 10
    for kind, dinucleotide, at in (("donor", "GT", slice(flank, flank + 2)),
                                   ("acceptor", "AG", slice(flank - 2, flank))):
        every = decoy_junctions(seq, kind)
        windows = [oriented_window(seq, j, s, flank) for j, s in
                   zip(every["junction"], every["strand"], strict=True)]
        windows = [w for w in windows if w is not None]
        assert len(windows) > 400 and all(w[at] == dinucleotide for w in windows)
        sites = np.array([1000, 3000])
        picked = sample_decoys(seq, kind, 50, sites, flank, np.random.default_rng(0))
        assert len(picked) == 50 and picked["junction"].is_unique
        assert (np.abs(picked["junction"].to_numpy()[:, None] - sites).min(1) > flank).all()


def test_pwm_kl_and_consensus():
    counts = base_counts(["GTATGT", "GTACGT", "GTATGT", "GTAAGT"], slice(0, 6))
    assert counts.sum(0).tolist() == [4] * 6
    matrix = pfm_to_ppm(counts, 0.5)
    assert np.allclose(matrix.sum(0), 1)
    assert consensus_of(matrix) == "GTATGT"
    assert np.allclose(kl_columns(matrix, matrix), 0)
    kl = kl_columns(matrix, np.full((4, 6), 0.25))
    assert (kl[[0, 1, 2, 4, 5]] > 0.5).all() and kl[3] < 0.5     # column 4 is mixed
    assert matches_consensus("CAG", "YAG") and matches_consensus("TAG", "YAG")
    assert not matches_consensus("AAG", "YAG")


# ------------------------------------------------------------------ model pieces


def test_mask_core_and_probabilities():
    windows = ["ACGTGTATGTACGT", "TTTTTTTCAGAAAA"]
    kinds, flank = ["donor", "acceptor"], 7
    tokens = encode(windows)
    core = core_mask(kinds, 14, flank)
    assert core.sum(1).tolist() == [6, 3]
    inputs, labels = mask_core(tokens, core)
    assert (inputs[core] == MASK).all() and (inputs[~core] == tokens[~core]).all()
    assert (labels[~core] == -100).all()
    torch.manual_seed(0)
    model = load_site_mlm(None, SMALL_ENCODER)
    probs = core_probabilities(model, tokens[:1], core[:1])
    assert probs.shape == (1, 6, 4) and np.allclose(probs.sum(-1), 1, atol=1e-5)
    # a donor and an acceptor together: 6 + 3 positions, flat; not as (n, width, 4)
    flat = masked_core_probabilities(model, tokens, core)
    assert flat.shape == (9, 4) and np.allclose(flat[:6], probs[0], atol=1e-6)
    with pytest.raises(ValueError, match="different widths"):
        core_probabilities(model, tokens, core)


def test_pretrained_head_is_loaded(tmp_path):
    torch.manual_seed(0)
    encoder = build_encoder(SMALL_ENCODER)
    save_encoder(encoder, tmp_path)
    head = MLMHead(encoder.d_model, encoder.vocab_size)
    save_file({f"mlm_head.{k}": v.contiguous() for k, v in head.state_dict().items()},
              str(tmp_path / "heads.safetensors"))
    model = load_site_mlm(tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(model.head.state_dict().values(),
                                                 head.state_dict().values(), strict=True))
    save_file({"proj_head.w": torch.zeros(2)}, str(tmp_path / "heads.safetensors"))
    with pytest.raises(InputError, match="masked-modelling head"):
        load_site_mlm(tmp_path)


# ------------------------------------------------------------------ the stage


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("splice")
    fasta, gff, splits = planted_genome(tmp)
    params = {"flank": 40, "decoys_per_site": 5, "n_boot": 200, "encoder": SMALL_ENCODER,
              "pretext": {"epochs": 40, "lr": 5e-3, "batch_size": 16},
              "classifier": {"epochs": 20, "batch_size": 32, "lr": 3e-3, "patience": 20}}
    log = io.StringIO()
    metrics = run_splice(fasta, gff, splits, tmp / "out", tmp / "splice.png", params=params,
                         seed=0, log=log)
    return tmp, metrics, log.getvalue()


def test_stage_writes_its_layout(stage):
    tmp, metrics, log = stage
    out = tmp / "out"
    for name in ("sites.tsv", "pwm.tsv", "pretext_metrics.tsv", "classifier_metrics.tsv",
                 "history.tsv", "test_predictions.tsv", "record.json"):
        assert (out / name).is_file(), name
    assert (tmp / "splice.png").is_file() and (tmp / "splice.svg").is_file()
    record = json.loads((out / "record.json").read_text())
    # 25 + 25 valid core bases: 225 positions, no whole number of 6-wide cores
    assert record["results"]["sites"] == {f"{split}/{kind}": 25 for split in
                                          ("train", "valid", "test")
                                          for kind in ("acceptor", "donor")}
    sites = pd.read_csv(out / "sites.tsv", sep="\t")
    assert set(sites.loc[sites["split"] == "test", "chrom"]) == {"chrTest"}
    assert set(sites.loc[sites["split"] == "train", "chrom"]) == {"chrTrain"}
    predictions = pd.read_csv(out / "test_predictions.tsv", sep="\t")
    assert set(predictions["chrom"]) == {"chrTest"}
    assert set(metrics["model"]) == {"from_pretext", "scratch", "pwm"}   # no pretrained one
    assert "splice: done" in log


def test_pretext_recovers_the_planted_consensus(stage):
    tmp, _, _ = stage
    pretext = pd.read_csv(tmp / "out" / "pretext_metrics.tsv", sep="\t").set_index(
        ["kind", "model"])
    assert pretext.loc[("donor", "splice_pretext"), "consensus"] == DONOR
    assert pretext.loc[("acceptor", "splice_pretext"), "consensus"] == ACCEPTOR
    assert pretext.loc[("donor", "splice_pretext"), "fits_yeast_consensus"]
    for kind in ("donor", "acceptor"):
        learned = pretext.loc[(kind, "splice_pretext")]
        assert learned["bits_per_base"] < 0.5 * pretext.loc[(kind, "background"),
                                                            "bits_per_base"]
        assert learned["bits_per_base"] < pretext.loc[(kind, "mlm_zero_shot"), "bits_per_base"]
        assert learned["kl_bits"] < pretext.loc[(kind, "mlm_zero_shot"), "kl_bits"]


def test_planted_sites_are_told_from_decoys(stage):
    _, metrics, _ = stage
    auroc = metrics.set_index(["kind", "model"])["auroc"]
    assert auroc[("donor", "pwm")] > 0.95 and auroc[("acceptor", "pwm")] > 0.95
    assert auroc[("donor", "from_pretext")] > 0.8
    assert metrics[["auroc_lo", "auroc_hi"]].notna().all().all()


def test_annotation_of_another_genome_is_refused(tmp_path):
    fasta, _, splits = planted_genome(tmp_path, n_introns=2, length=2000)
    gff = tmp_path / "other.gff3.gz"
    write_gff(gff, [("chr1", 100, 200, "+", "p"), ("chr1", 300, 400, "+", "p")])
    with pytest.raises(InputError, match="no intron"):
        run_splice(fasta, str(gff), splits, tmp_path / "out", tmp_path / "f.png",
                   params={"encoder": SMALL_ENCODER})
    assert not (tmp_path / "out" / "record.json").exists()


def test_summary_section_states_both_tables(stage):
    tmp, _, _ = stage
    page = splice_section(tmp / "out" / "classifier_metrics.tsv")
    assert "GTATGT" in page and "same network from scratch" in page
    assert "25–25 test sites per kind" in page and "Figure: splice_sites" in page
