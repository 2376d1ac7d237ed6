"""The report's summary page: headline numbers (from the result tables) and provenance."""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

import pandas as pd
import yaml

from .files import atomic_path, read_json, sha256sum
from .folds import TEST_FRACTION, VALID_FRACTION
from .records import package_versions

CSS = """
body{font-family:system-ui,sans-serif;max-width:84em;margin:1.5em auto;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:.6em 0;display:block;max-width:100%;overflow-x:auto}
td,th{border:1px solid #ccc;padding:.25em .5em}table.wide{font-size:90%}
th{background:#f2f2f2}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td small{color:#555;display:block;font-size:80%}
.ok{color:#0a6e31;font-weight:600}.no{color:#a3261b;font-weight:600}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:85%}
h2{border-bottom:1px solid #ddd;padding-bottom:.2em}
"""


def _interval(row: pd.Series, metric: str) -> str:
    return (f"{row[metric]:.3f} <small>[{row[metric + '_lo']:.3f}, "
            f"{row[metric + '_hi']:.3f}]</small>")


# Models in the headline table and verdicts; the other transfer variants have their own
# section and every model stays in results/metrics/summary.tsv.
HEADLINE_MODELS = ("cnn", "pwm_jaspar", "kmer_logreg", "cnn_multitask", "pretrained_probe")


def headline(table: pd.DataFrame, column: str = "model") -> pd.DataFrame:
    """The rows of the headline models, in HEADLINE_MODELS order within each target."""
    order = {m: i for i, m in enumerate(HEADLINE_MODELS)}
    rows = table[table[column].isin(order)]
    targets = {t: i for i, t in enumerate(dict.fromkeys(table["target"]))}
    return rows.sort_values([column], key=lambda c: c.map(order)).sort_values(
        "target", key=lambda c: c.map(targets), kind="stable")


def metrics_table(metrics: pd.DataFrame) -> str:
    """Targets as rows, models as column groups: AUROC and AUPRC with intervals."""
    metrics = headline(metrics)
    models = list(dict.fromkeys(metrics["model"]))
    head = "".join(f"<th colspan=2>{html.escape(m)}</th>" for m in models)
    sub = "<th>AUROC</th><th>AUPRC</th>" * len(models)
    body = []
    for target, rows in metrics.groupby("target", sort=False):
        first = rows.iloc[0]
        cells = []
        best = rows["auroc"].max()
        for model in models:
            row = rows[rows["model"] == model]
            if row.empty:
                cells.append("<td>–</td><td>–</td>")
                continue
            r = row.iloc[0]
            bold = ("<b>", "</b>") if r["auroc"] == best else ("", "")
            cells.append(f"<td class=num>{bold[0]}{_interval(r, 'auroc')}{bold[1]}</td>"
                         f"<td class=num>{_interval(r, 'auprc')}</td>")
        body.append(f"<tr><td>{html.escape(target)}</td><td class=num>{first['n_pos']}</td>"
                    f"<td class=num>{first['n_neg']}</td>{''.join(cells)}</tr>")
    return (f"<table class=wide><tr><th rowspan=2>target</th><th rowspan=2>test +</th>"
            f"<th rowspan=2>test −</th>{head}</tr><tr>{sub}</tr>{''.join(body)}</table>")


def paired_sentences(paired: pd.DataFrame, level: float) -> str:
    """Plain-language verdicts from the paired bootstrap: better, worse or not resolved."""
    items = []
    for target, rows in headline(paired, "reference").groupby("target", sort=False):
        parts = []
        for r in rows.itertuples():
            d = f"{r.delta_auroc:+.3f} [{r.delta_auroc_lo:+.3f}, {r.delta_auroc_hi:+.3f}]"
            if r.delta_auroc_lo > 0:
                verdict = f"<span class=ok>better than {r.reference}</span>"
            elif r.delta_auroc_hi < 0:
                verdict = f"<span class=no>worse than {r.reference}</span>"
            else:
                verdict = f"not distinguishable from {r.reference}"
            parts.append(f"{verdict} (ΔAUROC {d})")
        items.append(f"<li>{html.escape(target)}: CNN {'; '.join(parts)}.</li>")
    return (f"<p>Paired bootstrap on the same test windows, {round(100 * level)}% intervals "
            "of AUROC(cnn) − AUROC(baseline):</p><ul>" + "".join(items) + "</ul>")


