"""A version's performance per time window: realized from labels as they arrive, estimated
from the model's own confidence before they do, judged against the version's acceptable range.

Realized metrics are scikit-learn's, through ``registry.metrics.score_metric`` (the one
implementation the deployment gates use). The estimate is ``estimate`` (NannyML's CBPE); its
calibration is fitted once per version on the labelled reference that
``reference_for_version`` provides, and cached.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from backend.monitoring.estimate import (
    NOT_ESTIMABLE,
    POOR_CALIBRATION_ECE,
    REGRESSION_NOT_ESTIMABLE,
    Calibration,
    Estimate,
    estimate_window,
    fit_calibration,
    unusable_calibration,
)
from backend.monitoring.user_signals import user_signal_windows
from backend.predictions.reads import version_window, version_window_counts, version_window_labelled
from backend.registry import Prediction, Registry
from backend.registry.metrics import MetricUnavailable, score_metric
from backend.schemas import (
    CalibrationInfo,
    EstimatedPerformance,
    LabelDelay,
    MetricValue,
    ModelVersionInfo,
    PerformanceReport,
    PerformanceWindow,
    UserSignals,
    Verdict,
    plain_duration,
)

CLASSIFIER_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSOR_METRICS = ("mae", "rmse", "r2")
# Predictions one window's read takes at most, and one report's reads together (decoding
# and scoring them is the cost of a request: about 1.5 s per 30,000 rows on 2 busy cores).
MAX_ROWS_PER_WINDOW = 10_000
MAX_ROWS_PER_REPORT = 120_000
# Fitted calibrations kept (a version's never changes; a few hundred bytes to kilobytes each).
CACHED_CALIBRATIONS = 64


# ---------------------------------------------------------------- the labelled reference


@dataclass(frozen=True)
class Reference:
    """Labelled examples and the version's own answers to them."""

    labels: list[Any]
    probabilities: np.ndarray | None
    # In words, for people: where the examples came from.
    source: str


def reference_for_version(registry: Registry, model: str, info: ModelVersionInfo) -> Reference:
    """The one place the labelled reference of a version comes from.

    The sample of its reference data scored at registration, with its true labels (stored
    beside the reference summary), when the version was registered with labelled data; else
    its validity confidence set, predicted by the version itself (loaded by the registry:
    skops files with their reviewed types, pickles only if trusted at registration).
    """
    stored = registry.labelled_reference(model, info.version)
    if stored is not None:
        kept = [
            i
            for i, (label, row) in enumerate(
                zip(stored["labels"], stored["probabilities"] or [], strict=False)
            )
            if label is not None and row is not None
        ]
        if kept and stored["probabilities"] is not None:
            return Reference(
                [stored["labels"][i] for i in kept],
                np.asarray([stored["probabilities"][i] for i in kept], dtype=np.float64),
                f"the {stored['source']} of version {info.version} ({len(kept)} labelled examples)",
            )
    examples = info.validity.confidence_set
    loaded = registry.load(model, info.version)
    rows = [loaded.signature.validate_row(e.inputs, "confidence_set") for e in examples]
    prediction = loaded.predict(rows)
    probabilities = (
        None
        if prediction.probabilities is None
        else np.asarray(prediction.probabilities, dtype=np.float64)
    )
    return Reference(
        [e.label for e in examples],
        probabilities,
        f"the confidence set of version {info.version} ({len(examples)} labelled examples)",
    )


class CalibrationCache:
    """One fitted calibration per version (its artifact and reference never change)."""

    def __init__(self, size: int = CACHED_CALIBRATIONS):
        self._size = size
        self._fitted: OrderedDict[tuple[str, str, str], tuple[Calibration, str]] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self, registry: Registry, model: str, info: ModelVersionInfo
    ) -> tuple[Calibration, str]:
        """(calibration, where its reference came from) of a classifier version."""
        key = (model, info.version, info.artifact_sha256)
        with self._lock:
            if key in self._fitted:
                self._fitted.move_to_end(key)
                return self._fitted[key]
        # Fitted outside the lock: two first requests may both fit; both get the same result.
        found = _fit_for_version(registry, model, info)
        with self._lock:
            self._fitted[key] = found
            while len(self._fitted) > self._size:
                self._fitted.popitem(last=False)
        return found


