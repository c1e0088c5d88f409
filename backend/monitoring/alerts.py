"""Alerts: one active alert per rule, model and group; listed, acknowledged, re-opened,
resolved, each change kept in the alert's history.

An alert's group is the version for a rule judged per version (live_metric) and "" for a rule
over the model's whole traffic. While an alert of a group is open or acknowledged, raising it
again updates its details (the newest value) instead of adding another (a partial unique index
holds this across workers). A recurrence within the rule's cooldown after the alert was
resolved re-opens it. Every change writes an ``alert_events`` row in the same transaction: the
alert's history, and the alert half of the event stream (``GET /api/v1/events``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from backend.db.tables import AlertEventRow, AlertRow
from backend.errors import Conflict, NotFound
from backend.schemas import (
    Alert,
    AlertAction,
    AlertHistoryEntry,
    AlertKind,
    AlertSeverity,
    AlertStatus,
)

ACTIVE_STATUSES = ("open", "acknowledged")
# Who acts when a rule raises, re-opens or resolves an alert by itself.
SYSTEM_ACTOR = "servedeck"
# An open alert's details change with every evaluation; a "changed" event (history and
# stream) is written at most this often, or when its severity changes.
CHANGE_EVENT_EVERY_S = 60.0


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
        group_key: str | None = None,
        cooldown_s: float = 0.0,
        now: float | None = None,
    ) -> tuple[Alert, bool]:
        """(the alert, whether it became active now). An active alert of the group gets the
        newest details instead; a resolved one within ``cooldown_s`` is re-opened."""
        now = time.time() if now is None else now
        group = (version or "") if group_key is None else group_key
        try:
            with self.sessions.begin() as session:
                active = _active_row(session, model, kind, group)
                if active is not None:
                    _update_open(session, active, severity, title, details, now)
                    return to_alert(active), False
                recent = _recently_resolved(session, model, kind, group, now - cooldown_s)
                if cooldown_s > 0 and recent is not None:
                    _reopen(session, recent, severity, title, explanation, details, now)
                    return to_alert(recent), True
                row = AlertRow(
                    model=model,
                    version=version,
                    kind=kind,
                    group_key=group,
                    severity=severity,
                    status="open",
                    title=title,
                    explanation=explanation,
                    details=details,
                    raised_at=now,
                    last_seen_at=now,
                    acknowledgement="",
                    resolution="",
                    reopened=0,
                )
                session.add(row)
                session.flush()
                _record(session, row, "raised", SYSTEM_ACTOR, "", now)
                return to_alert(row), True
        except IntegrityError:  # another worker made it active first: that one stands
            existing = self.active(model, version, kind, group_key=group)
            if existing is None:
                raise
            return existing, False

    def active(
        self,
        model: str,
        version: str | None,
        kind: AlertKind,
        *,
        group_key: str | None = None,
    ) -> Alert | None:
        group = (version or "") if group_key is None else group_key
        with self.sessions() as session:
            row = _active_row(session, model, kind, group)
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
        """One alert with its history, oldest first."""
        with self.sessions() as session:
            row = session.get(AlertRow, alert_id)
            if row is None:
                raise NotFound(f"no alert {alert_id}", "alert_id")
            alert = to_alert(row)
            events = session.scalars(
                select(AlertEventRow)
                .where(AlertEventRow.alert_id == alert_id)
                .order_by(AlertEventRow.id)
            )
            alert.history = [
                AlertHistoryEntry(
                    action=event.action,  # type: ignore[arg-type]
                    at=datetime.fromtimestamp(event.at, UTC),
                    actor=event.actor,
                    note=event.note,
                )
                for event in events
            ]
            return alert

    def acknowledge(self, alert_id: int, who: str, note: str) -> Alert:
        """Someone owns it now: it stays listed, but no longer counts as unseen."""
        now = time.time()
        with self.sessions.begin() as session:
            changed = session.execute(
                update(AlertRow)
                .where(AlertRow.id == alert_id, AlertRow.status == "open")
                .values(
                    status="acknowledged",
                    acknowledged_by=who,
                    acknowledged_at=now,
                    acknowledgement=note,
                )
            )
            row = session.get(AlertRow, alert_id)
            if row is None:
                raise NotFound(f"no alert {alert_id}", "alert_id")
            if changed.rowcount != 1:  # type: ignore[attr-defined]
                by = f" by {row.acknowledged_by}" if row.acknowledged_by else ""
                raise Conflict(f"alert {alert_id} is already {row.status}{by}", "alert_id")
            session.refresh(row)
            _record(session, row, "acknowledged", who, note, now)
            return to_alert(row)

    def resolve(
        self,
        model: str,
        version: str | None,
        kind: AlertKind,
        resolution: str,
        session: Session | None = None,
        *,
        group_key: str | None = None,
    ) -> int:
        """Resolve the active alert of a group; returns how many (0 or 1). With ``session``,
        inside the caller's transaction (it lands with the change that made the alert moot)."""
        if session is None:
            with self.sessions.begin() as own:
                return self.resolve(model, version, kind, resolution, own, group_key=group_key)
        group = (version or "") if group_key is None else group_key
        row = _active_row(session, model, kind, group)
        if row is None:
            return 0
        return int(self._resolve_row(session, row, resolution, time.time()))

    def resolve_if_unseen(
        self, alert_id: int, resolution: str, unseen_since: float, now: float | None = None
    ) -> Alert | None:
        """Resolve an active alert unless some worker saw its condition after
        ``unseen_since``; the resolved alert, or None when it stays (or was not active)."""
        now = time.time() if now is None else now
        with self.sessions.begin() as session:
            changed = session.execute(
                update(AlertRow)
                .where(
                    AlertRow.id == alert_id,
                    AlertRow.status.in_(ACTIVE_STATUSES),
                    (AlertRow.last_seen_at.is_(None)) | (AlertRow.last_seen_at <= unseen_since),
                )
                .values(status="resolved", resolved_at=now, resolution=resolution)
            )
            if changed.rowcount != 1:  # type: ignore[attr-defined]
                return None
            row = session.get(AlertRow, alert_id)
            assert row is not None
            session.refresh(row)
            _record(session, row, "resolved", SYSTEM_ACTOR, resolution, now)
            return to_alert(row)

    def _resolve_row(self, session: Session, row: AlertRow, resolution: str, now: float) -> bool:
        row.status = "resolved"
        row.resolved_at = now
        row.resolution = resolution
        session.flush()
        _record(session, row, "resolved", SYSTEM_ACTOR, resolution, now)
        return True


