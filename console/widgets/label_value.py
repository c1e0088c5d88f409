"""A value a person typed as a label or an expected answer, as the model's own type."""

from __future__ import annotations

import math
from typing import Any

from console.widgets.values import ClassNames


class LabelError(ValueError):
    """The typed label cannot be a label of this model; the message says what would be."""


def parse_label(text: str, task: str | None, classes: ClassNames | list[Any] | None) -> Any:
    """The label value a person typed, by the class's name or its label, as the model's own
    type (class 1 for "fraud" or "1", not the text)."""
    typed = text.strip()
    if not typed:
        raise LabelError("type the true outcome first")
    if isinstance(classes, list):
        classes = ClassNames(classes)
    if classes is not None and classes.labels:
        found, label = classes.label_for(typed)
        if found:
            return label
        choices = ", ".join(classes.described(label) for label in classes.labels)
        raise LabelError(f"'{typed}' is not one of this model's classes: {choices}")
    try:
        number = float(typed)
    except ValueError:
        if task == "regression":
            raise LabelError(f"'{typed}' is not a number; this model predicts numbers") from None
        return typed
    if not math.isfinite(number):
        raise LabelError("the label must be a finite number")
    return int(number) if task != "regression" and number.is_integer() else number
