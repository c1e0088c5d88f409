"""A version's feedback-loop report: the six indicators over a span of time windows, served
traffic (routes active and canary) against held-out traffic (route held_out).

Read from stored aggregates only (``data``): the labelled-outcome counts kept at label time and
the drift window counts, so a report costs in proportion to the windows it reads. The
thresholds are the model's ``feedback_loop`` alert rule (its ``threshold`` alerts, half of it
warns; its ``min_count`` is the labels each side needs).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from backend.errors import InputError
from backend.monitoring.feedback_loops.answers import (
    exposure_concentration,
    prediction_bias,
    selective_labels,
)
from backend.monitoring.feedback_loops.data import Window, read_windows, total, window_bounds
from backend.monitoring.feedback_loops.indicators import (
    CONFUSION_METRICS,
    Context,
    label_drift,
    outcome_rate_gap,
    performance_gap,
)
from backend.monitoring.feedback_loops.statistics import worst
from backend.monitoring.rules import DEFAULT_RULES, RuleStore
from backend.predictions.loop_counts import MISSING, reference_slicers
from backend.predictions.summary_layout import category_text
from backend.schemas import (
    AlertKind,
    AlertRule,
    ExposureConcentration,
    FeedbackLoopReport,
    HeldOutStatus,
    Indicator,
    LabelDrift,
    LoopStatus,
    LoopThresholds,
    ModelVersionInfo,
    OutcomeRateGap,
    PerformanceGap,
    PredictionBias,
    SelectiveLabels,
)

RULE_KIND: AlertKind = "feedback_loop"


def thresholds(rules: RuleStore, model: str) -> tuple[AlertRule, LoopThresholds]:
    """The model's feedback_loop rule and the thresholds it sets, in words."""
    found = rules.rules(model)
    rule = next((r for r in found.rules if r.kind == RULE_KIND), DEFAULT_RULES[RULE_KIND])
    alert_at = rule.threshold if rule.threshold is not None else 0.1
    customized = RULE_KIND in found.customized
    return rule, LoopThresholds(
        alert_at=alert_at,
        warn_at=alert_at / 2,
        min_labels=rule.min_count,
        customized=customized,
        explanation=(
            f"An indicator alerts when served and held-out traffic differ by {alert_at:.0%} or "
            f"more (for label drift: {alert_at:.0%} of the labels in another class) and warns from "
            f"{alert_at / 2:.0%}, only when the 95% interval excludes no difference and each "
            f"side has {rule.min_count} labels; "
            + ("this model's own setting" if customized else "the default")
            + " (edit the feedback_loop alert rule to change it)."
        ),
    )


def loop_context(
    session: Session,
    model: str,
    info: ModelVersionInfo,
    rule_thresholds: LoopThresholds,
    outcome: str | None,
    slice_feature: str | None,
) -> Context:
    """What the indicators need to know of the version; refuses an outcome or slice feature
    that it does not have (naming the field)."""
    classes = [category_text(c) or MISSING for c in info.class_labels or []]
    names = dict(zip(classes, info.class_names or [], strict=False))
    chosen: str | None = None
    if info.task == "classification" and classes:
        chosen = classes[-1]
        if outcome is not None:
            by_name = {name: c for c, name in names.items()}
            chosen = outcome if outcome in classes else by_name.get(outcome)
            if chosen is None:
                raise InputError(
                    f"{outcome!r} is not a class of version {info.version}; classes: "
                    + ", ".join(f"{c} ({names[c]})" if c in names else c for c in classes),
                    "outcome",
                )
    elif outcome is not None:
        raise InputError("a regression model has no outcome class", "outcome")
    slicers = reference_slicers(session, model, info.version)
    features = [spec.name for spec in info.signature if spec.name in slicers]
    slicer = None
    if slice_feature is not None:
        if slice_feature not in slicers:
            raise InputError(
                f"{slice_feature!r} is not a feature of version {info.version} that can be "
                f"sliced; features: {', '.join(features) or 'none'}",
                "slice_feature",
            )
        slicer = slicers[slice_feature]
    elif features:
        slicer = slicers[features[0]]
    metric = info.validity.metric if info.validity.metric in CONFUSION_METRICS else "accuracy"
    return Context(
        task=info.task,
        classes=classes,
        names=names,
        outcome=chosen,
        metric=metric,
        warn_at=rule_thresholds.warn_at,
        alert_at=rule_thresholds.alert_at,
        min_labels=rule_thresholds.min_labels,
        slicer=slicer,
        features=features,
    )


