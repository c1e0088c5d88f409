"""The serving version's live quality, judged against the range its gates used: the
``live_metric`` alert rule.

Out of range, an alert is raised (once while it stays active, grouped per version). The
model's rule (``monitoring.rules``) says whether it is on and how loud it is; its threshold is
the version's own acceptable range. What to do about it (an automatic rollback where the
model's policy asks for one) is the deployment side's reaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from backend.monitoring.alerts import AlertService
from backend.monitoring.quality import live_metric
from backend.monitoring.rules import RuleStore
from backend.predictions.reads import newest_labelled
from backend.registry import Registry
from backend.schemas import Alert


@dataclass(frozen=True)
class QualityVerdict:
    # What was found, in words (for logs).
    text: str
    # The version's active quality alert when its quality is out of range, else None.
    alert: Alert | None = None
    # True when this judgement raised the alert (False: it was already active).
    raised: bool = False


def judge_live_metric(
    sessions: sessionmaker[Session],
    registry: Registry,
    alerts: AlertService,
    model: str,
    version: str,
    window: int,
    min_labelled: int,
) -> QualityVerdict:
    """The version's metric on its ``window`` answers labelled last; an alert if out of range."""
    rule = RuleStore(sessions).rule(model, "live_metric")
    if not rule.enabled:
        return QualityVerdict("the live_metric alert rule is switched off for this model")
    info = registry.get_version(model, version)
    validity = info.validity
    measured = live_metric(
        newest_labelled(sessions, model, version, window),
        validity.metric,
        info.class_labels,
        min_labelled,
    )
    if measured.value is None:
        return QualityVerdict(f"{measured.labelled} labelled predictions, {min_labelled} needed")
    value = measured.value
    low, high = validity.acceptable_range
    if low <= value <= high:
        return QualityVerdict(f"{validity.metric} {value:.4g} in range")
    side = "below" if value < low else "above"
    alert, raised = alerts.raise_once(
        model,
        version,
        "live_metric",
        severity=rule.severity,
        title=(
            f"{model} version {version}: live {validity.metric} {value:.4g} is {side} its "
            f"acceptable range [{low:g}, {high:g}]"
        ),
        explanation=(
            f"Of the newest {measured.labelled} predictions of version {version} whose true "
            f"outcome is known, the {validity.metric} is {value:.4g}; when this version was "
            f"deployed its checks allowed {low:g} to {high:g}. Its answers are likely worse "
            "than when it was checked: the world may have changed, or the labels may come "
            "from a different kind of traffic. What to do: compare it with the previous "
            "version and look for drift in recent inputs; roll back if it does not recover. "
            "The model's policy can roll back by itself (auto_rollback)."
        ),
        details={
            "metric": validity.metric,
            "value": value,
            "acceptable_range": [low, high],
            "labelled": measured.labelled,
        },
        cooldown_s=rule.cooldown_s,
    )
    return QualityVerdict("alerted" if raised else "already alerted", alert, raised)
