"""The writer's side of the store: rows and a segment's committed offset in one transaction.

The drivers are used directly, not SQLAlchemy: on the hottest table SQLAlchemy's executemany
cost ~4x the driver's, and the writer process starts faster without it.

The same transaction inserts the drift-window deltas counting those rows (``window_counts``),
so the counts are exactly once with the rows; ``fold_windows`` moves closed minutes' deltas
into minute and hour buckets, safely with several writers (SQLite: the write lock of BEGIN
IMMEDIATE; PostgreSQL: delta rows taken FOR UPDATE SKIP LOCKED, bucket rows locked in key
order). A writer's fold takes the deltas it committed itself and the buckets it wrote last from
memory (``FoldCache``) instead of reading and parsing them back: that was about half of what
folding cost.
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from backend.predictions.rows import COLUMNS
from backend.predictions.window_counts import (
    FOLD_BATCH,
    HOUR_S,
    MINUTE_S,
    BucketKey,
    References,
    Retention,
    WindowDelta,
    fold,
)

if TYPE_CHECKING:
    from backend.predictions.window_layout import ParsedWindow

Row = list[Any]
# Deltas a fold cache holds at most (a writer folds every few seconds, ~25 commits' worth):
# past it the oldest are dropped, and read back from the store if they are still there.
FOLD_CACHE_DELTAS = 128
# Ids of delta rows read back in one statement.
_READ_CHUNK = 500


class FoldCache:
    """What a writer's fold would otherwise read back and parse: the deltas it committed
    itself (by their tags, as counted), and the buckets it wrote last (with their row counts).

    Only what a transaction committed is kept (``keep_deltas`` and ``folded`` are called after
    COMMIT), and a cached bucket is used only while its stored row count is the one cached:
    buckets only grow, so another writer's fold (or an expiry) shows as another count and the
    row is read again.
    """

    def __init__(self) -> None:
        self.deltas: dict[int, ParsedWindow] = {}
        self.buckets: dict[BucketKey, tuple[int, ParsedWindow]] = {}

    def keep_deltas(self, committed: dict[int, ParsedWindow]) -> None:
        self.deltas.update(committed)
        while len(self.deltas) > FOLD_CACHE_DELTAS:
            del self.deltas[next(iter(self.deltas))]

    def folded(self, outcome: Any) -> None:
        tags, took_all, buckets = outcome
        if took_all:
            # Every delta committed before the fold was folded (by it, or by another writer).
            self.deltas.clear()
        else:
            for tag in tags:
                self.deltas.pop(tag, None)
        if buckets is not None:  # None: nothing folded, the buckets are as cached
            self.buckets = buckets

    def clear(self) -> None:
        self.deltas.clear()
        self.buckets.clear()


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

    def keep_fold_cache(self) -> None:
        """Keep what this store's folds would read back (``FoldCache``): for the store a
        writer both commits and folds with; others would only fill it."""
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
    "INSERT INTO drift_window_deltas (model, version, route, bucket_start, rows, counts, tag) "
    "VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p})"
)
_ALL_REFERENCES = "SELECT model, version, summary FROM drift_references"
_ONE_REFERENCE = _ALL_REFERENCES + " WHERE model = {p} AND version = {p}"
_CLOSED_DELTAS = (
    "SELECT id, model, version, route, bucket_start, tag FROM drift_window_deltas "
    "WHERE bucket_start < {p} ORDER BY id LIMIT {p}"
)
_DELTA_COUNTS = "SELECT id, counts FROM drift_window_deltas WHERE id IN ({ids})"
_DELETE_DELTA = "DELETE FROM drift_window_deltas WHERE id = {p}"
_BUCKET_WHERE = (
    "model = {p} AND version = {p} AND route = {p} AND resolution_s = {p} AND bucket_start = {p}"
)
_ENSURE_BUCKET = (
    "INSERT INTO drift_window_buckets "
    "(model, version, route, resolution_s, bucket_start, rows, counts) "
    "VALUES ({p}, {p}, {p}, {p}, {p}, 0, {p}) ON CONFLICT DO NOTHING"
)
_BUCKET_ROWS = "SELECT rows FROM drift_window_buckets WHERE " + _BUCKET_WHERE
_READ_BUCKET = "SELECT counts FROM drift_window_buckets WHERE " + _BUCKET_WHERE
_WRITE_BUCKET = "UPDATE drift_window_buckets SET rows = {p}, counts = {p} WHERE " + _BUCKET_WHERE
_EXPIRE_BUCKETS = "DELETE FROM drift_window_buckets WHERE resolution_s = {p} AND bucket_start < {p}"


def _delta_params(deltas: Sequence[WindowDelta], tags: list[int]) -> list[tuple[Any, ...]]:
    return [
        (d.model, d.version, d.route, d.bucket_start, d.rows, d.counts, tag)
        for d, tag in zip(deltas, tags, strict=True)
    ]


def _read_references(cursor: Any, p: str, keys: list[tuple[str, str]] | None) -> References:
    if keys is None:
        found = cursor.execute(_ALL_REFERENCES).fetchall()
    else:
        found = []
        for model, version in keys:
            found += cursor.execute(_ONE_REFERENCE.format(p=p), (model, version)).fetchall()
    return {(model, version): summary for model, version, summary in found}


def _insert_deltas(
    cursor: Any, p: str, deltas: Sequence[WindowDelta], cache: FoldCache | None
) -> dict[int, ParsedWindow]:
    """Insert the deltas, each with a random tag; with a fold cache, returns the parsed counts
    by tag, to keep once the transaction has committed."""
    if not deltas:
        return {}
    tags = [secrets.randbits(63) for _ in deltas]
    cursor.executemany(_INSERT_DELTA.format(p=p), _delta_params(deltas, tags))
    if cache is None:
        return {}
    return {tag: d.parsed for d, tag in zip(deltas, tags, strict=True) if d.parsed is not None}


def _delta_counts(cursor: Any, p: str, ids: list[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    for start in range(0, len(ids), _READ_CHUNK):
        chunk = ids[start : start + _READ_CHUNK]
        statement = _DELTA_COUNTS.format(ids=", ".join([p] * len(chunk)))
        found.update(cursor.execute(statement, chunk).fetchall())
    return found


def _fold(
    cursor: Any,
    p: str,
    before: int,
    retention: Retention,
    now: float,
    cache: FoldCache,
    lock: str = "",
) -> tuple[int, Any]:
    """The fold, inside the caller's transaction (``lock``: PostgreSQL's row-lock clauses).
    Returns how many deltas it folded, and what to tell the cache once it has committed."""
    deltas = cursor.execute(
        _CLOSED_DELTAS.format(p=p) + (" FOR UPDATE SKIP LOCKED" if lock else ""),
        (before, FOLD_BATCH),
    ).fetchall()
    keep_from = {MINUTE_S: now - retention.minute_s, HOUR_S: now - retention.hour_s - HOUR_S}
    for resolution, keep in keep_from.items():
        cursor.execute(_EXPIRE_BUCKETS.format(p=p), (resolution, int(keep)))
    ids = [int(row[0]) for row in deltas]
    tags = [row[5] for row in deltas if row[5] is not None]
    took_all = len(deltas) < FOLD_BATCH
    if not deltas:
        return 0, (tags, took_all, None)
    # numpy with it: only a writer that counts (and so folds) needs it.
    from backend.predictions.window_layout import ParsedWindow, encode, merge, parse

    # The deltas this writer committed are in the cache, as counted; the rest are read.
    mine = cache.deltas
    texts = _delta_counts(cursor, p, [int(row[0]) for row in deltas if row[5] not in mine])
    added = fold(
        (model, version, route, start, mine[tag] if tag in mine else texts[delta_id])
        for delta_id, model, version, route, start, tag in deltas
    )
    empty = encode(ParsedWindow())
    written: dict[BucketKey, tuple[int, ParsedWindow]] = {}
    # Key order: two PostgreSQL folds lock shared buckets in the same order (no deadlock).
    for key in sorted(added):
        if key[4] < keep_from[key[3]]:
            continue  # already past its retention: it would be dropped below anyway
        cursor.execute(_ENSURE_BUCKET.format(p=p), (*key, empty))
        (stored_rows,) = cursor.execute(_BUCKET_ROWS.format(p=p) + lock, key).fetchone()
        cached = cache.buckets.get(key)
        if cached is not None and cached[0] == int(stored_rows):
            stored = cached[1]
        else:
            (text,) = cursor.execute(_READ_BUCKET.format(p=p), key).fetchone()
            stored = parse(text)
        total = merge([stored, added[key]])
        cursor.execute(_WRITE_BUCKET.format(p=p), (total.rows, encode(total), *key))
        written[key] = (total.rows, total)
    cursor.executemany(_DELETE_DELTA.format(p=p), [(delta_id,) for delta_id in ids])
    return len(deltas), (tags, took_all, written)


class SqliteSegmentStore:
    def __init__(self, path: str, durable: bool):
        # Autocommit mode with explicit transactions: BEGIN IMMEDIATE takes the write lock
        # up front, so the offset check and the inserts see one state.
        self.connection = sqlite3.connect(path, timeout=10, isolation_level=None)
        self.connection.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self.connection.execute("PRAGMA busy_timeout=10000")
        self.insert = f"INSERT INTO predictions ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
        self.fold_cache: FoldCache | None = None

    def keep_fold_cache(self) -> None:
        self.fold_cache = self.fold_cache or FoldCache()

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
            inserted = _insert_deltas(connection.cursor(), "?", deltas, self.fold_cache)
            connection.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            raise
        if self.fold_cache is not None and inserted:
            self.fold_cache.keep_deltas(inserted)

    def references(self, keys: list[tuple[str, str]] | None) -> References:
        return _read_references(self.connection.cursor(), "?", keys)

    def fold_windows(self, before: int, retention: Retention, now: float) -> int:
        connection = self.connection
        # The write lock up front: a second writer's fold waits and then finds the deltas gone.
        cache = self.fold_cache or FoldCache()
        connection.execute("BEGIN IMMEDIATE")
        try:
            folded, outcome = _fold(connection.cursor(), "?", before, retention, now, cache)
            connection.execute("COMMIT")
        except BaseException:
            cache.clear()
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            raise
        cache.folded(outcome)
        return folded

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
        self.fold_cache: FoldCache | None = None

    def keep_fold_cache(self) -> None:
        self.fold_cache = self.fold_cache or FoldCache()

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
        def write(connection: Any) -> dict[int, ParsedWindow]:
            with connection.cursor() as cursor:
                # Under READ COMMITTED a second writer's UPDATE waits for the first to commit,
                # then finds the offset changed and matches no row.
                cursor.execute(_ADVANCE.format(p="%s"), (new, time.time(), key, expected))
                if cursor.rowcount != 1:
                    raise OffsetConflict(key)
                with cursor.copy(self.copy_sql) as copy:
                    for row in rows:
                        copy.write_row(row)
                return _insert_deltas(cursor, "%s", deltas, self.fold_cache)

        inserted = self._run(write)
        if self.fold_cache is not None and inserted:
            self.fold_cache.keep_deltas(inserted)

    def references(self, keys: list[tuple[str, str]] | None) -> References:
        def read(connection: Any) -> References:
            with connection.cursor() as cursor:
                return _read_references(cursor, "%s", keys)

        found: References = self._run(read)
        return found

    def fold_windows(self, before: int, retention: Retention, now: float) -> int:
        cache = self.fold_cache or FoldCache()

        def work(connection: Any) -> tuple[int, Any]:
            with connection.cursor() as cursor:
                # Deltas another fold holds are skipped (it folds them); shared buckets are
                # locked FOR UPDATE in key order.
                return _fold(cursor, "%s", before, retention, now, cache, lock=" FOR UPDATE")

        try:
            folded, outcome = self._run(work)
        except BaseException:
            cache.clear()
            raise
        cache.folded(outcome)
        return int(folded)

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
