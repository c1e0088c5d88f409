"""The store's events, in order and without gaps: alert changes and deployment changes.

Two append-only tables feed the event stream: ``alert_events`` (this package's) and
``audit_events`` (the deployment side's audit trail). A stream's position is a pair of ids,
one per table (``EventCursor``); each message carries the pair after it, so ``Last-Event-ID``
resumes exactly, whichever worker wrote the rows and whichever worker answers.

Reading "ids above my position" is only gap-free if no row with a smaller id can still
commit after the read. SQLite has one writer at a time, so ids commit in order. PostgreSQL
hands out ids from a sequence at insert time and transactions commit in any order, so the read
first takes ``SHARE`` locks on both tables with ``NOWAIT``: granted only when no transaction
that inserted into them is still open (every id handed out is then committed or gone for
good), and never waiting, so a stream can neither block a deployment nor deadlock with one;
when a writer is busy, this read is skipped and retried at the next poll.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from backend.db.tables import AlertEventRow, AuditEventRow
from backend.errors import InputError
from backend.schemas import Alert, AuditEvent, StreamEvent

_CURSOR = re.compile(r"^(\d{1,18})-(\d{1,18})$")


@dataclass(frozen=True)
class EventCursor:
    """The last alert event and the last audit event a stream has passed."""

    alert_event: int = 0
    audit_event: int = 0

    def text(self) -> str:
        return f"{self.alert_event}-{self.audit_event}"

    @classmethod
    def parse(cls, value: str) -> EventCursor:
        match = _CURSOR.match(value) if value.isascii() else None
        if match is None:
            raise InputError(
                "must be an event id of this stream (two whole numbers joined by '-', "
                "'0-0' for the beginning)",
                "Last-Event-ID",
            )
        return cls(int(match.group(1)), int(match.group(2)))


@dataclass(frozen=True)
class StoredEvent:
    event: StreamEvent
    # The stream's position once this event is sent.
    cursor: EventCursor


def newest_cursor(sessions: sessionmaker[Session]) -> EventCursor:
    """The position after everything stored now (a stream that starts from now)."""
    with sessions() as session:
        alert = session.scalar(select(func.max(AlertEventRow.id))) or 0
        audit = session.scalar(select(func.max(AuditEventRow.id))) or 0
    return EventCursor(alert, audit)


def events_after(
    sessions: sessionmaker[Session],
    cursor: EventCursor,
    visible_models: frozenset[str] | None,
    limit: int = 200,
) -> list[StoredEvent] | None:
    """Events after ``cursor`` of the visible models (None: every model), oldest first;
    None when a writer is busy (PostgreSQL) and the read must be tried again."""
    with sessions.begin() as session:
        if session.get_bind().dialect.name == "postgresql":
            try:
                session.execute(text("LOCK TABLE alert_events, audit_events IN SHARE MODE NOWAIT"))
            except OperationalError:
                return None
        alerts_query = (
            select(AlertEventRow)
            .where(AlertEventRow.id > cursor.alert_event)
            .order_by(AlertEventRow.id)
            .limit(limit)
        )
        audit_query = (
            select(AuditEventRow)
            .where(AuditEventRow.id > cursor.audit_event, AuditEventRow.model.is_not(None))
            .order_by(AuditEventRow.id)
            .limit(limit)
        )
        if visible_models is not None:
            alerts_query = alerts_query.where(AlertEventRow.model.in_(sorted(visible_models)))
            audit_query = audit_query.where(AuditEventRow.model.in_(sorted(visible_models)))
        alert_rows = list(session.scalars(alerts_query))
        audit_rows = list(session.scalars(audit_query))
        alerts = [
            (
                row.at,
                row.id,
                StreamEvent(
                    kind="alert",
                    model=row.model,
                    action=row.action,
                    at=datetime.fromtimestamp(row.at, UTC),
                    alert=Alert.model_validate(row.alert),
                ),
            )
            for row in alert_rows
        ]
        deployments = []
        for row in audit_rows:
            deployment = AuditEvent.model_validate(row, from_attributes=True)
            at = deployment.at if deployment.at.tzinfo else deployment.at.replace(tzinfo=UTC)
            deployment.at = at
            event = StreamEvent(
                kind="deployment",
                model=row.model or "",
                action=row.action,
                at=at,
                deployment=deployment,
            )
            deployments.append((at.timestamp(), row.id, event))
    return _merge(alerts, deployments, cursor, limit)


def _merge(
    alerts: list[tuple[float, int, StreamEvent]],
    deployments: list[tuple[float, int, StreamEvent]],
    cursor: EventCursor,
    limit: int,
) -> list[StoredEvent]:
    """The two tables' events in time order, each table's in id order (clocks of different
    workers may disagree: the ids decide within a table, or the cursor would go back). A
    table that filled its page may hold more events: the merge ends with its page's last,
    so the cursor never passes an event not yet sent."""
    result: list[StoredEvent] = []
    alert_id, audit_id = cursor.alert_event, cursor.audit_event
    a = d = 0
    while a < len(alerts) or d < len(deployments):
        if a == len(alerts) and len(alerts) == limit:
            break
        if d == len(deployments) and len(deployments) == limit:
            break
        take_alert = d == len(deployments) or (
            a < len(alerts) and alerts[a][0] <= deployments[d][0]
        )
        if take_alert:
            _, alert_id, event = alerts[a]
            a += 1
        else:
            _, audit_id, event = deployments[d]
            d += 1
        result.append(StoredEvent(event, EventCursor(alert_id, audit_id)))
    return result
