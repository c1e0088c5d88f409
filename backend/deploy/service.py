"""Deployments: deploy and roll back through the gates, run rollouts, record every action.

Every change of what a model serves is one conditional UPDATE of the model's row, guarded by
its state generation: two actions racing on one model cannot both win (the loser gets 409
and retries on fresh state), and every serving worker notices the new generation by polling.
The audit event and the gate report land in the same transaction as the change.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from backend.auth.tokens import Principal
from backend.db.tables import AuditEventRow, GateReportRow, ModelRow
from backend.deploy.audit import deployment_history, good_versions, record_event, to_event
from backend.deploy.gates import run_gates
from backend.errors import Conflict, InputError, NotFound
from backend.monitoring.alerts import AlertService
from backend.registry import Registry, parse_version
from backend.schemas import (
    DEPLOYMENT_ACTIONS,
    AuditAction,
    AuditEvent,
    DeploymentState,
    GatePurpose,
    GateReport,
    ModelInfo,
    ModelVersionInfo,
    RolloutRequest,
    RolloutState,
    ServingPolicy,
)

# Actions the backend takes by itself (a rollout advancing or aborting on its checks).
SYSTEM = Principal(name="servedeck", role="system")


class GatesRefused(Conflict):
    """409 with the whole gate report in the error body."""

    def __init__(self, what: str, report: GateReport):
        failed = [g.gate for g in report.gates if g.outcome == "failed"]
        super().__init__(
            f"{what} refused: version {report.version} failed the {', '.join(failed)} "
            "gate(s); see gate_report",
            "version",
            details={"gate_report": report.model_dump(mode="json")},
        )
        self.report = report


class DeployService:
    def __init__(self, sessions: sessionmaker[Session], registry: Registry, alerts: AlertService):
        self.sessions = sessions
        self.registry = registry
        self.alerts = alerts

    # ------------------------------------------------------------------ deploy and rollback

    def deploy(
        self, model: str, version: str, reason: str, actor: Principal, force_signature: bool = False
    ) -> DeploymentState:
        version = str(parse_version(version))
        active, generation, rollout = self._snapshot(model)
        # First, so that an unknown version is a 404 whatever the model's state; kept for the gates.
        info = self.registry.get_version(model, version)
        if rollout is not None:
            raise Conflict(
                f"a rollout of version {rollout.candidate} is running; promote or abort it "
                "before deploying",
                "rollout",
            )
        if version == active:
            raise Conflict(f"version {version} is already serving", "version")
        state = self._switch(
            model, generation, actor, "deploy", active, version, reason, force_signature, info
        )
        self._judge_afresh(model, version, actor)
        return state

    def rollback(
        self,
        model: str,
        reason: str,
        actor: Principal,
        force_signature: bool = False,
        from_version: str | None = None,
    ) -> DeploymentState:
        """Back to the version served before this one, through the same gates.

        ``from_version``: the version the caller saw serving; refused (409) if another action
        changed it meanwhile, so two rollbacks racing never go back two steps."""
        active, generation, rollout = self._snapshot(model)
        if from_version is not None and str(parse_version(from_version)) != active:
            raise Conflict(
                f"version {from_version} no longer serves {model!r} (version {active} does); "
                "look at its new state before rolling back",
                "from_version",
            )
        if rollout is not None:
            raise Conflict(
                f"a rollout of version {rollout.candidate} is running; abort it to send all "
                f"traffic back to version {active}",
                "rollout",
            )
        if active is None:
            raise Conflict(f"model {model!r} serves no version yet: nothing to roll back", "model")
        with self.sessions() as session:
            target = _rollback_target(deployment_history(session, model, True), active)
        if target is None:
            raise Conflict(
                f"{model!r} has no earlier good version to roll back to from version {active} "
                "(it was the first served, or every earlier one was rolled back from or raised "
                "a quality alert); deploy another version instead",
                "version",
            )
        return self._switch(
            model, generation, actor, "rollback", active, target, reason, force_signature
        )

    # ------------------------------------------------------------------ rollouts

    def start_rollout(
        self, model: str, request: RolloutRequest, actor: Principal
    ) -> DeploymentState:
        candidate = str(parse_version(request.candidate))
        active, generation, rollout = self._snapshot(model)
        info = self.registry.get_version(model, candidate)
        if rollout is not None:
            raise Conflict(
                f"a rollout of version {rollout.candidate} is already running; promote or "
                "abort it first",
                "rollout",
            )
        if active is None:
            raise Conflict(
                f"model {model!r} serves no version yet: deploy one first (a rollout compares "
                "a candidate with the version serving)",
                "model",
            )
        if candidate == active:
            raise Conflict(f"version {candidate} is already serving", "candidate")
        _check_steps(request.steps)
        report = self._passing_report(
            model,
            candidate,
            "rollout",
            actor,
            active,
            request.reason,
            request.force_signature,
            info,
        )
        now = datetime.now(UTC)
        shadow_first = request.mode == "shadow"
        state = RolloutState(
            candidate=candidate,
            mode=request.mode,
            phase="shadow" if shadow_first else "canary",
            steps=request.steps,
            step_index=-1 if shadow_first else 0,
            percent=0.0 if shadow_first else request.steps[0],
            paused=False,
            min_dwell_s=request.min_dwell_s,
            min_samples=request.min_samples,
            checks=request.checks,
            started_by=actor.name,
            started_at=now,
            step_started_at=now,
        )
        return self._change(
            model,
            generation,
            actor,
            "rollout_start",
            active,
            candidate,
            request.reason,
            {"rollout": state.model_dump(mode="json")},
            report,
            details={"mode": request.mode, "steps": request.steps, "stage": _stage(state)},
        )

    def pause(self, model: str, reason: str, actor: Principal) -> DeploymentState:
        return self._set_paused(model, True, reason, actor)

    def resume(self, model: str, reason: str, actor: Principal) -> DeploymentState:
        return self._set_paused(model, False, reason, actor)

    def promote(
        self,
        model: str,
        reason: str,
        actor: Principal,
        details: dict[str, Any] | None = None,
        expected: RolloutState | None = None,
    ) -> DeploymentState:
        """The candidate becomes the serving version for all traffic; the rollout ends.

        ``expected``: act only if the rollout is still exactly this (the controller's verdict
        must not land on a rollout that was paused or replaced meanwhile)."""
        active, generation, rollout = self._running(model, expected)
        state = self._change(
            model,
            generation,
            actor,
            "promote",
            active,
            rollout.candidate,
            reason,
            {"active_version": rollout.candidate, "rollout": None},
            details={"stage": _stage(rollout), **(details or {})},
        )
        self._judge_afresh(model, rollout.candidate, actor)
        return state

    def abort(
        self,
        model: str,
        reason: str,
        actor: Principal,
        details: dict[str, Any] | None = None,
        expected: RolloutState | None = None,
    ) -> DeploymentState:
        """All traffic back to the serving version; the candidate stops scoring."""
        active, generation, rollout = self._running(model, expected)
        return self._change(
            model,
            generation,
            actor,
            "abort",
            rollout.candidate,
            active,
            reason,
            {"rollout": None},
            details={"stage": _stage(rollout), **(details or {})},
        )

    def advance(
        self, model: str, expected: RolloutState, details: dict[str, Any]
    ) -> DeploymentState:
        """The next stage, when ``expected`` is still the state (one worker wins the race)."""
        active, generation, rollout = self._running(model, expected)
        now = datetime.now(UTC)
        following = rollout.model_copy(
            update={
                "phase": "canary",
                "step_index": rollout.step_index + 1,
                "percent": rollout.steps[rollout.step_index + 1],
                "step_started_at": now,
            }
        )
        return self._change(
            model,
            generation,
            SYSTEM,
            "rollout_step",
            active,
            rollout.candidate,
            f"checks passed; now {_stage(following)}",
            {"rollout": following.model_dump(mode="json")},
            details={"from_stage": _stage(rollout), "stage": _stage(following), **details},
        )

    # ------------------------------------------------------------------ policy

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

    # ------------------------------------------------------------------ reading

    def model_info(self, model: str) -> ModelInfo:
        info = self.registry.get_model(model)
        with self.sessions() as session:
            info.history = deployment_history(session, model)
            if info.active_version is not None:
                events = deployment_history(session, model, with_alerts=True)
                info.rollback_target = _rollback_target(events, info.active_version)
        return info

    def gate_reports(self, model: str, version: str | None = None) -> list[GateReport]:
        self.registry.get_model(model)  # 404 for an unknown model
        query = select(GateReportRow).where(GateReportRow.model == model)
        if version is not None:
            query = query.where(GateReportRow.version == str(parse_version(version)))
        with self.sessions() as session:
            rows = session.scalars(query.order_by(GateReportRow.id.desc()).limit(200))
            return [GateReport(**row.report, id=row.id) for row in rows]

    # ------------------------------------------------------------------ internals

    def _judge_afresh(self, model: str, version: str, actor: Principal) -> None:
        """A version deployed on purpose starts with a clean slate: its old quality alert no
        longer applies, and a new one is raised if its quality leaves the range again."""
        self.alerts.resolve(
            model,
            version,
            "live_metric",
            f"version {version} was deployed again by {actor.name}; it is judged afresh",
        )

    def serving_state(self, model: str) -> tuple[str | None, RolloutState | None, ServingPolicy]:
        """(serving version, rollout, policy) from the model's row alone: cheap enough to
        read every few seconds, unlike the whole ModelInfo with every version's assets."""
        with self.sessions() as session:
            row = session.scalar(select(ModelRow).where(ModelRow.name == model))
            if row is None:
                raise NotFound(f"no model named {model!r}", "model")
            rollout = RolloutState(**row.rollout) if row.rollout else None
            return row.active_version, rollout, ServingPolicy(**(row.policy or {}))

    def _snapshot(self, model: str) -> tuple[str | None, int, RolloutState | None]:
        with self.sessions() as session:
            row = session.scalar(select(ModelRow).where(ModelRow.name == model))
            if row is None:
                raise NotFound(f"no model named {model!r}", "model")
            rollout = RolloutState(**row.rollout) if row.rollout else None
            return row.active_version, row.state_generation, rollout

    def _running(
        self, model: str, expected: RolloutState | None = None
    ) -> tuple[str | None, int, RolloutState]:
        active, generation, rollout = self._snapshot(model)
        if rollout is None:
            raise Conflict(
                f"no rollout is running for {model!r}; start one with PUT "
                f"/api/v1/models/{model}/rollout",
                "rollout",
            )
        if expected is not None and rollout != expected:
            raise Conflict("the rollout changed meanwhile", "rollout")
        return active, generation, rollout

    def _set_paused(
        self, model: str, paused: bool, reason: str, actor: Principal
    ) -> DeploymentState:
        active, generation, rollout = self._running(model)
        if rollout.paused == paused:
            raise Conflict(f"the rollout is already {'paused' if paused else 'running'}", "rollout")
        # Resuming restarts the dwell time: the checks need a fresh window of traffic.
        changed = rollout.model_copy(
            update={"paused": paused, "step_started_at": datetime.now(UTC)}
        )
        action: AuditAction = "rollout_pause" if paused else "rollout_resume"
        return self._change(
            model,
            generation,
            actor,
            action,
            active,
            rollout.candidate,
            reason,
            {"rollout": changed.model_dump(mode="json")},
            details={"stage": _stage(rollout)},
        )

    def _switch(
        self,
        model: str,
        generation: int,
        actor: Principal,
        action: Literal["deploy", "rollback"],
        active: str | None,
        target: str,
        reason: str,
        force_signature: bool,
        info: ModelVersionInfo | None = None,
    ) -> DeploymentState:
        """Gate ``target`` and make it the serving version: a deployment and a rollback are
        the same path, only the version chosen differs."""
        report = self._passing_report(model, target, action, actor, active, reason, force_signature)
        return self._change(
            model,
            generation,
            actor,
            action,
            active,
            target,
            reason,
            {"active_version": target},
            report,
        )

    def _passing_report(
        self,
        model: str,
        version: str,
        purpose: GatePurpose,
        actor: Principal,
        active: str | None,
        reason: str,
        force_signature: bool,
        info: ModelVersionInfo | None = None,
    ) -> GateReport:
        """Run the gates on ``version`` and store their report; a refusal is recorded in the
        audit trail and raised as 409."""
        info = info or self.registry.get_version(model, version)
        callers = self.registry.get_version(model, active).signature if active else None
        if force_signature and not reason.strip():
            raise InputError("forcing a signature change needs a reason", "reason")
        run = run_gates(
            self.registry,
            info,
            model,
            purpose=purpose,
            checked_by=actor.name,
            callers_signature=callers,
            force_reason=reason if force_signature else None,
        )
        report = run.report
        with self.sessions.begin() as session:
            row = GateReportRow(
                model=model,
                version=version,
                purpose=purpose,
                passed=report.passed,
                checked_by=actor.name,
                checked_at=report.checked_at,
                report=report.model_dump(mode="json", exclude={"id"}),
            )
            session.add(row)
            session.flush()
            report.id = row.id
        if not report.passed:
            action: AuditAction = f"{purpose}_refused"  # type: ignore[assignment]
            self._refuse(action, model, actor, active, version, reason, report)
            raise GatesRefused("deployment" if purpose == "deploy" else purpose, report)
        return report

    def _refuse(
        self,
        action: AuditAction,
        model: str,
        actor: Principal,
        active: str | None,
        version: str,
        reason: str,
        report: GateReport,
    ) -> None:
        failed = [g.gate for g in report.gates if g.outcome == "failed"]
        with self.sessions.begin() as session:
            record_event(
                session,
                actor,
                action,
                model,
                from_version=active,
                to_version=version,
                reason=reason,
                details={"gate_report_id": report.id, "failed_gates": failed},
            )

    def _change(
        self,
        model: str,
        generation: int,
        actor: Principal,
        action: AuditAction,
        from_version: str | None,
        to_version: str | None,
        reason: str,
        values: dict[str, Any],
        report: GateReport | None = None,
        details: dict[str, Any] | None = None,
    ) -> DeploymentState:
        with self.sessions.begin() as session:
            changed = session.execute(
                update(ModelRow)
                .where(ModelRow.name == model, ModelRow.state_generation == generation)
                .values(state_generation=generation + 1, **values)
            )
            if changed.rowcount != 1:  # type: ignore[attr-defined]
                raise Conflict(
                    f"model {model!r} changed while this {action.replace('_', ' ')} was being "
                    "checked; look at its new state and try again",
                    "model",
                )
            event = record_event(
                session,
                actor,
                action,
                model,
                from_version=from_version,
                to_version=to_version,
                reason=reason,
                details={**({"gate_report_id": report.id} if report else {}), **(details or {})},
            )
            row = session.scalar(select(ModelRow).where(ModelRow.name == model))
            assert row is not None
            rollout = RolloutState(**row.rollout) if row.rollout else None
            return DeploymentState(
                model=model,
                active_version=row.active_version,
                rollout=rollout,
                report=report,
                event=to_event(event),
            )


def _rollback_target(history: list[AuditEvent], active: str) -> str | None:
    stack = good_versions(history)
    if stack and stack[-1] == active:
        stack.pop()
    return stack[-1] if stack else None


def _check_steps(steps: list[float]) -> None:
    for i, step in enumerate(steps):
        if not 0 < step <= 100:
            raise InputError(
                f"each step is a percentage above 0 and at most 100, got {step}", f"steps[{i}]"
            )
        if i and step <= steps[i - 1]:
            raise InputError(
                "steps must increase: each share of traffic above the last", f"steps[{i}]"
            )


def _stage(rollout: RolloutState) -> str:
    return "shadow" if rollout.phase == "shadow" else f"canary {rollout.percent:g}%"
