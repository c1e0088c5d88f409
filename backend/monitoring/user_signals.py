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

import asyncio
import logging
import math
import time
from collections.abc import Iterable

from sqlalchemy.orm import Session, sessionmaker

from backend.monitoring.alerts import AlertService
from backend.monitoring.evaluator import ModelsServing, RuleEngine
from backend.monitoring.feedback_loops.statistics import wilson
from backend.monitoring.rules import Measurement, RuleStore
from backend.predictions.signal_counts import count_pending_signals, read_signal_counts
from backend.predictions.window_counts import MINUTE_S
from backend.predictions.window_reads import read_series, read_window
from backend.registry import Registry
from backend.schemas import SIGNAL_KINDS, AlertKind, AlertRule, SignalKind, SignalRate, UserSignals

log = logging.getLogger(__name__)

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


class UserSignalWatch:
    """Judges the undo_rate and complaint_rate rules of every serving model's serving version
    each round (the store's counts: every worker judges the same numbers, and the alerts'
    unique index lets one alert in)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        registry: Registry,
        rules: RuleStore,
        alerts: AlertService,
        serving: ModelsServing,
        interval_s: float = EVALUATE_EVERY_S,
    ):
        self.sessions = sessions
        self.registry = registry
        self.rules = rules
        self.alerts = alerts
        self.serving = serving
        self.interval_s = interval_s
        self.engine = RuleEngine(alerts, min_unseen_s=3 * interval_s)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            models = self.serving.models_serving()
            try:
                await asyncio.to_thread(self.evaluate, models)
            except Exception:
                log.exception("could not judge the user-signal alert rules")

    def evaluate(self, models: Iterable[str], now: float | None = None) -> dict[str, str]:
        """One round; returns what was done per model and rule (``"model/kind"``)."""
        now = time.time() if now is None else now
        count_pending_signals(self.sessions, now - CATCH_UP_S)
        active = {
            (alert.model, alert.kind): alert
            for alert in self.alerts.list(statuses=("open", "acknowledged"), limit=10_000)
            if alert.kind in RULE_KINDS
        }
        outcomes: dict[str, str] = {}
        for model in models:
            for rule_kind, signal in RULE_KINDS.items():
                key = f"{model}/{rule_kind}"
                try:
                    rule = self.rules.rule(model, rule_kind)
                    if not rule.enabled and (model, rule_kind) not in active:
                        continue
                    version = self.registry.get_model(model).active_version
                    if version is None:
                        continue
                    # The rule's window, ending with the current minute.
                    end = (math.floor(now / MINUTE_S) + 1) * MINUTE_S
                    width = math.ceil(rule.window_s / MINUTE_S) * MINUTE_S
                    with self.sessions() as session:
                        found = user_signal_windows(session, model, version, [(end - width, end)])
                    measured = measure(found[0], signal, rule)
                    outcomes[key] = self.engine.judge(
                        model,
                        rule,
                        measured,
                        active.get((model, rule_kind)),
                        now,
                        version=version,
                        title=f"{model} version {version}: {measured.text}",
                        explanation=ADVICE[signal],
                    )
                except Exception:
                    log.exception("could not judge the %s rule of %s", rule_kind, model)
                    outcomes[key] = "failed"
        return outcomes
