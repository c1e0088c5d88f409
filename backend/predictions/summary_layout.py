"""The layout of drift summaries, shared by the reference (made once, at registration) and the
current windows (counted by the log writer as it writes rows), so both bin values the same way.

Standard library only: the log writer process imports it when it starts.

A numerical feature's reference has ``edges``: sorted, strictly increasing cut points (the unique
values of its quantiles at ``FINE_BINS + 1`` evenly spaced levels, so they include its minimum and
maximum). A value's bin is ``bisect_left(edges, value)`` (numpy: ``searchsorted(edges, value,
side="left")``): bin j holds the values in (edges[j-1], edges[j]], bin 0 everything up to
edges[0], bin len(edges) everything above edges[-1]. Counts and per-bin sums of the values are
kept over those len(edges) + 1 bins, for the reference and for every current window alike.

A categorical feature (text, booleans, and numbers with at most ``CATEGORICAL_MAX_UNIQUE``
distinct values in the reference, as Evidently decides) is counted by its value as text
(``category_text``); a reference keeps its ``MAX_CATEGORIES`` most frequent values, a window
keeps up to ``MAX_CATEGORIES`` distinct values and counts the rest under ``OTHER``.

The model's outputs are summarised as two more features: ``PREDICTION`` (the predicted class
or value, categorical for classifiers) and ``CONFIDENCE`` (a classifier's top-class
probability, numerical).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

FINE_BINS = 2000
MAX_CATEGORIES = 1000
CATEGORICAL_MAX_UNIQUE = 5
OTHER = "(other)"
PREDICTION = "prediction"
CONFIDENCE = "confidence"


def category_text(value: Any) -> str | None:
    """A categorical value as the summaries count it; None for a missing value.

    Booleans read "true"/"false" (as JSON writes them), whole numbers without a fraction
    ("3", not "3.0"), so a value logged as 3 and one read from a file as 3.0 count together.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
        return repr(value)
    return str(value)


def numeric_value(value: Any) -> float | None:
    """A numerical feature's value as the summaries bin it; None for missing, not a number or
    not finite (an infinite value would make every sum, and so the Wasserstein distance, inf)."""
    if value is None or isinstance(value, str):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def cap_values(counted: Counter[str]) -> dict[str, int]:
    """The ``MAX_CATEGORIES`` most frequent values; the rest (and any OTHER) under OTHER."""
    if len(counted) - (OTHER in counted) <= MAX_CATEGORIES:
        return dict(counted)
    other = counted.pop(OTHER, 0)
    kept = dict(counted.most_common(MAX_CATEGORIES))
    kept[OTHER] = other + sum(counted.values()) - sum(kept.values())
    return kept