def _active_row(session: Session, model: str, kind: str, group: str) -> AlertRow | None:
    return session.scalar(
        select(AlertRow).where(
            AlertRow.model == model,
            AlertRow.kind == kind,
            AlertRow.group_key == group,
            AlertRow.status.in_(ACTIVE_STATUSES),
        )
    )


def _recently_resolved(
    session: Session, model: str, kind: str, group: str, since: float
) -> AlertRow | None:
    return session.scalar(
        select(AlertRow)
        .where(
            AlertRow.model == model,
            AlertRow.kind == kind,
            AlertRow.group_key == group,
            AlertRow.status == "resolved",
            AlertRow.resolved_at >= since,
        )
        .order_by(AlertRow.id.desc())
        .limit(1)
    )


def _update_open(
    session: Session,
    row: AlertRow,
    severity: AlertSeverity,
    title: str,
    details: dict[str, Any],
    now: float,
) -> None:
    """The newest measurement on an open alert; a "changed" event now and then."""
    louder = severity != row.severity
    row.details = details
    row.title = title
    row.severity = severity
    row.last_seen_at = now
    session.flush()
    last_told = row.changed_at or row.raised_at
    if louder or now - last_told >= CHANGE_EVENT_EVERY_S:
        row.changed_at = now
        session.flush()
        _record(session, row, "changed", SYSTEM_ACTOR, "", now)


def _reopen(
    session: Session,
    row: AlertRow,
    severity: AlertSeverity,
    title: str,
    explanation: str,
    details: dict[str, Any],
    now: float,
) -> None:
    """Back within its cooldown: the same alert again, needing a person again (the earlier
    acknowledgement stays in its history)."""
    row.status = "open"
    row.severity = severity
    row.title = title
    row.explanation = explanation
    row.details = details
    row.last_seen_at = now
    row.resolved_at = None
    row.resolution = ""
    row.acknowledged_by = None
    row.acknowledged_at = None
    row.acknowledgement = ""
    row.reopened = (row.reopened or 0) + 1
    session.flush()
    _record(session, row, "reopened", SYSTEM_ACTOR, "", now)


def _record(
    session: Session, row: AlertRow, action: AlertAction, actor: str, note: str, at: float
) -> None:
    session.add(
        AlertEventRow(
            alert_id=row.id,
            model=row.model,
            action=action,
            at=at,
            actor=actor,
            note=note,
            alert=to_alert(row).model_dump(mode="json", exclude={"history"}),
        )
    )
    session.flush()


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
        last_seen_at=_time(row.last_seen_at),
        acknowledged_by=row.acknowledged_by,
        acknowledged_at=_time(row.acknowledged_at),
        acknowledgement=row.acknowledgement,
        resolved_at=_time(row.resolved_at),
        resolution=row.resolution,
        reopened=row.reopened or 0,
    )
