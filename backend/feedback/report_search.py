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
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    column,
    func,
    or_,
    select,
    text,
)
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
# Up to this many matching reports, counts per status are read in one pass over them.
ONE_PASS_MAX = 20_000
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
    if any_word:
        return _postgres_match(
            f"websearch_to_tsquery('{TEXT_SEARCH_CONFIG}', :words)", " or ".join(words)
        )
    # Every word in the description or in a note, as SQLite's one document per report finds
    # them: one match of description or notes per word.
    return and_(
        *(
            _postgres_match(f"plainto_tsquery('{TEXT_SEARCH_CONFIG}', :words)", word)
            for word in _indexed_words(session, words)
        )
    )


def _indexed_words(session: Session, words: Sequence[str]) -> list[str]:
    """The words PostgreSQL's text configuration keeps: it drops stop words ("the", "is"),
    whose empty query matches no report, so a search naming one would find nothing."""
    kept = session.scalars(
        text(
            "SELECT word FROM unnest(CAST(:words AS text[])) AS word "
            f"WHERE numnode(plainto_tsquery('{TEXT_SEARCH_CONFIG}', word)) > 0"
        ).bindparams(words=list(words))
    ).all()
    if not kept:
        raise InputError(
            "these words are too common to search for (like 'the' or 'is'); add a more "
            "specific word",
            "q",
        )
    return list(kept)


def _postgres_match(tsquery: str, words: str) -> ColumnElement[bool]:
    """Reports whose description or one of whose notes matches ``tsquery``; the expressions
    are the GIN indexes' own, so PostgreSQL searches through them."""
    described = (
        text(
            f"SELECT id FROM error_reports WHERE "
            f"to_tsvector('{TEXT_SEARCH_CONFIG}', description) @@ {tsquery}"
        )
        .bindparams(bindparam("words", words, unique=True))
        .columns(column("id", Integer))
    )
    noted = (
        text(
            f"SELECT report_id FROM error_report_notes WHERE "
            f"to_tsvector('{TEXT_SEARCH_CONFIG}', text) @@ {tsquery}"
        )
        .bindparams(bindparam("words", words, unique=True))
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
        # Tags are kept trimmed (report_rules.clean_tags): " fraud " asks for "fraud".
        tag = filters.tag.strip()
        if not tag:
            raise InputError("name a tag (not only spaces)", "tag")
        tagged = select(ErrorReportTagRow.report_id).where(ErrorReportTagRow.tag == tag)
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
        # Only what a page can end on: a finite sort value, a report id the store can hold.
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError("value")
        if not math.isfinite(value) or abs(value) > 1e15:
            raise ValueError("value")
        if not isinstance(report_id, int) or isinstance(report_id, bool):
            raise ValueError("id")
        if not 0 <= report_id < 2**31:
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
    if filters.q is not None:
        found = _status_ages_in_one_pass(session, conditions)
    else:
        found = _status_ages_by_index(session, conditions)
    statuses = []
    for status in REPORT_STATUSES:
        if status not in found:
            statuses.append(StatusCount(status=status, count=0))
            continue
        count, oldest, middle = found[status]
        statuses.append(
            StatusCount(
                status=status,
                count=count,
                oldest_age_s=max(0.0, now - oldest),
                median_age_s=max(0.0, now - middle),
            )
        )
    return ReportCounts(statuses=statuses, total=sum(s.count for s in statuses))


def _status_ages_in_one_pass(
    session: Session, conditions: list[ColumnElement[bool]]
) -> dict[str, tuple[int, float, float]]:
    """status -> (count, oldest and middle filing time) in one pass over the matching reports
    by window functions: a search is matched once, not once per status."""
    per_status = (
        select(
            ErrorReportRow.status.label("status"),
            ErrorReportRow.filed_at.label("filed_at"),
            func.row_number()
            .over(partition_by=ErrorReportRow.status, order_by=ErrorReportRow.filed_at)
            .label("place"),
            func.count().over(partition_by=ErrorReportRow.status).label("count"),
            func.min(ErrorReportRow.filed_at)
            .over(partition_by=ErrorReportRow.status)
            .label("oldest"),
        )
        .where(*conditions)
        .subquery()
    )
    rows = session.execute(
        select(
            per_status.c.status, per_status.c["count"], per_status.c.oldest, per_status.c.filed_at
        ).where(per_status.c.place == (per_status.c["count"] + 1) // 2)
    ).all()
    return {
        status: (int(count), float(oldest), float(middle)) for status, count, oldest, middle in rows
    }


def _status_ages_by_index(
    session: Session, conditions: list[ColumnElement[bool]]
) -> dict[str, tuple[int, float, float]]:
    """The same without a search: counts grouped, then each status's middle report read
    along the (status, filed_at) index, which costs a walk to the middle, not a sort of all."""
    grouped = session.execute(
        select(ErrorReportRow.status, func.count(), func.min(ErrorReportRow.filed_at))
        .where(*conditions)
        .group_by(ErrorReportRow.status)
    ).all()
    if conditions and sum(int(count) for _status, count, _oldest in grouped) <= ONE_PASS_MAX:
        # A narrow filter (a model, an assignee): a pass over its few reports beats walking
        # each status's index while testing the filter on every report of that status.
        return _status_ages_in_one_pass(session, conditions)
    found: dict[str, tuple[int, float, float]] = {}
    for status, count, oldest in grouped:
        middle = session.scalar(
            select(ErrorReportRow.filed_at)
            .where(*conditions, ErrorReportRow.status == status)
            .order_by(ErrorReportRow.filed_at)
            .offset((int(count) - 1) // 2)
            .limit(1)
        )
        found[status] = (int(count), float(oldest), float(middle if middle is not None else oldest))
    return found


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
