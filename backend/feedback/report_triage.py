"""Triage changes to reports: status along the workflow, duplicate links, the fixing
version, assignment, severity, tags, the right answer, notes; one at a time or in bulk.

Every change is written with its history entry (who, when, before, after) in one
transaction. A bulk change is all or nothing: the first report that refuses it refuses all,
named by its place in ``ids``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, false, insert, select
from sqlalchemy.orm import Session, sessionmaker

from backend.auth import Principal
from backend.auth.tokens import require
from backend.db.report_tables import (
    ErrorReportChangeRow,
    ErrorReportNoteRow,
    ErrorReportRow,
    ErrorReportTagRow,
)
from backend.errors import Conflict, InputError, NotFound, ServeDeckError
from backend.feedback.report_rules import (
    SEVERITY_RANK,
    STATUS_RANK,
    TRANSITIONS,
    clean_tags,
    fitted_answer,
    model_outputs,
)
from backend.feedback.report_search import tags_of
from backend.feedback.reports import detail_of, triage_row
from backend.schemas.reports import (
    MAX_TAGS,
    ReportBulkUpdate,
    ReportDetail,
    ReportNoteCreate,
    ReportUpdate,
)


class _Change:
    """One report's changes in one transaction, each with its history entry."""

    def __init__(self, session: Session, row: ErrorReportRow, actor: str, now: float):
        self.session = session
        self.row = row
        self.actor = actor
        self.now = now

    def record(self, kind: str, before: Any, after: Any) -> None:
        self.session.add(
            ErrorReportChangeRow(
                report_id=self.row.id,
                at=self.now,
                actor=self.actor,
                kind=kind,
                before=before,
                after=after,
            )
        )
        self.row.updated_at = self.now


def update_report(
    sessions: sessionmaker[Session], report_id: int, body: ReportUpdate, principal: Principal
) -> ReportDetail:
    with sessions.begin() as session:
        _lock_all(session, [report_id, *_linked_original(body)])
        row = triage_row(session, report_id, principal)
        _apply(session, row, body, principal, time.time(), add_tags=())
        session.flush()
        return detail_of(session, row, principal)


def add_note(
    sessions: sessionmaker[Session], report_id: int, body: ReportNoteCreate, principal: Principal
) -> ReportDetail:
    text = body.text.strip()
    if not text:
        raise InputError("a note needs some text", "text")
    with sessions.begin() as session:
        _lock_all(session, [report_id])
        row = triage_row(session, report_id, principal)
        change = _Change(session, row, principal.name, time.time())
        note = ErrorReportNoteRow(report_id=row.id, author=principal.name, at=change.now, text=text)
        session.add(note)
        session.flush()
        change.record("note", None, {"id": note.id, "text": text[:200]})
        session.flush()
        return detail_of(session, row, principal)


def bulk_update(
    sessions: sessionmaker[Session], body: ReportBulkUpdate, principal: Principal
) -> int:
    require(principal, "triage")
    if len(set(body.ids)) != len(body.ids):
        first = next(i for i, report_id in enumerate(body.ids) if body.ids.index(report_id) != i)
        raise InputError(f"report {body.ids[first]} is named twice", f"ids[{first}]")
    add_tags = clean_tags(body.add_tags, "add_tags")
    now = time.time()
    with sessions.begin() as session:
        _lock_all(session, [*body.ids, *_linked_original(body.change)])
        for i, report_id in enumerate(body.ids):
            try:
                row = triage_row(session, report_id, principal)
                _apply(session, row, body.change, principal, now, add_tags=add_tags)
                session.flush()
            except ServeDeckError as refused:
                # Raising rolls the whole transaction back: no report of the batch changes.
                raise type(refused)(
                    f"report {report_id} ({refused.field or 'change'}): {refused.reason}; "
                    "no report was changed",
                    f"ids[{i}]",
                    details=refused.details,
                ) from None
    return len(body.ids)


def _take_store_write_lock(session: Session) -> None:
    """A write that changes nothing: pysqlite opens the transaction, SQLite takes its lock."""
    session.execute(delete(ErrorReportRow).where(false()))


def _linked_original(change: ReportUpdate) -> list[int]:
    return [change.duplicate_of] if change.duplicate_of is not None else []


def _lock_all(session: Session, report_ids: Sequence[int]) -> None:
    """Lock the reports a change reads or writes before reading any, so two staff changing
    them at once change them one after the other, the second from the first's result (else
    both read a report's old status and the second writes a transition the workflow forbids,
    or two reports become duplicates of each other). The original of a duplicate link is
    among them. PostgreSQL: row locks taken in id order, whatever order a batch names them
    in, so that two changes wait for each other instead of deadlocking. SQLite: the store's
    write lock (pysqlite begins a transaction only at the first write)."""
    if session.get_bind().dialect.name == "sqlite":
        _take_store_write_lock(session)
        return
    session.execute(
        select(ErrorReportRow.id)
        .where(ErrorReportRow.id.in_(sorted(report_ids)))
        .order_by(ErrorReportRow.id)
        .with_for_update()
    )