def selection_section(selection: pd.DataFrame) -> str:
    """The valid-chosen model per target, its test AUROC and its paired difference to the
    best classical baseline (:mod:`helixflow.selection`)."""
    from .selection import verdict
    chosen = selection[selection["chosen"].astype(str).str.lower() == "true"]
    rows, worse = [], 0
    for _, r in chosen.iterrows():
        runner_up = selection[(selection["target"] == r.target) & (selection["model"] != r.model)]
        second = (f"{runner_up.loc[runner_up['valid_auroc'].idxmax(), 'model']} "
                  f"{runner_up['valid_auroc'].max():.3f}" if len(runner_up) else "–")
        said = verdict(r)
        worse += said == "below"
        mark = {"above": "ok", "below": "no"}.get(said, "")
        delta = (f"{r.delta_auroc:+.3f} <small>[{r.delta_auroc_lo:+.3f}, "
                 f"{r.delta_auroc_hi:+.3f}]</small>" if said != "no baseline" else "–")
        rows.append(
            f"<tr><td>{html.escape(r.target)}</td><td><b>{html.escape(r.model)}</b></td>"
            f"<td class=num>{r.valid_auroc:.3f}</td><td>{html.escape(second)}</td>"
            f"<td class=num>{r.test_auroc:.3f} <small>[{r.test_auroc_lo:.3f}, "
            f"{r.test_auroc_hi:.3f}]</small></td><td>{html.escape(str(r.baseline))}</td>"
            f"<td class=num>{delta}</td><td><span class={mark}>{said}</span></td></tr>")
    summary = (f"<p>For {len(chosen) - worse} of {len(chosen)} targets the model chosen on the "
               "valid split is not below the best classical baseline on the test windows "
               "(paired interval).</p>")
    return ("<h2>The model to use, chosen on the valid split</h2>"
            "<p>Among every model scored on a target (the CNN, the baselines, the multi-task "
            "head, each transfer variant) the best valid AUROC is chosen; its test AUROC is "
            "what a user of the workflow's pick can expect. Δ = test AUROC minus that of the "
            "baseline with the best test AUROC, paired bootstrap. Every candidate: "
            "results/metrics/selection.tsv.</p>" + summary +
            "<table><tr><th>target</th><th>chosen</th><th>valid AUROC</th><th>runner-up "
            "(valid)</th><th>test AUROC</th><th>best baseline</th><th>Δ AUROC</th>"
            "<th>vs baseline</th></tr>" + "".join(rows) + "</table>")


def motif_sentences(motifs: pd.DataFrame) -> str:
    items = []
    for r in motifs.itertuples():
        if not r.jaspar_id:
            items.append(f"<li>{html.escape(r.target)}: no JASPAR motif given.</li>")
        elif r.recovered:
            items.append(f"<li><span class=ok>{html.escape(r.target)}: recovered</span> — "
                         f"{html.escape(str(r.best_filter))} matches {r.jaspar_id} "
                         f"({html.escape(r.jaspar_name)}) with Tomtom q = {r.q:.2g}, "
                         f"KL = {r.kl:.2f} bits/column.</li>")
        else:
            best = (f"best filter {r.best_filter}, q = {r.q:.2g}" if r.best_filter
                    else "no filter aligned to it")
            items.append(f"<li><span class=no>{html.escape(r.target)}: not recovered</span> — "
                         f"{r.jaspar_id} ({html.escape(r.jaspar_name)}): {best}.</li>")
    return "<ul>" + "".join(items) + "</ul>"


def sweep_sentence(sweep: pd.DataFrame) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(r.arm)}</td><td class=num>{r.n_params:,}</td>"
        f"<td>{'yes' if r.regularized else 'no'}</td><td class=num>{r.epochs_run}</td>"
        f"<td class=num>{r.final_train_auroc:.3f}</td><td class=num>{r.final_valid_auroc:.3f}</td>"
        f"<td class=num>{r.auroc_gap:.3f}</td></tr>" for r in sweep.itertuples())
    return ("<table><tr><th>arm</th><th>parameters</th><th>regularised</th><th>epochs</th>"
            "<th>train AUROC</th><th>valid AUROC</th><th>gap</th></tr>" + rows + "</table>")


def table_html(table: pd.DataFrame, digits: int = 3) -> str:
    """A plain HTML table of a result TSV, numbers right-aligned and rounded."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    rows = []
    for row in table.itertuples(index=False):
        cells = []
        for value in row:
            if isinstance(value, float) and value != value:  # NaN: not applicable
                cells.append("<td class=num>–</td>")
            elif isinstance(value, float):
                cells.append(f"<td class=num>{value:.{digits}f}</td>")
            elif isinstance(value, int):
                cells.append(f"<td class=num>{value:,}</td>")
            else:
                cells.append(f"<td>{html.escape(str(value))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def modisco_sentences(summary: str) -> str:
    """Whether TF-MoDISco, run on the attributions, found each target's own motif."""
    items = []
    for r in pd.read_csv(summary, sep="\t", keep_default_na=False).itertuples():
        if r.recovered in (True, "True"):
            items.append(f"<li><span class=ok>{html.escape(r.target)}: recovered</span> — "
                         f"{html.escape(str(r.best_pattern))} ({r.n_seqlets} seqlets) matches "
                         f"{r.jaspar_id} ({html.escape(str(r.jaspar_name))}), q = "
                         f"{float(r.q):.2g}.</li>")
        else:
            items.append(f"<li><span class=no>{html.escape(r.target)}: not recovered</span> — "
                         f"{r.n_patterns} pattern(s) found.</li>")
    return ("<h2>Motifs discovered from attributions (TF-MoDISco on DeepLIFT/SHAP)</h2><ul>"
            + "".join(items) + "</ul>")


