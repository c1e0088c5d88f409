"""Alert rules: their defaults, each model's own settings, and the conditions they judge.

A rule (``schemas.AlertRule``) names a kind, a severity, a threshold, a window, and how long
the condition must hold (``for_s``), stay clear (``clear_for_s``) and keep quiet after a
resolution (``cooldown_s``). The defaults below apply until a model stores its own setting of
a kind (``alert_rules`` table, edited through the API).

A condition turns a window of counts into a ``Measurement``. Adding a rule kind is one
``Condition`` subclass plus its name in ``AlertKind`` (and a default here); a condition whose
number is computed elsewhere (drift, an estimated metric) hands its ``Measurement`` to
``RuleEngine.judge`` itself and needs no class here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from backend.db.tables import AlertRuleRow
from backend.errors import InputError
from backend.monitoring.live_stats import WindowTotals
from backend.schemas import DECISIONS, AlertKind, AlertRule, AlertRules, AlertSeverity


# Defaults chosen as on-call practice has them (Google's SRE workbook, Prometheus' alerting
# rules): a condition must last minutes before anyone is woken, stay clear for minutes
# before it is called over, and not come back as a new alert within half an hour.
def _drift_rule(kind: AlertKind, severity: AlertSeverity, enabled: bool = True) -> AlertRule:
    """A drift rule's timing, the same for the three: a quarter hour of traffic, 500 rows."""
    return AlertRule(
        kind=kind,
        enabled=enabled,
        severity=severity,
        window_s=900,
        min_count=500,
        for_s=120,
        clear_for_s=900,
        cooldown_s=3_600,
    )


DEFAULT_RULES: dict[AlertKind, AlertRule] = {
    # The serving version's realized quality against its own acceptable range (no threshold
    # here); judged by the deployment side's watch, which rolls back where the policy says.
    # Raised at once (the labelled window already smooths it) and resolved when the version is
    # deployed again on purpose, never by itself: it marks the version as not good to return to.
    "live_metric": AlertRule(
        kind="live_metric", severity="critical", for_s=0, clear_for_s=0, cooldown_s=0
    ),
    "p99_latency": AlertRule(
        kind="p99_latency",
        severity="warning",
        threshold=1_000.0,
        window_s=300,
        min_count=50,
        for_s=300,
        clear_for_s=600,
        cooldown_s=1_800,
    ),
    # Failures (5xx) are ours: a share of the calls the server could not answer.
    "error_rate": AlertRule(
        kind="error_rate",
        severity="critical",
        threshold=0.05,
        window_s=300,
        min_count=50,
        for_s=120,
        clear_for_s=600,
        cooldown_s=1_800,
    ),
    # Refusals (4xx) are the callers' fault (bad input, wrong token, too large): a separate,
    # quieter rule, since a misbehaving client is not the model failing.
    "refusal_rate": AlertRule(
        kind="refusal_rate",
        severity="warning",
        threshold=0.25,
        window_s=600,
        min_count=50,
        for_s=300,
        clear_for_s=600,
        cooldown_s=3_600,
    ),
    "decision_mix": AlertRule(
        kind="decision_mix",
        severity="warning",
        threshold=0.2,
        window_s=900,
        min_count=100,
        for_s=300,
        clear_for_s=900,
        cooldown_s=3_600,
        decisions=["abstained", "fallback"],
    ),
    # Drift (judged by monitoring.drift.alerting on the counts the log writer keeps): one alert
    # per model while any input drifts over a quarter of an hour of traffic, for two minutes
    # (a window just filling up after a start or a quiet spell is not raised at once), quiet
    # for an hour after it clears.
    "drift_features": _drift_rule("drift_features", "warning"),
    # Off by default: with drift_features on they would raise a second and third alert for
    # the same change. Switch them on for a critical alert when most inputs move, or for one
    # on the model's answers alone.
    "drift_dataset": _drift_rule("drift_dataset", "critical", enabled=False),
    "drift_prediction": _drift_rule("drift_prediction", "warning", enabled=False),
    # Feedback loops (judged by monitoring.feedback_loops.alerting on the labelled-outcome
    # aggregates): one alert per model while any indicator is at alert, i.e. served and
    # held-out traffic differ by at least ``threshold`` (10 points of a share; half of it
    # warns on the page) with a confidence interval that excludes no difference. Labels come
    # late and the held-out side is small, so an hour of predictions, 50 labels a side, five
    # minutes of holding before it is raised, a quarter hour clear before it is over.
    "feedback_loop": AlertRule(
        kind="feedback_loop",
        severity="warning",
        threshold=0.10,
        window_s=3_600,
        min_count=50,
        for_s=300,
        clear_for_s=900,
        cooldown_s=3_600,
    ),
    # User signals (judged by monitoring.user_signals on the signal counts kept as signals
    # arrive): the share of the serving version's answers that users undid, or complained
    # about, over an hour of predictions with at least 200 answers (a handful of undos in a
    # quiet hour is not a trend); five minutes of holding, a quarter hour clear to end it.
    # Complaints take effort, so far fewer of them mean as much as undos do.
    "undo_rate": AlertRule(
        kind="undo_rate",
        severity="warning",
        threshold=0.10,
        window_s=3_600,
        min_count=200,
        for_s=300,
        clear_for_s=900,
        cooldown_s=3_600,
    ),
    "complaint_rate": AlertRule(
        kind="complaint_rate",
        severity="warning",
        threshold=0.02,
        window_s=3_600,
        min_count=200,
        for_s=300,
        clear_for_s=900,
        cooldown_s=3_600,
    ),
}


