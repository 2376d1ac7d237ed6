"""The gene finder's prokaryotic check: agreement with Prodigal on a bacterial contig.

The contig is MIIJ01000039 (E. coli, 870 kb), which ships inside pyrodigal's wheel with
Prodigal's own single-mode calls (its tests' data). Prodigal's calls are the reference here,
not the truth: no experiment confirmed these genes. Half the contig is one 433-kb run of N
(a scaffold gap, through which Prodigal calls one "gene"): the check uses the longest stretch
without N (the first 384 kb) and the calls inside it. The stretch is cut, at bases no call
covers, into a training part (the first 60%), a validation part (the next 10%) and a test
part (the last 30%). Scored on the test part, against Prodigal's calls there:

* ``cnn_bigru_contig``: the network trained on the training part with Prodigal's calls as
  labels (weights and call threshold chosen on the validation part);
* ``cnn_bigru_yeast``: the yeast-trained network of the gene-finding stage, unchanged (its
  yeast-chosen threshold);
* ``longest_orf``: the longest-ORF scan;
* ``pyrodigal``: pyrodigal run here (single mode, trained on the whole stretch, as the CLI
  trains on its input): how far our run of the same program is from the shipped calls.
"""

from __future__ import annotations

import gzip
import importlib.resources
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .encode import one_hot
from .errors import InputError
from .files import read_json, write_tsv
from .genefind import Gene, call_genes, coding_mask, labels_from_genes, longest_orfs
from .genefind_model import (
    ArrayTiles,
    GeneFinderNet,
    predict_strand_coding,
    train_gene_finder,
)
from .genefind_run import choose_threshold, prodigal_calls, score_calls
from .models.weights import load_weights
from .records import write_record

CONTIG = "MIIJ01000039"
PARTS = {"train": 0.6, "valid": 0.1, "test": 0.3}


def _read_fasta(path: Path) -> list[tuple[str, str]]:
    records, name, chunks = [], None, []
    with gzip.open(path, "rt") as handle:
        for line in handle:
            if line.startswith(">"):
                if name is not None:
                    records.append((name, "".join(chunks)))
                name, chunks = line[1:].strip(), []
            else:
                chunks.append(line.strip())
    if name is not None:
        records.append((name, "".join(chunks)))
    return records


def bundled_contig() -> tuple[str, list[Gene]]:
    """The contig's longest stretch without N and Prodigal's single-mode calls inside it
    (0-based spans on the stretch)."""
    data = Path(str(importlib.resources.files("pyrodigal") / "tests" / "data"))
    genome, calls = data / f"{CONTIG}.fna.gz", data / f"{CONTIG}.single.fna.gz"
    if not genome.is_file() or not calls.is_file():
        raise InputError(f"pyrodigal's test data ({genome.name}, {calls.name}) are not in "
                         f"{data}", fix="install pyrodigal from PyPI (pip install "
                         "pyrodigal==3.7.1), whose wheel ships them; or set "
                         "gene_finding.prokaryote_check: false")
    seq = _read_fasta(genome)[0][1].upper()
    lo, hi = longest_stretch_without_n(seq)
    genes = []
    for header, _ in _read_fasta(calls):     # "name # begin # end # strand # attributes"
        fields = [f.strip() for f in header.split("#")]
        begin, end, strand = int(fields[1]), int(fields[2]), int(fields[3])
        if begin - 1 >= lo and end <= hi:
            genes.append(Gene(CONTIG, begin - 1 - lo, end - lo, "+" if strand == 1 else "-"))
    return seq[lo:hi], genes


def longest_stretch_without_n(seq: str) -> tuple[int, int]:
    """(start, end) of the longest run of ``seq`` with no N."""
    best, start = (0, 0), 0
    for match in [*re.finditer("N+", seq), None]:
        end = match.start() if match else len(seq)
        if end - start > best[1] - best[0]:
            best = (start, end)
        start = match.end() if match else start
    return best


