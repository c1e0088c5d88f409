"""Live quality: a version's validity metric on its labelled answers, computed one way.

The rollout checks (a candidate's answers labelled since its step started) and the serving
version's watch (its newest labelled answers) both judge quality with this function, against
the acceptable range the version's gates used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from backend.registry import Prediction
from backend.registry.metrics import MetricUnavailable, score_metric


@dataclass(frozen=True)
class LiveMetric:
    # None: not computed (too few labels, or undefined on them: see ``note``).
    value: float | None
    labelled: int
    note: str = ""


def live_metric(
    labelled: Sequence[tuple[dict[str, Any], Any]],
    metric: str,
    class_labels: Sequence[Any] | None,
    min_labelled: int,
) -> LiveMetric:
    """``metric`` over (logged outputs, label) pairs; not computed below ``min_labelled``."""
    if len(labelled) < min_labelled:
        return LiveMetric(None, len(labelled), f"{len(labelled)} of {min_labelled} labels needed")
    outputs = [answer for answer, _ in labelled]
    probabilities: list[Any] = [o.get("predict_proba") for o in outputs]
    prediction = Prediction(
        [o.get("predict") for o in outputs],
        probabilities if all(p is not None for p in probabilities) else None,
    )
    try:
        value = score_metric(metric, [label for _, label in labelled], prediction, class_labels)
    except (MetricUnavailable, ValueError) as exc:
        return LiveMetric(None, len(labelled), str(exc))
    return LiveMetric(value, len(labelled))
