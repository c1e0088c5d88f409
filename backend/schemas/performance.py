"""Wire types of performance: realized metrics from labels, estimates before labels arrive."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from backend.schemas.common import Metric, UtcDateTime
from backend.schemas.feedback_loops import Interval

MetricSource = Literal["realized", "estimated"]


class MetricValue(BaseModel):
    metric: str
    # None: not computed; ``reason`` says why (too few labels, undefined on them, ...).
    value: float | None
    reason: str | None = None


class LabelDelay(BaseModel):
    """How many of a window's predictions have labels yet, and how late they came."""

    labelled: int
    # Of the window's predictions; None for a window without predictions.
    share: float | None
    # Seconds from the prediction to its label (None without labels).
    median_s: float | None
    p90_s: float | None
    explanation: str


class CalibrationInfo(BaseModel):
    """What the labelled reference says about the model's probabilities (classifiers)."""

    # Where the labelled reference came from ("confidence set of version 1", ...).
    reference: str
    reference_rows: int
    method: Literal["isotonic", "none"]
    # Expected calibration error (mean |probability - observed rate| over 10 equal-count bins;
    # the larger of the answers' own chance against how often they are right and each class's
    # probability against how often it is the truth) of the raw probabilities, and of the
    # calibrated ones measured out of fold.
    error_before: float | None
    error_after: float | None
    # The limit above which the estimate is flagged as untrustworthy.
    error_limit: float
    note: str = ""
    explanation: str


class EstimatedPerformance(BaseModel):
    """Metrics expected from the model's own calibrated confidence (NannyML's CBPE)."""

    supported: bool
    metrics: list[MetricValue]
    trusted: bool
    warnings: list[str]
    explanation: str


class Verdict(BaseModel):
    """The validity metric of the window against the version's acceptable range."""

    metric: Metric
    acceptable_range: tuple[float, float]
    value: float | None
    source: MetricSource | None
    # None: not judged (too few labels and no estimate to trust).
    in_range: bool | None
    explanation: str


class SignalRate(BaseModel):
    """How often users undid the model's answer, or complained about it, in one window."""

    kind: Literal["undo", "complaint"]
    # Signals about the window's answered predictions (counted by the prediction's time).
    signals: int
    # Signals per answered prediction, with its 95% Wilson interval (all None without
    # predictions).
    rate: Interval


class UserSignals(BaseModel):
    """User signals about one window's predictions answered by the version (active and canary
    traffic; a shadow's answers were never seen, held-out ones were not the model's)."""

    predictions: int
    rates: list[SignalRate]
    explanation: str


class PerformanceWindow(BaseModel):
    start: UtcDateTime
    end: UtcDateTime
    # The window is still running (its end lies in the future).
    partial: bool
    predictions: int
    # Predictions the metrics were computed on: fewer than ``predictions`` only in a window
    # larger than one read takes (10,000, or 120,000 shared by the report's windows; the
    # earliest ones are used).
    read: int
    label_delay: LabelDelay
    realized: list[MetricValue]
    estimated: EstimatedPerformance
    verdict: Verdict
    user_signals: UserSignals


class PerformanceReport(BaseModel):
    model: str
    version: str
    task: Literal["classification", "regression"]
    metric: Metric
    acceptable_range: tuple[float, float]
    window_s: int
    # Labels a window needs before its realized metrics are computed.
    min_labels: int
    calibration: CalibrationInfo | None
    windows: list[PerformanceWindow]