@dataclass(frozen=True)
class Measurement:
    """What a condition found in one window."""

    # The number compared with the threshold; None: too little traffic to judge.
    value: float | None
    # Whether the condition holds (False also when it could not be judged).
    bad: bool
    # How many requests (or rows) the window held.
    count: int
    # The finding in words, for the alert's title.
    text: str
    details: dict[str, Any]


class Condition:
    """One rule kind judged on a window of this worker's live statistics."""

    kind: AlertKind
    # Plain words: what it means and what to do (the alert's explanation).
    advice: str

    def measure(self, totals: WindowTotals, rule: AlertRule) -> Measurement:
        raise NotImplementedError


def _judged(
    value: float | None, rule: AlertRule, count: int, text: str, **details: Any
) -> Measurement:
    assert rule.threshold is not None
    bad = value is not None and count >= rule.min_count and value > rule.threshold
    if count < rule.min_count:
        value = None
    return Measurement(
        value,
        bad,
        count,
        text,
        {"value": value, "threshold": rule.threshold, "count": count, **details},
    )


class P99Latency(Condition):
    kind = "p99_latency"
    advice = (
        "One request in a hundred took longer than this. Callers may time out or give up. "
        "What to do: look at the load (requests per second) and the machine; a new version "
        "or input that is larger than usual can be slower; add workers or roll back."
    )

    def measure(self, totals: WindowTotals, rule: AlertRule) -> Measurement:
        p99 = totals.latency_quantile_ms(0.99)
        return _judged(
            p99,
            rule,
            totals.requests,
            f"p99 latency {p99 or 0:.0f} ms over the last {rule.window_s} s "
            f"(limit {rule.threshold:g} ms)",
        )


class ErrorRate(Condition):
    kind = "error_rate"
    advice = (
        "This share of calls failed on the server's side (5xx): callers got no answer. "
        "What to do: read the server log for the failures' cause; a version that fails "
        "should be rolled back."
    )

    def measure(self, totals: WindowTotals, rule: AlertRule) -> Measurement:
        calls = totals.requests + totals.failed
        share = totals.failed / calls if calls else 0.0
        return _judged(
            share,
            rule,
            calls,
            f"{totals.failed} of {calls} calls failed ({share:.1%}, limit {rule.threshold:.1%})",
            failed=totals.failed,
        )


