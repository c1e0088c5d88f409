"""Every read of the prediction log and of its join with labels.

Each query is bounded by what it reads (a request id, a model's time window, a page), and
served by an index: ``(request_id, row_index)`` for lookups, ``(model, created_at)`` for
windows, the label table's (model, id) for "newest labelled". None scans the log as it grows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Row, func, select
from sqlalchemy.orm import Session, sessionmaker

from backend.db.tables import LabelRow, PredictionRow
from backend.schemas import PredictionRecord

# Request ids per lookup query (bound parameters stay well under every driver's limit).
LOOKUP_CHUNK = 400
# Labels read per page, and pages at most, when looking for a version's labelled answers.
LABEL_PAGE = 2_000
MAX_LABEL_PAGES = 25
# The route of a candidate scoring in parallel: its answers were never seen.
SHADOW_ROUTE = "shadow"

PredictionKey = tuple[str, int]
LoggedKey = tuple[str, str, int]  # (model, request id, row index)


def _label_of_prediction() -> ColumnElement[bool]:
    # A request id is only unique within a model: a label joins its own model's prediction.
    return (
        (LabelRow.model == PredictionRow.model)
        & (LabelRow.request_id == PredictionRow.request_id)
        & (LabelRow.row_index == PredictionRow.row_index)
    )


def record_of(row: PredictionRow, label: Any = None) -> PredictionRecord:
    """A logged row as the wire format shows it, with its label (None: none yet)."""
    return PredictionRecord(
        request_id=row.request_id,
        row=row.row_index,
        created_at=row.created_at,
        model=row.model,
        version=row.version,
        route=row.route,
        entity_id=row.entity_id,
        features=row.features,
        outputs=row.outputs,
        latency_ms=row.latency_ms,
        token_name=row.token_name,
        label=label,
    )


def read_predictions(
    sessions: sessionmaker[Session],
    *,
    model: str | None = None,
    request_id: str | None = None,
    visible_models: frozenset[str] | None = None,
    limit: int = 100,
) -> list[PredictionRecord]:
    """The newest predictions (of a model, or of one request), each with its label if any;
    with ``visible_models``, only predictions of those models."""
    if visible_models is not None and not visible_models:
        return []
    with sessions() as session:
        query = (
            select(PredictionRow, LabelRow.label)
            .outerjoin(LabelRow, _label_of_prediction())
            .limit(limit)
        )
        if visible_models is not None:
            query = query.where(PredictionRow.model.in_(sorted(visible_models)))
        if model is not None:
            # Newest first along the (model, created_at) index: a page costs its own rows.
            query = query.where(PredictionRow.model == model).order_by(
                PredictionRow.created_at.desc(), PredictionRow.id.desc()
            )
        else:
            query = query.order_by(PredictionRow.id.desc())
        if request_id is not None:
            query = query.where(PredictionRow.request_id == request_id)
        return [record_of(row, label) for row, label in session.execute(query).all()]


def models_of(
    session: Session, keys: Sequence[PredictionKey]
) -> dict[PredictionKey, list[tuple[str, str]]]:
    """(model, version) of every logged prediction among ``keys``: several when models share
    a request id (absent: not logged yet)."""
    found: dict[PredictionKey, list[tuple[str, str]]] = {}
    for start in range(0, len(keys), LOOKUP_CHUNK):
        chunk = keys[start : start + LOOKUP_CHUNK]
        rows = session.execute(
            select(
                PredictionRow.request_id,
                PredictionRow.row_index,
                PredictionRow.model,
                PredictionRow.version,
            ).where(PredictionRow.request_id.in_({request_id for request_id, _ in chunk}))
        ).all()
        wanted = set(chunk)
        for request_id, row_index, model, version in rows:
            if (request_id, row_index) in wanted:
                found.setdefault((request_id, row_index), []).append((model, version))
    return found


def logged_by_keys(
    session: Session,
    keys: Sequence[LoggedKey],
    *,
    with_payload: bool = False,
    chunk: int = LOOKUP_CHUNK,
) -> dict[LoggedKey, tuple[Any, ...]]:
    """(version, route, created_at), with ``with_payload`` also (features, outputs), of each
    key's logged prediction: the first one logged (by id), never a shadow's (its answers were
    never seen: the served or held-out row is the one). Read ``chunk`` keys per query."""
    columns: list[Any] = [PredictionRow.version, PredictionRow.route, PredictionRow.created_at]
    if with_payload:
        columns += [PredictionRow.features, PredictionRow.outputs]
    found: dict[LoggedKey, tuple[Any, ...]] = {}
    wanted = set(keys)
    for start in range(0, len(keys), chunk):
        part = keys[start : start + chunk]
        rows = session.execute(
            select(PredictionRow.model, PredictionRow.request_id, PredictionRow.row_index, *columns)
            .where(
                PredictionRow.request_id.in_({k[1] for k in part}),
                PredictionRow.model.in_({k[0] for k in part}),
                PredictionRow.route != SHADOW_ROUTE,
            )
            .order_by(PredictionRow.id)
        )
        for model, request_id, row_index, *logged in rows:
            key = (model, request_id, row_index)
            if key in wanted and key not in found:
                found[key] = tuple(logged)
    return found


def newest_labelled(
    sessions: sessionmaker[Session],
    model: str,
    version: str,
    window: int,
    routes: Iterable[str] = ("active", "canary"),
) -> list[tuple[dict[str, Any], Any]]:
    """(outputs, label) of the version's answers labelled last, newest label first.

    Read from the labels backwards in pages, each page's predictions fetched by request id:
    a join ordered by either table made SQLite scan the model's whole prediction log.
    """
    found: list[tuple[dict[str, Any], Any]] = []
    before: int | None = None
    routes = tuple(routes)
    with sessions() as session:
        for _page in range(MAX_LABEL_PAGES):
            # Along the (model, id) index: a page costs its own labels.
            query = select(
                LabelRow.id, LabelRow.request_id, LabelRow.row_index, LabelRow.label
            ).where(LabelRow.model == model)
            if before is not None:
                query = query.where(LabelRow.id < before)
            labels = session.execute(query.order_by(LabelRow.id.desc()).limit(LABEL_PAGE)).all()
            if not labels:
                break
            before = labels[-1].id
            # Looked up by request id alone, the model, version and route checked here: with
            # them in the query, SQLite chose the (model, created_at) index and read the
            # model's whole log for every page (2 s per page at 5 million rows).
            outputs = {
                (row.request_id, row.row_index): row.outputs
                for row in session.execute(
                    select(
                        PredictionRow.request_id,
                        PredictionRow.row_index,
                        PredictionRow.outputs,
                        PredictionRow.model,
                        PredictionRow.version,
                        PredictionRow.route,
                    ).where(PredictionRow.request_id.in_({label.request_id for label in labels}))
                )
                if row.model == model and row.version == version and row.route in routes
            }
            for label in labels:
                answer = outputs.get((label.request_id, label.row_index))
                if answer is not None:
                    found.append((answer, label.label))
                    if len(found) == window:
                        return found
    return found


def window_rows(
    sessions: sessionmaker[Session],
    model: str,
    since: float,
    *,
    with_answers: bool,
    limit: int,
) -> Sequence[Row[Any]]:
    """A model's newest rows since ``since``: version, route, latency_ms, created_at, and
    with ``with_answers`` also request_id, row_index and outputs (decoding answers costs CPU
    the requests being served need, so only readers that compare answers ask for them)."""
    columns: list[Any] = [
        PredictionRow.version,
        PredictionRow.route,
        PredictionRow.latency_ms,
        PredictionRow.created_at,
    ]
    if with_answers:
        columns += [PredictionRow.request_id, PredictionRow.row_index, PredictionRow.outputs]
    with sessions() as session:
        return session.execute(
            select(*columns)
            .where(PredictionRow.model == model, PredictionRow.created_at >= since)
            .order_by(PredictionRow.created_at.desc())
            .limit(limit)
        ).all()


def labelled_since(
    sessions: sessionmaker[Session],
    model: str,
    version: str,
    route: str,
    since: float,
    limit: int,
) -> list[tuple[dict[str, Any], Any]]:
    """(outputs, label) of a version's answers on a route since ``since`` that have labels."""
    with sessions() as session:
        rows = session.execute(
            select(PredictionRow.outputs, LabelRow.label)
            .join(LabelRow, _label_of_prediction())
            .where(
                PredictionRow.model == model,
                PredictionRow.created_at >= since,
                PredictionRow.version == version,
                PredictionRow.route == route,
            )
            .limit(limit)
        ).all()
    return [(outputs, label) for outputs, label in rows]