@dataclass(frozen=True)
class Indicators:
    """The six indicators of one span, with what they were computed on."""

    bounds: list[tuple[float, float]]
    context: Context
    thresholds: LoopThresholds
    whole: Window
    outcome_rate_gap: OutcomeRateGap
    performance_gap: PerformanceGap
    label_drift: LabelDrift
    selective_labels: SelectiveLabels
    prediction_bias: PredictionBias
    exposure_concentration: ExposureConcentration

    @property
    def all(self) -> list[Indicator]:
        return [
            self.outcome_rate_gap,
            self.performance_gap,
            self.label_drift,
            self.selective_labels,
            self.prediction_bias,
            self.exposure_concentration,
        ]

    @property
    def status(self) -> LoopStatus:
        return worst([i.status for i in self.all])


def compute_indicators(
    sessions: sessionmaker[Session],
    rules: RuleStore,
    model: str,
    info: ModelVersionInfo,
    bounds: list[tuple[float, float]],
    outcome: str | None = None,
    slice_feature: str | None = None,
) -> Indicators:
    """The indicators over ``bounds`` (consecutive windows, oldest first)."""
    _rule, limits = thresholds(rules, model)
    with sessions() as session:
        ctx = loop_context(session, model, info, limits, outcome, slice_feature)
        feature = ctx.slicer.feature if ctx.slicer else None
        read = read_windows(session, model, info.version, bounds, feature)
    whole = total(read)
    return Indicators(
        bounds=bounds,
        context=ctx,
        thresholds=limits,
        whole=whole,
        outcome_rate_gap=outcome_rate_gap(whole, read, ctx),
        performance_gap=performance_gap(whole, read, ctx),
        label_drift=label_drift(whole, read, ctx),
        selective_labels=selective_labels(whole, read, ctx),
        prediction_bias=prediction_bias(whole, read, ctx),
        exposure_concentration=exposure_concentration(whole, read, ctx),
    )


def feedback_loop_report(
    sessions: sessionmaker[Session],
    rules: RuleStore,
    model: str,
    info: ModelVersionInfo,
    held_out: HeldOutStatus,
    *,
    window_s: int,
    windows: int,
    end: float | None = None,
    outcome: str | None = None,
    slice_feature: str | None = None,
) -> FeedbackLoopReport:
    bounds = window_bounds(time.time() if end is None else end, window_s, windows)
    found = compute_indicators(sessions, rules, model, info, bounds, outcome, slice_feature)
    raised = [i for i in found.all if i.status != "ok"]
    if raised:
        summary = (
            "Signs of a feedback loop: "
            + "; ".join(f"{i.title} ({i.status})" for i in raised)
            + ". Each card says what it means and what to do."
        )
    elif held_out.settings is None or found.whole.held_out.predictions == 0:
        summary = (
            "No held-out traffic in this span: without it nothing can be compared. Set a "
            "held-out share (Deployments page or `servedeck-server held-out`)."
        )
    else:
        summary = "No sign of a feedback loop: served and held-out traffic look alike."
    return FeedbackLoopReport(
        model=model,
        version=info.version,
        task=info.task,
        classes=found.context.classes,
        outcome=found.context.outcome,
        window_s=int(bounds[0][1] - bounds[0][0]),
        windows=windows,
        start=datetime.fromtimestamp(bounds[0][0], UTC),
        end=datetime.fromtimestamp(bounds[-1][1], UTC),
        status=found.status,
        explanation=summary,
        thresholds=found.thresholds,
        held_out=held_out,
        outcome_rate_gap=found.outcome_rate_gap,
        performance_gap=found.performance_gap,
        label_drift=found.label_drift,
        selective_labels=found.selective_labels,
        prediction_bias=found.prediction_bias,
        exposure_concentration=found.exposure_concentration,
    )