class RefusalRate(Condition):
    kind = "refusal_rate"
    advice = (
        "This share of calls was refused (4xx): bad input, a wrong or revoked token, too "
        "large or too many requests. The callers are at fault, not the model. What to do: "
        "find which caller sends them (the refusals' log lines name the reason) and tell them."
    )

    def measure(self, totals: WindowTotals, rule: AlertRule) -> Measurement:
        calls = totals.requests + totals.refused + totals.failed
        share = totals.refused / calls if calls else 0.0
        return _judged(
            share,
            rule,
            calls,
            f"{totals.refused} of {calls} calls refused ({share:.1%}, limit {rule.threshold:.1%})",
            refused=totals.refused,
        )


class DecisionMix(Condition):
    kind = "decision_mix"
    advice = (
        "More answers than usual were not the model's own (it abstained, a fallback answered, "
        "or the request was held out). The model may be unsure of inputs it has not seen. "
        "What to do: look for drift in recent inputs and at the guard's settings."
    )

    def measure(self, totals: WindowTotals, rule: AlertRule) -> Measurement:
        rows = int(totals.decisions.sum())
        counted = {d: int(totals.decisions[DECISIONS.index(d)]) for d in rule.decisions}
        share = sum(counted.values()) / rows if rows else 0.0
        names = " or ".join(rule.decisions)
        return _judged(
            share,
            rule,
            rows,
            f"{share:.1%} of {rows} answers were {names} (limit {rule.threshold:.1%})",
            decisions=counted,
        )


# The kinds judged on this worker's live statistics.
CONDITIONS: dict[AlertKind, Condition] = {
    c.kind: c for c in (P99Latency(), ErrorRate(), RefusalRate(), DecisionMix())
}


class RuleStore:
    """Each model's rules: its own settings over the defaults."""

    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions

    def rules(self, model: str) -> AlertRules:
        with self.sessions() as session:
            own = {
                row.kind: AlertRule.model_validate(row.rule)
                for row in session.scalars(select(AlertRuleRow).where(AlertRuleRow.model == model))
            }
        return AlertRules(
            model=model,
            rules=[own.get(kind, default) for kind, default in DEFAULT_RULES.items()],
            customized=[kind for kind in DEFAULT_RULES if kind in own],
        )

    def rule(self, model: str, kind: AlertKind) -> AlertRule:
        with self.sessions() as session:
            row = session.scalar(
                select(AlertRuleRow).where(AlertRuleRow.model == model, AlertRuleRow.kind == kind)
            )
        return DEFAULT_RULES[kind] if row is None else AlertRule.model_validate(row.rule)

    def replace(self, model: str, rules: list[AlertRule], who: str) -> AlertRules:
        """The model's rules become ``rules``; a kind left out goes back to its default."""
        seen: set[str] = set()
        for index, rule in enumerate(rules):
            if rule.kind not in DEFAULT_RULES:
                raise InputError(
                    f"no rule of kind {rule.kind!r} can be set yet (its numbers come from "
                    f"monitoring that is not there); kinds: {', '.join(DEFAULT_RULES)}",
                    f"rules[{index}].kind",
                )
            if rule.kind in seen:
                raise InputError(f"{rule.kind} is given twice", f"rules[{index}].kind")
            seen.add(rule.kind)
        now = time.time()
        with self.sessions.begin() as session:
            session.execute(delete(AlertRuleRow).where(AlertRuleRow.model == model))
            for rule in rules:
                session.add(
                    AlertRuleRow(
                        model=model,
                        kind=rule.kind,
                        rule=rule.model_dump(mode="json"),
                        updated_by=who,
                        updated_at=now,
                    )
                )
        return self.rules(model)


def default_rules() -> list[AlertRule]:
    return list(DEFAULT_RULES.values())
