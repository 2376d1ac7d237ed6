"""The splice stage (seed 000): a splice-site masked pretext, and site classifiers built on it.

From the annotation's introns (:mod:`helixflow.splice`), windows around every donor and
acceptor site, split by chromosome like the rest of the workflow.

1. Pretext (:mod:`helixflow.splice_model`): the pretrained encoder + MLM head learns to fill
   masked site cores on the training chromosomes (kept on the valid ones). On the test
   chromosomes' sites its predicted PWM (mean of its probabilities at the masked core) is
   compared with the PWM of the annotated test sites (KL, bits per column) and the yeast
   consensus, beside the same head before the pretext (zero-shot MLM), the PWM of the
   training sites (the classical predictor) and the base composition. Per site: mean
   −log2 p(true base) over the core, with a bootstrap interval over sites.
2. Classifiers: per kind, site against GT/AG decoys (``decoys_per_site`` per site, same
   chromosomes, away from every annotated site), fine-tuned from the pretext encoder, from
   the pretrained encoder, and from a random one (the same network from scratch), against a
   PWM log-odds score of the training sites; test AUROC/AUPRC with bootstrap intervals.

Outputs (``out_dir``): sites.tsv, pwm.tsv, pretext_metrics.tsv, classifier_metrics.tsv,
history.tsv, test_predictions.tsv, record.json; one figure.
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .errors import InputError
from .evaluate import bootstrap_metrics
from .files import write_tsv
from .genome import Genome
from .intervals import resolve_splits
from .models.encoders import build_encoder
from .motifs import kl_columns, pfm_to_ppm, pwm_logodds
from .records import write_record
from .splice import (
    CONSENSUS,
    CORE,
    KINDS,
    base_counts,
    consensus_of,
    core_slice,
    matches_consensus,
    oriented_window,
    pwm_scores,
    read_introns,
    sample_decoys,
    sites_of,
)
from .splice_model import (
    SiteMLM,
    classifier_scores,
    core_bits,
    core_mask,
    core_probabilities,
    encode,
    load_site_mlm,
    train_classifier,
    train_pretext,
    true_bases,
)

DEFAULTS = {"flank": 100, "decoys_per_site": 10, "pseudocount": 0.5,
            # the classical PWM scores these window positions around the junction (a 9-mer
            # over the donor, a 23-mer over the acceptor, as MaxEntScan)
            "pwm_span": {"donor": [-3, 6], "acceptor": [-20, 3]},
            "n_boot": 1000, "pretext": {}, "classifier": {},
            # the encoder when there is no pretrained one (pretraining: null)
            "encoder": {"architecture": "dilated_cnn"}}


def site_windows(genome: Genome, sites: pd.DataFrame, split_of: dict[str, str], flank: int,
                 decoys_per_site: int, seed: int) -> pd.DataFrame:
    """Annotated sites (label 1) and decoys (label 0) with their oriented windows: chrom,
    junction, strand, kind, split (``split_of``, :func:`helixflow.intervals.resolve_splits`;
    "unused" off every split), label, window. Sites whose window has an N or runs off the
    chromosome are dropped; decoys are drawn per chromosome and kind, one chromosome
    in memory at a time."""
    rng = np.random.default_rng(seed)
    frames = []
    for chrom, own in sites.groupby("chrom", sort=False):
        seq = genome.fetch(chrom, 0, genome.sizes[chrom])
        exclude = own["junction"].to_numpy()
        for kind in KINDS:
            real = own[own["kind"] == kind]
            decoys = sample_decoys(seq, kind, decoys_per_site * len(real), exclude, flank, rng)
            rows = pd.concat([real[["junction", "strand"]].assign(label=1),
                              decoys.assign(label=0)], ignore_index=True)
            rows["window"] = [oriented_window(seq, j, s, flank) for j, s in
                              zip(rows["junction"], rows["strand"], strict=True)]
            frames.append(rows.assign(chrom=chrom, kind=kind))
    table = pd.concat(frames, ignore_index=True)
    table = table[table["window"].map(lambda w: w is not None and "N" not in w)]
    table["split"] = [split_of.get(c, "unused") for c in table["chrom"]]
    return table[["chrom", "junction", "strand", "kind", "split", "label", "window"]].reset_index(
        drop=True)


def base_composition(windows: list[str]) -> np.ndarray:
    """Frequencies (4,) of A, C, G, T over every base of ``windows``."""
    counts = base_counts(windows, slice(None)).sum(axis=1)
    return counts / counts.sum()


def bits_interval(bits: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean over sites."""
    rng = np.random.default_rng(seed)
    means = bits[rng.integers(0, len(bits), (n_boot, len(bits)))].mean(1)
    return tuple(float(v) for v in np.percentile(means, [2.5, 97.5]))


