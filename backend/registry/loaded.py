"""A registered version loaded into memory: validated rows in, plain Python outputs out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd
import sklearn

from backend.registry.direct_answers import DirectAnswer, direct_answer
from backend.registry.signature import CompiledSignature


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def class_labels_of(estimator: Any) -> list[Any] | None:
    """The classifier's classes as plain Python values (JSON-able), or None."""
    classes = getattr(estimator, "classes_", None)
    return None if classes is None else [_plain(c) for c in classes]


@dataclass
class Prediction:
    labels: list[Any]
    probabilities: list[list[float]] | None


class LoadedVersion:
    def __init__(
        self,
        model: str,
        version: str,
        estimator: Any,
        signature: CompiledSignature,
        task: str,
        class_labels: list[Any] | None,
    ):
        self.model = model
        self.version = version
        self.estimator = estimator
        self.signature = signature
        self.task = task
        self.class_labels = class_labels
        # Estimators fitted on a DataFrame select columns by name (ColumnTransformer); others
        # take a numeric matrix in signature order.
        self.wants_frame = hasattr(estimator, "feature_names_in_") or _has_column_transformer(
            estimator
        )
        self.has_proba = task == "classification" and hasattr(estimator, "predict_proba")
        if self.has_proba and self.class_labels is None:
            self.class_labels = class_labels_of(estimator)
            # Probabilities without classes cannot be named: answer with labels alone.
            self.has_proba = self.class_labels is not None
        # A linear model's answer without scikit-learn's per-call input checks, which the
        # signature has already made (see direct_answers); None for every other model.
        self.direct: DirectAnswer | None = (
            None
            if self.wants_frame
            else direct_answer(estimator, len(signature.names), self.has_proba)
        )

    def _design(self, rows: Sequence[dict[str, Any]]) -> Any:
        names = self.signature.names
        if self.wants_frame:
            return pd.DataFrame.from_records(rows, columns=names)
        return np.array([[row[name] for name in names] for row in rows], dtype=np.float64)

    def predict(self, rows: Sequence[dict[str, Any]]) -> Prediction:
        design = self._design(rows)
        if self.direct is not None:
            answered = self.direct(design)
        else:
            # Inputs were checked finite by the signature, so skip sklearn's own scan.
            with sklearn.config_context(assume_finite=True):
                if self.has_proba:
                    answered = self.estimator.predict_proba(design)
                else:
                    answered = self.estimator.predict(design)
        if self.has_proba:
            # Labels from the plain class list: no numpy scalar per row to convert.
            classes = cast(list[Any], self.class_labels)
            labels = [classes[i] for i in answered.argmax(axis=1).tolist()]
            return Prediction(labels, answered.tolist())  # tolist: plain Python floats
        return Prediction([_plain(v) for v in answered], None)


def _has_column_transformer(estimator: Any) -> bool:
    steps = getattr(estimator, "steps", None)
    if not steps:
        return False
    first = steps[0][1]
    return type(first).__name__ == "ColumnTransformer"