def _apply(
    session: Session,
    row: ErrorReportRow,
    body: ReportUpdate,
    principal: Principal,
    now: float,
    add_tags: Sequence[str],
) -> None:
    given = body.model_fields_set
    change = _Change(session, row, principal.name, now)
    status = body.status if "status" in given and body.status is not None else row.status
    if status != row.status and status not in TRANSITIONS[row.status]:
        allowed = TRANSITIONS[row.status]
        raise Conflict(
            f"a report in status {row.status!r} can move to {', '.join(allowed)}; "
            f"not to {status!r}",
            "status",
            details={"allowed": list(allowed)},
        )
    if "duplicate_of" in given and body.duplicate_of is not None and status != "duplicate":
        raise InputError("a duplicate link goes with status duplicate", "duplicate_of")
    if "fixed_in_version" in given and body.fixed_in_version is not None and status != "resolved":
        raise InputError("the fixing version goes with status resolved", "fixed_in_version")
    if status != row.status:
        _move(change, status, body)
    elif status == "duplicate" and body.duplicate_of is not None:
        _link_duplicate(change, body.duplicate_of)
    if status == "resolved" and body.fixed_in_version is not None:
        _set_fixed_in(change, body.fixed_in_version)
    if "assignee" in given and body.assignee is not None:
        assignee = body.assignee.strip() or None
        if assignee is not None and assignee.lower() == "none":
            # The inbox's assignee=none means "unassigned": nobody may be called that.
            raise InputError('"none" stands for unassigned; send "" to unassign', "assignee")
        if assignee != row.assignee:
            change.record("assignee", row.assignee, assignee)
            row.assignee = assignee
    if "severity" in given and body.severity != row.severity:
        change.record("severity", row.severity, body.severity)
        row.severity = body.severity
        row.severity_rank = SEVERITY_RANK[body.severity] if body.severity else 0
    if "correction" in given:
        correction = body.correction
        if correction is not None:
            versions = model_outputs(session, row.model)
            correction = fitted_answer(correction, versions, row.version, "correction")
        if correction != row.correction:
            change.record("correction", row.correction, correction)
            row.correction = correction
    replace = clean_tags(body.tags, "tags") if "tags" in given and body.tags is not None else None
    if replace is not None or add_tags:
        _set_tags(change, replace, add_tags)


def _move(change: _Change, status: str, body: ReportUpdate) -> None:
    row = change.row
    if status == "duplicate":
        if body.duplicate_of is None:
            raise InputError(
                "name the original report to mark this one a duplicate", "duplicate_of"
            )
        _link_duplicate(change, body.duplicate_of)
    if row.status == "duplicate" and row.duplicate_of is not None:
        change.record("duplicate_of", row.duplicate_of, None)
        row.duplicate_of = None
    if row.status == "resolved" and row.fixed_in_version is not None:
        change.record("fixed_in", row.fixed_in_version, None)
        row.fixed_in_version = None
    change.record("status", row.status, status)
    row.status = status
    row.status_rank = STATUS_RANK[status]


def _link_duplicate(change: _Change, original_id: int) -> None:
    """Link to the original's original, so duplicates never form a chain; reports that were
    duplicates of this one follow it to the same original."""
    row = change.row
    session = change.session
    if original_id == row.id:
        raise InputError("a report cannot be a duplicate of itself", "duplicate_of")
    original = session.get(ErrorReportRow, original_id)
    if original is None or original.model != row.model:
        raise NotFound(f"no report {original_id} on model {row.model!r} to link to", "duplicate_of")
    if original.status == "duplicate" and original.duplicate_of is not None:
        original_id = original.duplicate_of
        if original_id == row.id:
            raise InputError(
                f"report {original.id} is a duplicate of this report; a link back would make "
                "a cycle",
                "duplicate_of",
            )
    if row.duplicate_of != original_id:
        change.record("duplicate_of", row.duplicate_of, original_id)
        row.duplicate_of = original_id
    # Locked, so that a follower another change is taking out of "duplicate" right now is
    # read after that change (PostgreSQL reads it again and leaves it out).
    followers = session.scalars(
        select(ErrorReportRow).where(ErrorReportRow.duplicate_of == row.id).with_for_update()
    ).all()
    for follower in followers:
        moved = _Change(session, follower, change.actor, change.now)
        moved.record("duplicate_of", row.id, original_id)
        follower.duplicate_of = original_id


def _set_fixed_in(change: _Change, version: str) -> None:
    row = change.row
    if version not in model_outputs(change.session, row.model):
        raise NotFound(
            f"model {row.model!r} has no registered version {version!r}", "fixed_in_version"
        )
    if version != row.fixed_in_version:
        change.record("fixed_in", row.fixed_in_version, version)
        row.fixed_in_version = version


def _set_tags(change: _Change, replace: list[str] | None, add: Sequence[str]) -> None:
    session = change.session
    row = change.row
    before = tags_of(session, [row.id]).get(row.id, [])
    after = list(replace if replace is not None else before)
    after += [tag for tag in add if tag not in after]
    if sorted(after) == sorted(before):
        return
    if len(after) > MAX_TAGS:
        raise InputError(
            f"a report has at most {MAX_TAGS} tags; these changes would give it {len(after)}",
            "add_tags",
        )
    session.execute(delete(ErrorReportTagRow).where(ErrorReportTagRow.report_id == row.id))
    if after:
        session.execute(
            insert(ErrorReportTagRow),
            [{"report_id": row.id, "tag": tag} for tag in after],
        )
    change.record("tags", sorted(before), sorted(after))
