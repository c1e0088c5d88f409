"""Wire-format pieces used by more than one schema module."""

from __future__ import annotations

from typing import Literal

Metric = Literal[
    "accuracy",
    "balanced_accuracy",
    "f1",
    "precision",
    "recall",
    "roc_auc",
    "log_loss",
    "mae",
    "rmse",
    "r2",
]
