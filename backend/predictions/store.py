"""The writer's side of the store: rows and a segment's committed offset in one transaction.

The drivers are used directly, not SQLAlchemy: on the hottest table SQLAlchemy's executemany
cost ~4x the driver's, and the writer process starts faster without it.

The same transaction inserts the drift-window deltas counting those rows (``window_counts``),
so the counts are exactly once with the rows; ``fold_windows`` moves closed minutes' deltas
into minute and hour buckets, safely with several writers (SQLite: the write lock of BEGIN
IMMEDIATE; PostgreSQL: delta rows taken FOR UPDATE SKIP LOCKED, bucket rows locked in key
order).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Sequence
from typing import Any, Protocol

from backend.predictions.rows import COLUMNS
from backend.predictions.window_counts import (
    FOLD_BATCH,
    HOUR_S,
    MINUTE_S,
    References,
    Retention,
    WindowDelta,
    fold,
)

Row = list[Any]


class OffsetConflict(Exception):
    """Another writer committed this segment since its offset was read."""


class SegmentStore(Protocol):
    def committed_offset(self, key: str) -> int:
        """How far a segment is written (0: nothing yet); registers the segment."""
        ...

    def commit(
        self,
        key: str,
        expected: int,
        new: int,
        rows: list[Row],
        deltas: Sequence[WindowDelta] = (),
    ) -> None:
        """Insert rows and the window deltas counting them and move the segment's offset from
        ``expected`` to ``new``, atomically; raises ``OffsetConflict`` (writing nothing) if
        the offset is no longer ``expected``."""
        ...

    def references(self, keys: list[tuple[str, str]] | None) -> References:
        """Drift reference summaries (JSON text) of these (model, version)s, or of all."""
        ...

    def fold_windows(self, before: int, retention: Retention, now: float) -> int:
        """Fold deltas of minutes starting before ``before`` into their buckets, drop buckets
        past their retention; returns how many delta rows were folded."""
        ...

    def forget(self, key: str) -> None:
        """The segment file is gone: its offset is not needed any more."""
        ...

    def forget_owner(self, owner: str) -> None:
        """The owner's spool is gone: none of its segments' offsets are needed any more."""
        ...


def open_store(dialect: str, location: str, durable: bool = False) -> SegmentStore:
    if dialect == "sqlite":
        return SqliteSegmentStore(location, durable)
    if dialect == "postgresql":
        return PostgresSegmentStore(location)
    raise ValueError(f"unsupported prediction log store {dialect!r}")


_REGISTER = (
    "INSERT INTO log_segments (segment, committed_offset, updated_at) VALUES ({p}, 0, {p}) "
    "ON CONFLICT (segment) DO NOTHING"
)
_READ = "SELECT committed_offset FROM log_segments WHERE segment = {p}"
_ADVANCE = (
    "UPDATE log_segments SET committed_offset = {p}, updated_at = {p} "
    "WHERE segment = {p} AND committed_offset = {p}"
)
_FORGET = "DELETE FROM log_segments WHERE segment = {p}"
_FORGET_OWNER = "DELETE FROM log_segments WHERE substr(segment, 1, {p}) = {p}"
_INSERT_DELTA = (
    "INSERT INTO drift_window_deltas (model, version, route, bucket_start, rows, counts) "
    "VALUES ({p}, {p}, {p}, {p}, {p}, {p})"
)
_ALL_REFERENCES = "SELECT model, version, summary FROM drift_references"
_ONE_REFERENCE = _ALL_REFERENCES + " WHERE model = {p} AND version = {p}"
_CLOSED_DELTAS = (
    "SELECT id, model, version, route, bucket_start, counts FROM drift_window_deltas "
    "WHERE bucket_start < {p} ORDER BY id LIMIT {p}"
)
_DELETE_DELTA = "DELETE FROM drift_window_deltas WHERE id = {p}"
_BUCKET_WHERE = (
    "model = {p} AND version = {p} AND route = {p} AND resolution_s = {p} AND bucket_start = {p}"
)
_ENSURE_BUCKET = (
    "INSERT INTO drift_window_buckets "
    "(model, version, route, resolution_s, bucket_start, rows, counts) "
    "VALUES ({p}, {p}, {p}, {p}, {p}, 0, {p}) ON CONFLICT DO NOTHING"
)
_READ_BUCKET = "SELECT counts FROM drift_window_buckets WHERE " + _BUCKET_WHERE
_WRITE_BUCKET = "UPDATE drift_window_buckets SET rows = {p}, counts = {p} WHERE " + _BUCKET_WHERE
_EXPIRE_BUCKETS = "DELETE FROM drift_window_buckets WHERE resolution_s = {p} AND bucket_start < {p}"


def _delta_params(deltas: Sequence[WindowDelta]) -> list[tuple[Any, ...]]:
    return [(d.model, d.version, d.route, d.bucket_start, d.rows, d.counts) for d in deltas]


def _read_references(cursor: Any, p: str, keys: list[tuple[str, str]] | None) -> References:
    if keys is None:
        found = cursor.execute(_ALL_REFERENCES).fetchall()
    else:
        found = []
        for model, version in keys:
            found += cursor.execute(_ONE_REFERENCE.format(p=p), (model, version)).fetchall()
    return {(model, version): summary for model, version, summary in found}


def _fold(
    cursor: Any, p: str, before: int, retention: Retention, now: float, lock: str = ""
) -> int:
    """The fold, inside the caller's transaction (``lock``: PostgreSQL's row-lock clauses)."""
    deltas = cursor.execute(
        _CLOSED_DELTAS.format(p=p) + (" FOR UPDATE SKIP LOCKED" if lock else ""),
        (before, FOLD_BATCH),
    ).fetchall()
    keep_from = {MINUTE_S: now - retention.minute_s, HOUR_S: now - retention.hour_s - HOUR_S}
    for resolution, keep in keep_from.items():
        cursor.execute(_EXPIRE_BUCKETS.format(p=p), (resolution, int(keep)))
    if not deltas:
        return 0
    # numpy with it: only a writer that counts (and so folds) needs it.
    from backend.predictions.window_layout import ParsedWindow, encode, merge, parse

    added = fold(
        (model, version, route, start, counts) for _, model, version, route, start, counts in deltas
    )
    empty = encode(ParsedWindow())
    # Key order: two PostgreSQL folds lock shared buckets in the same order (no deadlock).
    for key in sorted(added):
        if key[4] < keep_from[key[3]]:
            continue  # already past its retention: it would be dropped below anyway
        cursor.execute(_ENSURE_BUCKET.format(p=p), (*key, empty))
        (stored,) = cursor.execute(_READ_BUCKET.format(p=p) + lock, key).fetchone()
        total = merge([parse(stored), added[key]])
        cursor.execute(_WRITE_BUCKET.format(p=p), (total.rows, encode(total), *key))
    cursor.executemany(_DELETE_DELTA.format(p=p), [(row[0],) for row in deltas])
    return len(deltas)


class SqliteSegmentStore:
    def __init__(self, path: str, durable: bool):
        # Autocommit mode with explicit transactions: BEGIN IMMEDIATE takes the write lock
        # up front, so the offset check and the inserts see one state.
        self.connection = sqlite3.connect(path, timeout=10, isolation_level=None)
        self.connection.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self.connection.execute("PRAGMA busy_timeout=10000")
        self.insert = f"INSERT INTO predictions ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)"

    def committed_offset(self, key: str) -> int:
        self.connection.execute(_REGISTER.format(p="?"), (key, time.time()))
        row = self.connection.execute(_READ.format(p="?"), (key,)).fetchone()
        return int(row[0])

    def commit(
        self,
        key: str,
        expected: int,
        new: int,
        rows: list[Row],
        deltas: Sequence[WindowDelta] = (),
    ) -> None:
        connection = self.connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            advanced = connection.execute(
                _ADVANCE.format(p="?"), (new, time.time(), key, expected)
            ).rowcount
            if advanced != 1:
                raise OffsetConflict(key)
            connection.executemany(self.insert, rows)
            if deltas:
                connection.executemany(_INSERT_DELTA.format(p="?"), _delta_params(deltas))
            connection.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            raise

    def references(self, keys: list[tuple[str, str]] | None) -> References:
        return _read_references(self.connection.cursor(), "?", keys)

    def fold_windows(self, before: int, retention: Retention, now: float) -> int:
        connection = self.connection
        # The write lock up front: a second writer's fold waits and then finds the deltas gone.
        connection.execute("BEGIN IMMEDIATE")
        try:
            folded = _fold(connection.cursor(), "?", before, retention, now)
            connection.execute("COMMIT")
            return folded
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            raise

    def forget(self, key: str) -> None:
        self.connection.execute(_FORGET.format(p="?"), (key,))

    def forget_owner(self, owner: str) -> None:
        prefix = f"{owner}/"
        self.connection.execute(_FORGET_OWNER.format(p="?"), (len(prefix), prefix))


class PostgresSegmentStore:
    # COPY: psycopg's executemany sends one INSERT per row (measured 36k rows/s); COPY streams
    # the batch in one statement. The connection is opened again after a failure.
    def __init__(self, conninfo: str):
        self.conninfo = conninfo
        self._connection: Any = None
        self.copy_sql = f"COPY predictions ({COLUMNS}) FROM STDIN"

    def _connect(self) -> Any:
        import psycopg

        if self._connection is None or self._connection.closed:
            self._connection = psycopg.connect(self.conninfo, connect_timeout=10)
        return self._connection

    def _run(self, work: Any) -> Any:
        connection = self._connect()
        try:
            result = work(connection)
            connection.commit()
            return result
        except OffsetConflict:
            connection.rollback()
            raise
        except Exception:
            self._connection = None
            with contextlib.suppress(Exception):
                connection.close()
            raise

    def committed_offset(self, key: str) -> int:
        def read(connection: Any) -> int:
            with connection.cursor() as cursor:
                cursor.execute(_REGISTER.format(p="%s"), (key, time.time()))
                cursor.execute(_READ.format(p="%s"), (key,))
                return int(cursor.fetchone()[0])

        return int(self._run(read))

    def commit(
        self,
        key: str,
        expected: int,
        new: int,
        rows: list[Row],
        deltas: Sequence[WindowDelta] = (),
    ) -> None:
        def write(connection: Any) -> None:
            with connection.cursor() as cursor:
                # Under READ COMMITTED a second writer's UPDATE waits for the first to commit,
                # then finds the offset changed and matches no row.
                cursor.execute(_ADVANCE.format(p="%s"), (new, time.time(), key, expected))
                if cursor.rowcount != 1:
                    raise OffsetConflict(key)
                with cursor.copy(self.copy_sql) as copy:
                    for row in rows:
                        copy.write_row(row)
                if deltas:
                    cursor.executemany(_INSERT_DELTA.format(p="%s"), _delta_params(deltas))

        self._run(write)

    def references(self, keys: list[tuple[str, str]] | None) -> References:
        def read(connection: Any) -> References:
            with connection.cursor() as cursor:
                return _read_references(cursor, "%s", keys)

        found: References = self._run(read)
        return found

    def fold_windows(self, before: int, retention: Retention, now: float) -> int:
        def work(connection: Any) -> int:
            with connection.cursor() as cursor:
                # Deltas another fold holds are skipped (it folds them); shared buckets are
                # locked FOR UPDATE in key order.
                return _fold(cursor, "%s", before, retention, now, lock=" FOR UPDATE")

        folded: int = self._run(work)
        return folded

    def forget(self, key: str) -> None:
        def delete(connection: Any) -> None:
            with connection.cursor() as cursor:
                cursor.execute(_FORGET.format(p="%s"), (key,))

        self._run(delete)

    def forget_owner(self, owner: str) -> None:
        prefix = f"{owner}/"

        def delete(connection: Any) -> None:
            with connection.cursor() as cursor:
                cursor.execute(_FORGET_OWNER.format(p="%s"), (len(prefix), prefix))

        self._run(delete)