def cut_points(length: int, genes: list[Gene]) -> list[int]:
    """Where the parts meet: at each fraction of ``PARTS``, the nearest base no gene covers."""
    covered = coding_mask(genes, {CONTIG: length})[CONTIG]
    free = np.flatnonzero(~covered)
    cuts, at = [], 0.0
    for fraction in list(PARTS.values())[:-1]:
        at += fraction
        cuts.append(int(free[np.argmin(np.abs(free - at * length))]))
    return cuts


def split_contig(seq: str, genes: list[Gene]) -> tuple[dict[str, str], dict[str, list[Gene]]]:
    """{part: sequence} and {part: its genes, in the part's own coordinates}."""
    bounds = [0, *cut_points(len(seq), genes), len(seq)]
    seqs, parts = {}, {}
    for name, lo, hi in zip(PARTS, bounds[:-1], bounds[1:], strict=True):
        seqs[name] = seq[lo:hi]
        parts[name] = [Gene(name, g.start - lo, g.end - lo, g.strand) for g in genes
                       if g.start >= lo and g.end <= hi]
    return seqs, parts


def run_prokaryote_check(yeast_model_dir: str | Path, out: str | Path, params: dict,
                         seed: int = 0, device: torch.device | None = None,
                         log=sys.stderr) -> pd.DataFrame:
    """Agreement with Prodigal's calls on the contig's test part (module doc)."""
    seq, reference = bundled_contig()
    seqs, genes = split_contig(seq, reference)
    sizes = {name: len(s) for name, s in seqs.items()}
    tiles = ArrayTiles({n: one_hot(s) for n, s in seqs.items()},
                       labels_from_genes([g for part in genes.values() for g in part], sizes))
    print(f"prokaryote check: {CONTIG}, {len(seq):,} bp, {len(reference)} Prodigal calls; "
          f"parts {sizes}", file=log, flush=True)
    training = {**params.get("training", {}), **params.get("prokaryote_training", {})}
    model, fitted = train_gene_finder(tiles, ["train"], ["valid"], training,
                                      params.get("architecture"), seed=seed, device=device,
                                      log=log)
    yeast = load_weights(yeast_model_dir, lambda f: GeneFinderNet(**f)).to(device or "cpu")
    test, tile, min_codons = seqs["test"], params["predict_tile"], params["min_codons"]
    ours = prodigal_calls([seq], {"test": seq})     # trained on the whole stretch, as the CLI
    lo = len(seqs["train"]) + len(seqs["valid"])

    yeast_threshold = read_json(Path(yeast_model_dir) / "record.json")["results"][
        "call_threshold"]
    contig_threshold, _ = choose_threshold(
        {"valid": predict_strand_coding(model, tiles, "valid", tile, device=device)[1]},
        seqs, genes["valid"], params["call_thresholds"], min_codons)

    def network_calls(network: GeneFinderNet, threshold: float) -> list[Gene]:
        _, strands = predict_strand_coding(network, tiles, "test", tile, device=device)
        return call_genes("test", strands, test, min_codons, threshold)

    calls = {
        "cnn_bigru_contig": network_calls(model, contig_threshold),
        "cnn_bigru_yeast": network_calls(yeast, yeast_threshold),
        "longest_orf": longest_orfs("test", test, min_codons),
        "pyrodigal": [Gene("test", g.start - lo, g.end - lo, g.strand) for g in ours
                      if g.start >= lo],
    }
    truth_bases = {"test": tiles.classes("test", 0, sizes["test"]) > 0}
    table = pd.DataFrame([score_calls(m, c, genes["test"], truth_bases, {"test": sizes["test"]})
                          for m, c in calls.items()])
    write_tsv(out, table)
    write_record(Path(out).with_suffix(".json"), "gene_finding_prokaryote", params, {},
                 {"contig": CONTIG, "length": len(seq), "prodigal_calls": len(reference),
                  "parts_bp": sizes, "best_epoch": fitted.best_epoch,
                  "valid_loss": fitted.best_score,
                  "valid_f1": float(fitted.chosen["valid_f1"]),
                  "seconds": round(fitted.seconds, 1),
                  "call_threshold_contig": contig_threshold,
                  "call_threshold_yeast": yeast_threshold})
    return table
