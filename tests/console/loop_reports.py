"""A feedback-loop report as the backend's wire types hold it, for the widget tests: a fraud
model whose served traffic shows far less fraud than its held-out traffic (a loop)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from backend.schemas.feedback_loops import (
    AnswerCoverage,
    DataBasis,
    ExposureConcentration,
    FeedbackLoopReport,
    Interval,
    LabelDrift,
    LoopThresholds,
    OutcomeRateGap,
    PerformanceGap,
    PredictionBias,
    SelectiveLabels,
    SliceBias,
    SliceSide,
    TrendPoint,
)
from backend.schemas.held_out import (
    DefaultPolicy,
    HeldOutCoverage,
    HeldOutSettings,
    HeldOutStatus,
)

START = datetime(2026, 12, 3, 0, 0, tzinfo=UTC)
WINDOWS = 6
BASIS = DataBasis(
    served_predictions=12_000, held_out_predictions=250, served_labels=8_000, held_out_labels=240
)


def trend(served: list[float | None], held_out: list[float | None]) -> list[TrendPoint]:
    return [
        TrendPoint(
            start=START + timedelta(hours=i),
            end=START + timedelta(hours=i + 1),
            served=s,
            held_out=h,
            gap=s - h if s is not None and h is not None else None,
            served_count=100,
            held_out_count=10,
        )
        for i, (s, h) in enumerate(zip(served, held_out, strict=True))
    ]


def around(value: float, half_width: float) -> Interval:
    return Interval(value=value, low=value - half_width, high=value + half_width)


def _side(bias: float) -> SliceSide:
    return SliceSide(
        labelled=50, mean_predicted=0.1, observed=around(0.1, 0.02), bias=around(bias, 0.02)
    )


def loop_report() -> FeedbackLoopReport:
    common = {"warn_at": 0.05, "alert_at": 0.1, "data": BASIS}
    return FeedbackLoopReport(
        model="toy",
        version="1",
        task="classification",
        classes=["legit", "fraud"],
        outcome="fraud",
        window_s=3600,
        windows=WINDOWS,
        start=START,
        end=START + timedelta(hours=WINDOWS),
        status="alert",
        explanation="Fraud is rarer where the model answered.",
        thresholds=LoopThresholds(
            alert_at=0.1, warn_at=0.05, min_labels=30, customized=False, explanation="default"
        ),
        held_out=HeldOutStatus(
            model="toy",
            settings=HeldOutSettings(
                share_percent=2.0, policy=DefaultPolicy(kind="default", answer=0)
            ),
            coverage=HeldOutCoverage(since=0, requests=250, entities=200, all_requests=12_250),
            explanation="2% of the entities are held out.",
        ),
        outcome_rate_gap=OutcomeRateGap(
            title="Outcome rate gap",
            status="alert",
            measure="fraud rate",
            served=Interval(value=0.012, low=0.010, high=0.014),
            held_out=Interval(value=0.041, low=0.032, high=0.050),
            gap=Interval(value=-0.029, low=-0.039, high=-0.019),
            explanation="Blocked transactions never get a chargeback: retrain on held-out labels.",
            trend=trend([0.02, 0.018, 0.015, 0.013, 0.012, None], [0.04] * 5 + [0.042]),
            outcome="fraud",
            **common,
        ),
        performance_gap=PerformanceGap(
            title="Performance gap",
            status="warn",
            measure="accuracy",
            served=around(0.95, 0.01),
            held_out=around(0.88, 0.03),
            gap=around(0.07, 0.03),
            explanation="The model measures better where it answered.",
            trend=trend([0.95] * WINDOWS, [0.88] * WINDOWS),
            **common,
        ),
        label_drift=LabelDrift(
            title="Label drift",
            measure="label mix",
            gap=around(0.03, 0.02),
            explanation="The label mixes are alike.",
            trend=trend([None] * WINDOWS, [None] * WINDOWS),
            **common,
        ),
        selective_labels=SelectiveLabels(
            title="Selective labels",
            enough_data=False,
            measure="label coverage",
            explanation="Too few held-out labels yet.",
            by_answer=[
                AnswerCoverage(
                    answer="fraud",
                    served_predictions=100,
                    served_labelled=3,
                    served_coverage=around(0.03, 0.01),
                    held_out_predictions=10,
                    held_out_labelled=9,
                    held_out_coverage=around(0.9, 0.05),
                    gap=around(-0.87, 0.05),
                )
            ],
            decided_by_model_share=0.4,
            **common,
        ),
        prediction_bias=PredictionBias(
            title="Prediction bias",
            measure="bias",
            served=around(0.01, 0.01),
            held_out=around(-0.01, 0.01),
            gap=around(0.02, 0.01),
            explanation="No slice is biased.",
            feature="amount",
            feature_kind="numerical",
            features=["amount", "age"],
            outcome="fraud",
            slices=[
                SliceBias(
                    slice="<= 10", served=_side(0.01), held_out=_side(0.0), gap=around(0.01, 0.02)
                ),
                SliceBias(
                    slice="> 10", served=_side(0.03), held_out=_side(-0.02), gap=around(0.05, 0.03)
                ),
            ],
            trend=trend([0.01] * WINDOWS, [0.0] * WINDOWS),
            **common,
        ),
        exposure_concentration=ExposureConcentration(
            title="Exposure concentration",
            measure="share of the top answer",
            served=around(0.97, 0.01),
            held_out=around(0.95, 0.01),
            gap=around(0.02, 0.01),
            explanation="Answers are spread as on held-out traffic.",
            top_answer="legit",
            trend=trend([0.97] * WINDOWS, [0.95] * WINDOWS),
            **common,
        ),
    )
