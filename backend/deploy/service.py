"""Deployments: the one entry point of the deployment side.

Its parts each own one responsibility: ``gating`` (gates, stored reports, refusals),
``switching`` (deploy and roll back), ``rollouts`` (the state machine), ``changes`` (one
reader of a model's state and the guarded change with its audit event). This class wires them
and keeps the policy, the quality-alert record and the queries.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from backend.auth.tokens import Principal
from backend.db.tables import AuditEventRow, GateReportRow, ModelRow
from backend.deploy.audit import deployment_history, record_event
from backend.deploy.changes import SYSTEM, ModelState, read_model_state
from backend.deploy.gating import GateKeeper, GatesRefused
from backend.deploy.held_out import HeldOutSettingsStore
from backend.deploy.rollouts import Rollouts
from backend.deploy.switching import Switching, rollback_option
from backend.errors import NotFound
from backend.monitoring.alerts import AlertService
from backend.registry import Registry, parse_version
from backend.schemas import (
    DEPLOYMENT_ACTIONS,
    DeploymentState,
    GateReport,
    ModelInfo,
    ServingPolicy,
)

__all__ = ["SYSTEM", "DeployService", "GatesRefused"]


class DeployService:
    def __init__(self, sessions: sessionmaker[Session], registry: Registry, alerts: AlertService):
        self.sessions = sessions
        self.registry = registry
        self.alerts = alerts
        gates = GateKeeper(sessions, registry)
        switching = Switching(sessions, registry, gates, self._judge_afresh)
        rollouts = Rollouts(sessions, registry, gates, self._judge_afresh)
        self.deploy = switching.deploy
        self.rollback = switching.rollback
        self.start_rollout = rollouts.start
        self.promote = rollouts.promote
        self.abort = rollouts.abort
        self.advance = rollouts.advance
        self._rollouts = rollouts
        # The held-out share and its no-model policy (held_out.py).
        self.held_out = HeldOutSettingsStore(sessions, registry)

    def pause(self, model: str, reason: str, actor: Principal) -> DeploymentState:
        return self._rollouts.set_paused(model, True, reason, actor)

    def resume(self, model: str, reason: str, actor: Principal) -> DeploymentState:
        return self._rollouts.set_paused(model, False, reason, actor)

    def state(self, model: str) -> ModelState:
        """What the model serves now, its rollout and its policy (404 for an unknown model)."""
        return read_model_state(self.sessions, model)

    # ------------------------------------------------------------------ policy and alerts

    def set_policy(
        self, model: str, policy: ServingPolicy, reason: str, actor: Principal
    ) -> ServingPolicy:
        with self.sessions.begin() as session:
            row = session.scalar(select(ModelRow).where(ModelRow.name == model))
            if row is None:
                raise NotFound(f"no model named {model!r}", "model")
            row.policy = policy.model_dump(mode="json")
            record_event(
                session,
                actor,
                "policy",
                model,
                to_version=row.active_version,
                reason=reason,
                details=policy.model_dump(mode="json"),
            )
        return policy

    def record_alert(self, model: str, version: str, reason: str, details: dict[str, Any]) -> None:
        """A quality alert was raised on the serving version: recorded so that rollbacks skip
        the version until it is deployed again on purpose (the alert itself is monitoring's)."""
        with self.sessions.begin() as session:
            record_event(
                session,
                SYSTEM,
                "metric_alert",
                model,
                to_version=version,
                reason=reason,
                details=details,
            )

    def automatic_rollback_refused(self, model: str) -> bool:
        """Whether an automatic rollback was refused since the serving version last became
        serving: a refused rollback is not retried forever."""
        with self.sessions() as session:
            rows = session.scalars(
                select(AuditEventRow)
                .where(AuditEventRow.model == model)
                .order_by(AuditEventRow.id.desc())
                .limit(500)
            )
            for row in rows:  # newest first, back to the deployment that started it
                if row.action in DEPLOYMENT_ACTIONS:
                    return False
                if row.action == "rollback_refused" and row.actor == SYSTEM.name:
                    return True
        return False

    def _judge_afresh(self, model: str, version: str, actor: Principal, session: Session) -> None:
        """A version deployed on purpose starts with a clean slate: its old quality alert no
        longer applies, and a new one is raised if its quality leaves the range again."""
        self.alerts.resolve(
            model,
            version,
            "live_metric",
            f"version {version} was deployed again by {actor.name}; it is judged afresh",
            session,
        )

    def alert_recorded(self, model: str, alert_id: int) -> bool:
        """Whether a quality alert's consequence is in the audit trail already (the alert and
        its audit event are written one after the other: a crash between leaves it out)."""
        with self.sessions() as session:
            rows = session.scalars(
                select(AuditEventRow)
                .where(AuditEventRow.model == model, AuditEventRow.action == "metric_alert")
                .order_by(AuditEventRow.id.desc())
                .limit(100)
            )
            return any(row.details.get("alert_id") == alert_id for row in rows)

    # ------------------------------------------------------------------ reading

    def model_info(self, model: str) -> ModelInfo:
        info = self.registry.get_model(model)
        # The state as the registry read it, so the option agrees with what the info shows.
        state = ModelState(info.active_version, 0, info.rollout, info.policy)
        with self.sessions() as session:
            events = deployment_history(session, model, with_alerts=True)
        info.history = [e for e in events if e.action != "metric_alert"]
        info.rollback = rollback_option(model, state, events)
        return info

    def gate_reports(self, model: str, version: str | None = None) -> list[GateReport]:
        self.registry.get_model(model)  # 404 for an unknown model
        query = select(GateReportRow).where(GateReportRow.model == model)
        if version is not None:
            query = query.where(GateReportRow.version == str(parse_version(version)))
        with self.sessions() as session:
            rows = session.scalars(query.order_by(GateReportRow.id.desc()).limit(200))
            return [GateReport(**row.report, id=row.id) for row in rows]
