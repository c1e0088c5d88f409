"""The serving version's live metric, judged against the range its gates used.

Out of range, an alert is recorded in the audit trail (once per version) and, where the
model's policy says so, the model is rolled back by the backend itself, through the gates.
"""

from __future__ import annotations

import logging
from typing import Any

from backend.deploy.metrics import MetricUnavailable, score_metric
from backend.deploy.service import SYSTEM, DeployService
from backend.errors import ServeDeckError
from backend.predictions.reads import newest_labelled
from backend.registry import Prediction
from backend.schemas import ModelVersionInfo

log = logging.getLogger(__name__)


def live_metric(
    deploy: DeployService, model: str, info: ModelVersionInfo, window: int
) -> tuple[float | None, int]:
    """(metric, labelled rows) over the ``window`` answers of a version labelled last."""
    rows = newest_labelled(deploy.sessions, model, info.version, window)
    if not rows:
        return None, 0
    probabilities: list[Any] = [outputs.get("predict_proba") for outputs, _ in rows]
    prediction = Prediction(
        [outputs.get("predict") for outputs, _ in rows],
        probabilities if all(p is not None for p in probabilities) else None,
    )
    try:
        value = score_metric(
            info.validity.metric, [label for _, label in rows], prediction, info.class_labels
        )
    except (MetricUnavailable, ValueError):
        return None, len(rows)
    return value, len(rows)


def watch_model(deploy: DeployService, model: str) -> str:
    """Judge one model's serving version; returns what was done, in words (for logs)."""
    active, rollout, policy = deploy.serving_state(model)
    if active is None or rollout is not None:
        return "nothing to judge"  # a rollout judges its candidate with its own checks
    info = deploy.registry.get_version(model, active)
    value, labelled = live_metric(deploy, model, info, policy.metric_window)
    if value is None or labelled < policy.min_labelled:
        return f"{labelled} labelled predictions, {policy.min_labelled} needed"
    validity = info.validity
    low, high = validity.acceptable_range
    if low <= value <= high:
        return f"{validity.metric} {value:.4g} in range"
    alerted, rollback_refused = deploy.alert_state(model, active)
    reason = (
        f"live {validity.metric} {value:.4g} on the newest {labelled} labelled predictions is "
        f"outside [{low:g}, {high:g}]"
    )
    if not alerted:
        details = {
            "metric": validity.metric,
            "value": value,
            "acceptable_range": [low, high],
            "labelled": labelled,
            "auto_rollback": policy.auto_rollback,
        }
        deploy.record_alert(model, active, reason, details)
    # Rolled back once per alert: also when the policy is switched on after it was raised,
    # never again after the gates refused it.
    if not policy.auto_rollback or rollback_refused:
        return "already alerted" if alerted else "alerted"
    try:
        deploy.rollback(model, f"automatic: {reason}", SYSTEM, from_version=active)
    except ServeDeckError as exc:  # refused by a gate, or no earlier version: the alert stands
        log.warning("automatic rollback of %s refused: %s", model, exc.reason)
        return f"alerted; rollback refused: {exc.reason}"
    return "alerted and rolled back"