def version_window(
    sessions: sessionmaker[Session],
    model: str,
    version: str,
    start: float,
    end: float,
    limit: int,
) -> Sequence[Row[Any]]:
    """A version's predictions made in [start, end), oldest first, each with its label and
    the label's arrival time (None for both while unlabelled): created_at, outputs, label,
    received_at. Every route counts (a shadow answer is the version's answer too).

    Along the (model, created_at) index, each row's label found by the label table's unique
    (model, request_id, row_index) index: the read costs the window's rows, never the log's.
    """
    with sessions() as session:
        return session.execute(
            select(
                PredictionRow.created_at,
                PredictionRow.outputs,
                LabelRow.label,
                LabelRow.received_at,
            )
            .outerjoin(LabelRow, _label_of_prediction())
            .where(
                PredictionRow.model == model,
                PredictionRow.created_at >= start,
                PredictionRow.created_at < end,
                PredictionRow.version == version,
            )
            .order_by(PredictionRow.created_at)
            .limit(limit)
        ).all()


def version_window_counts(
    sessions: sessionmaker[Session], model: str, version: str, start: float, end: float
) -> tuple[int, int]:
    """(predictions, labelled predictions) of a version made in [start, end), by the same
    indexes as ``version_window``."""
    with sessions() as session:
        predictions, labelled = session.execute(
            select(func.count(PredictionRow.id), func.count(LabelRow.id))
            .outerjoin(LabelRow, _label_of_prediction())
            .where(
                PredictionRow.model == model,
                PredictionRow.created_at >= start,
                PredictionRow.created_at < end,
                PredictionRow.version == version,
            )
        ).one()
    return int(predictions), int(labelled)


