"""The deliberate-overfitting experiment (seed 004): one target, capacity × regularisation."""

from __future__ import annotations

import pandas as pd

from .train import TrainConfig, make_config


def arm_config(arm: dict, architecture: dict, training: dict, epochs: int, seed: int,
               threads: int, window: int | None = None) -> TrainConfig:
    """Training settings of one sweep arm.

    Regularised arms keep the configured dropout, weight decay and early stopping;
    unregularised arms have none of the three and train for all ``epochs``.
    """
    overrides = {"filters": arm["filters"], "dense": arm["dense"], "pool": arm["pool"],
                 "epochs": epochs}
    if not arm["regularized"]:
        overrides |= {"dropout": 0.0, "weight_decay": 0.0, "patience": 0}
    return make_config(architecture, training, overrides, seed=seed, threads=threads,
                       window=window)


def sweep_table(records: list[dict], histories: list[pd.DataFrame]) -> pd.DataFrame:
    """One row per arm: parameter count, regularisation, AUROC of the kept weights, the gap."""
    rows = []
    for record, history in zip(records, histories, strict=True):
        # the weights kept: the early-stopping epoch, or the last one without early stopping
        last = history[history["epoch"] == record["results"]["best_epoch"]].iloc[0]
        rows.append({
            "arm": record["params"]["arm"]["name"], "n_params": record["results"]["n_params"],
            "regularized": record["params"]["arm"]["regularized"],
            "epochs_run": len(history),
            "final_train_auroc": last["train_auroc"], "final_valid_auroc": last["valid_auroc"],
            "best_valid_auroc": history["valid_auroc"].max(),
            "final_train_loss": last["train_loss"], "final_valid_loss": last["valid_loss"],
        })
    table = pd.DataFrame(rows).sort_values(["regularized", "n_params"])
    table["auroc_gap"] = table["final_train_auroc"] - table["final_valid_auroc"]
    return table.reset_index(drop=True)
