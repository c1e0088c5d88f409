"""The prediction log: rows are queued on the request path and written in batches by a thread.

The request path only appends a tuple to a deque (no I/O, no JSON encoding). A writer thread
drains it every flush interval, so a kill -9 loses at most one interval of predictions; a
graceful stop drains everything.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Engine

log = logging.getLogger(__name__)

# A bounded queue protects memory when the store is down; past it, serving refuses requests
# (503) rather than answer predictions it cannot log.
MAX_QUEUED_ROWS = 1_000_000
WRITE_CHUNK = 5_000


@dataclass(frozen=True, slots=True)
class LoggedPrediction:
    request_id: str
    row_index: int
    created_at: float
    model: str
    version: str
    route: str
    entity_id: str | None
    features: dict[str, Any]
    outputs: dict[str, Any]
    latency_ms: float
    token_name: str


class PredictionLog:
    def __init__(
        self, engine: Engine, flush_interval_s: float = 0.2, max_queued_rows: int = MAX_QUEUED_ROWS
    ):
        self.engine = engine
        self.flush_interval_s = flush_interval_s
        self.max_queued_rows = max_queued_rows
        self._queue: deque[LoggedPrediction] = deque()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._flush_lock = threading.Lock()
        self.failed_flushes = 0
        self._write = (
            self._write_postgres if engine.dialect.name == "postgresql" else self._write_sqlite
        )

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
            self._thread.start()

    def has_room(self, rows: int) -> bool:
        return len(self._queue) + rows <= self.max_queued_rows

    def append(self, rows: list[LoggedPrediction]) -> None:
        self._queue.extend(rows)

    def flush(self) -> int:
        """Write everything queued now; returns the number of rows written."""
        total = 0
        with self._flush_lock:
            while self._queue:
                batch: list[LoggedPrediction] = []
                while self._queue and len(batch) < WRITE_CHUNK:
                    batch.append(self._queue.popleft())
                try:
                    self._write(batch)
                except Exception:
                    # Keep the rows for the next attempt rather than lose accepted data.
                    self._queue.extendleft(reversed(batch))
                    self.failed_flushes += 1
                    log.exception("prediction log flush failed; will retry")
                    break
                total += len(batch)
        return total

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stopping.wait(self.flush_interval_s):
            failures_before = self.failed_flushes
            self.flush()
            if self.failed_flushes > failures_before:
                # The store is unavailable: back off instead of spinning on it.
                self._stopping.wait(2.0)

    def _write_sqlite(self, batch: list[LoggedPrediction]) -> None:
        # SQLAlchemy's executemany costs ~4x the driver's own on SQLite; this is the hot table,
        # so rows go straight to sqlite3 with JSON encoded once, here in the writer thread.
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.executemany(_SQLITE_INSERT, _plain_rows(batch))
            raw.commit()
        finally:
            raw.close()

    def _write_postgres(self, batch: list[LoggedPrediction]) -> None:
        # COPY: SQLAlchemy with psycopg sends one INSERT per row (measured 36k rows/s); COPY
        # streams the batch in one statement.
        raw = self.engine.raw_connection()
        try:
            connection = raw.driver_connection
            assert connection is not None
            with connection.cursor() as cursor, cursor.copy(_POSTGRES_COPY) as copy:
                for row in _plain_rows(batch):
                    copy.write_row(row)
            raw.commit()
        finally:
            raw.close()


def _dumps(value: Any) -> str:
    # orjson: this encoding runs in the writer thread but holds the GIL the event loop needs;
    # it is several times faster than json.dumps.
    return orjson.dumps(value).decode()


def _plain_rows(batch: list[LoggedPrediction]) -> list[tuple[object, ...]]:
    dumps = _dumps
    return [
        (
            item.request_id,
            item.row_index,
            item.created_at,
            item.model,
            item.version,
            item.route,
            item.entity_id,
            dumps(item.features),
            dumps(item.outputs),
            item.latency_ms,
            item.token_name,
        )
        for item in batch
    ]


_COLUMNS = (
    "request_id, row_index, created_at, model, version, route, entity_id, features, outputs, "
    "latency_ms, token_name"
)
_POSTGRES_COPY = f"COPY predictions ({_COLUMNS}) FROM STDIN"
_SQLITE_INSERT = f"INSERT INTO predictions ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
