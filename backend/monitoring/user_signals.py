"""User signals as monitoring statistics: undo and complaint rates per version and window,
and the ``undo_rate`` / ``complaint_rate`` alert rules judged on them.

A rate is signals per answered prediction: the numerator from the signal counts kept as
signals arrive (``predictions.signal_counts``, by the prediction's minute), the denominator
from the drift window counts the log writer keeps (``predictions.window_reads``). Both cost
the minutes of the window, never the log. Only the routes whose answers callers got from the
model count (active, canary): a shadow's answers were never seen, and a held-out answer was
not the model's.
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from backend.monitoring.alerts import AlertService
from backend.monitoring.evaluator import ModelsServing
from backend.monitoring.feedback_loops.statistics import wilson
from backend.monitoring.rule_watch import NOT_JUDGED, StoredRuleWatch, rule_window
from backend.monitoring.rules import Measurement, RuleStore
from backend.predictions.signal_counts import count_pending_signals, read_signal_counts
from backend.predictions.window_counts import MINUTE_S
from backend.predictions.window_reads import read_series, read_window
from backend.registry import Registry
from backend.schemas import SIGNAL_KINDS, AlertKind, AlertRule, SignalKind, SignalRate, UserSignals

SERVED_ROUTES = ("active", "canary")
EVALUATE_EVERY_S = 30.0
# Signals that came before their prediction was logged are caught up for this long.
CATCH_UP_S = 86_400.0

RULE_KINDS: dict[AlertKind, SignalKind] = {"undo_rate": "undo", "complaint_rate": "complaint"}

ADVICE: dict[SignalKind, str] = {
    "undo": (
        "Users undid what the model recommended more often than the rule allows: its answers "
        "do not fit what they need. What to do: open the Performance page for the version's "
        "undo rate over time; compare with the version before (a new version that is undone "
        "more often should be rolled back) and look for drift in recent inputs."
    ),
    "complaint": (
        "Users complained about the model's answers more often than the rule allows. What to "
        "do: read the complaints' requests (the prediction log), look at the Performance "
        "page for when the rate rose, and roll back a version that brought it."
    ),
}


def user_signal_windows(
    session: Session, model: str, version: str, bounds: list[tuple[float, float]]
) -> list[UserSignals]:
    """The version's signal rates in each window (consecutive, equally wide, oldest first).
    A signal is counted in the window holding its prediction's minute."""
    first, last = bounds[0][0], bounds[-1][1]
    width = bounds[0][1] - bounds[0][0]
    predictions = [0] * len(bounds)
    connection = session.connection()
    for route in SERVED_ROUTES:
        if width % MINUTE_S == 0:
            # Whole minutes: the windows end on the minute (or hour) a series ends on.
            reads = read_series(connection, model, len(bounds), width, version, route, end=last)
        else:
            reads = [read_window(connection, model, a, b, version, route) for a, b in bounds]
        for i, read in enumerate(reads):
            predictions[i] += read.rows
    signals: list[dict[str, int]] = [dict.fromkeys(SIGNAL_KINDS, 0) for _ in bounds]
    counted = read_signal_counts(session, model, version, SERVED_ROUTES, first, last)
    for (minute, kind), n in counted.items():
        index = int((minute - first) // width)
        if 0 <= index < len(bounds) and kind in signals[index]:
            signals[index][kind] += n
    return [rates_of(answered, found) for answered, found in zip(predictions, signals, strict=True)]


def rates_of(predictions: int, signals: dict[str, int]) -> UserSignals:
    rates = [
        SignalRate(
            kind=kind, signals=signals.get(kind, 0), rate=wilson(signals.get(kind, 0), predictions)
        )
        for kind in SIGNAL_KINDS
    ]
    return UserSignals(predictions=predictions, rates=rates, explanation=_words(predictions, rates))


def _words(predictions: int, rates: list[SignalRate]) -> str:
    if predictions == 0:
        return (
            "No answered predictions of this version in this window: no undo or complaint "
            "rate to show."
        )
    parts = []
    for rate in rates:
        value, low, high = rate.rate.value, rate.rate.low, rate.rate.high
        if value is None or low is None or high is None:
            continue
        what = "were undone by their users" if rate.kind == "undo" else "drew a complaint"
        parts.append(
            f"{rate.signals} of {predictions} answers {what} ({value:.1%}; with 95% confidence "
            f"between {low:.1%} and {high:.1%})"
        )
    return (
        "; ".join(parts)
        + ". A rate that rises after a new version went live points at that version: compare "
        "it with the version before it."
    )


def measure(found: UserSignals, kind: SignalKind, rule: AlertRule) -> Measurement:
    """Bad when the window's rate is above the rule's threshold over at least ``min_count``
    answered predictions."""
    assert rule.threshold is not None
    rate = next(r for r in found.rates if r.kind == kind)
    enough = found.predictions >= rule.min_count
    value = rate.rate.value if enough else None
    bad = value is not None and value > rule.threshold
    noun = "undone" if kind == "undo" else "complained about"
    minutes = max(1, round(rule.window_s / MINUTE_S))
    text = (
        f"{rate.signals} of {found.predictions} answers {noun} in the last {minutes} min "
        f"({(rate.rate.value or 0):.1%}, limit {rule.threshold:.1%})"
    )
    details = {
        "value": value,
        "threshold": rule.threshold,
        "count": found.predictions,
        "signals": rate.signals,
        "low": rate.rate.low,
        "high": rate.rate.high,
        "window_s": rule.window_s,
    }
    return Measurement(value, bad, found.predictions, text, details)


class UserSignalWatch(StoredRuleWatch):
    """Judges the undo_rate and complaint_rate rules of every serving model's serving version
    each round; an alert names the version."""

    kinds = frozenset(RULE_KINDS)
    what = "the user-signal alert rules"

    def __init__(
        self,
        sessions: sessionmaker[Session],
        registry: Registry,
        rules: RuleStore,
        alerts: AlertService,
        serving: ModelsServing,
        interval_s: float = EVALUATE_EVERY_S,
    ):
        super().__init__(rules, alerts, serving, interval_s)
        self.sessions = sessions
        self.registry = registry
        self._version: str | None = None

    def start_round(self, now: float) -> None:
        count_pending_signals(self.sessions, now - CATCH_UP_S)

    def start_model(self, model: str) -> None:
        self._version = self.registry.get_model(model).active_version

    def alert_version(self, model: str) -> str | None:
        return self._version

    def measure(self, model: str, rule: AlertRule, now: float) -> Measurement | None:
        if self._version is None:
            return NOT_JUDGED
        with self.sessions() as session:
            found = user_signal_windows(
                session, model, self._version, [rule_window(now, rule.window_s)]
            )
        return measure(found[0], RULE_KINDS[rule.kind], rule)

    def advice(self, kind: AlertKind) -> str:
        return ADVICE[RULE_KINDS[kind]]
