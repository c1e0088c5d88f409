"""The audit trail: one append-only row per deployment action (who, when, what, why)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from backend.auth.tokens import Principal
from backend.db.tables import AuditEventRow
from backend.schemas import DEPLOYMENT_ACTIONS, AuditAction, AuditEvent


def record_event(
    session: Session,
    actor: Principal,
    action: AuditAction,
    model: str | None,
    *,
    from_version: str | None = None,
    to_version: str | None = None,
    reason: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEventRow:
    """Add the event to ``session``'s transaction: it lands with the change it describes."""
    row = AuditEventRow(
        actor=actor.name,
        role=actor.role,
        model=model,
        action=action,
        from_version=from_version,
        to_version=to_version,
        reason=reason,
        details=details or {},
    )
    session.add(row)
    session.flush()
    return row


def to_event(row: AuditEventRow) -> AuditEvent:
    return AuditEvent(
        id=row.id,
        at=row.at,
        actor=row.actor,
        role=row.role,
        model=row.model,
        action=row.action,  # type: ignore[arg-type]
        from_version=row.from_version,
        to_version=row.to_version,
        reason=row.reason,
        details=row.details,
    )


def list_events(
    sessions: sessionmaker[Session],
    *,
    model: str | None = None,
    before_id: int | None = None,
    limit: int = 100,
    visible_models: frozenset[str] | None = None,
) -> list[AuditEvent]:
    """Newest first; page backwards with ``before_id``. ``visible_models``: a scoped token's
    models (events of no model stay visible); filtered in SQL so pages stay full."""
    query = select(AuditEventRow).order_by(AuditEventRow.id.desc()).limit(limit)
    if model is not None:
        query = query.where(AuditEventRow.model == model)
    if visible_models is not None:
        query = query.where(
            AuditEventRow.model.is_(None) | AuditEventRow.model.in_(sorted(visible_models))
        )
    if before_id is not None:
        query = query.where(AuditEventRow.id < before_id)
    with sessions() as session:
        return [to_event(row) for row in session.scalars(query)]


def deployment_history(session: Session, model: str, with_alerts: bool = False) -> list[AuditEvent]:
    """What changed the default version of ``model`` (and its quality alerts if asked),
    oldest first."""
    actions = (*DEPLOYMENT_ACTIONS, "metric_alert") if with_alerts else DEPLOYMENT_ACTIONS
    rows = session.scalars(
        select(AuditEventRow)
        .where(AuditEventRow.model == model, AuditEventRow.action.in_(actions))
        .order_by(AuditEventRow.id)
    )
    return [to_event(row) for row in rows]


@dataclass
class ReturnPoints:
    """Where a rollback can go: the versions served, and those it passes over."""

    # The versions served, oldest first; the last one serves now.
    stack: list[str] = field(default_factory=list)
    # Versions a rollback passes over until deployed again on purpose, with why (in words).
    skipped: dict[str, str] = field(default_factory=dict)

    def good(self) -> list[str]:
        """The versions a rollback can return to, oldest first, then the one serving."""
        if not self.stack:
            return []
        serving = self.stack[-1]
        earlier = [v for v in self.stack[:-1] if v not in self.skipped and v != serving]
        return [*earlier, serving]


def return_points(history: list[AuditEvent]) -> ReturnPoints:
    """Replay the deployment history (with quality alerts), oldest first.

    A deployment or promotion pushes its version; a rollback pops the one it left. So after
    1 → 2 → 3 and a rollback to 2, the next rollback goes to 1, not back to 3. A version that
    raised a quality alert while serving, or that was rolled back from, is passed over until
    someone deploys it again on purpose: a rollback never returns to the version it just
    left, even where that version also served before.
    """
    points = ReturnPoints()
    stack, skipped = points.stack, points.skipped
    for event in history:
        if event.action == "metric_alert":
            if event.to_version is not None:
                skipped[event.to_version] = (
                    f"it raised a quality alert while serving ({_when(event)}"
                    + (f": {event.reason}" if event.reason else "")
                    + ")"
                )
            continue
        if event.action == "rollback":
            if event.from_version is not None:
                skipped[event.from_version] = f"it was rolled back from ({_when(event)})"
            # Back to its target: the version left, and any it skipped (bad ones), come off.
            if stack:
                stack.pop()
            while stack and stack[-1] != event.to_version:
                stack.pop()
            if event.to_version is not None and not stack:
                stack.append(event.to_version)
        elif event.to_version is not None:
            skipped.pop(event.to_version, None)  # deployed again on purpose: judged afresh
            if not stack and event.from_version is not None:
                stack.append(event.from_version)  # served before any recorded deployment
            stack.append(event.to_version)
    return points


def good_versions(history: list[AuditEvent]) -> list[str]:
    """The versions a rollback can return to, oldest first; the last one is serving now."""
    return return_points(history).good()


def _when(event: AuditEvent) -> str:
    at = event.at if event.at.tzinfo is not None else event.at.replace(tzinfo=UTC)
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
