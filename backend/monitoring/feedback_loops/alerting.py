"""The feedback_loop alert rule: every serving model's indicators over the rule's window
(ending now), handed to the rule engine (grouping, ``for_s``, cooldown, resolution by
itself). One alert per model while any indicator is at alert; it names every such indicator.

Each round first counts the recent labels that came before their predictions were logged
(``count_recent_labels``), so the counts catch up within a round. The numbers are read from
the store, shared by every worker: each worker judges the same numbers, and the alerts'
unique index lets one alert in.
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from backend.monitoring.alerts import AlertService
from backend.monitoring.evaluator import ModelsServing
from backend.monitoring.feedback_loops.report import RULE_KIND, Indicators, compute_indicators
from backend.monitoring.rule_watch import NOT_JUDGED, StoredRuleWatch, rule_window
from backend.monitoring.rules import Measurement, RuleStore
from backend.predictions.loop_counts import count_recent_labels
from backend.registry import Registry
from backend.schemas import AlertKind, AlertRule

EVALUATE_EVERY_S = 30.0
# Labels that came before their prediction are caught up for this long after they came.
CATCH_UP_S = 86_400.0

ADVICE = (
    "The model's own answers shape the data it is measured and retrained on: served traffic "
    "(answered by the model) and held-out traffic (answered without it) no longer agree on "
    "outcomes, labels or measured quality. Open the Feedback loops page: each indicator says "
    "what differs and what to do. Until it is understood, judge and retrain the model on "
    "held-out labels (or reviewed held-out examples), not on served ones."
)


def measure(found: Indicators, rule: AlertRule) -> Measurement:
    """The rule's finding: bad while any indicator is at alert."""
    alerting = [i for i in found.all if i.status == "alert"]
    whole = found.whole
    count = min(whole.served.labelled, whole.held_out.labelled)
    sizes = [abs(i.gap.value) for i in alerting if i.gap.value is not None]
    minutes = max(1, round(rule.window_s / 60))
    text = (
        f"feedback loop in the last {minutes} min: "
        + ", ".join(
            f"{i.title.lower()} (gap {i.gap.value:+.2f})"
            if i.gap.value is not None
            else i.title.lower()
            for i in alerting
        )
        if alerting
        else "served and held-out traffic agree"
    )
    details = {
        "window_s": rule.window_s,
        "threshold": found.thresholds.alert_at,
        "served_labels": whole.served.labelled,
        "held_out_labels": whole.held_out.labelled,
        "indicators": {
            i.name: {"status": i.status, "gap": i.gap.value, "enough_data": i.enough_data}
            for i in found.all
        },
    }
    return Measurement(max(sizes) if sizes else None, bool(alerting), count, text, details)


class FeedbackLoopWatch(StoredRuleWatch):
    kinds = frozenset({RULE_KIND})
    what = "the feedback-loop alert rules"

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

    def start_round(self, now: float) -> None:
        count_recent_labels(self.sessions, now - CATCH_UP_S)

    def measure(self, model: str, rule: AlertRule, now: float) -> Measurement | None:
        version = self.registry.get_model(model).active_version
        if version is None:
            return NOT_JUDGED
        info = self.registry.get_version(model, version)
        window = rule_window(now, rule.window_s)
        found = compute_indicators(self.sessions, self.rules, model, info, [window])
        return measure(found, rule)

    def advice(self, kind: AlertKind) -> str:
        return ADVICE
