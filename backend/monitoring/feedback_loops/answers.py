"""The feedback-loop indicators about the model's answers: which of them get labels (selective
labels), how much traffic ends in one (exposure concentration), and how its probabilities fit
the outcomes per slice of a feature (prediction bias)."""

from __future__ import annotations

from backend.monitoring.feedback_loops.data import Side, Window
from backend.monitoring.feedback_loops.indicators import (
    REGRESSION,
    Context,
    common_fields,
    enough_labels,
    pct,
    too_little,
    trend,
)
from backend.monitoring.feedback_loops.statistics import (
    CONFIDENCE,
    NO_INTERVAL,
    STATUS_ORDER,
    concentration,
    judge,
    newcombe,
    shifted,
    wilson,
    worst,
)
from backend.schemas import (
    AnswerCoverage,
    AnswerShare,
    ExposureConcentration,
    InfluenceCounts,
    Interval,
    LoopStatus,
    PredictionBias,
    SelectiveLabels,
    SliceBias,
    SliceSide,
)

# ---------------------------------------------------------------- selective labels


def _coverage(side: Side, answer: str) -> Interval:
    predicted = max(side.answers.get(answer, 0), side.labelled_answers(answer))
    return wilson(side.labelled_answers(answer), predicted)


def selective_labels(whole: Window, windows: list[Window], ctx: Context) -> SelectiveLabels:
    common = common_fields(whole, ctx)
    title = "Selective labels: labels decided by the model's answer"
    influence = _influence(whole, ctx)
    if not ctx.classifier:
        return SelectiveLabels(
            title=title, applicable=False, influence=influence, explanation=REGRESSION, **common
        )
    enough = enough_labels(whole, ctx)
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
    top = max(judged, key=lambda j: (STATUS_ORDER[j[0]], j[1]), default=None)
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
        f"answered {ctx.word(r.answer)}: {pct(r.served_coverage)} of served, "
        f"{pct(r.held_out_coverage)} of held-out predictions labelled"
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
            + (advice if enough else too_little(whole, ctx))
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
    common = common_fields(whole, ctx)
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
            f"The most common answer on served traffic is {ctx.word(top)}: {pct(served)} of "
            f"served predictions, {pct(held)} of held-out ones (the model's own answers "
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


def _bias(
    side: Side, outcome: str, prefix: tuple[str, ...], confidence: float = CONFIDENCE
) -> tuple[SliceSide, float | None]:
    """(the slice's side, its mean predicted probability); prefix () for all rows."""
    labelled = round(side.count(*prefix, "n") if prefix else side.labelled)
    with_p = side.count(*prefix, "pn")
    mean = side.count(*prefix, "p", outcome) / with_p if with_p > 0 else None
    observed = wilson(
        side.count(*prefix, "y", outcome) if prefix else side.labels_of(outcome),
        labelled,
        confidence,
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
    common = common_fields(whole, ctx)
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
    enough = enough_labels(whole, ctx)
    statuses = [judge(gap, ctx.warn_at, ctx.alert_at, enough)]
    slices: list[SliceBias] = []
    flagged: list[tuple[LoopStatus, float, SliceBias]] = []
    slicer = ctx.slicer
    keys = slicer.ordered() if slicer else []
    # Every slice is a test of its own: judged on intervals corrected for their number
    # (Bonferroni) and on as many labels a side as the whole needs, or some slice of a model
    # without any loop would be flagged by chance in one report of four (simulated: 20-36%
    # with 95% intervals and 10 labels a slice).
    judged_at = 1.0 - (1.0 - CONFIDENCE) / max(1, len(keys))
    for key in keys:
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
        sure = enough and min(s_side.labelled, h_side.labelled) >= ctx.min_labels
        s_wide, _ = _bias(whole.served, outcome, prefix, judged_at)
        h_wide, _ = _bias(whole.held_out, outcome, prefix, judged_at)
        status = judge(_bias_gap(s_wide, s_m, h_wide, h_m), ctx.warn_at, ctx.alert_at, sure)
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
        flagged.sort(key=lambda f: (STATUS_ORDER[f[0]], f[1]), reverse=True)
        entry = flagged[0][2]
        named = (
            f"Most off: {slicer.feature if slicer else ''} {entry.slice}, bias "
            f"{pct(entry.served.bias)} served against {pct(entry.held_out.bias)} held out. "
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
            f"label: {pct(served.bias)} on served traffic, {pct(held.bias)} on held-out "
            f"traffic (positive: the model over-predicts it)"
            + (f", per slice of {slicer.feature}. " if slicer else ". ")
            + named
            + (advice if enough else too_little(whole, ctx))
            + " "
            + ctx.limits
            + f" A slice needs {ctx.min_labels} labels a side, and is judged with its intervals "
            + "widened for the number of slices."
        ),
        trend=trend(windows, measure),
        **common,
    )
