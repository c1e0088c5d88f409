"""The feedback-loop indicators in words a non-statistician reads.

Plain Python (no Qt, no network): the Feedback loops page's cards and charts take their text
here. A 95% confidence interval reads "4.1% (3.2–5.0%)": the number, then the range the true
value lies in with 95% confidence; the wider the range, the less data the number rests on.
"""

from __future__ import annotations

from backend.schemas.feedback_loops import (
    ExposureConcentration,
    Indicator,
    Interval,
    LabelDrift,
    PerformanceGap,
    PredictionBias,
    SelectiveLabels,
)
from backend.schemas.held_out import HeldOutSettings, HeldOutStatus

# The indicator's status as the console's colours name it (the drift and overview pages').
STATUS_TONE = {"ok": "ok", "warn": "warn", "alert": "bad"}
STATUS_WORDS = {
    "ok": "no sign of a loop",
    "warn": "a loop may be forming: watch it",
    "alert": "a feedback loop: act on it",
}
# Indicators whose numbers are shares (0 to 1), shown in percent; label drift's distance is a
# score from 0 (same label mix) to 1 (nothing in common).
SHARE_INDICATORS = frozenset(
    {
        "outcome_rate_gap",
        "performance_gap",
        "selective_labels",
        "prediction_bias",
        "exposure_concentration",
    }
)
DASH = "–"  # en dash: "3.2–5.0%"
RANGE_HELP = (
    "In brackets: the range the true value lies in with 95% confidence. Ranges that do not "
    "overlap mean a real difference; wide ranges mean little data."
)


def in_percent(indicator: Indicator) -> bool:
    if isinstance(indicator, PerformanceGap):
        # Error metrics of a regressor are not shares; accuracy, precision, recall, F1 are.
        return indicator.metric in {"accuracy", "precision", "recall", "f1", "balanced_accuracy"}
    return indicator.name in SHARE_INDICATORS


def number(value: float, percent: bool) -> str:
    return f"{value * 100:.1f}%" if percent else f"{value:.3g}"


def interval_text(interval: Interval, percent: bool) -> str:
    """'4.1% (3.2–5.0%)'; 'not measured' without a value."""
    if interval.value is None:
        return "not measured"
    text = number(interval.value, percent)
    if interval.low is None or interval.high is None:
        return text
    if percent:
        return f"{text} ({interval.low * 100:.1f}{DASH}{interval.high * 100:.1f}%)"
    return f"{text} ({interval.low:.3g}{DASH}{interval.high:.3g})"


def gap_interval_text(interval: Interval, percent: bool) -> str:
    """A difference: signed, in percentage points for shares ('+2.9 points (1.9–3.9)')."""
    if interval.value is None:
        return "not measured"
    scale, unit = (100.0, " points") if percent else (1.0, "")
    text = f"{interval.value * scale:+.1f}{unit}" if percent else f"{interval.value:+.3g}"
    if interval.low is None or interval.high is None:
        return text
    low, high = interval.low * scale, interval.high * scale
    return (
        f"{text} ({low:+.1f} to {high:+.1f})" if percent else f"{text} ({low:+.3g} to {high:+.3g})"
    )


def measure_words(indicator: Indicator) -> str:
    return indicator.measure or indicator.title.lower()


def status_text(indicator: Indicator) -> tuple[str, str]:
    """(the status in words, its colour name); an indicator that cannot judge says so."""
    if not indicator.applicable:
        return "does not apply", "muted"
    if not indicator.enough_data:
        return "not enough data yet", "muted"
    return STATUS_WORDS[indicator.status], STATUS_TONE[indicator.status]


def comparison_text(indicator: Indicator) -> str:
    """'Fraud rate: held out 4.1% (3.2–5.0%) vs served 1.2% (1.0–1.4%)'."""
    percent = in_percent(indicator)
    if indicator.name == "label_drift":
        return (
            f"Distance between the label mixes of served and held-out traffic: "
            f"{interval_text(indicator.gap, False)}, where 0 is the same mix and 1 nothing "
            "in common"
        )
    measure = measure_words(indicator)
    measure = measure[:1].upper() + measure[1:]
    if indicator.served.value is None and indicator.held_out.value is None:
        return f"{measure}: not measured yet"
    return (
        f"{measure}: held out {interval_text(indicator.held_out, percent)} "
        f"vs served {interval_text(indicator.served, percent)}"
    )


