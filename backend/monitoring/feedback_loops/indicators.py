"""What every feedback-loop indicator shares (the version's context, trends, the data it rests
on, words), and the three about outcomes and labels: the outcome-rate gap, measured
performance and label drift. The three about the model's answers are in ``answers``. Each is
computed from one window's (or the whole span's) served and held-out numbers, with its
status, intervals and explanation in plain words."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from backend.monitoring.feedback_loops.data import Side, Window
from backend.monitoring.feedback_loops.statistics import (
    LARGE_SAMPLE,
    f1_intervals,
    judge,
    label_drift_test,
    newcombe,
    total_variation,
    total_variation_interval,
    wilson,
)
from backend.predictions.loop_counts import Slicer
from backend.schemas import (
    ClassCounts,
    DataBasis,
    Interval,
    LabelDrift,
    LoopStatus,
    OutcomeRateGap,
    PerformanceGap,
    TrendPoint,
)

# The metrics that confusion counts give: a version's gate metric where it is one of them.
CONFUSION_METRICS = ("accuracy", "precision", "recall", "f1")
REGRESSION = (
    "Not for a regression model: it compares classes (outcome rates, answers), and a "
    "regression model's answers and labels are numbers."
)


@dataclass(frozen=True)
class Context:
    task: str
    classes: list[str]
    # Class (as text) -> its name in words, where the version names its classes.
    names: dict[str, str]
    outcome: str | None
    metric: str
    warn_at: float
    alert_at: float
    min_labels: int
    slicer: Slicer | None = None
    features: list[str] = field(default_factory=list)

    def word(self, value: str | None) -> str:
        if value is None:
            return "none"
        name = self.names.get(value)
        return f"{name!r} ({value})" if name and name != value else repr(value)

    @property
    def limits(self) -> str:
        return (
            f"It warns from a gap of {self.warn_at:.0%} and alerts from {self.alert_at:.0%} "
            f"(the model's feedback_loop alert rule), and only when the 95% interval of the gap "
            f"excludes no gap and each side has at least {self.min_labels} labels."
        )

    @property
    def classifier(self) -> bool:
        return self.task == "classification"


Measure = Callable[[Window], tuple[float | None, float | None, float | None, int, int]]


def trend(windows: list[Window], measure: Measure) -> list[TrendPoint]:
    points = []
    for window in windows:
        served, held_out, gap, served_count, held_count = measure(window)
        points.append(
            TrendPoint(
                start=datetime.fromtimestamp(window.start, UTC),
                end=datetime.fromtimestamp(window.end, UTC),
                served=served,
                held_out=held_out,
                gap=gap,
                served_count=served_count,
                held_out_count=held_count,
            )
        )
    return points


def basis(whole: Window) -> DataBasis:
    return DataBasis(
        served_predictions=whole.served.predictions,
        held_out_predictions=whole.held_out.predictions,
        served_labels=whole.served.labelled,
        held_out_labels=whole.held_out.labelled,
    )


def common_fields(whole: Window, ctx: Context) -> dict[str, Any]:
    """The fields every indicator fills alike."""
    return {"warn_at": ctx.warn_at, "alert_at": ctx.alert_at, "data": basis(whole)}


def enough_labels(whole: Window, ctx: Context) -> bool:
    return min(whole.served.labelled, whole.held_out.labelled) >= ctx.min_labels


def too_little(whole: Window, ctx: Context) -> str:
    return (
        f"Too little data to judge yet: {whole.served.labelled} labels on served and "
        f"{whole.held_out.labelled} on held-out traffic, {ctx.min_labels} needed on each side. "
        "Wait for labels (or raise the held-out share)."
    )


def pct(interval: Interval) -> str:
    if interval.value is None:
        return "n/a"
    return f"{interval.value:.1%} [{interval.low or 0:.1%}, {interval.high or 0:.1%}]"


# ---------------------------------------------------------------- outcome-rate gap


def _rate(side: Side, outcome: str) -> Interval:
    return wilson(side.labels_of(outcome), side.labelled)


def outcome_rate_gap(whole: Window, windows: list[Window], ctx: Context) -> OutcomeRateGap:
    common = common_fields(whole, ctx)
    title = "Outcome rate, served against held out"
    if not ctx.classifier or ctx.outcome is None:
        return OutcomeRateGap(title=title, applicable=False, explanation=REGRESSION, **common)
    outcome = ctx.outcome
    served, held = _rate(whole.served, outcome), _rate(whole.held_out, outcome)
    gap = newcombe(served, held)
    enough = enough_labels(whole, ctx)
    status = judge(gap, ctx.warn_at, ctx.alert_at, enough)

    def measure(w: Window) -> tuple[float | None, float | None, float | None, int, int]:
        s, h = _rate(w.served, outcome), _rate(w.held_out, outcome)
        g = s.value - h.value if s.value is not None and h.value is not None else None
        return s.value, h.value, g, w.served.labelled, w.held_out.labelled

    meaning = (
        f"The share of labelled predictions whose label is {ctx.word(outcome)}: on served "
        f"traffic {pct(served)}, on held-out traffic {pct(held)}, gap {pct(gap)}. Held-out "
        "traffic was answered without the model, so it shows the rate the world has; a served "
        "rate far from it means the model's answers change which outcomes happen or get "
        "recorded (a blocked transaction never gets a chargeback). "
    )
    advice = {
        "ok": "No sign of that here.",
        "warn": "Watch it: look at the selective-labels card for which answers lose labels.",
        "alert": "Do not retrain on served labels alone: they under- or over-state this "
        "outcome. Use held-out labels (or the review queue) to measure and retrain.",
    }[status]
    return OutcomeRateGap(
        title=title,
        outcome=outcome,
        enough_data=enough,
        status=status,
        measure=f"share of labels that are {ctx.word(outcome)}",
        served=served,
        held_out=held,
        gap=gap,
        explanation=(meaning + (advice if enough else too_little(whole, ctx)) + " " + ctx.limits),
        trend=trend(windows, measure),
        **common,
    )


# ---------------------------------------------------------------- performance


def _metric_proportion(side: Side, ctx: Context) -> Interval:
    outcome = ctx.outcome or ""
    if ctx.metric == "accuracy":
        return wilson(sum(side.confusion(c, c) for c in ctx.classes), side.labelled)
    if ctx.metric == "precision":
        return wilson(side.confusion(outcome, outcome), side.labelled_answers(outcome))
    return wilson(side.confusion(outcome, outcome), side.labels_of(outcome))  # recall


def _binary(side: Side, outcome: str) -> list[int]:
    tp = side.confusion(outcome, outcome)
    fp = side.labelled_answers(outcome) - tp
    fn = side.labels_of(outcome) - tp
    return [tp, fp, fn, max(side.labelled - tp - fp - fn, 0)]


def _performance(side_s: Side, side_h: Side, ctx: Context) -> tuple[Interval, Interval, Interval]:
    if ctx.metric == "f1":
        outcome = ctx.outcome or ""
        return f1_intervals(_binary(side_s, outcome), _binary(side_h, outcome))
    served, held = _metric_proportion(side_s, ctx), _metric_proportion(side_h, ctx)
    return served, held, newcombe(served, held)


def performance_gap(whole: Window, windows: list[Window], ctx: Context) -> PerformanceGap:
    common = common_fields(whole, ctx)
    title = "Measured performance, served against held out"
    if not ctx.classifier or ctx.outcome is None:
        return PerformanceGap(title=title, applicable=False, explanation=REGRESSION, **common)
    served, held, gap = _performance(whole.served, whole.held_out, ctx)
    enough = enough_labels(whole, ctx)
    status = judge(gap, ctx.warn_at, ctx.alert_at, enough)

    def measure(w: Window) -> tuple[float | None, float | None, float | None, int, int]:
        s, h, g = _performance(w.served, w.held_out, ctx)
        return s.value, h.value, g.value, w.served.labelled, w.held_out.labelled

    name = ctx.metric if ctx.metric == "accuracy" else f"{ctx.metric} of {ctx.word(ctx.outcome)}"
    direction = ""
    if gap.value is not None and status != "ok":
        direction = (
            "The model looks better on the traffic it influences: the classic sign of a "
            "feedback loop (its answers decide which cases are labelled, and those are the "
            "ones it gets right). "
            if gap.value > 0
            else "The model looks worse on the traffic it influences: its answers remove "
            "labels of the cases it gets right (or add labels of those it gets wrong). "
        )
    advice = {
        "ok": "No sign of a loop in the measured quality.",
        "warn": "Watch it; trust the held-out measurement over the served one.",
        "alert": "Judge the model (and any retrained version) on held-out labels only: the "
        "served measurement is biased by the model's own answers.",
    }[status]
    return PerformanceGap(
        title=title,
        metric=ctx.metric,
        enough_data=enough,
        status=status,
        measure=name,
        served=served,
        held_out=held,
        gap=gap,
        explanation=(
            f"The model's {name} measured on labelled served traffic is {pct(served)}, on "
            f"held-out traffic {pct(held)} (gap {pct(gap)}). "
            + direction
            + (advice if enough else too_little(whole, ctx))
            + " "
            + ctx.limits
        ),
        trend=trend(windows, measure),
        **common,
    )


# ---------------------------------------------------------------- label drift


def _label_counts(side: Side, ctx: Context) -> list[int]:
    return [side.labels_of(c) for c in ctx.classes]


def label_drift(whole: Window, windows: list[Window], ctx: Context) -> LabelDrift:
    common = common_fields(whole, ctx)
    title = "Label drift, served against held out"
    if not ctx.classifier:
        return LabelDrift(title=title, applicable=False, explanation=REGRESSION, **common)
    served, held = _label_counts(whole.served, ctx), _label_counts(whole.held_out, ctx)
    chi2, p_value, distance = label_drift_test(served, held)
    size = total_variation(served, held)
    enough = enough_labels(whole, ctx)
    large = min(sum(served), sum(held)) >= LARGE_SAMPLE
    status: LoopStatus = "ok"
    # The chi-square test says whether the mixes differ beyond chance, the total variation
    # distance (a share, as the other gaps) by how much. The Jensen-Shannon distance is shown
    # but not judged: for a rare class it is large next to its noise (1.7% against 0.8% is
    # 0.06), so a threshold on it would raise chance differences.
    if enough and size is not None and p_value is not None and p_value < 0.05:
        status = "alert" if size >= ctx.alert_at else "warn" if size >= ctx.warn_at else "ok"

    def measure(w: Window) -> tuple[float | None, float | None, float | None, int, int]:
        s, h = _label_counts(w.served, ctx), _label_counts(w.held_out, ctx)
        return None, None, total_variation(s, h), sum(s), sum(h)

    shares = ", ".join(
        f"{ctx.word(c)} {s / max(sum(served), 1):.1%} against {h / max(sum(held), 1):.1%}"
        for c, s, h in zip(ctx.classes, served, held, strict=True)
    )
    test = f"chi-square p = {p_value:.3g}" if p_value is not None else "not testable yet"
    advice = {
        "ok": "The labels are spread alike on both sides (or the difference is within chance).",
        "warn": "Watch it: the labels the model's traffic produces are not the world's.",
        "alert": "Retraining on served labels would teach the model a class mix the world "
        "does not have: weigh or replace them with held-out labels.",
    }[status]
    return LabelDrift(
        title=title,
        enough_data=enough,
        status=status,
        measure="total variation distance between the label mixes (share of labels)",
        gap=total_variation_interval(served, held),
        classes=[
            ClassCounts(label=c, served=s, held_out=h)
            for c, s, h in zip(ctx.classes, served, held, strict=True)
        ],
        chi2=chi2,
        p_value=p_value,
        js_distance=distance,
        decided_by=None if size is None else ("effect_size" if large else "p_value"),
        explanation=(
            f"How the labels are spread over the classes, served against held out: {shares}; "
            f"they differ by {size or 0:.1%} of the labels ({test}; Jensen-Shannon distance "
            f"{distance or 0:.3f}). "
            + (advice if enough else too_little(whole, ctx))
            + f" It warns from {ctx.warn_at:.0%} and alerts from {ctx.alert_at:.0%} of the "
            "labels (the feedback_loop rule's threshold), only when the difference is "
            f"significant (p < 0.05) and each side has {ctx.min_labels} labels."
        ),
        trend=trend(windows, measure),
        **common,
    )
