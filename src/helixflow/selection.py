"""The model each target should use: the best valid AUROC among every model scored on it.

Every model of a target — the spine's CNN, the k-mer and PWM baselines, the multi-task
CNN's head, each transfer variant — was fitted or chosen without the test split. Choosing
among them on the valid split keeps the test split unseen, so the chosen model's test AUROC
is an honest estimate of what a user gets by taking the workflow's pick. Each candidate is
also compared with the best classical baseline on the same test windows (paired bootstrap):
a pick that loses to a PWM is visible, not hidden behind the CNN's row.

Valid AUROC comes from what each stage records (all on the target's valid windows):
``record.json`` of ``train_cnn`` (the kept epoch), ``kmer_logreg`` (the chosen k and C) and
``pwm_jaspar``; ``results/transfer/{target}/runs.tsv`` (100% of the labels, first seed; the
valid windows may be a capped random subset, ``transfer.max_windows``); and
``results/multitask/auroc.tsv`` (the head, on the target's own valid windows).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError
from .evaluate import bootstrap_metrics, paired_difference, read_predictions
from .files import read_json

BASELINES = ("pwm_jaspar", "kmer_logreg")
SELECTION_COLUMNS = ["target", "model", "valid_auroc", "test_auroc", "test_auroc_lo",
                     "test_auroc_hi", "chosen", "baseline", "delta_auroc", "delta_auroc_lo",
                     "delta_auroc_hi"]


def valid_auroc(model: str, source: str | Path, target: str) -> float:
    """The valid AUROC of ``model`` for ``target`` as recorded in ``source`` (see module doc)."""
    path = Path(source)
    if path.name == "record.json":
        results = read_json(path)["results"]
        value = results.get("valid_auroc", results.get("chosen", {}).get("valid_auroc"))
    elif path.name == "runs.tsv":
        runs = pd.read_csv(path, sep="\t")
        named = runs["encoder"].astype(str) + "_" + runs["mode"].astype(str)  # freeze_unfreeze
        rows = runs[(named == model) & (runs["fraction"] == 1.0)]
        value = rows.loc[rows["seed"] == rows["seed"].min(), "valid_auroc"].iloc[0] \
            if len(rows) else None
    elif path.name == "auroc.tsv":
        table = pd.read_csv(path, sep="\t").set_index("target")
        value = table.loc[target, "valid_auroc_multitask"] if target in table.index else None
    else:
        raise InputError(f"no valid AUROC can be read for {model} from this file", path=path,
                         fix="give a record.json, a transfer runs.tsv or multitask auroc.tsv")
    if value is None or not np.isfinite(value):
        raise InputError(f"{target}: no valid AUROC recorded for {model}", path=path,
                         fix="rerun the stage that wrote it")
    return float(value)


def choose_model(target: str, valid_sources: Mapping[str, str | Path],
                 test_predictions: Mapping[str, str | Path], n_boot: int = 1000,
                 seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """One row per candidate model (``SELECTION_COLUMNS``); ``chosen`` marks the best valid
    AUROC (ties: the first in ``valid_sources``' order). ``baseline`` is the classical
    baseline with the best test AUROC and ``delta_auroc`` the candidate's paired test
    difference to it."""
    if set(valid_sources) != set(test_predictions):
        raise ValueError(f"valid and test models differ: {sorted(valid_sources)} vs "
                         f"{sorted(test_predictions)}")
    tables = {m: read_predictions(p).set_index("name") for m, p in test_predictions.items()}
    names = next(iter(tables.values())).index
    for model, table in tables.items():
        if len(table) != len(names) or not table.index.isin(names).all():
            raise InputError(f"{target}: {model}'s test predictions are not on the same "
                             "windows as the other models'", path=test_predictions[model],
                             fix="score every model on the target's test shards")
    y = tables[next(iter(tables))].loc[names, "label"].to_numpy().astype(np.int64)
    scores = {m: t.loc[names, "score"].to_numpy(dtype=np.float64) for m, t in tables.items()}
    boot = {"n_boot": n_boot, "seed": seed, "level": level}
    rows = []
    for model, source in valid_sources.items():
        test = bootstrap_metrics(y, scores[model], **boot)
        rows.append({"target": target, "model": model,
                     "valid_auroc": valid_auroc(model, source, target),
                     "test_auroc": test["auroc"], "test_auroc_lo": test["auroc_lo"],
                     "test_auroc_hi": test["auroc_hi"]})
    table = pd.DataFrame(rows)
    table["chosen"] = False
    table.loc[table["valid_auroc"].idxmax(), "chosen"] = True
    baselines = table[table["model"].isin(BASELINES)]
    if len(baselines):
        best = baselines.loc[baselines["test_auroc"].idxmax(), "model"]
        table["baseline"] = best
        deltas = [paired_difference(y, scores[m], scores[best], **boot) for m in table["model"]]
        for key in ("delta_auroc", "delta_auroc_lo", "delta_auroc_hi"):
            table[key] = [d[key] for d in deltas]
    return table.reindex(columns=SELECTION_COLUMNS)


def verdict(row: pd.Series) -> str:
    """'above', 'below' or 'tie' against the best baseline (paired interval vs 0)."""
    if pd.isna(row["delta_auroc"]):
        return "no baseline"
    if row["delta_auroc_lo"] > 0:
        return "above"
    return "below" if row["delta_auroc_hi"] < 0 else "tie"