def gap_text(indicator: Indicator) -> str:
    """The difference and the thresholds it is judged against."""
    if indicator.name == "label_drift":
        return (
            f"Warns from a distance of {indicator.warn_at:.3g}, "
            f"alerts from {indicator.alert_at:.3g}."
        )
    percent = in_percent(indicator)
    scale, unit = (100.0, " points") if percent else (1.0, "")
    return (
        f"Served minus held out: {gap_interval_text(indicator.gap, percent)}; warns from a "
        f"gap of {indicator.warn_at * scale:.3g}{unit}, alerts from "
        f"{indicator.alert_at * scale:.3g}{unit}."
    )


def basis_text(indicator: Indicator) -> str:
    """How much data the numbers rest on, per side."""
    data = indicator.data
    return (
        f"Rests on {data.served_predictions:,} served and {data.held_out_predictions:,} "
        f"held-out predictions, of which {data.served_labels:,} and "
        f"{data.held_out_labels:,} have labels."
    )


def policy_text(settings: HeldOutSettings | None, names: dict[str, str] | None = None) -> str:
    """What answers held-out requests, in words (``names``: class names by label text)."""
    names = names or {}

    def answer(value: object) -> str:
        name = names.get(str(value))
        return f"{name} ({value})" if name and name != str(value) else repr(value)

    if settings is None:
        return "Nothing is held out: every request is answered by the model."
    policy = settings.policy
    if policy.kind == "default":
        what = f"the declared default answer {answer(policy.answer)}"
    elif policy.kind == "fallback":
        version = f" version {policy.version}" if policy.version else " (its serving version)"
        what = f"model {policy.model}{version}"
    else:
        count = len(policy.rules)
        what = (
            f"{count} rule{'s' if count != 1 else ''} over the inputs "
            f"(otherwise {answer(policy.otherwise)})"
        )
    return f"{settings.share_percent:g}% of the entities are held out and answered by {what}."


def coverage_text(status: HeldOutStatus) -> str:
    coverage = status.coverage
    share = coverage.requests / coverage.all_requests if coverage.all_requests else 0.0
    return (
        f"Recently {coverage.requests:,} held-out requests ({share:.1%} of "
        f"{coverage.all_requests:,}) from {coverage.entities:,} entities."
    )


def details_text(indicator: Indicator) -> str:
    """What only this kind of indicator has: per class, per answer, the top answer."""
    if isinstance(indicator, SelectiveLabels):
        lines = [
            f"Answered {entry.answer}: {interval_text(entry.served_coverage, True)} of served "
            f"vs {interval_text(entry.held_out_coverage, True)} of held-out predictions "
            "got a label"
            for entry in indicator.by_answer
        ]
        if indicator.decided_by_model_share is not None:
            lines.append(
                f"{indicator.decided_by_model_share:.0%} of the served labels (the retraining "
                "data) exist because of the model's own answer"
            )
        return ". ".join(lines) + ("." if lines else "")
    if isinstance(indicator, LabelDrift) and indicator.classes:
        counts = "; ".join(
            f"{entry.label}: {entry.served:,} served, {entry.held_out:,} held out"
            for entry in indicator.classes
        )
        chance = (
            f" A difference this large arises by chance with probability {indicator.p_value:.2g}."
            if indicator.p_value is not None
            else ""
        )
        return f"Labels per class: {counts}.{chance}"
    if isinstance(indicator, ExposureConcentration) and indicator.top_answer is not None:
        return f"The most common served answer is {indicator.top_answer}."
    if isinstance(indicator, PredictionBias) and indicator.feature:
        return f"Sliced by {indicator.feature}: the Bias by slice tab shows each slice."
    return ""