def omics_sections(methylation: str | None, scrna_denoise: str | None,
                   scrna_batch: str | None) -> list[str]:
    """Summary-page sections for the methylation and single-cell stages, when they ran."""
    parts = []
    if methylation:
        table = pd.read_csv(methylation, sep="\t")
        wide = table.pivot_table(index=["coverage", "span"], columns="model",
                                 values=["mae_beta", "binom_ll_per_read"], sort=False)
        wide.columns = [f"{model} {'MAE' if metric == 'mae_beta' else 'LL/read'}"
                        for metric, model in wide.columns]
        wide = wide[sorted(wide.columns, key=lambda c: ("LL/read" in c, c))].reset_index()
        parts += ["<h2>Methylation: masked autoencoder vs baselines</h2>",
                  "<p>Held-out genomic blocks; hidden, covered CpGs only (coverage = fraction "
                  "of a region's CpGs hidden, span = CpGs per hidden block). MAE of beta: lower "
                  "is better; binomial log-likelihood per read: higher is better.</p>",
                  table_html(wide)]
    if scrna_denoise:
        parts += ["<h2>Single-cell RNA: denoising autoencoders</h2>",
                  "<p>Held-out-molecule NB log-likelihood (higher is better) and latent "
                  "structure against Leiden clusters of the full data.</p>",
                  table_html(pd.read_csv(scrna_denoise, sep="\t"))]
    if scrna_batch:
        parts += ["<h2>Single-cell RNA: batch-aware contrastive encoder</h2>",
                  table_html(pd.read_csv(scrna_batch, sep="\t"))]
    return parts


def motif_sources_section(path: str | Path) -> str:
    """Per target: does each motif source (CNN filters, TF-MoDISco) recover the own motif?"""
    table = pd.read_csv(path, sep="\t", keep_default_na=False)
    rows = []
    for target, group in table.groupby("target", sort=False):
        cells = [f"<td>{html.escape(str(target))}</td>"]
        for source in ("filter", "modisco"):
            hits = group[(group["source"] == source) & group["own_motif_recovered"].isin(
                [True, "True"])]
            n = int((group["source"] == source).sum())
            noun = "filters" if source == "filter" else "patterns"
            if len(hits):
                best = hits.loc[pd.to_numeric(hits["own_q"]).idxmin()]
                cells.append(f"<td><span class=ok>yes</span> ({len(hits)} of {n} {noun}; best "
                             f"{html.escape(str(best['motif']))}, q = "
                             f"{float(best['own_q']):.2g})</td>")
            else:
                cells.append(f"<td><span class=no>no</span> ({n} {noun})</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return ("<h2>Motifs from filters and from attributions, side by side</h2>"
            "<table><tr><th>target</th><th>CNN filters recover the own motif</th>"
            "<th>TF-MoDISco recovers it</th></tr>" + "".join(rows) + "</table>"
            "<p>Logos: the figures <i>{target}_motifs_beside</i> in the report.</p>")


def grammar_section(path: str | Path) -> str:
    """The motif pairs of the grammar step, with their clustering and best spacing."""
    table = pd.read_csv(path, sep="\t")
    table["best_spacing"] = table["best_spacing"].astype("Int64")
    shown = table[["target", "role", "motif_a", "motif_b", "n_pos_near", "expected_pos_near",
                   "p_near", "best_spacing", "p_bonferroni"]].rename(columns={
                       "n_pos_near": "pairs near (positives)", "expected_pos_near": "expected",
                       "p_near": "p (near)", "best_spacing": "best spacing (bp)",
                       "p_bonferroni": "p best spacing (Bonferroni)"})
    significant = table[pd.to_numeric(table["p_bonferroni"], errors="coerce") < 0.05]
    verdict = ("No pair has a preferred spacing after correcting for the spacings tested."
               if significant.empty else
               f"{len(significant)} pair(s) have a preferred spacing after correction.")
    return ("<h2>Motif grammar (first-layer co-activation by spacing)</h2>"
            f"<p>{verdict} Pairs near = motif pairs within the window at non-overlapping "
            "spacings, against the number expected if the partner came from another window. "
            "The CNNs here (one convolution, global max pooling) cannot weigh spacing at all: "
            "see the receptive-field tables.</p>" + table_html(shown, digits=3))


