"""What a model serves, read in one place, and changed by one conditional UPDATE.

Every change of what a model serves is one UPDATE of the model's row, guarded by its state
generation: two actions racing on one model cannot both win (the loser gets 409 and retries
on fresh state), and every serving worker notices the new generation by polling. The audit
event and the gate report's id land in the same transaction as the change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from backend.auth.tokens import Principal
from backend.db.tables import ModelRow
from backend.deploy.audit import record_event, to_event
from backend.errors import Conflict, NotFound
from backend.schemas import AuditAction, DeploymentState, GateReport, RolloutState, ServingPolicy

# Actions the backend takes by itself (a rollout advancing or aborting on its checks, an
# automatic rollback).
SYSTEM = Principal(name="servedeck", role="system")


@dataclass(frozen=True)
class ModelState:
    """A model's row as deployment reads it: cheap enough to read every few seconds."""

    active: str | None
    generation: int
    rollout: RolloutState | None
    policy: ServingPolicy

    def running_rollout(self, model: str, expected: RolloutState | None = None) -> RolloutState:
        """The running rollout; 409 if there is none, or (with ``expected``) if it changed
        since the caller looked (a verdict must not land on a paused or replaced rollout)."""
        if self.rollout is None:
            raise Conflict(
                f"no rollout is running for {model!r}; start one with PUT "
                f"/api/v1/models/{model}/rollout",
                "rollout",
            )
        if expected is not None and self.rollout != expected:
            raise Conflict("the rollout changed meanwhile", "rollout")
        return self.rollout


def read_model_state(sessions: sessionmaker[Session], model: str) -> ModelState:
    with sessions() as session:
        row = session.scalar(select(ModelRow).where(ModelRow.name == model))
        if row is None:
            raise NotFound(f"no model named {model!r}", "model")
        return ModelState(
            active=row.active_version,
            generation=row.state_generation,
            rollout=RolloutState(**row.rollout) if row.rollout else None,
            policy=ServingPolicy(**(row.policy or {})),
        )


@dataclass(frozen=True)
class Change:
    """One change of what a model serves, with what the audit trail says of it."""

    action: AuditAction
    actor: Principal
    from_version: str | None
    to_version: str | None
    reason: str
    # Columns of the model's row to set (active_version, rollout).
    values: dict[str, Any]
    report: GateReport | None = None
    details: dict[str, Any] = field(default_factory=dict)
    # Run inside the change's transaction (what the change makes moot goes with it).
    also: Callable[[Session], None] | None = None


def apply_change(
    sessions: sessionmaker[Session], model: str, generation: int, change: Change
) -> DeploymentState:
    """Apply ``change`` if the model is still at ``generation`` (else 409), with its event."""
    with sessions.begin() as session:
        changed = session.execute(
            update(ModelRow)
            .where(ModelRow.name == model, ModelRow.state_generation == generation)
            .values(state_generation=generation + 1, **change.values)
        )
        if changed.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict(
                f"model {model!r} changed while this {change.action.replace('_', ' ')} was "
                "being checked; look at its new state and try again",
                "model",
            )
        if change.also is not None:
            change.also(session)
        report = change.report
        event = record_event(
            session,
            change.actor,
            change.action,
            model,
            from_version=change.from_version,
            to_version=change.to_version,
            reason=change.reason,
            details={**({"gate_report_id": report.id} if report else {}), **change.details},
        )
        row = session.scalar(select(ModelRow).where(ModelRow.name == model))
        assert row is not None
        return DeploymentState(
            model=model,
            active_version=row.active_version,
            rollout=RolloutState(**row.rollout) if row.rollout else None,
            report=report,
            event=to_event(event),
        )
