"""The gene-finding stage (seed 002): the CNN + BiGRU gene finder against a longest-ORF scan
and Prodigal, on the workflow's held-out chromosomes.

The network trains on the CDS annotation of the training chromosomes (weights kept on the
valid chromosomes); Prodigal (pyrodigal) trains its own model on the same training
chromosomes; the longest-ORF scan needs no training. All three call genes on the test
chromosomes and are scored against the annotation there: gene level (sensitivity and
precision with Wilson intervals, exact start and stop, or stop only) and base level (coding
F1 over every test base), plus the 3-periodicity of the network's front-end features in
coding against non-coding sequence. The network's call threshold (the mean coding
probability an ORF needs) is chosen on the valid chromosomes. Outputs (``out_dir``):
metrics.tsv, thresholds.tsv, periodicity.tsv, history.tsv, calls.gff3, record.json,
model.safetensors + config.json; one figure.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyrodigal
import torch

from .errors import InputError
from .files import atomic_path, write_tsv
from .genefind import (
    CodingClasses,
    Gene,
    call_genes,
    coding_mask,
    coding_segments,
    gene_metrics,
    genes_of,
    longest_orfs,
    nucleotide_f1,
    period3_strength,
    read_cds,
)
from .genefind_model import (
    FastaTiles,
    GeneFinderNet,
    predict_strand_coding,
    train_gene_finder,
)
from .mil import wilson_interval
from .models.weights import n_parameters, save_weights
from .records import write_record

DEFAULTS = {"min_codons": 100, "call_thresholds": [0.05, 0.1, 0.2, 0.3, 0.4, 0.5],
            "predict_tile": 3000, "periodicity_genes": 60,
            "periodicity_bp": 900, "training": {}, "architecture": {},
            # the contig's training part is 154 tiles: more, shorter epochs
            "prokaryote_training": {"epochs": 30, "patience": 6}}
METHODS = {"cnn_bigru": "CNN + BiGRU (this work)", "prodigal": "Prodigal (pyrodigal)",
           "longest_orf": "longest-ORF scan"}


def prodigal_calls(train_seqs: list[str], test_seqs: dict[str, str]) -> list[Gene]:
    """Prodigal's genes on ``test_seqs``, its model trained on ``train_seqs`` (one genome)."""
    finder = pyrodigal.GeneFinder(meta=False)
    finder.train(*train_seqs)
    calls = []
    for chrom, seq in test_seqs.items():
        for gene in finder.find_genes(seq):
            calls.append(Gene(chrom, gene.begin - 1, gene.end, "+" if gene.strand == 1 else "-"))
    return calls


def choose_threshold(strands: dict[str, np.ndarray], seqs: dict[str, str], truth: list[Gene],
                     thresholds: list[float], min_codons: int) -> tuple[float, pd.DataFrame]:
    """The call threshold with the best gene-level F1 (stop only) on held-out sequences
    (``strands``: the network's per-strand coding probabilities by chromosome), and the table
    of every candidate's scores."""
    rows = []
    for threshold in thresholds:
        calls = [g for c in strands for g in call_genes(c, strands[c], seqs[c], min_codons,
                                                        threshold)]
        m = gene_metrics(calls, truth)
        recall, precision = m["sensitivity_stop"], m["precision_stop"]
        f1 = 2 * recall * precision / (recall + precision) if recall + precision else 0.0
        rows.append({"threshold": threshold, "valid_sensitivity_stop": recall,
                     "valid_precision_stop": precision, "valid_f1_stop": f1})
    table = pd.DataFrame(rows)
    return float(table.loc[table["valid_f1_stop"].idxmax(), "threshold"]), table


def score_calls(method: str, calls: list[Gene], truth: list[Gene],
                truth_bases: dict[str, np.ndarray], sizes: dict[str, int],
                level: float = 0.95) -> dict:
    """One metrics row: gene-level rates with Wilson intervals and the coding F1 of the calls."""
    row: dict = {"method": method, **gene_metrics(calls, truth)}
    for name in ("exact", "stop"):
        for rate, n in ((f"sensitivity_{name}", row["n_true"]),
                        (f"precision_{name}", row["n_called"])):
            row[f"{rate}_lo"], row[f"{rate}_hi"] = wilson_interval(row[f"matched_{name}"], n,
                                                                   level)
    row["nucleotide_f1"] = nucleotide_f1(coding_mask(calls, sizes), truth_bases)
    return row