def _ci(value: float, lo: float, hi: float) -> str:
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def multitask_section(path: str | Path) -> str:
    """Multi-task heads against the single-task CNNs on the same test windows."""
    table = pd.read_csv(path, sep="\t")
    rows = []
    for r in table.itertuples():
        multi = _ci(r.auroc_multitask, r.auroc_multitask_lo, r.auroc_multitask_hi)
        single = _ci(r.auroc_single_task, r.auroc_single_task_lo, r.auroc_single_task_hi)
        delta = f"{r.delta_auroc:+.3f} [{r.delta_auroc_lo:+.3f}, {r.delta_auroc_hi:+.3f}]"
        rows.append(f"<tr><td>{html.escape(str(r.target))}</td><td class=num>{r.n_pos}</td>"
                    f"<td class=num>{multi}</td><td class=num>{single}</td>"
                    f"<td class=num>{delta}</td></tr>")
    better = int((table["delta_auroc_lo"] > 0).sum())
    worse = int((table["delta_auroc_hi"] < 0).sum())
    return ("<h2>Multi-task model against single-task CNNs (same test windows)</h2>"
            f"<p>One shared trunk, a head per ChIP target, a loss masked where a label is "
            f"unknown. The interval of the paired difference excludes zero in favour of the "
            f"multi-task model for {better} target(s) and against it for {worse}.</p>"
            "<table><tr><th>target</th><th>test positives</th><th>AUROC multi-task</th>"
            "<th>AUROC single-task</th><th>Δ (multi − single), paired</th></tr>"
            + "".join(rows) + "</table>")


def imbalance_section(path: str | Path) -> str:
    """Mean test metrics per ratio and loss (over training seeds)."""
    table = pd.read_csv(path, sep="\t")
    mean = table.groupby(["ratio", "loss"], sort=False)[
        ["auroc", "auprc", "auprc_chance", "precision_at_recall_50"]].mean().reset_index()
    wide = mean.pivot(index="ratio", columns="loss", values=["auroc", "auprc",
                                                            "precision_at_recall_50"])
    names = {"auroc": "AUROC", "auprc": "AUPRC", "precision_at_recall_50": "P@R0.5"}
    wide.columns = [f"{names[metric]} {loss}" for metric, loss in wide.columns]
    wide.insert(0, "AUPRC chance", mean.groupby("ratio")["auprc_chance"].first())
    wide = wide.reset_index().rename(columns={"ratio": "negatives per positive"})
    target = html.escape(str(table["target"].iloc[0]))
    return (f"<h2>Class imbalance ({target}): BCE, class-weighted BCE and focal loss</h2>"
            "<p>Test chromosomes at the training ratio; means over training seeds. AUROC as a "
            "metric does not depend on the positive rate (a fall in AUROC is the model failing "
            "to learn); AUPRC and precision at recall 0.5 do: compare AUPRC with its chance "
            "level.</p>" + table_html(wide))


def mil_section(path: str | Path) -> str:
    """Localisation of the top-attention instance against its baselines."""
    table = pd.read_csv(path, sep="\t")
    shown = pd.DataFrame({
        "target": table["target"], "test bags": table["n_bags_test"],
        "bag AUROC": table["bag_auroc"],
        "top-attention instance holds the JASPAR hit": [
            _ci(r.localisation_rate, r.lo, r.hi) for r in table.itertuples()],
        "random instance": table["random_baseline"], "centre instance": table["centre_rate"],
        "summit instance": table["summit_rate"]})
    return ("<h2>Multiple-instance learning: where in the peak?</h2>"
            "<p>Peaks as 1-kb bags of 100-bp instances (shifted at random around the summit), "
            "attention pooling; the rate at which the highest-attention instance contains the "
            "target's best JASPAR hit (Wilson 95% interval) against choosing an instance at "
            "random. The summit instance uses the peak caller's summit, which the model never "
            "sees.</p>" + table_html(shown))


GENE_FINDERS = {"cnn_bigru": "CNN + BiGRU", "prodigal": "Prodigal (pyrodigal)",
                "longest_orf": "longest-ORF scan"}


def gene_finding_section(path: str | Path) -> str:
    """Gene finders on the test chromosomes; the feature periodicity from the run's record."""
    table = pd.read_csv(path, sep="\t")
    shown = pd.DataFrame({
        "method": [GENE_FINDERS.get(m, m) for m in table["method"]],
        "annotated genes": table["n_true"], "genes called": table["n_called"],
        **{f"{rate} ({kind})": [_ci(getattr(r, f"{rate}_{kind}"),
                                    getattr(r, f"{rate}_{kind}_lo"),
                                    getattr(r, f"{rate}_{kind}_hi"))
                                for r in table.itertuples()]
           for kind in ("stop", "exact") for rate in ("sensitivity", "precision")},
        "coding-base F1": table["nucleotide_f1"]})
    record = read_json(Path(path).parent / "record.json")["results"]
    peak = record["periodicity_best_channel"]
    return ("<h2>Gene finding: CNN + BiGRU against Prodigal and a longest-ORF scan</h2>"
            "<p>Genes called on the test chromosomes and matched to the annotation's CDS: "
            "<i>stop</i> counts a gene found when its stop codon (and strand) is right, "
            "<i>exact</i> needs the start codon too (Wilson 95% intervals). The network "
            f"trained on {len(record['train_chromosomes'])} chromosomes ("
            f"{record['train_seconds'] / 60:.1f} min on {html.escape(record['device'])}); "
            "its genes are the ORFs whose mean coding probability on their strand is at least "
            f"{record['call_threshold']:g}, the threshold with the best gene-level F1 on the "
            "valid chromosomes. Prodigal trained its own model on the same chromosomes.</p>"
            + table_html(shown)
            + f"<p>Codon periodicity of the network's front-end features: the most periodic "
            f"feature has {peak['coding']:.1f}× its mean power at 1/3 cycle per base over "
            f"annotated genes, {peak['noncoding']:.1f}× over non-coding stretches (median "
            f"feature's period-3 strength {record['periodicity_median_coding']:.1f} vs "
            f"{record['periodicity_median_noncoding']:.1f}). Figure: gene_finding.</p>")


