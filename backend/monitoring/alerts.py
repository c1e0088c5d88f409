"""Alerts: raised once per cause, listed, acknowledged by a person, resolved when moot.

An alert is keyed by (model, version, kind): while one is open or acknowledged, raising the
same again returns it instead of a second one (a partial unique index holds this across
workers), so a condition that persists does not flood anyone. It is resolved when it no longer
applies (the version deployed again on purpose is judged afresh).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from backend.db.tables import AlertRow
from backend.errors import Conflict, NotFound
from backend.schemas import Alert, AlertKind, AlertSeverity, AlertStatus

ACTIVE_STATUSES = ("open", "acknowledged")


class AlertService:
    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions

    def raise_once(
        self,
        model: str,
        version: str | None,
        kind: AlertKind,
        *,
        severity: AlertSeverity,
        title: str,
        explanation: str,
        details: dict[str, Any],
    ) -> tuple[Alert, bool]:
        """(the alert, whether it is new): an active alert of the same cause is returned."""
        existing = self.active(model, version, kind)
        if existing is not None:
            return existing, False
        row = AlertRow(
            model=model,
            version=version,
            kind=kind,
            severity=severity,
            status="open",
            title=title,
            explanation=explanation,
            details=details,
            raised_at=time.time(),
        )
        try:
            with self.sessions.begin() as session:
                session.add(row)
        except IntegrityError:  # another worker raised it first
            existing = self.active(model, version, kind)
            if existing is None:
                raise
            return existing, False
        return to_alert(row), True

    def active(self, model: str, version: str | None, kind: AlertKind) -> Alert | None:
        with self.sessions() as session:
            row = session.scalar(
                select(AlertRow).where(
                    AlertRow.model == model,
                    AlertRow.version == version,
                    AlertRow.kind == kind,
                    AlertRow.status.in_(ACTIVE_STATUSES),
                )
            )
            return None if row is None else to_alert(row)

    def list(
        self,
        *,
        model: str | None = None,
        statuses: Iterable[AlertStatus] | None = None,
        visible_models: frozenset[str] | None = None,
        after_id: int | None = None,
        limit: int = 100,
    ) -> list[Alert]:
        """Newest first (oldest first with ``after_id``, for a stream to follow)."""
        query = select(AlertRow).limit(limit)
        if model is not None:
            query = query.where(AlertRow.model == model)
        if statuses is not None:
            query = query.where(AlertRow.status.in_(list(statuses)))
        if visible_models is not None:
            query = query.where(AlertRow.model.in_(sorted(visible_models)))
        if after_id is not None:
            query = query.where(AlertRow.id > after_id).order_by(AlertRow.id)
        else:
            query = query.order_by(AlertRow.id.desc())
        with self.sessions() as session:
            return [to_alert(row) for row in session.scalars(query)]

    def get(self, alert_id: int) -> Alert:
        with self.sessions() as session:
            row = session.get(AlertRow, alert_id)
            if row is None:
                raise NotFound(f"no alert {alert_id}", "alert_id")
            return to_alert(row)

    def acknowledge(self, alert_id: int, who: str, note: str) -> Alert:
        """Someone owns it now: it stays listed, but no longer counts as unseen."""
        with self.sessions.begin() as session:
            changed = session.execute(
                update(AlertRow)
                .where(AlertRow.id == alert_id, AlertRow.status == "open")
                .values(
                    status="acknowledged",
                    acknowledged_by=who,
                    acknowledged_at=time.time(),
                    acknowledgement=note,
                )
            )
            row = session.get(AlertRow, alert_id)
            if row is None:
                raise NotFound(f"no alert {alert_id}", "alert_id")
            if changed.rowcount != 1:  # type: ignore[attr-defined]
                by = f" by {row.acknowledged_by}" if row.acknowledged_by else ""
                raise Conflict(f"alert {alert_id} is already {row.status}{by}", "alert_id")
            return to_alert(row)

    def resolve(
        self,
        model: str,
        version: str | None,
        kind: AlertKind,
        resolution: str,
        session: Session | None = None,
    ) -> int:
        """Resolve the active alerts of a cause; returns how many. With ``session``, inside
        the caller's transaction (it lands with the change that made the alert moot)."""
        if session is None:
            with self.sessions.begin() as own:
                return self.resolve(model, version, kind, resolution, own)
        changed = session.execute(
            update(AlertRow)
            .where(
                AlertRow.model == model,
                AlertRow.version == version,
                AlertRow.kind == kind,
                AlertRow.status.in_(ACTIVE_STATUSES),
            )
            .values(status="resolved", resolved_at=time.time(), resolution=resolution)
        )
        return int(changed.rowcount)  # type: ignore[attr-defined]


def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def to_alert(row: AlertRow) -> Alert:
    raised = _time(row.raised_at)
    assert raised is not None
    return Alert(
        id=row.id,
        model=row.model,
        version=row.version,
        kind=row.kind,  # type: ignore[arg-type]
        severity=row.severity,  # type: ignore[arg-type]
        status=row.status,  # type: ignore[arg-type]
        title=row.title,
        explanation=row.explanation,
        details=row.details,
        raised_at=raised,
        acknowledged_by=row.acknowledged_by,
        acknowledged_at=_time(row.acknowledged_at),
        acknowledgement=row.acknowledgement,
        resolved_at=_time(row.resolved_at),
        resolution=row.resolution,
    )
