"""The alert rules judged every few seconds in each serving worker.

Each worker judges its own live statistics: behind a load balancer that is its share of the
model's traffic, a fair sample of it. A condition must hold in the worker for the rule's
``for_s`` before the worker raises the alert; the partial unique index lets one alert in when
two workers raise at once, and every worker that sees the condition refreshes the alert's
``last_seen_at``. A worker resolves the alert only when its own view has been clear for
``clear_for_s`` *and* no worker has seen the condition in that time, so one worker's clear
view never resolves what another still sees (no flapping), and an alert outlives the worker
that raised it. "Nobody has seen it" needs at least ``UNSEEN_ROUNDS`` evaluation rounds of
silence even where ``clear_for_s`` is shorter: a worker still seeing the condition refreshes
the alert once a round, so a shorter silence proves nothing. A window with too little
traffic to judge counts as clear: nothing shows the condition any more.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from backend.monitoring.alerts import AlertService
from backend.monitoring.live_stats import LiveStats, WindowTotals
from backend.monitoring.rules import CONDITIONS, Measurement, RuleStore
from backend.schemas import Alert, AlertKind, AlertRule

log = logging.getLogger(__name__)

# How often the rules are judged: well below any rule's for_s, and cheap (sums of counts).
EVALUATE_EVERY_S = 5.0

# Rounds of silence (no worker saw the condition) before an alert may be resolved.
UNSEEN_ROUNDS = 3

GroupKey = tuple[str, str, str]  # (model, kind, group)


class ModelsServing(Protocol):
    def models_serving(self) -> list[str]: ...


@dataclass
class RuleEngine:
    """This worker's view of each rule's condition over time: since when it has held, since
    when it has been clear; what to do with a new measurement."""

    alerts: AlertService
    # The shortest silence of every worker that lets this one resolve an alert.
    min_unseen_s: float = UNSEEN_ROUNDS * EVALUATE_EVERY_S
    bad_since: dict[GroupKey, float] = field(default_factory=dict)
    clear_since: dict[GroupKey, float] = field(default_factory=dict)

    def judge(
        self,
        model: str,
        rule: AlertRule,
        measurement: Measurement,
        active: Alert | None,
        now: float,
        *,
        version: str | None = None,
        group: str = "",
        title: str,
        explanation: str,
    ) -> str:
        """Raise, refresh, hold or resolve; returns what was done, in words. ``active``: the
        group's active alert as read at the start of this round (None: none)."""
        key = (model, rule.kind, group)
        if not rule.enabled:
            self.bad_since.pop(key, None)
            self.clear_since.pop(key, None)
            if active is not None:
                self.alerts.resolve(
                    model, version, rule.kind, "its rule was switched off", group_key=group
                )
                return "resolved: rule switched off"
            return "rule off"
        if measurement.bad:
            self.clear_since.pop(key, None)
            since = self.bad_since.setdefault(key, now)
            if active is None and now - since < rule.for_s:
                return f"pending {now - since:.0f} of {rule.for_s} s"
            alert, raised = self.alerts.raise_once(
                model,
                version,
                rule.kind,
                severity=rule.severity,
                title=title,
                explanation=explanation,
                details=measurement.details,
                group_key=group,
                cooldown_s=rule.cooldown_s,
                now=now,
            )
            if not raised:
                return f"still active: alert {alert.id}"
            return f"{'reopened' if alert.reopened else 'raised'}: alert {alert.id}"
        self.bad_since.pop(key, None)
        since = self.clear_since.setdefault(key, now)
        if active is None:
            return "clear"
        if now - since < rule.clear_for_s:
            return f"clearing {now - since:.0f} of {rule.clear_for_s} s"
        resolved = self.alerts.resolve_if_unseen(
            active.id,
            f"the condition has been clear for {rule.clear_for_s} s: {measurement.text}",
            unseen_since=now - max(rule.clear_for_s, self.min_unseen_s),
            now=now,
        )
        if resolved is None:
            return f"clear here, still seen elsewhere: alert {active.id}"
        return f"resolved: alert {active.id}"


@dataclass(frozen=True)
class Finding:
    model: str
    rule: AlertRule
    measurement: Measurement


class AlertEvaluator:
    """Judges the live-statistics rules of every model this worker serves."""

    def __init__(
        self,
        alerts: AlertService,
        rules: RuleStore,
        live_stats: LiveStats,
        serving: ModelsServing,
        interval_s: float = EVALUATE_EVERY_S,
    ):
        self.alerts = alerts
        self.rules = rules
        self.live_stats = live_stats
        self.serving = serving
        self.interval_s = interval_s
        self.engine = RuleEngine(alerts, UNSEEN_ROUNDS * interval_s)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.evaluate()
            except Exception:
                log.exception("could not judge the alert rules")

    async def evaluate(self, now: float | None = None) -> dict[tuple[str, AlertKind], str]:
        """One round: read rules and active alerts (in a thread), measure on the event loop
        (the live statistics are only touched there), then raise or resolve (in a thread)."""
        now = time.time() if now is None else now
        active = await asyncio.to_thread(self._active)
        models = sorted(set(self.serving.models_serving()) | {key[0] for key in active})
        rules = await asyncio.to_thread(self._rules, models)
        findings: list[Finding] = []
        for model, model_rules in rules.items():
            findings += self.measure({model: model_rules}, now)
            # One model at a time, then the requests waiting on the loop go first: a round
            # over many models never holds the loop for more than one model's sums.
            await asyncio.sleep(0)
        return await asyncio.to_thread(self.apply, findings, active, now)

    def _active(self) -> dict[GroupKey, Alert]:
        found = self.alerts.list(statuses=("open", "acknowledged"), limit=10_000)
        return {(a.model, a.kind, _group(a)): a for a in found if a.kind in CONDITIONS}

    def _rules(self, models: Iterable[str]) -> dict[str, list[AlertRule]]:
        return {
            model: [r for r in self.rules.rules(model).rules if r.kind in CONDITIONS]
            for model in models
        }

    def measure(self, rules: dict[str, list[AlertRule]], now: float) -> list[Finding]:
        findings = []
        for model, model_rules in rules.items():
            windows: dict[int, WindowTotals] = {}
            for rule in model_rules:
                totals = windows.get(rule.window_s)
                if totals is None:
                    totals = windows[rule.window_s] = self.live_stats.window_totals(
                        model, rule.window_s, now
                    )
                findings.append(Finding(model, rule, CONDITIONS[rule.kind].measure(totals, rule)))
        return findings

    def apply(
        self, findings: list[Finding], active: dict[GroupKey, Alert], now: float
    ) -> dict[tuple[str, AlertKind], str]:
        outcomes: dict[tuple[str, AlertKind], str] = {}
        for finding in findings:
            model, rule, measured = finding.model, finding.rule, finding.measurement
            condition = CONDITIONS[rule.kind]
            try:
                outcomes[(model, rule.kind)] = self.engine.judge(
                    model,
                    rule,
                    measured,
                    active.get((model, rule.kind, "")),
                    now,
                    title=f"{model}: {measured.text}",
                    explanation=condition.advice,
                )
            except Exception:
                log.exception("could not judge the %s rule of %s", rule.kind, model)
                outcomes[(model, rule.kind)] = "failed"
        return outcomes


def _group(alert: Alert) -> str:
    # The live-statistics rules group per model; live_metric (judged elsewhere) per version.
    return "" if alert.kind in CONDITIONS else alert.version or ""
