"""The six feedback-loop indicators, each computed from one window's (or the whole span's)
served and held-out numbers, with its status, intervals and explanation in plain words."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from backend.monitoring.feedback_loops.data import Side, Window
from backend.monitoring.feedback_loops.statistics import (
    LARGE_SAMPLE,
    NO_INTERVAL,
    concentration,
    f1_intervals,
    judge,
    label_drift_test,
    newcombe,
    shifted,
    total_variation,
    wilson,
    worst,
)
from backend.predictions.loop_counts import Slicer
from backend.schemas import (
    AnswerCoverage,
    AnswerShare,
    ClassCounts,
    DataBasis,
    ExposureConcentration,
    InfluenceCounts,
    Interval,
    LabelDrift,
    LoopStatus,
    OutcomeRateGap,
    PerformanceGap,
    PredictionBias,
    SelectiveLabels,
    SliceBias,
    SliceSide,
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


def _common(whole: Window, ctx: Context) -> dict[str, Any]:
    """The fields every indicator fills alike."""
    return {"warn_at": ctx.warn_at, "alert_at": ctx.alert_at, "data": basis(whole)}


def _enough(whole: Window, ctx: Context) -> bool:
    return min(whole.served.labelled, whole.held_out.labelled) >= ctx.min_labels


def _too_little(whole: Window, ctx: Context) -> str:
    return (
        f"Too little data to judge yet: {whole.served.labelled} labels on served and "
        f"{whole.held_out.labelled} on held-out traffic, {ctx.min_labels} needed on each side. "
        "Wait for labels (or raise the held-out share)."
    )


def _pct(interval: Interval) -> str:
    if interval.value is None:
        return "n/a"
    return f"{interval.value:.1%} [{interval.low or 0:.1%}, {interval.high or 0:.1%}]"


# ---------------------------------------------------------------- outcome-rate gap


def _rate(side: Side, outcome: str) -> Interval:
    return wilson(side.labels_of(outcome), side.labelled)


def outcome_rate_gap(whole: Window, windows: list[Window], ctx: Context) -> OutcomeRateGap:
    common = _common(whole, ctx)
    title = "Outcome rate, served against held out"
    if not ctx.classifier or ctx.outcome is None:
        return OutcomeRateGap(title=title, applicable=False, explanation=REGRESSION, **common)
    outcome = ctx.outcome
    served, held = _rate(whole.served, outcome), _rate(whole.held_out, outcome)
    gap = newcombe(served, held)
    enough = _enough(whole, ctx)
    status = judge(gap, ctx.warn_at, ctx.alert_at, enough)

    def measure(w: Window) -> tuple[float | None, float | None, float | None, int, int]:
        s, h = _rate(w.served, outcome), _rate(w.held_out, outcome)
        g = s.value - h.value if s.value is not None and h.value is not None else None
        return s.value, h.value, g, w.served.labelled, w.held_out.labelled

    meaning = (
        f"The share of labelled predictions whose label is {ctx.word(outcome)}: on served "
        f"traffic {_pct(served)}, on held-out traffic {_pct(held)}, gap {_pct(gap)}. Held-out "
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
        explanation=(meaning + (advice if enough else _too_little(whole, ctx)) + " " + ctx.limits),
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
    common = _common(whole, ctx)
    title = "Measured performance, served against held out"
    if not ctx.classifier or ctx.outcome is None:
        return PerformanceGap(title=title, applicable=False, explanation=REGRESSION, **common)
    served, held, gap = _performance(whole.served, whole.held_out, ctx)
    enough = _enough(whole, ctx)
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
            f"The model's {name} measured on labelled served traffic is {_pct(served)}, on "
            f"held-out traffic {_pct(held)} (gap {_pct(gap)}). "
            + direction
            + (advice if enough else _too_little(whole, ctx))
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
    common = _common(whole, ctx)
    title = "Label drift, served against held out"
    if not ctx.classifier:
        return LabelDrift(title=title, applicable=False, explanation=REGRESSION, **common)
    served, held = _label_counts(whole.served, ctx), _label_counts(whole.held_out, ctx)
    chi2, p_value, distance = label_drift_test(served, held)
    size = total_variation(served, held)
    enough = _enough(whole, ctx)
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
        gap=Interval(value=size),
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
            + (advice if enough else _too_little(whole, ctx))
            + f" It warns from {ctx.warn_at:.0%} and alerts from {ctx.alert_at:.0%} of the "
            "labels (the feedback_loop rule's threshold), only when the difference is "
            f"significant (p < 0.05) and each side has {ctx.min_labels} labels."
        ),
        trend=trend(windows, measure),
        **common,
    )


# ---------------------------------------------------------------- selective labels


def _coverage(side: Side, answer: str) -> Interval:
    predicted = max(side.answers.get(answer, 0), side.labelled_answers(answer))
    return wilson(side.labelled_answers(answer), predicted)


def selective_labels(whole: Window, windows: list[Window], ctx: Context) -> SelectiveLabels:
    common = _common(whole, ctx)
    title = "Selective labels: labels decided by the model's answer"
    influence = _influence(whole, ctx)
    if not ctx.classifier:
        return SelectiveLabels(
            title=title, applicable=False, influence=influence, explanation=REGRESSION, **common
        )
    enough = _enough(whole, ctx)
    rows: list[AnswerCoverage] = []
    judged: list[tuple[LoopStatus, float, AnswerCoverage]] = []
    missing = expected = 0.0
    for answer in ctx.classes:
        served, held = _coverage(whole.served, answer), _coverage(whole.held_out, answer)
        gap = newcombe(served, held)
        row = AnswerCoverage(
            answer=answer,
            served_predictions=whole.served.answers.get(answer, 0),
            served_labelled=whole.served.labelled_answers(answer),
            served_coverage=served,
            held_out_predictions=whole.held_out.answers.get(answer, 0),
            held_out_labelled=whole.held_out.labelled_answers(answer),
            held_out_coverage=held,
            gap=gap,
        )
        rows.append(row)
        status = judge(gap, ctx.warn_at, ctx.alert_at, enough)
        judged.append((status, abs(gap.value or 0.0), row))
        if held.value is not None:
            expected += held.value * row.served_predictions
            if status != "ok" and gap.value is not None:
                missing += abs(gap.value) * row.served_predictions
    status = worst([s for s, _, _ in judged])
    top = max(judged, key=lambda j: ({"ok": 0, "warn": 1, "alert": 2}[j[0]], j[1]), default=None)
    headline = top[2] if top else None
    share = missing / expected if expected > 0 else None

    def measure(w: Window) -> tuple[float | None, float | None, float | None, int, int]:
        if headline is None:
            return None, None, None, 0, 0
        s, h = _coverage(w.served, headline.answer), _coverage(w.held_out, headline.answer)
        g = s.value - h.value if s.value is not None and h.value is not None else None
        return (
            s.value,
            h.value,
            g,
            w.served.answers.get(headline.answer, 0),
            (w.held_out.answers.get(headline.answer, 0)),
        )

    listed = "; ".join(
        f"answered {ctx.word(r.answer)}: {_pct(r.served_coverage)} of served, "
        f"{_pct(r.held_out_coverage)} of held-out predictions labelled"
        for r in rows
    )
    marked = sum(i.influenced for i in influence)
    total_marked = sum(i.influenced + i.not_influenced + i.unknown for i in influence)
    advice = {
        "ok": "Labels come alike whatever the model answered: no sign of selective labels.",
        "warn": "Some answers get their labels less (or more) often on served traffic than on "
        "held-out traffic; watch it before retraining.",
        "alert": f"Answers {ctx.word(headline.answer if headline else None)} lose (or gain) "
        "their labels because of the model's own answer (a blocked transaction never gets a "
        "chargeback): served labels are not a fair sample. Retrain and measure on held-out "
        "labels, or have the held-out examples reviewed.",
    }[status]
    return SelectiveLabels(
        title=title,
        enough_data=enough,
        status=status,
        measure=(
            f"share of predictions answered {ctx.word(headline.answer)} that received a label"
            if headline
            else "share of predictions that received a label"
        ),
        served=headline.served_coverage if headline else NO_INTERVAL,
        held_out=headline.held_out_coverage if headline else NO_INTERVAL,
        gap=headline.gap if headline else NO_INTERVAL,
        by_answer=rows,
        influence=influence,
        decided_by_model_share=share,
        explanation=(
            f"Label coverage by the model's answer: {listed}. "
            + (
                f"About {share:.1%} of the served predictions that should have a label "
                "(at held-out coverage) are missing it or have one only because of the "
                "model's answer. "
                if share
                else ""
            )
            + f"{marked} of {total_marked} labels are marked as influenced by the model. "
            + (advice if enough else _too_little(whole, ctx))
            + " "
            + ctx.limits
        ),
        trend=trend(windows, measure),
        **common,
    )


def _influence(whole: Window, ctx: Context) -> list[InfluenceCounts]:
    labels = ctx.classes if ctx.classifier else ["*"]
    found = []
    for label in labels:
        counts = {
            mark: int(
                whole.served.count("inf", label, mark) + whole.held_out.count("inf", label, mark)
            )
            for mark in ("true", "false", "unknown")
        }
        found.append(
            InfluenceCounts(
                label=label,
                influenced=counts["true"],
                not_influenced=counts["false"],
                unknown=counts["unknown"],
            )
        )
    return found


# ---------------------------------------------------------------- exposure concentration


def _top_share(side: Side, answer: str | None) -> Interval:
    if answer is None:
        return NO_INTERVAL
    return wilson(side.answers.get(answer, 0), side.predictions)


def exposure_concentration(
    whole: Window, windows: list[Window], ctx: Context
) -> ExposureConcentration:
    common = _common(whole, ctx)
    title = "Exposure concentration: how much traffic ends in one answer"
    if not ctx.classifier:
        return ExposureConcentration(
            title=title, applicable=False, explanation=REGRESSION, **common
        )
    answers = sorted(
        set(ctx.classes) | set(whole.served.answers) | set(whole.held_out.answers),
        key=lambda a: (-whole.served.answers.get(a, 0), a),
    )
    top = answers[0] if whole.served.predictions else None
    served, held = _top_share(whole.served, top), _top_share(whole.held_out, top)
    gap = newcombe(served, held)
    enough = min(whole.served.predictions, whole.held_out.predictions) >= ctx.min_labels
    status = judge(gap, ctx.warn_at, ctx.alert_at, enough)
    k = len(ctx.classes)
    served_index = concentration([whole.served.answers.get(a, 0) for a in answers], k)
    held_index = concentration([whole.held_out.answers.get(a, 0) for a in answers], k)

    def measure(w: Window) -> tuple[float | None, float | None, float | None, int, int]:
        s, h = _top_share(w.served, top), _top_share(w.held_out, top)
        g = s.value - h.value if s.value is not None and h.value is not None else None
        return s.value, h.value, g, w.served.predictions, w.held_out.predictions

    advice = {
        "ok": "The model's answers are spread alike on both sides.",
        "warn": "Served traffic gathers in one answer more (or less) than held-out traffic; "
        "watch whether it keeps moving.",
        "alert": "The model's answers are pushing its own traffic towards one answer: what it "
        "sees next is shaped by what it answered. Compare with held-out traffic before "
        "trusting any trend on served traffic.",
    }[status]
    return ExposureConcentration(
        title=title,
        enough_data=enough,
        status=status,
        measure=f"share of predictions answered {ctx.word(top)}",
        served=served,
        held_out=held,
        gap=gap,
        top_answer=top,
        answers=[
            AnswerShare(
                answer=a,
                served=whole.served.answers.get(a, 0),
                held_out=whole.held_out.answers.get(a, 0),
            )
            for a in answers
        ],
        served_concentration=served_index,
        held_out_concentration=held_index,
        explanation=(
            f"The most common answer on served traffic is {ctx.word(top)}: {_pct(served)} of "
            f"served predictions, {_pct(held)} of held-out ones (the model's own answers "
            f"there, never shown). Concentration index (0 even, 1 all one answer): "
            f"{served_index if served_index is not None else float('nan'):.2f} served, "
            f"{held_index if held_index is not None else float('nan'):.2f} held out. "
            + (
                advice
                if enough
                else f"Too little data to judge yet: {ctx.min_labels} predictions needed on "
                "each side."
            )
            + f" It warns from a gap of {ctx.warn_at:.0%} and alerts from {ctx.alert_at:.0%} "
            "when the interval excludes no gap."
        ),
        trend=trend(windows, measure),
        **common,
    )


# ---------------------------------------------------------------- prediction bias per slice


def _bias(side: Side, outcome: str, prefix: tuple[str, ...]) -> tuple[SliceSide, float | None]:
    """(the slice's side, its mean predicted probability); prefix () for all rows."""
    labelled = round(side.count(*prefix, "n") if prefix else side.labelled)
    with_p = side.count(*prefix, "pn")
    mean = side.count(*prefix, "p", outcome) / with_p if with_p > 0 else None
    observed = wilson(
        side.count(*prefix, "y", outcome) if prefix else side.labels_of(outcome), labelled
    )
    bias = shifted(observed, mean, negate=True) if mean is not None else NO_INTERVAL
    return SliceSide(labelled=labelled, mean_predicted=mean, observed=observed, bias=bias), mean


def _bias_gap(
    served: SliceSide, s_mean: float | None, held: SliceSide, h_mean: float | None
) -> Interval:
    if s_mean is None or h_mean is None:
        return NO_INTERVAL
    return shifted(newcombe(served.observed, held.observed), s_mean - h_mean, negate=True)


def prediction_bias(whole: Window, windows: list[Window], ctx: Context) -> PredictionBias:
    common = _common(whole, ctx)
    title = "Prediction bias per slice"
    if not ctx.classifier or ctx.outcome is None:
        return PredictionBias(
            title=title, applicable=False, features=ctx.features, explanation=REGRESSION, **common
        )
    outcome = ctx.outcome
    if whole.served.count("pn") + whole.held_out.count("pn") == 0 and (
        whole.served.labelled + whole.held_out.labelled
    ):
        return PredictionBias(
            title=title,
            applicable=False,
            outcome=outcome,
            features=ctx.features,
            explanation="Not for this model: its answers carry no class probabilities, so "
            "there is no mean prediction to hold against the labels.",
            **common,
        )
    served, s_mean = _bias(whole.served, outcome, ())
    held, h_mean = _bias(whole.held_out, outcome, ())
    gap = _bias_gap(served, s_mean, held, h_mean)
    enough = _enough(whole, ctx)
    statuses = [judge(gap, ctx.warn_at, ctx.alert_at, enough)]
    slices: list[SliceBias] = []
    flagged: list[tuple[LoopStatus, float, SliceBias]] = []
    slicer = ctx.slicer
    # A slice is judged on a fifth of the labels a whole side needs (10 with the default 50).
    per_slice = max(1, ctx.min_labels // 5)
    for key in slicer.ordered() if slicer else []:
        prefix = ("s", slicer.feature, key) if slicer else ()
        s_side, s_m = _bias(whole.served, outcome, prefix)
        h_side, h_m = _bias(whole.held_out, outcome, prefix)
        if s_side.labelled == 0 and h_side.labelled == 0:
            continue
        entry = SliceBias(
            slice=slicer.words(key) if slicer else key,
            served=s_side,
            held_out=h_side,
            gap=_bias_gap(s_side, s_m, h_side, h_m),
        )
        slices.append(entry)
        sure = enough and min(s_side.labelled, h_side.labelled) >= per_slice
        status = judge(entry.gap, ctx.warn_at, ctx.alert_at, sure)
        statuses.append(status)
        if status != "ok":
            flagged.append((status, abs(entry.gap.value or 0.0), entry))
    status = worst(statuses)

    def measure(w: Window) -> tuple[float | None, float | None, float | None, int, int]:
        s, sm = _bias(w.served, outcome, ())
        h, hm = _bias(w.held_out, outcome, ())
        g = _bias_gap(s, sm, h, hm)
        return s.bias.value, h.bias.value, g.value, s.labelled, h.labelled

    named = ""
    if flagged:
        flagged.sort(key=lambda f: ({"ok": 0, "warn": 1, "alert": 2}[f[0]], f[1]), reverse=True)
        entry = flagged[0][2]
        named = (
            f"Most off: {slicer.feature if slicer else ''} {entry.slice}, bias "
            f"{_pct(entry.served.bias)} served against {_pct(entry.held_out.bias)} held out. "
        )
    advice = {
        "ok": "The model over- or under-predicts alike on both sides.",
        "warn": "The model's probabilities fit served outcomes differently from held-out "
        "ones in part of the traffic; watch it.",
        "alert": "The model's probabilities fit the outcomes differently where it influences "
        "them: served labels there are shaped by its answers. Recalibrate or retrain on "
        "held-out labels, not served ones.",
    }[status]
    return PredictionBias(
        title=title,
        outcome=outcome,
        feature=slicer.feature if slicer else None,
        feature_kind=slicer.kind if slicer else None,  # type: ignore[arg-type]
        features=ctx.features,
        slices=slices,
        enough_data=enough,
        status=status,
        measure=f"mean predicted probability of {ctx.word(outcome)} minus its observed rate",
        served=served.bias,
        held_out=held.bias,
        gap=gap,
        explanation=(
            f"Mean predicted probability of {ctx.word(outcome)} minus how often it was the "
            f"label: {_pct(served.bias)} on served traffic, {_pct(held.bias)} on held-out "
            f"traffic (positive: the model over-predicts it)"
            + (f", per slice of {slicer.feature}. " if slicer else ". ")
            + named
            + (advice if enough else _too_little(whole, ctx))
            + " "
            + ctx.limits
            + f" A slice needs {per_slice} labels a side."
        ),
        trend=trend(windows, measure),
        **common,
    )
