"""Alert rules judged on numbers read from the store, every round, for every model serving.

Drift windows and feedback-loop counts live in the store, shared by every worker: each worker
judges the same numbers, and the alerts' unique index lets one alert in. A watch here says
which rule kinds it judges and how it measures one rule; the rounds, which alerts are active,
the enabled check, the rule engine (grouping, ``for_s``, cooldown, resolution by itself) and
the failure of one model's rule (logged, the others still judged) are the same for all.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable

from backend.monitoring.alerts import AlertService
from backend.monitoring.evaluator import ModelsServing, RuleEngine
from backend.monitoring.rules import Measurement, RuleStore
from backend.predictions.window_counts import MINUTE_S
from backend.schemas import Alert, AlertKind, AlertRule

log = logging.getLogger(__name__)

# A rule this watch does not judge now (no version serves): nothing to tell the engine.
NOT_JUDGED = None


def rule_window(now: float, window_s: float) -> tuple[float, float]:
    """A rule's window over counts kept per minute: whole minutes, ending with the current
    one (so the newest counts are in), at least ``window_s`` wide."""
    end = (math.floor(now / MINUTE_S) + 1) * MINUTE_S
    return end - math.ceil(window_s / MINUTE_S) * MINUTE_S, end


class StoredRuleWatch:
    """Subclasses set ``kinds`` and ``what`` and implement ``measure`` and ``advice``."""

    kinds: frozenset[AlertKind]
    # For the log: "the drift alert rules".
    what: str

    def __init__(
        self, rules: RuleStore, alerts: AlertService, serving: ModelsServing, interval_s: float
    ):
        self.rules = rules
        self.alerts = alerts
        self.serving = serving
        self.interval_s = interval_s
        self.engine = RuleEngine(alerts, min_unseen_s=3 * interval_s)

    async def run(
        self, after_round: Callable[[], None] | None = None, first_round_at_once: bool = False
    ) -> None:
        """A round every ``interval_s``; the first one after an interval, or at once when the
        caller already waited that long (the server's watcher process is started late)."""
        wait = not first_round_at_once
        while True:
            if wait:
                await asyncio.sleep(self.interval_s)
            wait = True
            try:
                models = await asyncio.to_thread(self.serving.models_serving)
                await asyncio.to_thread(self.evaluate, models)
                if after_round is not None:
                    await asyncio.to_thread(after_round)
            except Exception:
                log.exception("could not judge %s", self.what)

    def start_round(self, now: float) -> None:
        """What must happen once before a round measures anything."""

    def start_model(self, model: str) -> None:
        """Called before a model's rules are measured (to share what several rules read)."""

    def measure(self, model: str, rule: AlertRule, now: float) -> Measurement | None:
        raise NotImplementedError

    def advice(self, kind: AlertKind) -> str:
        raise NotImplementedError

    def alert_version(self, model: str) -> str | None:
        """The version an alert of this watch is about (None: the model as a whole)."""
        return None

    def evaluate(
        self, models: Iterable[str], now: float | None = None
    ) -> dict[tuple[str, AlertKind], str]:
        """One round over ``models``; returns what was done per (model, rule kind)."""
        now = time.time() if now is None else now
        self.start_round(now)
        active: dict[tuple[str, AlertKind], Alert] = {
            (alert.model, alert.kind): alert
            for alert in self.alerts.list(statuses=("open", "acknowledged"), limit=10_000)
            if alert.kind in self.kinds
        }
        outcomes: dict[tuple[str, AlertKind], str] = {}
        for model in models:
            judged = [
                rule
                for rule in self.rules.rules(model).rules
                if rule.kind in self.kinds and (rule.enabled or (model, rule.kind) in active)
            ]
            if not judged:
                continue  # nothing to read for this model (its rules of these kinds are off)
            try:
                self.start_model(model)
            except Exception:  # one model's failure never ends the round for the others
                log.exception("could not read %s to judge %s", model, self.what)
                continue
            for rule in judged:
                key = (model, rule.kind)
                try:
                    measured = self.measure(model, rule, now)
                    if measured is NOT_JUDGED:
                        continue
                    version = self.alert_version(model)
                    about = model if version is None else f"{model} version {version}"
                    outcomes[key] = self.engine.judge(
                        model,
                        rule,
                        measured,
                        active.get(key),
                        now,
                        version=version,
                        title=f"{about}: {measured.text}",
                        explanation=self.advice(rule.kind),
                    )
                except Exception:
                    log.exception("could not judge the %s rule of %s", rule.kind, model)
                    outcomes[key] = "failed"
        return outcomes