def pretext_rows(kind: str, probs: dict[str, np.ndarray], bases: np.ndarray,
                 annotated: np.ndarray, n_boot: int, seed: int) -> list[dict]:
    """One row per predictor for the test sites of ``kind``: bits per core base (interval
    over sites), accuracy of the most probable base, KL(annotated test PWM ‖ predicted PWM)
    per column, and the predicted consensus."""
    rows = []
    for model, p in probs.items():
        bits = core_bits(p, bases)
        lo, hi = bits_interval(bits, n_boot, seed)
        predicted = p.mean(0).T
        known = bases >= 0
        rows.append({"kind": kind, "model": model, "n_sites": len(bases),
                     "bits_per_base": float(bits.mean()), "bits_lo": lo, "bits_hi": hi,
                     "accuracy": float((p.argmax(-1) == bases)[known].mean()),
                     "kl_bits": max(0.0, float(kl_columns(annotated, predicted).mean())),
                     "consensus": consensus_of(predicted),
                     "fits_yeast_consensus": matches_consensus(consensus_of(predicted),
                                                               CONSENSUS[kind])})
    return rows


def pwm_table(matrices: dict[tuple[str, str], np.ndarray], flank_offset: dict[str, int]
              ) -> pd.DataFrame:
    """Long table of PWMs: kind, source, position (relative to the junction), A, C, G, T."""
    rows = []
    for (kind, source), m in matrices.items():
        for i in range(m.shape[1]):
            rows.append({"kind": kind, "source": source, "position": flank_offset[kind] + i,
                         **{b: float(m[j, i]) for j, b in enumerate("ACGT")}})
    return pd.DataFrame(rows)