def version_window_labelled(
    sessions: sessionmaker[Session],
    model: str,
    version: str,
    start: float,
    end: float,
    limit: int,
) -> Sequence[Row[Any]]:
    """Only the labelled rows of ``version_window`` (same columns), for a window with more
    predictions than one read takes."""
    with sessions() as session:
        return session.execute(
            select(
                PredictionRow.created_at,
                PredictionRow.outputs,
                LabelRow.label,
                LabelRow.received_at,
            )
            .join(LabelRow, _label_of_prediction())
            .where(
                PredictionRow.model == model,
                PredictionRow.created_at >= start,
                PredictionRow.created_at < end,
                PredictionRow.version == version,
            )
            .order_by(PredictionRow.created_at)
            .limit(limit)
        ).all()


def route_coverage(
    sessions: sessionmaker[Session], model: str, route: str, start: float
) -> tuple[int, int, int]:
    """(requests on ``route``, distinct entity ids among them, requests of the model) made
    since ``start``, by the (model, created_at) index: the cost of the window, not the log."""
    in_window = (PredictionRow.model == model) & (PredictionRow.created_at >= start)
    with sessions() as session:
        on_route, entities = session.execute(
            select(
                func.count(func.distinct(PredictionRow.request_id)),
                func.count(func.distinct(PredictionRow.entity_id)),
            ).where(in_window, PredictionRow.route == route)
        ).one()
        # Shadow copies are the candidate scoring the same requests: not more traffic.
        everything = session.execute(
            select(func.count(func.distinct(PredictionRow.request_id))).where(
                in_window, PredictionRow.route != SHADOW_ROUTE
            )
        ).scalar_one()
    return int(on_route), int(entities), int(everything)


def logged_rows_of(session: Session, request_id: str, row_index: int) -> list[PredictionRecord]:
    """Every logged row with this request id and row (one per model that answered it), along
    the (request_id, row_index) index."""
    rows = session.scalars(
        select(PredictionRow).where(
            PredictionRow.request_id == request_id, PredictionRow.row_index == row_index
        )
    ).all()
    return [record_of(row) for row in rows]