def gene_finding_prokaryote_section(path: str | Path) -> str:
    """Agreement with Prodigal's calls on the E. coli contig shipped with pyrodigal."""
    table = pd.read_csv(path, sep="\t")
    record = read_json(Path(path).with_suffix(".json"))["results"]
    names = {"cnn_bigru_contig": "CNN + BiGRU trained on the contig's first 60%",
             "cnn_bigru_yeast": "CNN + BiGRU trained on yeast", "longest_orf": "longest-ORF scan",
             "pyrodigal": "pyrodigal run here"}
    shown = pd.DataFrame({
        "method": [names.get(m, m) for m in table["method"]],
        "Prodigal genes": table["n_true"], "genes called": table["n_called"],
        "agree (stop)": [_ci(r.sensitivity_stop, r.sensitivity_stop_lo, r.sensitivity_stop_hi)
                         for r in table.itertuples()],
        "called genes Prodigal has (stop)": [
            _ci(r.precision_stop, r.precision_stop_lo, r.precision_stop_hi)
            for r in table.itertuples()],
        "agree (exact)": table["sensitivity_exact"], "coding-base F1": table["nucleotide_f1"]})
    return ("<h3>Prokaryotic check: agreement with Prodigal on E. coli</h3>"
            f"<p>Contig {html.escape(record['contig'])}, shipped with pyrodigal: its longest "
            f"stretch without N ({record['length']:,} bp, {record['prodigal_calls']} genes "
            "called by Prodigal). Scored on the stretch's last 30% against Prodigal's own calls "
            "there. <b>Prodigal's calls "
            "are the reference, not the truth</b>: agreement, not accuracy.</p>"
            + table_html(shown))


def pretraining_section(path: str | Path) -> str:
    """Held-out masked-token accuracy/perplexity: the encoder against the chosen baselines."""
    table = pd.read_csv(path, sep="\t")
    chosen = table[table["selected"].isin([True, "True"])]
    shown = chosen[["model", "context", "order", "tokens", "accuracy", "perplexity",
                    "cross_entropy_bits"]].rename(columns={"cross_entropy_bits": "bits/token"})
    mlm = chosen[chosen["model"].str.contains("mlm", case=False)]
    others = chosen.drop(mlm.index)
    verdict = ""
    if len(mlm) and len(others):
        gap = float(others["cross_entropy_bits"].min() - mlm["cross_entropy_bits"].iloc[0])
        verdict = (f"The encoder's held-out cross-entropy is {abs(gap):.4f} bits/token "
                   f"{'below' if gap > 0 else 'above'} the best count baseline.")
    return ("<h2>Pretraining: masked-token prediction on held-out chromosomes</h2>"
            f"<p>{verdict} Test-chromosome tokens, masked at random; baselines count the "
            "training chromosomes, their order and smoothing chosen on validation tokens. "
            "All rows are scored on the same tokens.</p>" + table_html(shown, digits=4))