def run_splice(fasta: str, gff: str, splits: dict[str, list[str]], out_dir: str | Path,
               figure: str | Path, pretrained: str | Path | None = None,
               params: dict | None = None, seed: int = 0, device: torch.device | None = None,
               log=sys.stderr) -> pd.DataFrame:
    """Pretext, PWMs and classifiers (module doc); returns the classifier metrics."""
    from .splice_plots import plot_splice

    params = {**DEFAULTS, **(params or {})}
    flank = params["flank"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    device = device or torch.device("cpu")
    genome = Genome(fasta)
    introns = read_introns(gff)
    introns = introns[introns["chrom"].isin(genome.sizes)]
    sites = sites_of(introns)
    split_of = resolve_splits(genome.sizes, splits["valid"], splits["test"], splits.get("train"))
    parts = {split_of.get(c) for c in sites["chrom"]}
    missing = [p for p in ("train", "valid", "test") if p not in parts]
    if missing:
        raise InputError(f"no intron (two exons of one transcript) on the {', '.join(missing)} "
                         f"chromosomes of {fasta}", path=gff,
                         fix="give an annotation with exon lines of this genome, with its "
                         "chromosome names, or set 'splice: null'")
    table = site_windows(genome, sites, split_of, flank, params["decoys_per_site"], seed)
    real = table[table["label"] == 1]
    counts = real.groupby(["split", "kind"]).size()
    print(f"splice: {len(introns)} introns; sites per split and kind {counts.to_dict()}; "
          f"{int((table['label'] == 0).sum())} decoys", file=log, flush=True)

    # --- 1. pretext
    def arrays(part: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
        return encode(list(part["window"])), core_mask(list(part["kind"]), 2 * flank, flank)

    before = load_site_mlm(pretrained, params["encoder"])
    model: SiteMLM = copy.deepcopy(before)
    fitted = train_pretext(model, arrays(real[real["split"] == "train"]),
                           arrays(real[real["split"] == "valid"]), params["pretext"], seed,
                           device, log)
    pretext_rows_all, matrices = [], {}
    for kind in KINDS:
        train_w = list(real[(real["split"] == "train") & (real["kind"] == kind)]["window"])
        test = real[(real["split"] == "test") & (real["kind"] == kind)]
        tokens, core = arrays(test)
        bases = true_bases(tokens, core)
        part = core_slice(kind, flank)
        train_pwm = pfm_to_ppm(base_counts(train_w, part), params["pseudocount"])
        annotated = pfm_to_ppm(base_counts(list(test["window"]), part), params["pseudocount"])
        composition = base_composition(train_w)
        probs = {"splice_pretext": core_probabilities(model, tokens, core),
                 "mlm_zero_shot": core_probabilities(before.to(device), tokens, core),
                 "training_pwm": np.broadcast_to(train_pwm.T, (len(test), *train_pwm.T.shape)),
                 "background": np.broadcast_to(composition, (len(test), part.stop - part.start,
                                                             4))}
        pretext_rows_all += pretext_rows(kind, probs, bases, annotated, params["n_boot"], seed)
        matrices |= {(kind, "annotated_test"): annotated, (kind, "annotated_train"): train_pwm,
                     (kind, "splice_pretext"): probs["splice_pretext"].mean(0).T,
                     (kind, "mlm_zero_shot"): probs["mlm_zero_shot"].mean(0).T}
    pretext_metrics = pd.DataFrame(pretext_rows_all)
    pretext_s = time.time() - started

    # --- 2. classifiers
    encoders = {"from_pretext": model.encoder.cpu(), "from_pretrained": before.encoder.cpu(),
                "scratch": build_encoder(dict(before.encoder.config))}
    if pretrained is None:
        del encoders["from_pretrained"]
    metric_rows, predictions, histories = [], [], []
    for kind in KINDS:
        rows = table[table["kind"] == kind]
        data = {p: (encode(list(rows[rows["split"] == p]["window"])),
                    rows[rows["split"] == p]["label"].to_numpy()) for p in ("train", "valid",
                                                                            "test")}
        scores = {}
        for name, encoder in encoders.items():
            classifier, result = train_classifier(encoder, flank, data["train"], data["valid"],
                                                  params["classifier"], seed, device,
                                                  label=f"{kind} {name} ", log=log)
            scores[name] = classifier_scores(classifier, data["test"][0])
            histories.append(result.history.assign(kind=kind, model=name))
        lo, hi = params["pwm_span"][kind]
        part = slice(flank + lo, flank + hi)
        train_rows = rows[(rows["split"] == "train")]
        sites_pwm = pfm_to_ppm(base_counts(list(train_rows[train_rows["label"] == 1]["window"]),
                                           part), params["pseudocount"])
        log_odds = pwm_logodds(sites_pwm, base_composition(list(train_rows["window"])),
                               pseudocount=0.0)
        scores["pwm"] = pwm_scores(list(rows[rows["split"] == "test"]["window"]), log_odds, part)
        y = data["test"][1]
        for name, score in scores.items():
            metric_rows.append({"kind": kind, "model": name, **bootstrap_metrics(
                y, score, n_boot=params["n_boot"], seed=seed)})
        test = rows[rows["split"] == "test"]
        predictions.append(test[["chrom", "junction", "strand", "kind", "label"]].assign(
            **{f"score_{n}": s for n, s in scores.items()}))
    metrics = pd.DataFrame(metric_rows)

    sites_out = table.drop(columns="window")
    write_tsv(out_dir / "sites.tsv", sites_out[sites_out["label"] == 1].drop(columns="label"))
    offsets = {kind: CORE[kind][0] for kind in KINDS}
    write_tsv(out_dir / "pwm.tsv", pwm_table(matrices, offsets).round(5))
    write_tsv(out_dir / "pretext_metrics.tsv", pretext_metrics.round(5))
    write_tsv(out_dir / "classifier_metrics.tsv", metrics.round(5))
    write_tsv(out_dir / "history.tsv", pd.concat(
        [fitted.history.assign(kind="both", model="pretext"), *histories]).round(5))
    write_tsv(out_dir / "test_predictions.tsv", pd.concat(predictions).round(5))
    plot_splice(figure, matrices, pretext_metrics, metrics, offsets)
    results = {"introns": len(introns), "sites": {f"{s}/{k}": int(n) for (s, k), n in
                                                 counts.items()},
               "decoys": int((table["label"] == 0).sum()),
               "pretext_best_epoch": fitted.best_epoch,
               "pretext_valid_core_bits": fitted.best_score,
               "pretrained": str(pretrained) if pretrained else None,
               "pretext_seconds": round(pretext_s, 1),
               "seconds": round(time.time() - started, 1), "device": str(device)}
    write_record(out_dir / "record.json", "splice", params,
                 {"fasta": fasta, "annotation": gff} |
                 ({"pretrained": str(Path(pretrained) / "model.safetensors")}
                  if pretrained else {}), results)
    print(f"splice: done in {results['seconds']:.0f} s", file=log, flush=True)
    return metrics
