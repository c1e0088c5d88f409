"""The retraining export's read of the log: one model's rows with their labels, in pages.

Keyset-paged along the (model, created_at) index, (created_at, id) as the key: each page
costs its own rows and starts where the last one ended, so no cursor stays open between
pages and the read never holds more than a page. Features, outputs and labels come as the
JSON text the store holds (the export parses them once, with orjson). A shadow's rows are
left out: nobody saw its answers, and the served row of the same request carries the label.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Text, and_, cast, func, not_, null, select
from sqlalchemy.orm import Session, sessionmaker

from backend.db.tables import LabelRow, PredictionRow

SHADOW_ROUTE = "shadow"
PAGE_ROWS = 20_000


@dataclass(frozen=True)
class LogWindow:
    """Which log rows an export reads: one model, some versions (None: all), [start, end)."""

    model: str
    versions: tuple[str, ...] | None
    start: float | None
    end: float

    def conditions(self) -> list[ColumnElement[bool]]:
        found = [PredictionRow.model == self.model, PredictionRow.route != SHADOW_ROUTE]
        found.append(PredictionRow.created_at < self.end)
        if self.start is not None:
            found.append(PredictionRow.created_at >= self.start)
        if self.versions is not None:
            found.append(PredictionRow.version.in_(self.versions))
        return found


# Per row: id, created_at, request_id, row_index, version, route, entity_id, then (with the
# payload) features and outputs as JSON text, then the label as JSON text (None: none), its
# source, received_at and influenced.
(
    R_ID,
    R_CREATED_AT,
    R_REQUEST_ID,
    R_ROW_INDEX,
    R_VERSION,
    R_ROUTE,
    R_ENTITY_ID,
    R_FEATURES,
    R_OUTPUTS,
    R_LABEL,
    R_LABEL_SOURCE,
    R_LABEL_AT,
    R_LABEL_INFLUENCED,
) = range(13)


def _label_of_prediction() -> ColumnElement[bool]:
    return and_(
        LabelRow.model == PredictionRow.model,
        LabelRow.request_id == PredictionRow.request_id,
        LabelRow.row_index == PredictionRow.row_index,
    )


def _fetch_plain(session: Session, query: Any) -> list[tuple[Any, ...]]:
    """The query's rows as the driver returns them: plain tuples, no result processing. At a
    million rows SQLAlchemy's own rows cost as much as the read itself; the export converts
    every column to its Arrow type anyway (booleans may come as 0/1, JSON as text)."""
    connection = session.connection()
    compiled = query.compile(
        dialect=connection.dialect, compile_kwargs={"render_postcompile": True}
    )
    parameters: Any = (
        tuple(compiled.params[name] for name in compiled.positiontup or ())
        if compiled.positional
        else compiled.params
    )
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(str(compiled), parameters)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def count_export_rows(sessions: sessionmaker[Session], window: LogWindow) -> int:
    """The log rows the export reads, along the same index."""
    with sessions() as session:
        return int(
            session.scalar(select(func.count(PredictionRow.id)).where(*window.conditions())) or 0
        )


def export_pages(
    sessions: sessionmaker[Session],
    window: LogWindow,
    *,
    payload: bool = True,
    page_rows: int = PAGE_ROWS,
) -> Generator[Sequence[Any], None, None]:
    """The window's rows with their labels, oldest first, a page at a time. Without the
    payload, features and outputs are None (a preview counts labels only)."""
    # Without the payload the two columns stay in their places, empty.
    features: Any = cast(PredictionRow.features, Text) if payload else null()
    outputs: Any = cast(PredictionRow.outputs, Text) if payload else null()
    columns = [
        PredictionRow.id,
        PredictionRow.created_at,
        PredictionRow.request_id,
        PredictionRow.row_index,
        PredictionRow.version,
        PredictionRow.route,
        PredictionRow.entity_id,
        features,
        outputs,
        cast(LabelRow.label, Text),
        LabelRow.source,
        LabelRow.received_at,
        LabelRow.influenced,
    ]
    after: tuple[float, int] | None = None
    while True:
        query = (
            select(*columns).outerjoin(LabelRow, _label_of_prediction()).where(*window.conditions())
        )
        if after is not None:
            # The index's range starts at the last time read; the few rows of that same
            # time already read are skipped by id (a row-value or OR condition would keep
            # SQLite from using the range).
            query = query.where(
                PredictionRow.created_at >= after[0],
                not_(and_(PredictionRow.created_at == after[0], PredictionRow.id <= after[1])),
            )
        query = query.order_by(PredictionRow.created_at, PredictionRow.id).limit(page_rows)
        with sessions() as session:
            rows = _fetch_plain(session, query)
        if not rows:
            return
        yield rows
        last = rows[-1]
        after = (last[R_CREATED_AT], last[R_ID])
        if len(rows) < page_rows:
            return
