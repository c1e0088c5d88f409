"""A validity metric computed on labelled examples with scikit-learn's own implementations."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm

from backend.registry.loaded import Prediction

CLASSIFICATION_METRICS = frozenset(
    {"accuracy", "balanced_accuracy", "f1", "precision", "recall", "roc_auc", "log_loss"}
)
REGRESSION_METRICS = frozenset({"mae", "rmse", "r2"})


class MetricUnavailable(ValueError):
    """The metric cannot be computed here (wrong task, no probabilities, one class only)."""


def score_metric(
    metric: str,
    labels: Sequence[Any],
    prediction: Prediction,
    class_labels: Sequence[Any] | None,
) -> float:
    """The metric of ``prediction`` against the true ``labels``, as a finite float."""
    value = _score(metric, labels, prediction, class_labels)
    # scikit-learn answers NaN (with a warning) where a metric is undefined, e.g. roc_auc
    # with a class absent from the labels: that is "cannot be computed", never a value.
    if not math.isfinite(value):
        raise MetricUnavailable(f"{metric} is undefined on these examples")
    return value


def _score(
    metric: str,
    labels: Sequence[Any],
    prediction: Prediction,
    class_labels: Sequence[Any] | None,
) -> float:
    if not labels:
        raise MetricUnavailable("no labelled examples")
    if metric in REGRESSION_METRICS:
        truth = np.asarray(labels, dtype=np.float64)
        predicted = np.asarray(prediction.labels, dtype=np.float64)
        if metric == "mae":
            return float(skm.mean_absolute_error(truth, predicted))
        if metric == "rmse":
            return float(skm.root_mean_squared_error(truth, predicted))
        if len(truth) < 2:
            raise MetricUnavailable("r2 needs at least two examples")
        return float(skm.r2_score(truth, predicted))
    if metric not in CLASSIFICATION_METRICS:
        raise MetricUnavailable(f"unknown metric {metric!r}")
    classes = list(class_labels or [])
    if metric == "accuracy":
        return float(skm.accuracy_score(labels, prediction.labels))
    if metric == "balanced_accuracy":
        return float(skm.balanced_accuracy_score(labels, prediction.labels))
    if metric in ("f1", "precision", "recall"):
        scorer = {"f1": skm.f1_score, "precision": skm.precision_score, "recall": skm.recall_score}
        # Two classes: the second is the positive one, as in scikit-learn's classes_ order.
        if len(classes) == 2:
            return float(
                scorer[metric](labels, prediction.labels, pos_label=classes[1], zero_division=0)
            )
        return float(scorer[metric](labels, prediction.labels, average="macro", zero_division=0))
    if prediction.probabilities is None:
        raise MetricUnavailable(f"{metric} needs class probabilities; this model gives none")
    probabilities = np.asarray(prediction.probabilities, dtype=np.float64)
    if metric == "log_loss":
        return float(skm.log_loss(labels, probabilities, labels=classes))
    if len(set(labels)) < 2:
        raise MetricUnavailable("roc_auc needs examples of at least two classes")
    if len(classes) == 2:
        positive = [1 if label == classes[1] else 0 for label in labels]
        return float(skm.roc_auc_score(positive, probabilities[:, 1]))
    return float(skm.roc_auc_score(labels, probabilities, multi_class="ovr", labels=classes))
