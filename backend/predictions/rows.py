"""The one layout of a logged prediction, shared by the request path, the feed and the writer.

Standard library and orjson only: the writer process imports it when it starts.
"""

from __future__ import annotations

from typing import Any

import orjson

# The ``predictions`` table's columns in the order of a ``LogRow``.
COLUMNS = (
    "request_id, row_index, created_at, model, version, route, entity_id, features, outputs, "
    "latency_ms, token_name"
)

# One row as the writer inserts it, in the column order of ``COLUMNS``: request id, row index,
# created at, model, version, route, entity id, features and outputs (JSON text), latency in
# ms, token name. Scalars and strings only: a ring of them (the live feed) is left alone by the
# garbage collector, where objects with dicts made it scan tens of thousands of objects every
# few hundred requests.
LogRow = tuple[str, int, float, str, str, str, str | None, str, str, float, str]
(
    ROW_REQUEST_ID,
    ROW_INDEX,
    ROW_CREATED_AT,
    ROW_MODEL,
    ROW_VERSION,
    ROW_ROUTE,
    ROW_ENTITY_ID,
    ROW_FEATURES,
    ROW_OUTPUTS,
    ROW_LATENCY_MS,
    ROW_TOKEN_NAME,
) = range(11)


def json_text(value: Any) -> str:
    """A features or outputs column's content; encoded once, the writer never re-encodes it."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def log_row(
    *,
    request_id: str,
    row_index: int,
    created_at: float,
    model: str,
    version: str,
    route: str,
    entity_id: str | None,
    features: dict[str, Any],
    outputs: dict[str, Any],
    latency_ms: float,
    token_name: str,
) -> LogRow:
    """One prediction as the log stores it (and the live feed keeps it)."""
    return (
        request_id,
        row_index,
        created_at,
        model,
        version,
        route,
        entity_id,
        json_text(features),
        json_text(outputs),
        latency_ms,
        token_name,
    )


def encode_rows(rows: list[LogRow]) -> bytes:
    """One request's rows as a spool record's payload."""
    return orjson.dumps(rows)


def decode_rows(payload: bytes) -> list[list[Any]]:
    rows: list[list[Any]] = orjson.loads(payload)
    return rows