def transfer_section(path: str | Path) -> str:
    """Encoders × modes at 100% of the labels, against the CNN from scratch; the pretrained
    probe's gain over the random encoders with its paired interval as the last column."""
    table = pd.read_csv(path, sep="\t")
    wide = table.pivot_table(index="target", columns=["encoder", "mode"], values="test_auroc",
                             sort=False)
    wide.columns = [f"{encoder} {mode}" for encoder, mode in wide.columns]
    params = table.groupby(["encoder", "mode"], sort=False)["params_trained"].first()
    seconds = table.groupby(["encoder", "mode"], sort=False)["wall_s"].mean()
    cost = "; ".join(f"{e} {m}: {int(n):,} parameters, {seconds[(e, m)]:.1f} s"
                     for (e, m), n in params.items())
    verdict = ""
    if {"pretrained probe", "random probe"} <= set(wide.columns):
        wins = int((wide["pretrained probe"] > wide["random probe"]).sum())
        random = table[(table["encoder"] == "random") & (table["mode"] == "probe")]
        best = random.set_index("target")["test_auroc_max"].reindex(wide.index)
        above = int((wide["pretrained probe"] > best).sum())
        verdict = (f"The probe on the pretrained encoder beats the same probe on a random "
                   f"encoder (mean of {int(random['n_seeds'].max())} initialisations) for "
                   f"{wins} of {len(wide)} targets, and the best of those initialisations "
                   f"for {above}. ")
    if "probe_gain" in table and table["probe_gain"].notna().any():
        gains = table.dropna(subset=["probe_gain"]).set_index("target")
        wide["probe gain [95% CI]"] = [
            f"{r.probe_gain:+.3f}\u00a0[{r.probe_gain_lo:+.3f},\u00a0{r.probe_gain_hi:+.3f}]"
            if t in gains.index else "–" for t, r in gains.reindex(wide.index).iterrows()]
        clear = int((gains["probe_gain_lo"] > 0).sum())
        verdict += (f"The paired bootstrap interval of that gain (last column) excludes 0 for "
                    f"{clear} of {len(gains)}. ")
    if {"pretrained probe", "cnn scratch"} <= set(wide.columns):
        wins = int((wide["pretrained probe"] > wide["cnn scratch"]).sum())
        verdict += (f"With all the labels it beats the CNN trained from scratch for {wins} of "
                    f"{len(wide)}. ")
    return ("<h2>Transfer to TF binding (test AUROC, 100% of training labels)</h2>"
            f"<p>{verdict}Mean over seeds (each seed of the random encoder is another "
            "initialisation), same held-out chromosomes and windows as the spine; the "
            "label-efficiency figure shows 1% and 10% of the labels.</p>"
            + table_html(wide.reset_index())
            + f"<p>Parameters trained and time per run (probes: the shared embedding pass not "
            f"counted): {html.escape(cost)}.</p>")



SPLICE_PREDICTORS = {"splice_pretext": "pretext (this work)",
                     "mlm_zero_shot": "MLM before the pretext",
                     "training_pwm": "PWM of the training sites", "background": "base composition"}
SPLICE_CLASSIFIERS = {"from_pretext": "fine-tuned from the pretext encoder",
                      "from_pretrained": "fine-tuned from the MLM encoder",
                      "scratch": "same network from scratch",
                      "pwm": "PWM log-odds (training sites)"}


def splice_section(path: str | Path) -> str:
    """Masked-core pretext and site classifiers on the test chromosomes' splice sites."""
    classifiers = pd.read_csv(path, sep="\t")
    pretext = pd.read_csv(Path(path).parent / "pretext_metrics.tsv", sep="\t")
    record = read_json(Path(path).parent / "record.json")["results"]
    filled = pd.DataFrame({
        "site": pretext["kind"], "predictor": [SPLICE_PREDICTORS.get(m, m)
                                               for m in pretext["model"]],
        "test sites": pretext["n_sites"],
        "bits per core base": [_ci(r.bits_per_base, r.bits_lo, r.bits_hi)
                               for r in pretext.itertuples()],
        "most probable base right": pretext["accuracy"],
        "KL to annotated PWM (bits/column)": pretext["kl_bits"],
        "predicted consensus": pretext["consensus"],
        "fits yeast consensus": ["yes" if v else "no" for v in pretext["fits_yeast_consensus"]]})
    told = pd.DataFrame({
        "site": classifiers["kind"], "model": [SPLICE_CLASSIFIERS.get(m, m)
                                               for m in classifiers["model"]],
        "sites / decoys": [f"{r.n_pos} / {r.n_neg}" for r in classifiers.itertuples()],
        "test AUROC": [_ci(r.auroc, r.auroc_lo, r.auroc_hi) for r in classifiers.itertuples()],
        "test AUPRC": [_ci(r.auprc, r.auprc_lo, r.auprc_hi) for r in classifiers.itertuples()]})
    widths = classifiers["auroc_hi"] - classifiers["auroc_lo"]
    return ("<h2>Splice sites: a masked-core pretext and site classifiers</h2>"
            f"<p>{record['introns']} introns (gaps between the exons of one transcript). The "
            "pretext masks each site's core (donor: intron bases +1..+6, consensus GTATGT; "
            "acceptor: the last three, YAG) and fills it from the context; trained on the "
            "training chromosomes' sites (weights kept on the valid ones, epoch "
            f"{record['pretext_best_epoch']}), scored on the test chromosomes' sites. Bits per "
            "core base: mean −log2 probability of the true base (95% bootstrap over sites); "
            "the PWM of the training sites is the classical predictor of the same bases.</p>"
            + table_html(filled)
            + "<p>Classifiers: a site against decoys centred the same way on a GT (donor) or "
            "AG (acceptor) that is not an annotated site, drawn from the same chromosomes; "
            "every network weight fine-tuned, weights kept on valid AUROC.</p>"
            + table_html(told)
            + f"<p>With {int(classifiers['n_pos'].min())}–{int(classifiers['n_pos'].max())} "
            f"test sites per kind the 95% intervals of a test AUROC are "
            f"{widths.min():.3f}–{widths.max():.3f} wide: differences between models smaller "
            "than that are not resolved. Figure: splice_sites.</p>")



CHROMATIN_ENCODERS = {"contrastive_all_proteins": "contrastive (every protein in the view)",
                      "contrastive_probed_held_out": "contrastive (probed TFs left out)",
                      "pretrained": "MLM-pretrained (start)", "initial": "untrained (start)",
                      "random": "random encoder"}


