"""Early stopping on a validation score: keep the best weights, stop after ``patience`` epochs
without improvement (``patience`` 0 = never stop, keep the last epoch's weights)."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
from torch import nn


class EarlyStopping:
    """Track a validation score per epoch; higher is better."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best_score = -np.inf
        self.best_state: dict | None = None
        self.since_best = 0

    def update(self, model: nn.Module, score: float) -> bool:
        """Record this epoch's ``score``; returns whether it improved on the best so far."""
        improved = score > self.best_score
        if improved or self.patience == 0:
            self.best_state = copy.deepcopy(model.state_dict())
            self.best_score, self.since_best = score, 0
        else:
            self.since_best += 1
        return improved

    @property
    def should_stop(self) -> bool:
        return bool(self.patience) and self.since_best >= self.patience

    def restore(self, model: nn.Module) -> None:
        """Load the kept weights into ``model`` and put it in eval mode."""
        model.load_state_dict(self.best_state)
        model.eval()


def chosen_epoch(history: pd.DataFrame, patience: int, column: str = "valid_auroc") -> pd.Series:
    """The history row of the kept weights: the best ``column``, or the last without patience."""
    return history.loc[history[column].idxmax()] if patience else history.iloc[-1]
