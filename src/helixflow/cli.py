"""``helixflow STAGE ...``: one entry point, one sub-command per workflow step.

Each sub-command parses paths and settings, calls the library and writes its outputs
atomically with a ``record.json``. Snakemake rules are one such command each.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

from .errors import InputError
from .launcher import CONFIG_SOURCE_VARIABLE


def _json(text: str):
    return json.loads(text)


def cmd_stage(a: argparse.Namespace) -> None:
    from .stage import stage_input
    stage_input(a.relpath, a.out, mirror=a.mirror, url=a.url or None, sha256=a.sha256 or None)


def cmd_index_genome(a: argparse.Namespace) -> None:
    from .genome import index_genome
    sizes = index_genome(a.fasta, a.out, a.sizes, record_out=a.record)
    print(f"indexed {len(sizes)} chromosomes, {sum(sizes.values()):,} bp", file=sys.stderr)


def cmd_call_peaks(a: argparse.Namespace) -> None:
    from .peak_calling import run_call_peaks
    summary = run_call_peaks(a.treatment, a.control, a.sizes, a.aliases, a.out, a.record,
                             a.params)
    print(f"MACS3 {summary['macs_version']}: {summary['peaks']} peaks "
          f"({summary['macs_seconds']:.1f} s)", file=sys.stderr)


def cmd_genome_tiles(a: argparse.Namespace) -> None:
    from .tiles import write_genome_tiles
    counts = write_genome_tiles(a.fasta, a.width, a.out)
    print(f"{counts['tiles']:,} tiles of {a.width} bp", file=sys.stderr)


def cmd_check_inputs(a: argparse.Namespace) -> None:
    from .files import sha256sum, write_json
    from .genome import read_aliases, read_fai
    from .intervals import DUPLICATES_MERGED, read_blacklist, read_peaks, resolve_splits
    sizes, aliases = read_fai(a.sizes), read_aliases(a.aliases)
    split_of = None
    if a.splits is not None:
        try:
            split_of = resolve_splits(sizes, a.splits["valid"], a.splits["test"],
                                      a.splits.get("train"))
        except InputError as err:
            raise InputError(err.what, path=a.config_source, fix=err.fix) from None
    blacklist = read_blacklist(a.blacklist, sizes, aliases)
    summary = {"genome": {"chromosomes": len(sizes), "bp": sum(sizes.values())},
               "blacklist_regions": len(blacklist), "targets": {}}
    for spec in a.peaks:
        target, fmt, path = spec.split(":", 2)
        peaks = read_peaks(path, sizes, aliases, fmt)
        summary["targets"][target] = {"path": path, "peaks": len(peaks),
                                      DUPLICATES_MERGED: peaks.attrs[DUPLICATES_MERGED],
                                      "sha256": sha256sum(path)}
        if split_of is not None:
            per_split = peaks["chrom"].map(split_of).value_counts()
            counts = {s: int(per_split.get(s, 0)) for s in ("train", "valid", "test")}
            summary["targets"][target]["peaks_per_split"] = counts
            for split, n in counts.items():
                if n == 0:
                    chroms = [c for c, s in split_of.items() if s == split]
                    raise InputError(
                        f"target {target} has no peaks on the {split} chromosomes "
                        f"({', '.join(chroms[:8])}{' ...' if len(chroms) > 8 else ''}): "
                        "its model could not be chosen or tested there", path=path,
                        fix=f"move chromosomes with {target} peaks into 'splits: {split}' in "
                        f"{a.config_source}, or drop {target} from the sample sheet")
        print(f"{target}: {len(peaks)} peaks OK", file=sys.stderr)
    write_json(a.out, summary)


def cmd_check_yaml(a: argparse.Namespace) -> None:
    from .config import load_yaml
    for path in a.files:
        load_yaml(path)
        print(f"{path}: valid YAML", file=sys.stderr)


def cmd_windows(a: argparse.Namespace) -> None:
    from .files import atomic_path
    from .genome import read_aliases, read_fai
    from .intervals import (
        DUPLICATES_MERGED,
        labelled_windows,
        read_blacklist,
        read_peaks,
        require_windows,
        resolve_splits,
    )
    from .records import write_record
    from .tiles import read_genome_tiles
    sizes, aliases = read_fai(a.sizes), read_aliases(a.aliases)
    p = a.params
    split_of = resolve_splits(sizes, p["splits"]["valid"], p["splits"]["test"],
                              p["splits"].get("train"))
    peaks = read_peaks(a.peaks, sizes, aliases, a.format)
    blacklist = read_blacklist(a.blacklist, sizes, aliases)
    w = p["windows"]
    table, stats = labelled_windows(peaks, blacklist, a.fasta, sizes, split_of, w["width"],
                                    w["negative_ratio"], w["shuffled_ratio"], w["gc_bins"],
                                    w["max_n_fraction"], p["seed"],
                                    tiles=read_genome_tiles(a.tiles))
    require_windows(table, stats, a.peaks)
    stats[DUPLICATES_MERGED] = peaks.attrs[DUPLICATES_MERGED]
    with atomic_path(a.out) as tmp:
        table.to_csv(tmp, sep="\t", header=False, index=False)
    counts = table.groupby(["split", "kind"]).size().unstack(fill_value=0)
    gc = table.groupby(["split", "label"])["gc"].mean().unstack()
    print(counts.to_string(), file=sys.stderr)
    write_record(a.record, "windows", p, {"peaks": a.peaks, "blacklist": a.blacklist or ""},
                 {**stats, "counts": counts.to_dict(orient="index"),
                  "mean_gc": gc.round(4).to_dict(orient="index")})


def cmd_check_splits(a: argparse.Namespace) -> None:
    from .files import write_json
    from .genome import read_fai
    from .intervals import SPLITS, read_windows, resolve_splits, split_problems
    s = a.params
    split_of = resolve_splits(read_fai(a.sizes), s["valid"], s["test"], s.get("train"))
    windows = read_windows(a.windows)
    problems = split_problems(windows, split_of)
    if problems:
        shown = "\n  ".join(problems[:20])
        raise InputError(f"{len(problems)} windows leak across splits:\n  {shown}",
                         path=a.windows, fix="fix 'splits' in the config or the windows step")
    write_json(a.out, {"ok": True, "windows": len(windows),
                       "per_split": {s: int((windows["split"] == s).sum()) for s in SPLITS},
                       "chromosomes": {s: sorted(c for c, v in split_of.items() if v == s)
                                       for s in SPLITS},
                       "checked": ["every window lies on a chromosome of its own split",
                                   "no window overlaps a window of another split",
                                   "no chromosome is in two splits"]})


def cmd_shards(a: argparse.Namespace) -> None:
    from .files import sha256sum
    from .shards import build_shards
    manifest = build_shards(a.windows, a.fasta, a.out_dir, a.seed,
                            sources={"genome_fai": sha256sum(f"{a.fasta}.fai")})
    for split, entry in manifest["splits"].items():
        print(f"{split}: {entry['n_pos']} positive, {entry['n_neg']} negative", file=sys.stderr)


def _write_predictions(path, names, y, score) -> None:
    from .evaluate import write_predictions
    write_predictions(path, names, y, score)


def cmd_train(a: argparse.Namespace) -> None:
    from .files import write_tsv
    from .models.cnn import save_model
    from .records import write_record
    from .shards import load_split
    from .train import make_config, predict, select_on_valid
    p = _on_device(a.params, a.device)
    train, valid, test = (load_split(a.shards, s) for s in ("train", "valid", "test"))
    grid = p["grid"] or [{}]
    # a killed job (time limit, preemption) resumes its candidate from the last epoch
    candidates = [replace(make_config(p["architecture"], p["training"], g, seed=p["seed"],
                                      threads=a.threads, window=train.X.shape[2]),
                          checkpoint=str(Path(a.out_dir) / f".checkpoint.candidate{i}.pt"))
                  for i, g in enumerate(grid)]
    model, history, summary, table = select_on_valid(train.X, train.y, valid.X, valid.y,
                                                     candidates)
    out = Path(a.out_dir)
    save_model(model, out)
    write_tsv(out / "history.tsv", history.round(5))
    write_tsv(out / "grid.tsv", table.round(5))
    rc_average = summary["config"]["rc_average"]
    _write_predictions(out / "test_predictions.tsv", test.names, test.y,
                       predict(model, test.X, rc_average=rc_average))
    write_record(out / "record.json", "train_cnn", p, {"shards": a.shards},
                 {k: v for k, v in summary.items() if k != "config"} | {
                     "chosen": summary["config"], "selection": "best valid AUROC"})


def cmd_sweep_arm(a: argparse.Namespace) -> None:
    from .files import write_tsv
    from .records import write_record
    from .shards import load_split
    from .sweep import arm_config
    from .train import train_cnn
    p = _on_device(a.params, a.device)
    train, valid = load_split(a.shards, "train"), load_split(a.shards, "valid")
    cfg = replace(arm_config(p["arm"], p["architecture"], p["training"], p["epochs"],
                             p["seed"], a.threads, window=train.X.shape[2]),
                  checkpoint=str(Path(a.out_dir) / ".checkpoint.pt"))
    _, history, summary = train_cnn(train.X, train.y, valid.X, valid.y, cfg)
    out = Path(a.out_dir)
    write_tsv(out / "history.tsv", history.round(5))
    write_record(out / "record.json", "sweep_arm", p, {"shards": a.shards},
                 {k: v for k, v in summary.items() if k != "config"})


def cmd_sweep_summary(a: argparse.Namespace) -> None:
    import pandas as pd

    from .files import read_json, write_tsv
    from .sweep import sweep_table
    records = [read_json(Path(d) / "record.json") for d in a.arm_dirs]
    histories = [pd.read_csv(Path(d) / "history.tsv", sep="\t") for d in a.arm_dirs]
    write_tsv(a.out, sweep_table(records, histories).round(5))


def cmd_plot_sweep(a: argparse.Namespace) -> None:
    import pandas as pd

    from .plots import plot_bias_variance, plot_learning_curves
    table = pd.read_csv(a.table, sep="\t")
    histories = {Path(d).name: pd.read_csv(Path(d) / "history.tsv", sep="\t")
                 for d in a.arm_dirs}
    plot_learning_curves(a.curves, histories,
                         title=f"{a.target}: train (solid) vs valid (dashed) per epoch")
    plot_bias_variance(a.bias_variance, table,
                       title=f"{a.target}: capacity vs train/valid AUROC")


def cmd_sequence_shards(a: argparse.Namespace) -> None:
    from .sequence_table import build_table_shards
    build_table_shards(a.sequences, a.out_dir, a.target, a.seed, a.checked)


def cmd_kmer_baseline(a: argparse.Namespace) -> None:
    from .kmers import fit_kmer_logreg
    from .records import write_record
    from .shards import load_split
    p = a.params
    train, valid, test = (load_split(a.shards, s) for s in ("train", "valid", "test"))
    model, selection = fit_kmer_logreg(train.X, train.y, valid.X, valid.y,
                                       k_values=tuple(p["kmer_k"]),
                                       C_values=tuple(p["kmer_C"]), seed=p["seed"])
    out = Path(a.out_dir)
    _write_predictions(out / "test_predictions.tsv", test.names, test.y, model.predict(test.X))
    write_record(out / "record.json", "kmer_logreg", p, {"shards": a.shards}, selection)


def cmd_pwm_baseline(a: argparse.Namespace) -> None:
    from .evaluate import auroc_or_nan
    from .motifs import jaspar_motif, max_pwm_score, pwm_logodds
    from .records import write_record
    from .shards import load_split
    valid, test = (load_split(a.shards, s) for s in ("valid", "test"))
    motif = jaspar_motif(a.jaspar_id, release=a.release)
    logodds = pwm_logodds(motif.ppm)
    score = max_pwm_score(test.X, logodds)
    out = Path(a.out_dir)
    _write_predictions(out / "test_predictions.tsv", test.names, test.y, score)
    valid_auroc = auroc_or_nan(valid.y, max_pwm_score(valid.X, logodds))
    write_record(out / "record.json", "pwm_jaspar", {"jaspar_id": a.jaspar_id},
                 {"shards": a.shards}, {"matrix_id": motif.matrix_id, "name": motif.name,
                                        "valid_auroc": valid_auroc,
                                        "score": "max log2-odds over both strands, "
                                                 "uniform background"})


def cmd_evaluate(a: argparse.Namespace) -> None:
    import pandas as pd

    from .evaluate import PAIRED_COLUMNS, metrics_row, paired_difference, read_predictions
    from .files import write_tsv
    predictions = {}
    for spec in a.predictions:
        model, path = spec.split("=", 1)
        predictions[model] = read_predictions(path)
    rows, paired = [], []
    boot = {"n_boot": a.n_boot, "seed": a.seed, "level": a.level}
    for model, pred in predictions.items():
        y, score = pred["label"].to_numpy(), pred["score"].to_numpy()
        rows.append(metrics_row(a.target, model, "test", y, score, **boot))
    reference = predictions.get(a.reference)
    for model, pred in predictions.items():
        if reference is None or model == a.reference:
            continue
        if list(pred["name"]) != list(reference["name"]):
            raise InputError(f"{model} and {a.reference} scored different windows",
                             fix="rebuild both from the same shards")
        delta = paired_difference(reference["label"].to_numpy(), reference["score"].to_numpy(),
                                  pred["score"].to_numpy(), **boot)
        paired.append({"target": a.target, "model": a.reference, "reference": model,
                       "split": "test", **delta})
    write_tsv(a.out, pd.DataFrame(rows).round(4))
    write_tsv(a.paired, pd.DataFrame(paired, columns=PAIRED_COLUMNS).round(4))


def cmd_choose_model(a: argparse.Namespace) -> None:
    from .files import write_tsv
    from .selection import choose_model
    valid = dict(spec.split("=", 1) for spec in a.valid)
    test = dict(spec.split("=", 1) for spec in a.test)
    table = choose_model(a.target, valid, test, n_boot=a.n_boot, seed=a.seed, level=a.level)
    chosen = table[table["chosen"]].iloc[0]
    print(f"{a.target}: chose {chosen['model']} (valid AUROC {chosen['valid_auroc']:.4f}, "
          f"test {chosen['test_auroc']:.4f})", file=sys.stderr)
    write_tsv(a.out, table.round(4))


def cmd_plot_roc_pr(a: argparse.Namespace) -> None:
    import pandas as pd

    from .evaluate import curves, read_predictions
    from .plots import plot_roc_pr
    metrics = pd.read_csv(a.metrics, sep="\t").set_index("model")
    curve, metric = {}, {}
    for spec in a.predictions:
        model, path = spec.split("=", 1)
        pred = read_predictions(path)
        curve[model] = curves(pred["label"].to_numpy(), pred["score"].to_numpy())
        metric[model] = metrics.loc[model].to_dict()
    plot_roc_pr(a.figure, curve, metric, title=f"{a.target}: held-out test chromosomes",
                level=a.level)


def cmd_motifs(a: argparse.Namespace) -> None:
    from .motif_report import motif_report
    motif_report(a.target, a.shards, a.model_dir, a.out_dir, jaspar_id=a.jaspar_id,
                 tax_group=a.tax_group, params=a.params)


def cmd_plot_logos(a: argparse.Namespace) -> None:
    from .motif_report import plot_motif_logos
    plot_motif_logos(a.motif_dir, a.figure, a.n_logos)


def cmd_summarize(a: argparse.Namespace) -> None:
    import pandas as pd

    from .files import write_tsv
    tables = [pd.read_csv(p, sep="\t") for p in a.tables]
    write_tsv(a.out, pd.concat(tables, ignore_index=True))


def cmd_plot_metrics(a: argparse.Namespace) -> None:
    import pandas as pd

    from .plots import plot_metric_summary
    plot_metric_summary(a.figure, pd.read_csv(a.table, sep="\t"),
                        title="Held-out test chromosomes: AUROC and AUPRC with "
                        f"{round(100 * a.level)}% bootstrap intervals", level=a.level)


def cmd_attributions(a: argparse.Namespace) -> None:
    from .attribution_report import run_attributions
    run_attributions(a.model_dir, a.shards, a.out_dir, a.figure_dir, a.target, a.params)


def _on_device(params: dict, device: str) -> dict:
    """``params`` with the job's device in its trainer's settings (``training.device``)."""
    return {**params, "training": {**params.get("training", {}), "device": device}}


def _pairs(items: list[str]) -> dict[str, str]:
    """``["A=path", ...]`` → ``{"A": "path"}``, in order."""
    return dict(item.split("=", 1) for item in items)


def cmd_multitask(a: argparse.Namespace) -> None:
    from .genome import read_aliases, read_fai
    from .multitask import run_multitask
    summary = run_multitask(a.fasta, read_fai(a.sizes), read_aliases(a.aliases), a.blacklist,
                            _pairs(a.peaks), _pairs(a.shards), a.metrics, a.out_dir,
                            a.figure_dir, _on_device(a.params, a.device),
                            single_task_predictions=_pairs(a.predictions),
                            tiles=a.tiles)
    print(f"multi-task: {len(a.peaks)} targets in {summary.get('seconds', 0):.0f} s",
          file=sys.stderr)


def cmd_imbalance(a: argparse.Namespace) -> None:
    from .genome import read_aliases, read_fai
    from .imbalance import run_imbalance
    run_imbalance(a.target, a.fasta, read_fai(a.sizes), read_aliases(a.aliases), a.blacklist,
                  a.peaks, a.out_dir, a.figure, _on_device(a.params, a.device), tiles=a.tiles)


def cmd_mil(a: argparse.Namespace) -> None:
    from .genome import read_aliases, read_fai
    from .mil import run_mil
    run_mil(a.target, a.fasta, read_fai(a.sizes), read_aliases(a.aliases), a.blacklist,
            a.peaks, a.jaspar_id, a.out_dir, a.figure, _on_device(a.params, a.device),
            tiles=a.tiles)


def cmd_corpus(a: argparse.Namespace) -> None:
    from .corpus import run_split_corpus
    run_split_corpus(a.fasta, a.out_dir, a.split, a.splits, a.params, workers=a.threads)


def cmd_pretrain(a: argparse.Namespace) -> None:
    from .pretrain import run_pretrain
    run_pretrain(a.corpus, a.valid, a.out_dir,
                 {**a.params, "threads": a.threads, "device": a.device})


def cmd_pretrain_diagnostics(a: argparse.Namespace) -> None:
    from .markov import run_pretrain_diagnostics
    run_pretrain_diagnostics(a.encoder_dir, a.corpus, a.heldout, a.out,
                             {**a.params, "valid_manifest": a.valid})


def cmd_transfer(a: argparse.Namespace) -> None:
    from .records import write_record
    from .transfer import run_transfer
    summary = run_transfer(a.target, a.shards, a.encoder_dir, a.out_dir,
                           {**a.params, "device": a.device})
    write_record(Path(a.out_dir) / "record.json", "transfer", summary["params"],
                 {"shards": a.shards, "encoder": f"{a.encoder_dir}/model.safetensors"},
                 {k: v for k, v in summary.items() if k != "params"})


def cmd_transfer_summary(a: argparse.Namespace) -> None:
    import pandas as pd

    from .transfer import summarise_transfer
    metrics = pd.concat([pd.read_csv(m, sep="\t") for m in a.metrics], ignore_index=True)
    summarise_transfer(a.runs, metrics, a.out, a.figure)


def cmd_grammar(a: argparse.Namespace) -> None:
    from .grammar import run_grammar
    summary = run_grammar(a.target, a.model_dir, a.shards, a.motif_dir, a.out_dir, a.figure,
                          a.params, windows=a.windows)
    print(f"{a.target}: {summary['n_pairs']} motif pairs, receptive field "
          f"{summary['receptive_field_bp']} bp ({summary['seconds']:.1f} s)", file=sys.stderr)


def cmd_motif_compare(a: argparse.Namespace) -> None:
    from .motif_compare import run_motif_compare
    run_motif_compare(a.target, a.motif_dir, a.attribution_dir, a.jaspar_id, a.out_dir,
                      a.figure, a.params)


def cmd_methylation(a: argparse.Namespace) -> None:
    from .methyl_mae import run_methylation_mae
    run_methylation_mae(a.inputs, a.out_dir, a.figure_dir, params=a.params, fmt=a.format)


def cmd_gene_finding(a: argparse.Namespace) -> None:
    from .device import resolve_device
    from .genefind_run import run_gene_finding
    from .seeding import seed_everything
    params = dict(a.params)
    seed, threads, splits = params.pop("seed", 0), params.pop("threads", 1), params.pop("splits")
    device = resolve_device(a.device)
    seed_everything(seed, threads, device)
    run_gene_finding(a.fasta, a.annotation, splits, a.out_dir, a.figure, params, seed, device)


def cmd_splice(a: argparse.Namespace) -> None:
    from .device import resolve_device
    from .seeding import seed_everything
    from .splice_run import run_splice
    params = dict(a.params)
    seed, threads, splits = params.pop("seed", 0), params.pop("threads", 1), params.pop("splits")
    device = resolve_device(a.device)
    seed_everything(seed, threads, device)
    run_splice(a.fasta, a.annotation, splits, a.out_dir, a.figure, a.pretrained, params, seed,
               device)


def cmd_chromatin_contrastive(a: argparse.Namespace) -> None:
    from .chromatin_contrastive import run_chromatin_contrastive
    from .device import resolve_device
    from .seeding import seed_everything
    params = dict(a.params)
    seed, threads, splits = params.pop("seed", 0), params.pop("threads", 1), params.pop("splits")
    device = resolve_device(a.device)
    seed_everything(seed, threads, device)
    peaks = a.peaks[0] if len(a.peaks) == 1 and Path(a.peaks[0]).is_dir() else a.peaks
    run_chromatin_contrastive(a.fasta, peaks, splits, a.out_dir, a.figure, a.aliases,
                              a.encoder_dir, params, seed, device)


def cmd_gene_finding_prokaryote(a: argparse.Namespace) -> None:
    from .device import resolve_device
    from .genefind_prokaryote import run_prokaryote_check
    from .genefind_run import DEFAULTS
    from .seeding import seed_everything
    params = {**DEFAULTS, **a.params}
    seed, threads = params.pop("seed", 0), params.pop("threads", 1)
    device = resolve_device(a.device)
    seed_everything(seed, threads, device)
    run_prokaryote_check(a.yeast_model, a.out, params, seed, device)


def cmd_scrna(a: argparse.Namespace) -> None:
    from .scrna_io import run_scrna
    run_scrna(a.input, a.out_dir, a.figure_dir, params=a.params)


def cmd_report_summary(a: argparse.Namespace) -> None:
    from .report import write_summary
    write_summary(a.out, metrics=a.metrics, paired=a.paired, motifs=a.motifs, sweep=a.sweep,
                  inputs=a.inputs, config=a.config, records=a.records,
                  methylation=a.methylation, scrna_denoise=a.scrna_denoise,
                  scrna_batch=a.scrna_batch, modisco=a.modisco,
                  sections=_pairs(a.section), selection=a.selection)


def _device_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto: the GPU when torch sees one (stop if one was granted but torch "
                   "cannot see it), else the CPU")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="helixflow", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")

    def add(name: str, func, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    p = add("stage", cmd_stage, "copy an input from the mirror (or download it), check sha256")
    p.add_argument("--relpath", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--mirror", default=None)
    p.add_argument("--url", default="")
    p.add_argument("--sha256", default="")

    p = add("index-genome", cmd_index_genome, "decompress and faidx-index a genome FASTA")
    p.add_argument("--fasta", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--sizes", required=True)
    p.add_argument("--record", default=None,
                   help="JSON record with the N, ambiguity-code and soft-masked base counts")

    p = add("check-inputs", cmd_check_inputs, "validate every peaks file against the genome")
    p.add_argument("--sizes", required=True)
    p.add_argument("--aliases", default=None)
    p.add_argument("--blacklist", default=None)
    p.add_argument("--peaks", nargs="+", required=True, metavar="TARGET:FORMAT:PATH")
    p.add_argument("--out", required=True)
    p.add_argument("--splits", type=_json, default=None,
                   help="JSON: the config's splits (checked against the genome and the peaks)")
    p.add_argument("--config-source", default=os.environ.get(CONFIG_SOURCE_VARIABLE,
                                                               "the config"),
                   help="the config file(s), named in errors (default: $HELIXFLOW_CONFIG, "
                   "which the workflow sets)")

    p = add("check-yaml", cmd_check_yaml, "parse YAML files; a syntax error names line, column")
    p.add_argument("files", nargs="+")

    p = add("windows", cmd_windows, "labelled summit windows with GC-matched negatives")
    for arg in ("--peaks", "--sizes", "--fasta", "--tiles", "--out", "--record"):
        p.add_argument(arg, required=True)
    p.add_argument("--format", default="auto")
    p.add_argument("--aliases", default=None)
    p.add_argument("--blacklist", default=None)
    p.add_argument("--params", type=_json, required=True, help="JSON: seed, splits, windows")

    p = add("call-peaks", cmd_call_peaks, "MACS3 callpeak on ChIP (and control) BAMs")
    p.add_argument("--treatment", nargs="+", required=True, help="ChIP BAMs (indexed)")
    p.add_argument("--control", nargs="*", default=[], help="control BAMs (indexed)")
    for arg in ("--sizes", "--out", "--record"):
        p.add_argument(arg, required=True)
    p.add_argument("--aliases", default=None)
    p.add_argument("--params", type=_json, default={}, help="JSON: see peak_calling.DEFAULTS")

    p = add("genome-tiles", cmd_genome_tiles, "GC and N fraction of every tile of the genome")
    for arg in ("--fasta", "--out"):
        p.add_argument(arg, required=True)
    p.add_argument("--width", type=int, required=True)

    p = add("check-splits", cmd_check_splits, "fail if any window leaks across splits")
    for arg in ("--windows", "--sizes", "--out"):
        p.add_argument(arg, required=True)
    p.add_argument("--params", type=_json, required=True, help="JSON: the config's splits")

    p = add("shards", cmd_shards, "one-hot shards with a checksummed manifest")
    for arg in ("--windows", "--fasta", "--out-dir"):
        p.add_argument(arg, required=True)
    p.add_argument("--seed", type=int, default=0)

    for name, func, help in (("train", cmd_train, "train the CNN, pick settings on valid"),
                             ("sweep-arm", cmd_sweep_arm, "train one capacity-sweep arm")):
        p = add(name, func, help)
        p.add_argument("--shards", required=True)
        p.add_argument("--out-dir", required=True)
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--params", type=_json, required=True)
        _device_argument(p)

    p = add("sweep-summary", cmd_sweep_summary, "one row per capacity-sweep arm")
    p.add_argument("--arm-dirs", nargs="+", required=True)
    p.add_argument("--out", required=True)

    p = add("plot-sweep", cmd_plot_sweep, "learning curves and bias-variance figures")
    p.add_argument("--target", required=True)
    p.add_argument("--arm-dirs", nargs="+", required=True)
    for arg in ("--table", "--curves", "--bias-variance"):
        p.add_argument(arg, required=True)

    p = add("kmer-baseline", cmd_kmer_baseline, "k-mer logistic regression (k, C on valid)")
    p.add_argument("--shards", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--params", type=_json, required=True)

    p = add("pwm-baseline", cmd_pwm_baseline, "score windows with the target's JASPAR PWM")
    p.add_argument("--shards", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--jaspar-id", required=True)
    p.add_argument("--release", default=None)

    p = add("evaluate", cmd_evaluate, "held-out metrics with bootstrap intervals, ROC/PR")
    p.add_argument("--target", required=True)
    p.add_argument("--predictions", nargs="+", required=True, metavar="MODEL=PATH")
    p.add_argument("--out", required=True)
    p.add_argument("--paired", required=True, help="TSV of paired differences vs --reference")
    p.add_argument("--reference", default="cnn")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--level", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0)

    p = add("sequence-shards", cmd_sequence_shards,
            "shards of a target given as labelled sequences (a table or a FASTA)")
    for arg in ("--target", "--sequences", "--out-dir", "--checked"):
        p.add_argument(arg, required=True)
    p.add_argument("--seed", type=int, default=0)

    p = add("choose-model", cmd_choose_model,
            "the target's model with the best valid AUROC, against the best baseline")
    p.add_argument("--target", required=True)
    p.add_argument("--valid", nargs="+", required=True, metavar="MODEL=PATH",
                   help="record.json, transfer runs.tsv or multitask auroc.tsv")
    p.add_argument("--test", nargs="+", required=True, metavar="MODEL=PATH",
                   help="test predictions of the same models")
    p.add_argument("--out", required=True)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--level", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0)

    p = add("plot-roc-pr", cmd_plot_roc_pr, "ROC and PR curves of every model on the test split")
    p.add_argument("--target", required=True)
    p.add_argument("--predictions", nargs="+", required=True, metavar="MODEL=PATH")
    p.add_argument("--metrics", required=True)
    p.add_argument("--figure", required=True)
    p.add_argument("--level", type=float, default=0.95)

    p = add("motifs", cmd_motifs, "filters → PWMs → MEME → Tomtom vs JASPAR → logos")
    for arg in ("--target", "--shards", "--model-dir", "--out-dir", "--tax-group"):
        p.add_argument(arg, required=True)
    p.add_argument("--jaspar-id", default="")
    p.add_argument("--params", type=_json, required=True)

    p = add("plot-logos", cmd_plot_logos, "logos of the best filters beside their JASPAR match")
    p.add_argument("--motif-dir", required=True)
    p.add_argument("--figure", required=True)
    p.add_argument("--n-logos", type=int, default=6)

    p = add("summarize", cmd_summarize, "concatenate per-target tables")
    p.add_argument("--tables", nargs="+", required=True)
    p.add_argument("--out", required=True)

    p = add("plot-metrics", cmd_plot_metrics, "AUROC/AUPRC with intervals, all targets")
    p.add_argument("--table", required=True)
    p.add_argument("--figure", required=True)
    p.add_argument("--level", type=float, default=0.95)

    p = add("attributions", cmd_attributions, "saliency, ISM, DeepLIFT/SHAP, IG and TF-MoDISco")
    for arg in ("--target", "--model-dir", "--shards", "--out-dir", "--figure-dir"):
        p.add_argument(arg, required=True)
    p.add_argument("--params", type=_json, default={})

    p = add("multitask", cmd_multitask, "one CNN over many targets, masked loss")
    p.add_argument("--peaks", nargs="+", required=True, metavar="TARGET=PATH")
    p.add_argument("--shards", nargs="+", required=True, metavar="TARGET=MANIFEST",
                   help="single-task shards whose test windows the heads are scored on")
    p.add_argument("--predictions", nargs="*", default=[], metavar="TARGET=PATH",
                   help="the single-task CNN's test predictions (paired difference)")
    p.add_argument("--metrics", nargs="+", required=True, help="single-task metrics table(s)")
    for arg in ("--fasta", "--sizes", "--out-dir", "--figure-dir"):
        p.add_argument(arg, required=True)
    p.add_argument("--aliases", default=None)
    p.add_argument("--blacklist", default=None)
    p.add_argument("--params", type=_json, default={}, help="JSON: see multitask.DEFAULTS")
    p.add_argument("--tiles", default=None, help="the genome's tile table at the window width")
    _device_argument(p)

    for name, func, help in (
            ("imbalance", cmd_imbalance, "BCE, weighted BCE and focal loss from 1:1 to 1:50"),
            ("mil", cmd_mil, "peaks as bags of sub-windows, attention pooling")):
        p = add(name, func, help)
        for arg in ("--target", "--peaks", "--fasta", "--sizes", "--out-dir", "--figure"):
            p.add_argument(arg, required=True)
        p.add_argument("--aliases", default=None)
        p.add_argument("--blacklist", default=None)
        p.add_argument("--params", type=_json, default={})
        p.add_argument("--tiles", default=None, help="the genome's tiles at the window width")
        if name == "mil":
            p.add_argument("--jaspar-id", required=True)
        _device_argument(p)

    p = add("corpus", cmd_corpus, "tile one split's chromosomes into token shards")
    for arg in ("--fasta", "--out-dir"):
        p.add_argument(arg, required=True)
    p.add_argument("--split", required=True, choices=["train", "valid", "test"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--params", type=_json, required=True, help="JSON: tokenizer and tiling")
    p.add_argument("--splits", type=_json, required=True, help="JSON: the config's splits")

    p = add("pretrain", cmd_pretrain, "self-supervised pretraining (MLM, contrastive)")
    for arg in ("--corpus", "--out-dir"):
        p.add_argument(arg, required=True)
    p.add_argument("--valid", default=None, help="validation corpus manifest")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--params", type=_json, default={}, help="JSON: see pretrain.DEFAULT_PARAMS")
    _device_argument(p)

    p = add("pretrain-diagnostics", cmd_pretrain_diagnostics,
            "held-out masked-token accuracy/perplexity vs k-mer baselines")
    for arg in ("--encoder-dir", "--corpus", "--heldout", "--out"):
        p.add_argument(arg, required=True)
    p.add_argument("--valid", default=None, help="choose the baselines' order/alpha here")
    p.add_argument("--params", type=_json, default={})

    p = add("transfer", cmd_transfer, "probe, fine-tune, adapters; label efficiency")
    for arg in ("--target", "--shards", "--encoder-dir", "--out-dir"):
        p.add_argument(arg, required=True)
    p.add_argument("--params", type=_json, default={}, help="JSON: see transfer.DEFAULTS")
    _device_argument(p)

    p = add("transfer-summary", cmd_transfer_summary, "transfer comparison, all targets")
    p.add_argument("--runs", nargs="+", required=True)
    p.add_argument("--metrics", nargs="+", required=True, help="metrics tables (cnn rows)")
    for arg in ("--out", "--figure"):
        p.add_argument(arg, required=True)

    p = add("grammar", cmd_grammar, "motif co-activation by spacing; receptive fields")
    for arg in ("--target", "--model-dir", "--shards", "--motif-dir", "--out-dir", "--figure"):
        p.add_argument(arg, required=True)
    p.add_argument("--params", type=_json, default={}, help="JSON: see grammar.DEFAULTS")
    p.add_argument("--windows", default=None,
                   help="the windows BED the shards were built from (de-duplicate by locus)")

    p = add("motif-compare", cmd_motif_compare, "filter motifs beside TF-MoDISco patterns")
    for arg in ("--target", "--motif-dir", "--attribution-dir", "--out-dir", "--figure"):
        p.add_argument(arg, required=True)
    p.add_argument("--jaspar-id", default="")
    p.add_argument("--params", type=_json, default={})

    p = add("methylation", cmd_methylation, "masked autoencoder on CpG methylation vs baselines")
    p.add_argument("--inputs", nargs="+", required=True, help="replicates of one sample")
    p.add_argument("--format", default="auto", choices=["auto", "bismark", "bedgraph", "dss"])
    p.add_argument("--out-dir", required=True)
    p.add_argument("--figure-dir", required=True)
    p.add_argument("--params", type=_json, default={})

    p = add("gene-finding", cmd_gene_finding,
            "CNN + BiGRU gene finder vs Prodigal and a longest-ORF scan, held-out chromosomes")
    for arg in ("--fasta", "--annotation", "--out-dir", "--figure"):
        p.add_argument(arg, required=True)
    p.add_argument("--params", type=_json, required=True,
                   help="JSON: seed, threads, splits and helixflow.genefind_run.DEFAULTS")
    _device_argument(p)

    p = add("splice", cmd_splice,
            "splice-site masked pretext, predicted PWMs and site classifiers, held-out "
            "chromosomes")
    for arg in ("--fasta", "--annotation", "--out-dir", "--figure"):
        p.add_argument(arg, required=True)
    p.add_argument("--pretrained", default=None,
                   help="pretraining output dir (encoder + MLM head); none: a new encoder")
    p.add_argument("--params", type=_json, required=True,
                   help="JSON: seed, threads, splits and helixflow.splice_run.DEFAULTS")
    _device_argument(p)

    p = add("chromatin-contrastive", cmd_chromatin_contrastive,
            "sequence <-> ChIP-exo occupancy contrastive encoders: retrieval and TF probes")
    for arg in ("--fasta", "--out-dir", "--figure"):
        p.add_argument(arg, required=True)
    p.add_argument("--peaks", nargs="+", required=True,
                   help="one BED per protein, or their folder")
    p.add_argument("--aliases", default=None, help="chromosome aliases TSV (peaks -> genome)")
    p.add_argument("--encoder-dir", default=None,
                   help="pretrained encoder (model.safetensors + config.json); none: a new one")
    p.add_argument("--params", type=_json, required=True,
                   help="JSON: seed, threads, splits and helixflow.chromatin_contrastive.DEFAULTS")
    _device_argument(p)

    p = add("gene-finding-prokaryote", cmd_gene_finding_prokaryote,
            "the gene finder against Prodigal's calls on the E. coli contig in pyrodigal")
    p.add_argument("--yeast-model", required=True, help="the gene-finding stage's output dir")
    p.add_argument("--out", required=True, help="agreement table (TSV); a .json record beside")
    p.add_argument("--params", type=_json, required=True,
                   help="JSON: seed, threads and helixflow.genefind_run.DEFAULTS")
    _device_argument(p)

    p = add("scrna", cmd_scrna, "scRNA QC, NB denoising autoencoder, batch-aware contrastive")
    p.add_argument("--input", required=True, help="10x directory, 10x .h5 or .h5ad")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--figure-dir", required=True)
    p.add_argument("--params", type=_json, default={})

    p = add("report-summary", cmd_report_summary, "the report's summary page")
    for arg in ("--out", "--metrics", "--paired", "--motifs", "--sweep", "--config"):
        p.add_argument(arg, required=True)
    p.add_argument("--inputs", nargs="+", required=True, help="check-inputs JSON per target")
    p.add_argument("--records", nargs="*", default=[])
    for arg in ("--methylation", "--scrna-denoise", "--scrna-batch", "--modisco"):
        p.add_argument(arg, default=None, help="result table of an optional stage")
    p.add_argument("--section", nargs="*", default=[], metavar="NAME=TABLE",
                   help="further sections (helixflow.report.SECTIONS) and their tables")
    p.add_argument("--selection", default=None,
                   help="results/metrics/selection.tsv: the valid-chosen model per target")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except InputError as err:
        print(err, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