def feature_periodicity(model: GeneFinderNet, tiles: FastaTiles, truth: list[Gene],
                        coding: dict[str, np.ndarray], n: int, bp: int,
                        seed: int) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Per front-end channel: mean period-3 strength over ``bp``-long stretches of annotated
    + strand genes (their first ``bp`` bases) and of non-coding sequence (no coding base on
    either strand). Also the mean normalised power spectrum of the most periodic channel."""
    rng = np.random.default_rng(seed)
    genes = [g for g in truth if g.strand == "+" and g.end - g.start >= bp]
    genes = [genes[i] for i in np.sort(rng.choice(len(genes), min(n, len(genes)),
                                                  replace=False))]
    starts = {"coding": [(g.chrom, g.start) for g in genes], "noncoding": []}
    chroms = sorted(coding)
    tries = 0
    while len(starts["noncoding"]) < len(genes) and tries < 100 * max(n, 1):
        tries += 1
        chrom = chroms[rng.integers(len(chroms))]
        s = int(rng.integers(0, len(coding[chrom]) - bp))
        if not coding[chrom][s:s + bp].any():
            starts["noncoding"].append((chrom, s))
    strengths, spectra = {}, {}
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        for kind, places in starts.items():
            x = np.stack([tiles.onehot(c, s, s + bp) for c, s in places]).astype(np.float32)
            features = model.features(torch.from_numpy(x).to(device)).float().cpu().numpy()
            strengths[kind] = np.array([[period3_strength(f) for f in window]
                                        for window in features])      # (windows, channels)
            power = np.abs(np.fft.rfft(features - features.mean(-1, keepdims=True))) ** 2
            mean = power[..., 1:].mean(-1, keepdims=True)
            spectra[kind] = np.divide(power, mean, out=np.full_like(power, np.nan),
                                      where=mean > 0)   # a silent (dead) channel: NaN
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # all-NaN: a channel never active
        table = pd.DataFrame({"channel": np.arange(strengths["coding"].shape[1]),
                              "coding": np.nanmean(strengths["coding"], 0),
                              "noncoding": np.nanmean(strengths["noncoding"], 0)})
    best = int(table["coding"].idxmax())
    curves = {"frequency": np.fft.rfftfreq(bp),
              **{kind: np.nanmean(spectra[kind][:, best], 0) for kind in spectra}}
    return table, curves


def write_gff(path: str | Path, calls: dict[str, list[Gene]]) -> None:
    """Every method's calls as GFF3 CDS lines (source column = method)."""
    with atomic_path(path) as tmp, open(tmp, "w") as out:
        out.write("##gff-version 3\n")
        for method, genes in calls.items():
            for i, g in enumerate(sorted(genes, key=lambda g: (g.chrom, g.start))):
                out.write(f"{g.chrom}\t{method}\tCDS\t{g.start + 1}\t{g.end}\t.\t{g.strand}\t0\t"
                          f"ID={method}_{i + 1}\n")