def _fit_for_version(
    registry: Registry, model: str, info: ModelVersionInfo
) -> tuple[Calibration, str]:
    classes = list(info.class_labels or [])
    try:
        reference = reference_for_version(registry, model, info)
    except Exception as exc:  # an artifact that cannot load or score: no estimate, said why
        return unusable_calibration(classes, f"the reference could not be scored ({exc})"), ""
    if reference.probabilities is None:
        note = "the model gives no class probabilities to estimate from"
        return unusable_calibration(classes, note), reference.source
    return fit_calibration(reference.probabilities, reference.labels, classes), reference.source


# ---------------------------------------------------------------- windows


def window_bounds(end: float, window_s: int, windows: int) -> list[tuple[float, float]]:
    """``windows`` consecutive windows aligned to multiples of ``window_s`` (Unix time), the
    last one holding ``end``; oldest first."""
    last_start = math.floor(end / window_s) * window_s
    return [
        (float(last_start - i * window_s), float(last_start - (i - 1) * window_s))
        for i in range(windows - 1, -1, -1)
    ]


def performance_report(
    sessions: sessionmaker[Session],
    registry: Registry,
    calibrations: CalibrationCache,
    model: str,
    info: ModelVersionInfo,
    *,
    window_s: int,
    windows: int,
    end: float | None = None,
    min_labels: int = 50,
) -> PerformanceReport:
    now = time.time()
    validity = info.validity
    calibration: Calibration | None = None
    calibration_info: CalibrationInfo | None = None
    if info.task == "classification":
        calibration, source = calibrations.get(registry, model, info)
        calibration_info = _calibration_info(calibration, source)
    bounds = window_bounds(now if end is None else end, window_s, windows)
    limit = max(1, min(MAX_ROWS_PER_WINDOW, MAX_ROWS_PER_REPORT // windows))
    with sessions() as session:
        signal_windows = user_signal_windows(session, model, info.version, bounds)
    return PerformanceReport(
        model=model,
        version=info.version,
        task=info.task,
        metric=validity.metric,
        acceptable_range=validity.acceptable_range,
        window_s=window_s,
        min_labels=min_labels,
        calibration=calibration_info,
        windows=[
            _window(
                sessions, model, info, start, stop, now, calibration, min_labels, limit, signals
            )
            for (start, stop), signals in zip(bounds, signal_windows, strict=True)
        ],
    )


def _window(
    sessions: sessionmaker[Session],
    model: str,
    info: ModelVersionInfo,
    start: float,
    end: float,
    now: float,
    calibration: Calibration | None,
    min_labels: int,
    limit: int,
    user_signals: UserSignals,
) -> PerformanceWindow:
    rows = version_window(sessions, model, info.version, start, end, limit + 1)
    if len(rows) <= limit:
        labelled = [row for row in rows if row.received_at is not None]
        predictions, labels = len(rows), len(labelled)
    else:
        rows = rows[:limit]
        predictions, labels = version_window_counts(sessions, model, info.version, start, end)
        labelled = list(version_window_labelled(sessions, model, info.version, start, end, limit))
    realized = realized_metrics(
        [(row.outputs, row.label) for row in labelled],
        info.task,
        info.validity.metric,
        info.class_labels,
        min_labels,
    )
    if calibration is None:
        estimated = EstimatedPerformance(
            supported=False,
            metrics=[
                MetricValue(metric=name, value=None, reason=REGRESSION_NOT_ESTIMABLE)
                for name in realized_names(info.task, info.validity.metric)
            ],
            trusted=False,
            warnings=[],
            explanation=f"Not estimated: {REGRESSION_NOT_ESTIMABLE}.",
        )
    else:
        estimated = _estimated(rows, calibration, info)
    delay = label_delay(
        predictions, [(row.created_at, row.received_at) for row in labelled], labels
    )
    return PerformanceWindow(
        start=datetime.fromtimestamp(start, UTC),
        end=datetime.fromtimestamp(end, UTC),
        partial=end > now,
        predictions=predictions,
        read=len(rows),
        label_delay=delay,
        realized=realized,
        estimated=estimated,
        verdict=verdict(info, realized, estimated, len(labelled), min_labels),
        user_signals=user_signals,
    )


# ---------------------------------------------------------------- realized


def realized_names(task: str, validity_metric: str) -> list[str]:
    """The metrics reported for a task: the field's usual ones and the validity metric."""
    names = list(CLASSIFIER_METRICS if task == "classification" else REGRESSOR_METRICS)
    if validity_metric not in names:
        names.append(validity_metric)
    return names


def realized_metrics(
    labelled: Sequence[tuple[dict[str, Any], Any]],
    task: str,
    validity_metric: str,
    class_labels: Sequence[Any] | None,
    min_labels: int,
) -> list[MetricValue]:
    """Every metric of the task (and the validity metric) over (logged outputs, label) pairs;
    None with the reason below ``min_labels`` or where a metric is undefined on them."""
    names = realized_names(task, validity_metric)
    if len(labelled) < min_labels:
        reason = (
            f"{len(labelled)} labelled predictions of the {min_labels} needed"
            if labelled
            else "no labels for this window yet"
        )
        return [MetricValue(metric=name, value=None, reason=reason) for name in names]
    outputs = [answer for answer, _ in labelled]
    probabilities: list[Any] = [o.get("predict_proba") for o in outputs]
    prediction = Prediction(
        [o.get("predict") for o in outputs],
        probabilities if all(p is not None for p in probabilities) else None,
    )
    truth = [label for _, label in labelled]
    values: list[MetricValue] = []
    for name in names:
        try:
            values.append(
                MetricValue(metric=name, value=score_metric(name, truth, prediction, class_labels))
            )
        except (MetricUnavailable, ValueError, TypeError) as exc:
            values.append(MetricValue(metric=name, value=None, reason=str(exc)))
    return values


def label_delay(
    predictions: int, times: Sequence[tuple[float, float]], labelled: int | None = None
) -> LabelDelay:
    """How many of the window's predictions have labels (``labelled``; default: as many as
    ``times``), and how long after them they came, from the (prediction, label) ``times`` read
    (a label sent before its prediction was logged counts as no delay)."""
    count = len(times) if labelled is None else labelled
    if not times:
        words = (
            "No predictions in this window."
            if predictions == 0
            else f"None of the {predictions} predictions in this window has a label yet: "
            "realized quality is not known, only the estimate."
        )
        return LabelDelay(
            labelled=0,
            share=None if predictions == 0 else 0.0,
            median_s=None,
            p90_s=None,
            explanation=words,
        )
    delays = np.maximum(np.array([label - made for made, label in times]), 0.0)
    median, p90 = (float(v) for v in np.percentile(delays, [50, 90]))
    share = count / predictions if predictions else None
    return LabelDelay(
        labelled=count,
        share=share,
        median_s=median,
        p90_s=p90,
        explanation=(
            f"{count} of {predictions} predictions ({share or 0:.0%}) have labels; "
            f"they came {plain_duration(median)} after the prediction (median), 90% within "
            f"{plain_duration(p90)}. Until most have arrived, trust the estimate over the "
            "measured value."
        ),
    )


# ---------------------------------------------------------------- estimated


def _calibration_info(calibration: Calibration, source: str) -> CalibrationInfo:
    if not calibration.usable:
        words = f"No estimate can be made: {calibration.note}."
    elif calibration.method == "isotonic":
        words = (
            f"The model's probabilities were off by {calibration.ece_before:.3f} on average on "
            f"{source}; recalibrated on it (isotonic), they are off by "
            f"{calibration.ece_after:.3f} (measured on examples left out of the fit)."
        )
    else:
        words = (
            f"The model's probabilities are off by {calibration.ece_before:.3f} on average on "
            f"{source}, used as they are: {calibration.note or 'recalibrating did not help'}."
        )
    return CalibrationInfo(
        reference=source,
        reference_rows=calibration.reference_rows,
        method=calibration.method,
        error_before=calibration.ece_before,
        error_after=calibration.ece_after,
        error_limit=POOR_CALIBRATION_ECE,
        note=calibration.note,
        explanation=words,
    )


def _estimated(
    rows: Sequence[Any], calibration: Calibration, info: ModelVersionInfo
) -> EstimatedPerformance:
    # The realized metrics' names, so that each pairs with its estimate (or why there is none).
    names = realized_names(info.task, info.validity.metric)
    outputs = [row.outputs for row in rows]
    probabilities = [o.get("predict_proba") for o in outputs]
    width = len(calibration.classes)
    if any(p is None or len(p) != width for p in probabilities):
        reason = "some answers in this window carry no class probabilities"
        return EstimatedPerformance(
            supported=False,
            metrics=[MetricValue(metric=name, value=None, reason=reason) for name in names],
            trusted=False,
            warnings=[],
            explanation=f"Not estimated: {reason}.",
        )
    estimate = estimate_window(
        np.asarray(probabilities, dtype=np.float64).reshape(len(rows), width),
        [o.get("predict") for o in outputs],
        calibration,
    )
    metrics = [
        MetricValue(
            metric=name,
            value=estimate.metrics.get(name),
            reason=estimate.reasons.get(name) or NOT_ESTIMABLE.get(name),
        )
        for name in names
    ]
    return EstimatedPerformance(
        supported=True,
        metrics=metrics,
        trusted=estimate.trusted and estimate.rows > 0,
        warnings=estimate.warnings,
        explanation=_estimate_words(estimate, info),
    )


def _estimate_words(estimate: Estimate, info: ModelVersionInfo) -> str:
    if estimate.rows == 0:
        return "No predictions in this window: nothing to estimate."
    metric = info.validity.metric
    low, high = info.validity.acceptable_range
    value = estimate.metrics.get(metric)
    if value is None:  # the validity metric cannot be estimated (log loss): say accuracy's
        metric, value, advice = "accuracy", estimate.metrics.get("accuracy"), ""
    else:
        advice = f" If it leaves [{low:g}, {high:g}], check the Drift page."
    if not estimate.trusted:
        return (
            f"Estimated {metric} {value:.3f} from the model's own confidence on "
            f"{estimate.rows} predictions, but it cannot be trusted here: see the warnings, "
            "and wait for labels before acting."
        )
    return (
        f"Estimated {metric} {value:.3f} from the model's own confidence on {estimate.rows} "
        "predictions, before their labels arrive (it assumes the inputs still relate to the "
        f"outcomes as in the reference).{advice}"
    )


# ---------------------------------------------------------------- verdict


def verdict(
    info: ModelVersionInfo,
    realized: Sequence[MetricValue],
    estimated: EstimatedPerformance,
    labelled: int,
    min_labels: int,
) -> Verdict:
    """The validity metric against the acceptable range: measured when enough labels came,
    else estimated when the estimate can be trusted, else not judged."""
    metric = info.validity.metric
    low, high = info.validity.acceptable_range
    span = f"[{low:g}, {high:g}]"
    measured = next((m for m in realized if m.metric == metric), None)
    guessed = next((m for m in estimated.metrics if m.metric == metric), None)

    def judged(value: float, source: str, words: str) -> Verdict:
        inside = low <= value <= high
        advice = (
            "inside the acceptable range: nothing to do."
            if inside
            else "outside the acceptable range: the model does worse than when it was "
            "approved; check the Drift page, and consider rolling back."
        )
        return Verdict(
            metric=metric,
            acceptable_range=(low, high),
            value=value,
            source=source,  # type: ignore[arg-type]
            in_range=inside,
            explanation=f"{words} {metric} {value:.3f}, {span} {advice}",
        )

    if measured is not None and measured.value is not None:
        return judged(measured.value, "realized", f"Measured on {labelled} labelled predictions:")
    if guessed is not None and guessed.value is not None and estimated.trusted:
        return judged(
            guessed.value,
            "estimated",
            "Labels for this window have not arrived yet; from the model's own confidence, "
            "estimated",
        )
    why_not_measured = (
        measured.reason if measured is not None and measured.reason else "no labels yet"
    )
    if guessed is None or not estimated.supported:
        why_not_estimated = estimated.explanation.removeprefix("Not estimated: ").rstrip(".")
    elif guessed.value is None:
        why_not_estimated = guessed.reason or f"{metric} cannot be estimated"
    else:
        why_not_estimated = "the estimate cannot be trusted here"
    return Verdict(
        metric=metric,
        acceptable_range=(low, high),
        value=None,
        source=None,
        in_range=None,
        explanation=(
            f"Not judged yet: not measured ({why_not_measured}; {min_labels} labels needed) "
            f"and not estimated ({why_not_estimated}). Look again when labels arrive."
        ),
    )