def chromatin_section(path: str | Path) -> str:
    """Sequence ↔ chromatin retrieval in pools and the TF probes on frozen embeddings."""
    metrics = pd.read_csv(path, sep="\t")
    record = read_json(Path(path).parent / "record.json")["results"]
    pools = metrics[metrics["pool"] == "pools"]
    size = int(pools["pool_size"].iloc[0]) if len(pools) else 0
    wide = pools.assign(cell=[f"{_ci(r.accuracy, r.accuracy_lo, r.accuracy_hi)} (chance "
                              f"{r.chance:.3f})" for r in pools.itertuples()]).pivot_table(
        index=["variant", "model", "direction"], columns="k", values="cell", aggfunc="first")
    wide.columns = [f"top-{k}" for k in wide.columns]
    retrieval = wide.reset_index().rename(columns={"variant": "view", "model": "model"})
    retrieval["direction"] = retrieval["direction"].str.replace("_to_", " → ")
    probes_path = Path(path).parent / "probes.tsv"
    probes = pd.read_csv(probes_path, sep="\t") if probes_path.stat().st_size > 1 else \
        pd.DataFrame()
    probe_html = "<p>No TF probe: too few positive bins.</p>"
    if len(probes):
        probes["cell"] = [_ci(r.auroc, r.auroc_lo, r.auroc_hi) for r in probes.itertuples()]
        table = probes.pivot_table(index="target", columns="encoder", values="cell",
                                   aggfunc="first")
        table = table[[e for e in CHROMATIN_ENCODERS if e in table.columns]]
        table.columns = [CHROMATIN_ENCODERS[e] for e in table.columns]
        probe_html = ("<p>TF binding (the bin holds a summit of the TF) from each encoder's "
                      "frozen embedding, logistic regression with C chosen on valid; test "
                      "AUROC [95% bootstrap]. The first column is partly circular: that TF's "
                      "own track was in the view the encoder was aligned to.</p>"
                      + table_html(table.reset_index()))
    bins = record["bins"]
    kept = bins["kept_bins"]
    return ("<h2>Sequence ↔ chromatin contrastive</h2>"
            "<p>Each bin's DNA and its ChIP-exo occupancy across every protein (Rossi et al. "
            "2021; log1p summit counts) aligned by InfoNCE on the training chromosomes, "
            "weights kept on valid top-1 retrieval. Retrieval on the test chromosomes in "
            f"disjoint seeded pools of {size} bins (chance k/{size}); Wilson 95% intervals. "
            f"{bins['proteins']} protein tracks; {bins['genome_bins_with_peaks']:,} of "
            f"{bins['genome_bins']:,} bins of {bins['bin_bp']} bp hold a summit; kept: train "
            f"{kept['train']:,}, valid {kept['valid']:,}, test {kept['test']:,}.</p>"
            + table_html(retrieval) + probe_html
            + "<p>Figure: chromatin_contrastive.</p>")


SECTIONS = {"motif_sources": motif_sources_section, "grammar": grammar_section,
            "multitask": multitask_section, "imbalance": imbalance_section, "mil": mil_section,
            "pretraining": pretraining_section, "transfer": transfer_section,
            "gene_finding": gene_finding_section,
            "gene_finding_prokaryote": gene_finding_prokaryote_section,
            "splice": splice_section, "chromatin": chromatin_section}


