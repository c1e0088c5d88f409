"""Wire types of the feedback-loop indicators: served traffic against held-out traffic.

Every indicator compares what happens on the traffic the model's answers shaped ("served":
routes active and canary) with the traffic a no-model policy answered ("held out"). Each has
a status, its numbers with 95% confidence intervals, how much data it rests on, a plain-words
explanation (what it means, what to do) and a trend (one point per time window).

Route: ``GET /api/v1/models/{name}/feedback-loops`` (token with read_predictions on the model)
with the performance report's query parameters ``version`` (default: the serving one),
``window_s`` (60 s to a week, default 3600), ``windows`` (1 to 48, default 24; the newest
last), ``end`` (Unix seconds inside the newest window; default now), plus ``outcome`` (a class
of the version; default its last class) and ``slice_feature`` (a feature of the version;
default its first). Answers ``FeedbackLoopReport``; the headline numbers cover all the
windows together, each indicator's ``trend`` has one point per window. The thresholds are the
model's ``feedback_loop`` alert rule (``PUT /api/v1/models/{name}/alert-rules``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from backend.schemas.common import UtcDateTime
from backend.schemas.drift import DecidedBy
from backend.schemas.held_out import HeldOutStatus

# ok: no sign of a loop (also when too little data: ``enough_data`` says so); warn: a gap
# whose confidence interval excludes none and at least half the alert threshold; alert: at
# least the threshold.
LoopStatus = Literal["ok", "warn", "alert"]
# The longest span (window length x windows) one report covers: it reads every minute of it.
MAX_REPORT_SPAN_S = 14 * 86_400
IndicatorName = Literal[
    "outcome_rate_gap",
    "performance_gap",
    "label_drift",
    "selective_labels",
    "prediction_bias",
    "exposure_concentration",
]
INDICATOR_NAMES: tuple[IndicatorName, ...] = (
    "outcome_rate_gap",
    "performance_gap",
    "label_drift",
    "selective_labels",
    "prediction_bias",
    "exposure_concentration",
)


class Interval(BaseModel):
    """A number with its 95% confidence interval; all None when it cannot be computed."""

    value: float | None = None
    low: float | None = None
    high: float | None = None


class DataBasis(BaseModel):
    """How much data an indicator rests on, per side."""

    served_predictions: int = 0
    held_out_predictions: int = 0
    served_labels: int = 0
    held_out_labels: int = 0


class TrendPoint(BaseModel):
    """One time window of an indicator's trend (the same measure as its headline)."""

    start: UtcDateTime
    end: UtcDateTime
    served: float | None = None
    held_out: float | None = None
    # served - held_out (label drift: the total variation distance between the label mixes).
    gap: float | None = None
    # What the window's values rest on (labels, or predictions for exposure).
    served_count: int = 0
    held_out_count: int = 0


class Indicator(BaseModel):
    """What every indicator card shows.

    ``served``, ``held_out`` and ``gap`` are the headline numbers over the report's whole span
    (what they measure is in ``measure``, in words); ``gap`` is served minus held out, except
    for label drift where it is the total variation distance between the two label mixes (the
    share of labels that would have to change class; 0: same, 1: disjoint).
    """

    name: IndicatorName
    title: str
    # False: the indicator does not apply to this model (a regression model's classes, ...);
    # ``explanation`` says why, and the status is ok.
    applicable: bool = True
    # False: too few labels (or predictions) on one side to judge; the status is ok.
    enough_data: bool = True
    status: LoopStatus = "ok"
    measure: str = ""
    served: Interval = Field(default_factory=Interval)
    held_out: Interval = Field(default_factory=Interval)
    gap: Interval = Field(default_factory=Interval)
    # The effect sizes (absolute, same unit as ``gap``) at which it warns and alerts.
    warn_at: float
    alert_at: float
    data: DataBasis = Field(default_factory=DataBasis)
    explanation: str
    trend: list[TrendPoint] = Field(default_factory=list)


class OutcomeRateGap(Indicator):
    name: Literal["outcome_rate_gap"] = "outcome_rate_gap"
    outcome: str | None = None


