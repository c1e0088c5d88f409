"""How values read in the console: class names instead of 0/1, numbers to a sensible precision.

A classifier answers with its class labels (0 and 1); people know the classes by name (legit
and fraud). A version's registration may name its classes (``class_names``): every place that
shows a class goes through ``ClassNames`` so the same prediction reads the same everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from backend.schemas import ModelInfo, ModelVersionInfo
from console.widgets.common import plain_text


class ClassNames:
    """One version's classes and the names people read for them."""

    def __init__(self, labels: Sequence[Any] | None = None, names: Sequence[str] | None = None):
        self.labels: list[Any] = list(labels or [])
        given = list(names or [])
        named = len(given) == len(self.labels)
        self.names = [
            given[i] if named else plain_text(label) for i, label in enumerate(self.labels)
        ]
        self._by_text = {
            plain_text(label): name for label, name in zip(self.labels, self.names, strict=True)
        }

    @classmethod
    def of_version(cls, version: ModelVersionInfo | None) -> ClassNames:
        if version is None:
            return cls()
        return cls(version.class_labels, version.class_names)

    @classmethod
    def of(cls, model: ModelInfo | None, version: str) -> ClassNames:
        """The classes of ``version`` of ``model`` (none known: labels read as they are)."""
        if model is None:
            return cls()
        return cls.of_version(next((v for v in model.versions if v.version == version), None))

    def name(self, label: Any) -> str:
        """The name of a class label; a value that is no class (a regressor's) as a number."""
        if label is None:
            return "—"
        named = self._by_text.get(plain_text(label))
        return named if named is not None else readable(label)

    def described(self, label: Any) -> str:
        """The name with the label the model gives, where they differ: "fraud (class 1)"."""
        name, text = self.name(label), plain_text(label)
        return f"{name} (class {text})" if text in self._by_text and name != text else name

    def label_for(self, typed: str) -> tuple[bool, Any]:
        """The class a person typed, by its name or by its label: (found, the label)."""
        for label, name in zip(self.labels, self.names, strict=True):
            if typed in (name, plain_text(label)):
                return True, label
        return False, None

    def probabilities(self, values: Sequence[Any]) -> str:
        """Per class, its probability: "legit 87.3 % · fraud 12.7 %"."""
        if len(values) != len(self.names):
            return ", ".join(readable(v) for v in values)
        return " · ".join(
            f"{name} {percent(v)}" for name, v in zip(self.names, values, strict=True)
        )

    def output(self, name: str, value: Any) -> str:
        """One output of a prediction as it reads: a class by name, probabilities per class."""
        if name == "predict_proba" and isinstance(value, list):
            return self.probabilities(value)
        if name == "predict":
            return self.described(value)
        return readable(value)


def percent(value: Any) -> str:
    """A probability as a percentage to one decimal: 87.3 %."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return plain_text(value)
    return f"{number:.1%}" if math.isfinite(number) else str(number)


def readable(value: Any) -> str:
    """A value as people read it: 1,234.57 and 0.0123, never 1234.5678901234; text as it is."""
    if isinstance(value, bool) or value is None:
        return "yes" if value is True else "no" if value is False else "—"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value.is_integer() and abs(value) < 1e15:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:,.2f}"
        return f"{value:.3g}"
    if isinstance(value, list):
        return ", ".join(readable(v) for v in value)
    return plain_text(value)