def run_gene_finding(fasta: str, gff: str, splits: dict[str, list[str]], out_dir: str | Path,
                     figure: str | Path, params: dict | None = None, seed: int = 0,
                     device: torch.device | None = None, log=sys.stderr) -> pd.DataFrame:
    """Train, call and score (module doc); returns the metrics table."""
    from .genefind_plots import plot_gene_finding

    params = {**DEFAULTS, **(params or {})}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    cds = read_cds(gff)
    tiles = FastaTiles(fasta, CodingClasses(coding_segments(cds)))
    sizes = tiles.sizes
    train = splits.get("train") or [c for c in sizes if c not in
                                    set(splits["valid"]) | set(splits["test"])]
    annotated = set(cds["chrom"])
    missing = [f"{part} ({', '.join(chroms)})" for part, chroms in
               (("train", train), ("valid", splits["valid"]), ("test", splits["test"]))
               if not annotated & set(chroms)]
    if missing:
        raise InputError(f"no CDS lines on the {'; '.join(missing)} chromosomes; the "
                         f"annotation names {', '.join(sorted(annotated)[:5]) or 'none'}"
                         f"{' ...' if len(annotated) > 5 else ''}", path=gff,
                         fix="give an annotation of this genome with the genome's chromosome "
                         "names, or set 'gene_finding: null'")
    train = [c for c in train if c in sizes and c in annotated]
    test_sizes = {c: sizes[c] for c in splits["test"]}
    print(f"gene-finding: {len(cds):,} CDS segments; train {len(train)} chromosomes, valid "
          f"{', '.join(splits['valid'])}, test {', '.join(splits['test'])}", file=log,
          flush=True)

    model, fitted = train_gene_finder(tiles, train, splits["valid"], params["training"],
                                      params["architecture"], seed=seed, device=device, log=log)
    trained_s = time.time() - started

    valid_strands = {c: predict_strand_coding(model, tiles, c, params["predict_tile"],
                                              device=device)[1] for c in splits["valid"]}
    threshold, thresholds = choose_threshold(
        valid_strands, {c: tiles.genome.fetch(c, 0, tiles.sizes[c]) for c in splits["valid"]},
        genes_of(cds[cds["chrom"].isin(splits["valid"])]), params["call_thresholds"],
        params["min_codons"])
    print(f"gene-finding: call threshold {threshold} (valid stop-level F1 "
          f"{thresholds.set_index('threshold').loc[threshold, 'valid_f1_stop']:.3f})",
          file=log, flush=True)
    truth = genes_of(cds[cds["chrom"].isin(test_sizes)])
    truth_bases = {c: tiles.classes(c, 0, n) > 0 for c, n in test_sizes.items()}
    test_seqs = {c: tiles.genome.fetch(c, 0, n) for c, n in test_sizes.items()}
    calls: dict[str, list[Gene]] = {"cnn_bigru": [], "longest_orf": []}
    base_f1 = {}
    for chrom, seq in test_seqs.items():
        classes, strands = predict_strand_coding(model, tiles, chrom, params["predict_tile"],
                                                 device=device)
        base_f1[chrom] = classes > 0
        calls["cnn_bigru"] += call_genes(chrom, strands, seq, params["min_codons"], threshold)
        calls["longest_orf"] += longest_orfs(chrom, seq, params["min_codons"])
    tic = time.time()
    calls["prodigal"] = prodigal_calls([tiles.genome.fetch(c, 0, sizes[c]) for c in train],
                                       test_seqs)
    prodigal_s = time.time() - tic

    rows = [score_calls(m, calls[m], truth, truth_bases, test_sizes) for m in METHODS]
    metrics = pd.DataFrame(rows)
    metrics["base_f1"] = [nucleotide_f1(base_f1, truth_bases) if m == "cnn_bigru"
                          else float("nan") for m in METHODS]
    periodicity, spectrum = feature_periodicity(
        model, tiles, truth, truth_bases, params["periodicity_genes"], params["periodicity_bp"],
        seed)

    write_tsv(out_dir / "metrics.tsv", metrics)
    write_tsv(out_dir / "periodicity.tsv", periodicity)
    write_tsv(out_dir / "history.tsv", fitted.history)
    write_tsv(out_dir / "thresholds.tsv", thresholds)
    write_gff(out_dir / "calls.gff3", calls)
    config = {"architecture": "GeneFinderNet", **model_fields(model)}
    save_weights(model, config, out_dir)
    plot_gene_finding(figure, metrics, spectrum, tiles, model, calls, truth, params, device)
    results = {"train_chromosomes": train, "best_epoch": fitted.best_epoch,
               "valid_loss": fitted.best_score,
               "valid_f1": float(fitted.chosen["valid_f1"]), "call_threshold": threshold,
               "parameters": n_parameters(model),
               "train_seconds": round(trained_s, 1), "prodigal_seconds": round(prodigal_s, 1),
               "seconds": round(time.time() - started, 1), "device": str(device or "cpu"),
               "periodicity_median_coding": float(periodicity["coding"].median()),
               "periodicity_median_noncoding": float(periodicity["noncoding"].median()),
               "periodicity_best_channel": spectrum_peak(spectrum)}
    write_record(out_dir / "record.json", "gene_finding", params,
                 {"fasta": fasta, "annotation": gff}, results)
    print(f"gene-finding: done in {results['seconds']:.0f} s", file=log, flush=True)
    return metrics


def model_fields(model: GeneFinderNet) -> dict[str, int]:
    """The keyword arguments that rebuild ``model``."""
    return {"channels": model.conv[0].out_channels, "kernel": model.conv[0].kernel_size[0],
            "hidden": model.rnn.hidden_size}


def spectrum_peak(spectrum: dict[str, np.ndarray]) -> dict[str, float]:
    """Normalised power at 1/3 cycle per base of the most periodic channel, by kind."""
    k = int(np.argmin(np.abs(spectrum["frequency"] - 1 / 3)))
    return {kind: float(spectrum[kind][k]) for kind in ("coding", "noncoding")}
