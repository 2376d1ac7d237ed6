"""The transfer grid: its settings, which runs each mode makes, and where their predictions go.

Kept apart from :mod:`helixflow.transfer` (torch, scikit-learn) so the workflow can name the
transfer models' prediction files at start-up without importing either.
"""

from __future__ import annotations

import copy
from pathlib import Path

from .config import overlay
from .errors import InputError

ENCODER_MODES = ("probe", "finetune", "freeze_unfreeze", "adapters")

# Sized for a CPU: probes of the pretrained and a random encoder plus the CNN from scratch at
# three label fractions and seeds. The modes that train encoder weights cost far more (4-50 s per
# run at 3 epochs on the 2-core build machine, measured in the default workflow, which turns
# them on at 100% of labels with `trained_fractions`); FULL_GRID is every mode everywhere.
DEFAULTS: dict = {
    "encoders": ["pretrained", "random", "cnn"],
    "modes": ["probe"],
    "fractions": [0.01, 0.1, 1.0],
    "seeds": [0, 1, 2],
    # fractions and seeds of the modes that train encoder weights (finetune, freeze_unfreeze,
    # adapters), which cost far more than a probe on a CPU; None = the same as the probe's
    "trained_fractions": None,
    "trained_seeds": None,
    "seed": 0,                     # random encoder's initialisation: seed + each run's seed
    "min_per_class": 5,
    "encoder": {},                 # config of the random encoder when no pretrained one is given
    # features: "layers" = mean of every block's output and of the final features, "final" =
    # final only. Chosen on the valid split: with the default pretraining, "layers" gave the
    # higher valid AUROC for all five default targets (e.g. Reb1 0.856 vs 0.813)
    "probe": {"C": [0.001, 0.01, 0.1, 1.0, 10.0], "max_iter": 5000, "features": "layers"},
    # finetune (LP-FT, Kumar et al. 2022): the head starts as the valid-chosen linear probe on
    # the probe's features ("head": "probe"; "random" = a fresh head on the final features),
    # the probe is the weights to beat on valid AUROC, the head learns at head_lr and the
    # encoder at the smaller lr after warmup_epochs of linear warm-up
    "finetune": {"head": "probe", "lr": 1e-4, "head_lr": 1e-3, "warmup_epochs": 1,
                 "weight_decay": 0.01, "epochs": 10, "patience": 3, "batch_size": 32,
                 "min_batches": 8},
    "freeze_unfreeze": {"head_lr": 1e-2, "head_epochs": 50, "lr": 1e-4, "weight_decay": 0.01,
                        "epochs": 10, "patience": 3, "batch_size": 32, "min_batches": 8},
    "adapters": {"param_fraction": 0.01, "lr": 1e-3, "weight_decay": 0.0, "epochs": 10,
                 "patience": 3, "batch_size": 32, "min_batches": 8},
    "cnn": {"architecture": {"filters": 32, "kernel": 19, "pool": 0, "dense": 32,
                             "dropout": 0.2},
            "training": {"epochs": 60, "batch_size": 64, "lr": 0.003, "weight_decay": 1e-4,
                         "patience": 8, "rc_augment": True, "rc_average": True}},
    # windows of the train / valid split used at most (a seeded subset; 0 = all): embedding
    # every window with every encoder is the cost that grows with the genome on a CPU. The
    # test split is always whole, so transfer scores the same windows as the other models.
    "max_windows": {"train": 0, "valid": 0},
    "batch_size_eval": 128,
    "device": "auto",              # "auto" = cuda when available (bf16 autocast), else cpu
    "threads": 1,
}

# Every mode at every fraction and seed, for a GPU: 72 runs per encoder architecture and target,
# 190-335 s per target on one H100 with ten such jobs sharing it.
FULL_GRID = {"modes": list(ENCODER_MODES)}


def resolve_params(params: dict | None) -> dict:
    """``DEFAULTS`` updated with ``params`` (nested dicts merged one level, ``encoder``
    replaced whole); checks values."""
    p = overlay(DEFAULTS, params, "transfer parameter")
    if params and "encoder" in params:
        p["encoder"] = copy.deepcopy(params["encoder"])
    bad_modes = sorted(set(p["modes"]) - set(ENCODER_MODES))
    bad_encoders = sorted(set(p["encoders"]) - {"pretrained", "random", "cnn"})
    if bad_modes or bad_encoders:
        raise InputError(f"unknown mode(s) {bad_modes} or encoder(s) {bad_encoders}",
                         fix=f"modes from {list(ENCODER_MODES)}; encoders from "
                         "['pretrained', 'random', 'cnn']")
    if p["finetune"]["head"] not in ("probe", "random"):
        raise InputError(f"finetune head must be 'probe' or 'random', got "
                         f"{p['finetune']['head']!r}")
    if p["probe"]["features"] not in ("layers", "final"):
        raise InputError(f"probe features must be 'layers' or 'final', got "
                         f"{p['probe']['features']!r}")
    if not p["fractions"] or not all(0 < f <= 1 for f in p["fractions"]):
        raise InputError(f"fractions must lie in (0, 1], got {p['fractions']}")
    return p


def mode_grid(p: dict, mode: str) -> tuple[list[float], list[int]]:
    """(fractions, seeds) one mode runs at: the modes that train weights may have their own."""
    trains_weights = mode != "probe"
    return ((p["trained_fractions"] if trains_weights else None) or p["fractions"],
            (p["trained_seeds"] if trains_weights else None) or p["seeds"])


def headline_predictions(params: dict) -> dict[str, str]:
    """{model name ``{encoder}_{mode}``: its test predictions, relative to the output folder}
    at 100% of the labels and the first seed: what joins the metrics tables."""
    p = resolve_params(params)
    runs = [(e, m, *mode_grid(p, m)) for e in p["encoders"] if e != "cnn" for m in p["modes"]]
    if "cnn" in p["encoders"]:
        runs.append(("cnn", "scratch", p["fractions"], p["seeds"]))
    return {f"{encoder}_{mode}": str(prediction_path(Path(), encoder, mode, 1.0, min(seeds)))
            for encoder, mode, fractions, seeds in runs if 1.0 in fractions}


def prediction_path(out_dir: Path, encoder: str, mode: str, fraction: float, seed: int) -> Path:
    return out_dir / "predictions" / f"{encoder}_{mode}_f{fraction:g}_s{seed}.tsv"
