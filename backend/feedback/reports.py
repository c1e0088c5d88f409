"""Error reports from end users: filing one against a logged prediction, its public status,
and the whole record for triage (changes: report_triage; inbox and search: report_search).

A report names a logged prediction row and copies its model, version, route and decision, so
triage sees what was answered even after the log's retention removes the row.

A prediction answered a moment ago may not be in the log table yet: the serving process
appends it to its spool before answering, and the writer process commits it within a flush
interval. Filing therefore waits briefly (asks this process's writer to write now, then looks
again for up to ``LINK_WAIT_S`` for another worker's writer) and only then says the request id
is unknown. That keeps every report linked to its row (no pending state to reconcile later)
at the cost of a short wait for an id that was never answered.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from backend.auth import Principal
from backend.auth.tokens import has_permission, require
from backend.db.report_tables import (
    ErrorReportChangeRow,
    ErrorReportNoteRow,
    ErrorReportRow,
)
from backend.errors import Forbidden, InputError, NotFound
from backend.feedback.report_rules import (
    STATUS_RANK,
    TRANSITIONS,
    epoch_to_utc,
    fitted_answer,
    model_outputs,
    summary_of,
)
from backend.feedback.report_search import possible_duplicates, tags_of
from backend.feedback.report_words import public_words
from backend.predictions.reads import logged_rows_of
from backend.schemas import LoggedPredictionFields, PredictionRecord
from backend.schemas.reports import (
    ReportChange,
    ReportCreate,
    ReportDetail,
    ReportNote,
    ReportPublicStatus,
)

# How long filing looks for a prediction other workers' writers have not committed yet: a
# writer commits every flush interval (0.2 s by default).
LINK_WAIT_S = 1.0
LINK_POLL_S = 0.05

# Asks this process's prediction-log writer to commit what it holds; returns when done.
FlushLog = Callable[[float], object]


def file_report(
    sessions: sessionmaker[Session],
    body: ReportCreate,
    principal: Principal,
    flush_log: FlushLog | None = None,
) -> ReportPublicStatus:
    """Keep an end user's report, committed before this returns (the 201 promises it)."""
    require(principal, "report")
    if body.model is not None and not principal.may_use_model(body.model):
        raise Forbidden(
            f"token {principal.name!r} may not report on predictions of model {body.model!r}",
            "model",
        )
    prediction = _find_prediction(sessions, body, principal, flush_log)
    with sessions.begin() as session:
        versions = model_outputs(session, prediction.model)
        expected = None
        if body.expected is not None:
            expected = fitted_answer(body.expected, versions, prediction.version, "expected")
        now = time.time()
        row = ErrorReportRow(
            model=prediction.model,
            version=prediction.version,
            request_id=prediction.request_id,
            row_index=prediction.row,
            route=prediction.route,
            decision=decision_of(prediction),
            linked=1,
            category=body.category,
            description=body.description.strip(),
            expected=expected,
            reporter=body.reporter,
            filed_by=principal.name,
            status="new",
            status_rank=STATUS_RANK["new"],
            severity_rank=0,
            filed_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        session.add(
            ErrorReportChangeRow(
                report_id=row.id, at=now, actor=principal.name, kind="filed", after=body.category
            )
        )
        return _public_status(session, row)


def decision_of(prediction: LoggedPredictionFields) -> str:
    """What the serving path did: the log records a held-out row by its route; the guards
    that abstain or fall back will record theirs in the outputs."""
    recorded = prediction.outputs.get("decision")
    if isinstance(recorded, str):
        return recorded[:16]
    return "held_out" if prediction.route == "held_out" else "answered"


def _find_prediction(
    sessions: sessionmaker[Session],
    body: ReportCreate,
    principal: Principal,
    flush_log: FlushLog | None,
) -> PredictionRecord:
    deadline = time.monotonic() + LINK_WAIT_S
    flushed = False
    while True:
        with sessions() as session:
            candidates = logged_rows_of(session, body.request_id, body.row)
        visible = [
            row
            for row in candidates
            if principal.may_use_model(row.model)
            and body.model in (None, row.model)
            and _fits_constraints(principal, row)
        ]
        if len(visible) == 1:
            return visible[0]
        if len(visible) > 1:
            names = ", ".join(sorted(row.model for row in visible))
            raise InputError(
                f"request id {body.request_id!r} was answered by several models ({names}); "
                "name the model of the prediction you report",
                "model",
            )
        if not flushed and flush_log is not None:
            flush_log(LINK_WAIT_S)
            flushed = True
            continue
        if time.monotonic() >= deadline:
            break
        time.sleep(LINK_POLL_S)
    # Predictions of models the token may not use are never mentioned: the same answer as
    # for an id nobody answered.
    raise NotFound(
        f"no prediction with request id {body.request_id!r}, row {body.row}, was answered for "
        "a model this token may use",
        "request_id",
    )


def _fits_constraints(principal: Principal, prediction: PredictionRecord) -> bool:
    """A client token limited to some feature values reports only predictions within them."""
    return all(
        prediction.features.get(feature) in allowed
        for feature, allowed in principal.constraints.items()
    )


def public_status(
    sessions: sessionmaker[Session], report_id: int, principal: Principal
) -> ReportPublicStatus:
    """The reporter's view: only the token that filed it, or triage staff, may read it; any
    other token is told it does not exist."""
    if not (has_permission(principal, "report") or has_permission(principal, "triage")):
        raise Forbidden(f"the {principal.role} role may not read report statuses")
    with sessions() as session:
        row = session.get(ErrorReportRow, report_id)
        staff = has_permission(principal, "triage") and (
            row is not None and principal.may_use_model(row.model)
        )
        if row is None or not (row.filed_by == principal.name or staff):
            raise NotFound(f"no report {report_id}", "id")
        return _public_status(session, row)


def _public_status(session: Session, row: ErrorReportRow) -> ReportPublicStatus:
    headline, explanation = public_words(row.status)  # type: ignore[arg-type]
    if row.status == "duplicate" and row.duplicate_of is not None:
        original = session.get(ErrorReportRow, row.duplicate_of)
        if original is not None:
            explanation += f" That report's status: {public_words(original.status)[0]}."  # type: ignore[arg-type]
    return ReportPublicStatus(
        id=row.id,
        status=row.status,  # type: ignore[arg-type]
        headline=headline,
        explanation=explanation,
        filed_at=epoch_to_utc(row.filed_at),
        updated_at=epoch_to_utc(row.updated_at),
    )


def triage_row(session: Session, report_id: int, principal: Principal) -> ErrorReportRow:
    """The report for a triage read or change; 404 outside the token's models (not revealed)."""
    require(principal, "triage")
    row = session.get(ErrorReportRow, report_id)
    if row is None or not principal.may_use_model(row.model):
        raise NotFound(f"no report {report_id}", "id")
    return row


def report_detail(
    sessions: sessionmaker[Session], report_id: int, principal: Principal
) -> ReportDetail:
    with sessions() as session:
        return detail_of(session, triage_row(session, report_id, principal), principal)


def detail_of(session: Session, row: ErrorReportRow, principal: Principal) -> ReportDetail:
    tags = tags_of(session, [row.id]).get(row.id, [])
    notes = session.scalars(
        select(ErrorReportNoteRow)
        .where(ErrorReportNoteRow.report_id == row.id)
        .order_by(ErrorReportNoteRow.id)
    ).all()
    history = session.scalars(
        select(ErrorReportChangeRow)
        .where(ErrorReportChangeRow.report_id == row.id)
        .order_by(ErrorReportChangeRow.id)
    ).all()
    logged = [
        p for p in logged_rows_of(session, row.request_id, row.row_index) if p.model == row.model
    ]
    prediction = (
        LoggedPredictionFields.model_validate(logged[0].model_dump(exclude={"token_name", "label"}))
        if logged
        else None
    )
    summary = summary_of(row, tags, len(notes))
    return ReportDetail(
        **summary.model_dump(),
        prediction=prediction,
        decision=row.decision,
        history=[
            ReportChange(
                at=epoch_to_utc(change.at),
                actor=change.actor,
                kind=change.kind,  # type: ignore[arg-type]
                before=change.before,
                after=change.after,
            )
            for change in history
        ],
        note_thread=[
            ReportNote(id=note.id, author=note.author, at=epoch_to_utc(note.at), text=note.text)
            for note in notes
        ],
        possible_duplicates=possible_duplicates(session, row, principal),
        allowed_statuses=list(TRANSITIONS[row.status]),
    )
