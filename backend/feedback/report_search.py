"""The triage inbox: filters, full-text search, keyset pages, counts per status, and the
candidates for a duplicate link.

Every filter is a column of ``error_reports`` with its own index (see db/report_tables), so a
page costs its rows, not the table. Search runs through the full-text index migration 0017
made: SQLite's FTS5 table over each report's description and notes, PostgreSQL's GIN indexes
over ``to_tsvector`` of the description and of each note. User text never reaches either
query language: it is cut into words, each quoted (FTS5) or passed to ``plainto_tsquery``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, Integer, Select, and_, column, func, or_, select, text
from sqlalchemy.orm import InstrumentedAttribute, Session

from backend.auth import Principal
from backend.auth.tokens import require
from backend.db.report_tables import (
    TEXT_SEARCH_CONFIG,
    ErrorReportNoteRow,
    ErrorReportRow,
    ErrorReportTagRow,
)
from backend.errors import InputError
from backend.feedback.report_rules import summary_of
from backend.schemas.reports import (
    REPORT_STATUSES,
    ReportCounts,
    ReportPage,
    ReportSummary,
    StatusCount,
)

SortKey = Literal["filed_at", "updated_at", "severity", "status"]
SORT_COLUMNS: dict[str, InstrumentedAttribute[Any]] = {
    "filed_at": ErrorReportRow.filed_at,
    "updated_at": ErrorReportRow.updated_at,
    "severity": ErrorReportRow.severity_rank,
    "status": ErrorReportRow.status_rank,
}
MAX_SEARCH_WORDS = 32
# Words of a description that look for reports with matching text (duplicate candidates).
DUPLICATE_WORDS = 16
MAX_DUPLICATES = 10
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class ReportFilters:
    statuses: tuple[str, ...] = ()
    category: str | None = None
    model: str | None = None
    version: str | None = None
    # "none": unassigned reports.
    assignee: str | None = None
    tag: str | None = None
    q: str | None = None
    filed_after: float | None = None
    filed_before: float | None = None
    min_age_s: float | None = None
    max_age_s: float | None = None


def search_words(q: str, field: str = "q") -> list[str]:
    words = _WORD.findall(q)
    if not words:
        raise InputError("search for at least one word (letters or digits)", field)
    if len(words) > MAX_SEARCH_WORDS:
        raise InputError(f"search for at most {MAX_SEARCH_WORDS} words", field)
    return words


def text_match(
    session: Session, words: Sequence[str], any_word: bool = False
) -> ColumnElement[bool]:
    """Reports whose description or notes hold every word (or, with ``any_word``, any)."""
    if session.get_bind().dialect.name == "sqlite":
        # Each word quoted: FTS5 reads it as a plain string, never as an operator or column.
        joiner = " OR " if any_word else " "
        expression = joiner.join('"' + word + '"' for word in words)
        matching = (
            text("SELECT rowid FROM error_reports_fts WHERE error_reports_fts MATCH :fts_words")
            .bindparams(fts_words=expression)
            .columns(column("rowid", Integer))
        )
        return ErrorReportRow.id.in_(matching)
    query = (
        f"websearch_to_tsquery('{TEXT_SEARCH_CONFIG}', :tsv_words)"
        if any_word
        else f"plainto_tsquery('{TEXT_SEARCH_CONFIG}', :tsv_words)"
    )
    # The expressions are the GIN indexes' own, so PostgreSQL searches through them.
    phrase = " or ".join(words) if any_word else " ".join(words)
    described = (
        text(
            f"SELECT id FROM error_reports WHERE "
            f"to_tsvector('{TEXT_SEARCH_CONFIG}', description) @@ {query}"
        )
        .bindparams(tsv_words=phrase)
        .columns(column("id", Integer))
    )
    noted = (
        text(
            f"SELECT report_id FROM error_report_notes WHERE "
            f"to_tsvector('{TEXT_SEARCH_CONFIG}', text) @@ {query}"
        )
        .bindparams(tsv_words=phrase)
        .columns(column("report_id", Integer))
    )
    return or_(ErrorReportRow.id.in_(described), ErrorReportRow.id.in_(noted))


def _conditions(
    session: Session, filters: ReportFilters, principal: Principal, with_status: bool = True
) -> list[ColumnElement[bool]]:
    require(principal, "triage", filters.model)
    conditions: list[ColumnElement[bool]] = []
    if principal.models is not None:
        conditions.append(ErrorReportRow.model.in_(sorted(principal.models)))
    if with_status and filters.statuses:
        conditions.append(ErrorReportRow.status.in_(filters.statuses))
    if filters.category is not None:
        conditions.append(ErrorReportRow.category == filters.category)
    if filters.model is not None:
        conditions.append(ErrorReportRow.model == filters.model)
    if filters.version is not None:
        conditions.append(ErrorReportRow.version == filters.version)
    if filters.assignee == "none":
        conditions.append(ErrorReportRow.assignee.is_(None))
    elif filters.assignee is not None:
        conditions.append(ErrorReportRow.assignee == filters.assignee)
    if filters.tag is not None:
        tagged = select(ErrorReportTagRow.report_id).where(ErrorReportTagRow.tag == filters.tag)
        conditions.append(ErrorReportRow.id.in_(tagged))
    if filters.q is not None:
        conditions.append(text_match(session, search_words(filters.q)))
    now = time.time()
    if filters.filed_after is not None:
        conditions.append(ErrorReportRow.filed_at >= filters.filed_after)
    if filters.filed_before is not None:
        conditions.append(ErrorReportRow.filed_at < filters.filed_before)
    if filters.min_age_s is not None:
        conditions.append(ErrorReportRow.filed_at <= now - filters.min_age_s)
    if filters.max_age_s is not None:
        conditions.append(ErrorReportRow.filed_at >= now - filters.max_age_s)
    return conditions


def _encode_cursor(sort: str, order: str, value: float, report_id: int) -> str:
    raw = json.dumps([sort, order, value, report_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(after: str, sort: str, order: str) -> tuple[float, int]:
    try:
        raw = base64.urlsafe_b64decode(after + "=" * (-len(after) % 4))
        cursor_sort, cursor_order, value, report_id = json.loads(raw)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError("value")
        if not isinstance(report_id, int) or isinstance(report_id, bool):
            raise ValueError("id")
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InputError(
            "not a cursor this inbox gave out; pass next_cursor from the previous page", "after"
        ) from None
    if (cursor_sort, cursor_order) != (sort, order):
        raise InputError(
            f"this cursor pages a list sorted by {cursor_sort} {cursor_order}; ask again with "
            "the same sort and order, or without a cursor",
            "after",
        )
    return float(value), report_id


def list_reports(
    session: Session,
    filters: ReportFilters,
    principal: Principal,
    sort: SortKey = "filed_at",
    order: Literal["asc", "desc"] = "desc",
    limit: int = 50,
    after: str | None = None,
) -> ReportPage:
    conditions = _conditions(session, filters, principal)
    total = int(
        session.scalar(select(func.count()).select_from(ErrorReportRow).where(*conditions)) or 0
    )
    key = SORT_COLUMNS[sort]
    query: Select[ErrorReportRow] = select(ErrorReportRow).where(*conditions)
    if after is not None:
        value, last_id = _decode_cursor(after, sort, order)
        if order == "desc":
            query = query.where(or_(key < value, and_(key == value, ErrorReportRow.id < last_id)))
        else:
            query = query.where(or_(key > value, and_(key == value, ErrorReportRow.id > last_id)))
    if order == "desc":
        query = query.order_by(key.desc(), ErrorReportRow.id.desc())
    else:
        query = query.order_by(key.asc(), ErrorReportRow.id.asc())
    rows = list(session.scalars(query.limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more and rows:
        last = rows[-1]
        next_cursor = _encode_cursor(sort, order, float(getattr(last, key.key)), last.id)
    return ReportPage(reports=summaries(session, rows), total=total, next_cursor=next_cursor)


def count_reports(session: Session, filters: ReportFilters, principal: Principal) -> ReportCounts:
    """Count, oldest and median age per status under the filters (their status excepted)."""
    conditions = _conditions(session, filters, principal, with_status=False)
    now = time.time()
    grouped = {
        status: (int(count), float(oldest))
        for status, count, oldest in session.execute(
            select(ErrorReportRow.status, func.count(), func.min(ErrorReportRow.filed_at))
            .where(*conditions)
            .group_by(ErrorReportRow.status)
        )
    }
    statuses = []
    for status in REPORT_STATUSES:
        count, oldest = grouped.get(status, (0, now))
        if count == 0:
            statuses.append(StatusCount(status=status, count=0))
            continue
        # The middle report by filing time, read along the (status, filed_at) index.
        middle = session.scalar(
            select(ErrorReportRow.filed_at)
            .where(*conditions, ErrorReportRow.status == status)
            .order_by(ErrorReportRow.filed_at)
            .offset((count - 1) // 2)
            .limit(1)
        )
        statuses.append(
            StatusCount(
                status=status,
                count=count,
                oldest_age_s=max(0.0, now - oldest),
                median_age_s=max(0.0, now - float(middle if middle is not None else oldest)),
            )
        )
    return ReportCounts(statuses=statuses, total=sum(s.count for s in statuses))


def possible_duplicates(
    session: Session, row: ErrorReportRow, principal: Principal
) -> list[ReportSummary]:
    """Reports on the same prediction row first, then the model's reports whose text shares
    the most words with this one's description (best match first)."""
    same_prediction = list(
        session.scalars(
            select(ErrorReportRow)
            .where(
                ErrorReportRow.model == row.model,
                ErrorReportRow.request_id == row.request_id,
                ErrorReportRow.row_index == row.row_index,
                ErrorReportRow.id != row.id,
            )
            .order_by(ErrorReportRow.id)
            .limit(MAX_DUPLICATES)
        )
    )
    found = {candidate.id for candidate in same_prediction}
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(row.description) if len(w) > 2))
    similar: list[ErrorReportRow] = []
    if words and len(same_prediction) < MAX_DUPLICATES:
        similar = _similar_text(session, row, words[:DUPLICATE_WORDS], found)
    candidates = (same_prediction + similar)[:MAX_DUPLICATES]
    return summaries(session, candidates)


