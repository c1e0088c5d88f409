"""The deployment side's reaction to a quality alert on the serving version.

Monitoring judges the serving version's live metric and raises the alert (``monitoring.watch``);
here the alert marks the version as not good to return to (an audit event, so rollbacks skip
it until it is deployed again on purpose) and, where the model's policy asks for it, rolls the
model back through the gates. Every action lands in the audit trail.
"""

from __future__ import annotations

import logging

from backend.deploy.service import SYSTEM, DeployService
from backend.errors import ServeDeckError
from backend.monitoring.alerts import AlertService
from backend.monitoring.watch import judge_live_metric

log = logging.getLogger(__name__)


def react_to_quality(deploy: DeployService, alerts: AlertService, model: str) -> str:
    """Judge one model's serving version and react; returns what was done, in words."""
    state = deploy.state(model)
    active, policy = state.active, state.policy
    if active is None or state.rollout is not None:
        return "nothing to judge"  # a rollout judges its candidate with its own checks
    verdict = judge_live_metric(
        deploy.sessions,
        deploy.registry,
        alerts,
        model,
        active,
        policy.metric_window,
        policy.min_labelled,
    )
    alert = verdict.alert
    if alert is None:
        return verdict.text
    if verdict.raised or not deploy.alert_recorded(model, alert.id):
        deploy.record_alert(
            model,
            active,
            alert.title,
            {**alert.details, "alert_id": alert.id, "auto_rollback": policy.auto_rollback},
        )
    # Rolled back once per alert: also when the policy is switched on after it was raised,
    # never again after the gates refused it.
    if not policy.auto_rollback or deploy.automatic_rollback_refused(model):
        return verdict.text
    try:
        deploy.rollback(model, f"automatic: {alert.title}", SYSTEM, from_version=active)
    except ServeDeckError as exc:  # refused by a gate, or no earlier version: the alert stands
        log.warning("automatic rollback of %s refused: %s", model, exc.reason)
        return f"{verdict.text}; rollback refused: {exc.reason}"
    return "alerted and rolled back"