def write_summary(out: str | Path, metrics: str | Path, paired: str | Path, motifs: str | Path,
                  sweep: str | Path, inputs: list[str], config: str, records: list[str],
                  methylation: str | None = None, scrna_denoise: str | None = None,
                  scrna_batch: str | None = None, modisco: str | None = None,
                  sections: dict[str, str] | None = None,
                  selection: str | Path | None = None) -> None:
    """Write the self-contained HTML summary page."""
    metrics_df = pd.read_csv(metrics, sep="\t")
    motifs_df = pd.read_csv(motifs, sep="\t", keep_default_na=False,
                            na_values={"q": ["", "nan"], "kl": ["", "nan"]})
    cfg = json.loads(config)
    checked = {"targets": {}}
    for path in inputs:
        checked["targets"] |= read_json(path)["targets"]
    cnn = [read_json(r) for r in records]
    parts = [f"<h1>HelixFlow results — genome {html.escape(cfg['genome']['name'])}</h1>",
             "<p>Binding CNNs trained per ChIP target with chromosome-held-out splits "
             f"(valid: {', '.join(cfg['splits']['valid'])}; test: "
             f"{', '.join(cfg['splits']['test'])}). All numbers below are on the test "
             "chromosomes, which no training or model-selection step saw; intervals are "
             f"{round(100 * cfg['evaluate']['level'])}% percentile bootstrap intervals over "
             "windows.</p>",
             _sequence_split_note(checked),
             "<h2>Held-out performance</h2>", metrics_table(metrics_df),
             "<p>cnn = the CNN (settings chosen per target on the valid split); pwm_jaspar = the "
             "target's JASPAR PWM, best log-odds over both strands; kmer_logreg = logistic "
             "regression on k-mer counts (k and C chosen on the valid split); cnn_multitask = "
             "the target's head of the multi-task CNN; pretrained_probe = a linear probe on the "
             "self-supervised encoder (the other transfer variants: their own section below, "
             "and results/metrics/summary.tsv). Bold: best AUROC per target.</p>",
             paired_sentences(pd.read_csv(paired, sep="\t"), cfg["evaluate"]["level"]),
             selection_section(pd.read_csv(selection, sep="\t")) if selection else "",
             "<h2>Do the learned filters recover the known motif?</h2>",
             motif_sentences(motifs_df)]
    if str(sweep) != "none":
        parts += ["<h2>Deliberate overfitting (capacity sweep)</h2>",
                  sweep_sentence(pd.read_csv(sweep, sep="\t")),
                  "<p>gap = train − valid AUROC of the kept weights (early-stopping epoch for "
                  "regularised arms, last epoch otherwise).</p>"]
    if modisco:
        parts.append(modisco_sentences(modisco))
    for name, path in (sections or {}).items():
        parts.append(SECTIONS[name](path))
    parts += omics_sections(methylation, scrna_denoise, scrna_batch)
    parts += ["<h2>Provenance</h2>",
              f"<p>Written {time.strftime('%Y-%m-%d %H:%M %Z')}.</p>",
              "<h3>Inputs</h3>", _inputs_table(cfg, checked),
              "<h3>Models chosen on the valid split</h3>", _choices_table(cnn),
              "<h3>Package versions</h3>",
              "<pre>" + html.escape(yaml.safe_dump(package_versions(), sort_keys=False))
              + "</pre>",
              "<h3>Configuration</h3>",
              "<pre>" + html.escape(yaml.safe_dump(cfg, sort_keys=False)) + "</pre>"]
    page = ("<!DOCTYPE html><html><head><meta charset=utf-8><title>HelixFlow summary</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>\n")
    with atomic_path(out) as tmp:
        tmp.write_text(page)


def _sequence_split_note(checked: dict) -> str:
    """How targets given as sequence tables are split ('' when there are none)."""
    tables = [t for t, info in checked["targets"].items() if "sequences" in info]
    if not tables:
        return ""
    return (f"<p>Targets given as sequence tables ({', '.join(map(html.escape, tables))}) "
            "have no chromosomes: their split is the table's <code>split</code> column or the "
            f"fold rule ({VALID_FRACTION:.0%} valid, {TEST_FRACTION:.0%} test by each "
            "sequence's hash).</p>")


def _inputs_table(cfg: dict, checked: dict) -> str:
    rows = []
    for key in ("fasta", "blacklist", "chrom_aliases"):
        spec = cfg["genome"].get(key)
        if spec:
            staged = Path("resources") / spec["path"]
            digest = sha256sum(staged) if staged.is_file() else spec.get("sha256") or ""
            rows.append((key, str(staged), digest, ""))
    for target, info in checked["targets"].items():
        if "sequences" in info:     # a target given as labelled sequences
            rows.append((f"sequences {target}", info["path"], info["sha256"],
                         f"{info['sequences']} sequences"))
        else:
            rows.append((f"peaks {target}", info["path"], info["sha256"],
                         f"{info['peaks']} peaks"))
    body = "".join(f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td><td><code>{c}</code>"
                   f"</td><td>{d}</td></tr>" for a, b, c, d in rows)
    return "<table><tr><th>input</th><th>file</th><th>sha256</th><th></th></tr>" + body + \
        "</table>"


def _choices_table(records: list[dict]) -> str:
    rows = []
    for r in records:
        target = Path(r["inputs"]["shards"]["path"]).parent.name
        chosen = r["results"]["chosen"]["model"]
        restarts = len(r["results"].get("restarts", []))
        restarted = f"{restarts} (kept lr {r['results']['chosen']['lr']:g})" if restarts else "0"
        if r["results"].get("collapsed"):
            restarted += ": still constant"
        rows.append(f"<tr><td>{html.escape(target)}</td><td>{chosen['filters']}</td>"
                    f"<td>{chosen['kernel']}</td><td>{chosen['dense']}</td>"
                    f"<td class=num>{r['results']['n_params']:,}</td>"
                    f"<td class=num>{r['results']['best_epoch']}</td>"
                    f"<td class=num>{r['results']['valid_auroc']:.3f}</td>"
                    f"<td>{restarted}</td></tr>")
    return ("<table><tr><th>target</th><th>filters</th><th>kernel</th><th>dense</th>"
            "<th>parameters</th><th>epoch kept</th><th>valid AUROC</th>"
            "<th title='runs whose network scored every valid window the same (dead units), "
            "restarted with the next seed and half the lr'>restarts after a collapse</th></tr>"
            + "".join(rows) + "</table>")