def _similar_text(
    session: Session, row: ErrorReportRow, words: list[str], exclude: set[int]
) -> list[ErrorReportRow]:
    query = select(ErrorReportRow).where(
        ErrorReportRow.model == row.model,
        ErrorReportRow.id != row.id,
        text_match(session, words, any_word=True),
    )
    if exclude:
        query = query.where(ErrorReportRow.id.not_in(sorted(exclude)))
    if session.get_bind().dialect.name == "sqlite":
        # FTS5's rank is bm25: smaller is a better match.
        rank = text(
            "(SELECT rank FROM error_reports_fts WHERE error_reports_fts MATCH :rank_words "
            "AND error_reports_fts.rowid = error_reports.id)"
        ).bindparams(rank_words=" OR ".join('"' + w + '"' for w in words))
    else:
        rank = text(
            f"ts_rank(to_tsvector('{TEXT_SEARCH_CONFIG}', error_reports.description), "
            f"websearch_to_tsquery('{TEXT_SEARCH_CONFIG}', :rank_words)) DESC"
        ).bindparams(rank_words=" or ".join(words))
    query = query.order_by(rank, ErrorReportRow.id.desc())
    return list(session.scalars(query.limit(MAX_DUPLICATES)))


def summaries(session: Session, rows: Sequence[ErrorReportRow]) -> list[ReportSummary]:
    ids = [row.id for row in rows]
    tags = tags_of(session, ids)
    notes = note_counts(session, ids)
    return [summary_of(row, tags.get(row.id, []), notes.get(row.id, 0)) for row in rows]


def tags_of(session: Session, report_ids: list[int]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    if not report_ids:
        return found
    for report_id, tag in session.execute(
        select(ErrorReportTagRow.report_id, ErrorReportTagRow.tag)
        .where(ErrorReportTagRow.report_id.in_(report_ids))
        .order_by(ErrorReportTagRow.report_id, ErrorReportTagRow.tag)
    ):
        found.setdefault(report_id, []).append(tag)
    return found


def note_counts(session: Session, report_ids: list[int]) -> dict[int, int]:
    if not report_ids:
        return {}
    return {
        report_id: int(count)
        for report_id, count in session.execute(
            select(ErrorReportNoteRow.report_id, func.count())
            .where(ErrorReportNoteRow.report_id.in_(report_ids))
            .group_by(ErrorReportNoteRow.report_id)
        )
    }