class PerformanceGap(Indicator):
    name: Literal["performance_gap"] = "performance_gap"
    # accuracy, or precision / recall / f1 of the outcome class against the rest.
    metric: str = "accuracy"


class ClassCounts(BaseModel):
    label: str
    served: int
    held_out: int


class LabelDrift(Indicator):
    name: Literal["label_drift"] = "label_drift"
    classes: list[ClassCounts] = Field(default_factory=list)
    # Chi-square test of independence of (side, label class); None when not computable.
    chi2: float | None = None
    p_value: float | None = None
    # Jensen-Shannon distance (base 2) between the two label mixes, as drift reports it.
    js_distance: float | None = None
    decided_by: DecidedBy | None = None


class AnswerCoverage(BaseModel):
    """How many of the predictions answering one class received a label, per side."""

    answer: str
    served_predictions: int
    served_labelled: int
    served_coverage: Interval
    held_out_predictions: int
    held_out_labelled: int
    held_out_coverage: Interval
    # served coverage - held-out coverage.
    gap: Interval


class InfluenceCounts(BaseModel):
    """How the labels of one class were marked: could the model's answer have decided them?"""

    label: str
    influenced: int
    not_influenced: int
    unknown: int


class SelectiveLabels(Indicator):
    name: Literal["selective_labels"] = "selective_labels"
    by_answer: list[AnswerCoverage] = Field(default_factory=list)
    influence: list[InfluenceCounts] = Field(default_factory=list)
    # Of the served predictions that would carry a label at held-out coverage (the retraining
    # data as it should be), the share whose label is missing, or there, only because of the
    # model's answer: sum over answers whose coverage gap is flagged of |gap| x served
    # predictions, over sum of held-out coverage x served predictions. None: nothing to compare.
    decided_by_model_share: float | None = None


class SliceSide(BaseModel):
    labelled: int
    mean_predicted: float | None
    observed: Interval
    # mean predicted - observed rate.
    bias: Interval


class SliceBias(BaseModel):
    # The bin in words: "(12.5, 40]", "<= 3", "> 900", a category, "(other)", "(missing)".
    slice: str
    served: SliceSide
    held_out: SliceSide
    # served bias - held-out bias.
    gap: Interval


class PredictionBias(Indicator):
    name: Literal["prediction_bias"] = "prediction_bias"
    outcome: str | None = None
    feature: str | None = None
    feature_kind: Literal["numerical", "categorical"] | None = None
    # Every feature of the version that can be chosen as ``slice_feature``.
    features: list[str] = Field(default_factory=list)
    slices: list[SliceBias] = Field(default_factory=list)


class AnswerShare(BaseModel):
    answer: str
    served: int
    held_out: int


class ExposureConcentration(Indicator):
    name: Literal["exposure_concentration"] = "exposure_concentration"
    # The most common answer on served traffic; ``served``/``held_out`` are its share.
    top_answer: str | None = None
    answers: list[AnswerShare] = Field(default_factory=list)
    # Normalised Herfindahl index of the answer shares (0: even spread, 1: all one answer).
    served_concentration: float | None = None
    held_out_concentration: float | None = None


class LoopThresholds(BaseModel):
    """The effect sizes that warn and alert (the model's ``feedback_loop`` alert rule)."""

    alert_at: float
    warn_at: float
    # Labels each side needs before an indicator is judged.
    min_labels: int
    # The rule is customised for this model (else the default).
    customized: bool
    explanation: str


class FeedbackLoopReport(BaseModel):
    model: str
    version: str
    task: Literal["classification", "regression"]
    classes: list[str] = Field(default_factory=list)
    # The outcome class (classifiers): the chosen ``outcome``, else the last class.
    outcome: str | None = None
    window_s: int
    windows: int
    start: UtcDateTime
    end: UtcDateTime
    # The worst indicator's status, and a summary in words.
    status: LoopStatus
    explanation: str
    thresholds: LoopThresholds
    held_out: HeldOutStatus
    outcome_rate_gap: OutcomeRateGap
    performance_gap: PerformanceGap
    label_drift: LabelDrift
    selective_labels: SelectiveLabels
    prediction_bias: PredictionBias
    exposure_concentration: ExposureConcentration
