"""Reads of held-out prediction rows (route ``held_out``): what the review queue shows.

Along the partial index ``ix_predictions_held_out`` (model, created_at; held-out rows only):
a read costs the held-out rows it returns, never the rest of the log. The route is compared
with a literal so that both SQLite and PostgreSQL can prove the index's condition holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import literal_column, select
from sqlalchemy.orm import Session, sessionmaker

from backend.db.tables import PredictionRow
from backend.predictions.reads import LOOKUP_CHUNK, PredictionKey

HELD_OUT_ROUTE = "held_out"
_IS_HELD_OUT = PredictionRow.route == literal_column(f"'{HELD_OUT_ROUTE}'")


@dataclass(frozen=True)
class HeldOutRow:
    request_id: str
    row_index: int
    version: str
    created_at: float


@dataclass(frozen=True)
class HeldOutExample:
    """One held-out row as a reviewer sees it: the input and the model's unseen outputs."""

    request_id: str
    row_index: int
    version: str
    created_at: float
    entity_id: str | None
    features: dict[str, Any]
    outputs: dict[str, Any]


def held_out_rows_since(
    sessions: sessionmaker[Session], model: str, since: float, limit: int
) -> list[HeldOutRow]:
    """A model's held-out rows made at or after ``since``, oldest first, at most ``limit``."""
    with sessions() as session:
        rows = session.execute(
            select(
                PredictionRow.request_id,
                PredictionRow.row_index,
                PredictionRow.version,
                PredictionRow.created_at,
            )
            .where(PredictionRow.model == model, _IS_HELD_OUT, PredictionRow.created_at >= since)
            .order_by(PredictionRow.created_at)
            .limit(limit)
        ).all()
    return [HeldOutRow(*row) for row in rows]


def held_out_examples(
    session: Session, model: str, keys: Sequence[PredictionKey]
) -> dict[PredictionKey, HeldOutExample]:
    """The held-out rows of ``model`` among ``keys`` (by the request-id index)."""
    found: dict[PredictionKey, HeldOutExample] = {}
    for start in range(0, len(keys), LOOKUP_CHUNK):
        chunk = keys[start : start + LOOKUP_CHUNK]
        wanted = set(chunk)
        rows = session.execute(
            select(
                PredictionRow.request_id,
                PredictionRow.row_index,
                PredictionRow.version,
                PredictionRow.created_at,
                PredictionRow.entity_id,
                PredictionRow.features,
                PredictionRow.outputs,
                PredictionRow.model,
                PredictionRow.route,
            ).where(PredictionRow.request_id.in_({request_id for request_id, _ in chunk}))
        ).all()
        for row in rows:
            key = (row.request_id, row.row_index)
            if row.model == model and row.route == HELD_OUT_ROUTE and key in wanted:
                found[key] = HeldOutExample(
                    row.request_id,
                    row.row_index,
                    row.version,
                    row.created_at,
                    row.entity_id,
                    row.features,
                    row.outputs,
                )
    return found
