"""The prediction-log writer process: takes encoded rows over a pipe and writes them in bulk.

It runs in its own process so that decoding, binding and writing rows never hold the serving
process's GIL: in one process, a writer thread multiplied the event loop's p99 latency under
load. It is started as ``python -m backend.serving.log_writer`` (not multiprocessing's spawn,
which re-imports the parent's main module) and imports only the standard library and orjson, so
it starts in tens of milliseconds.

Wire protocol: frames of ``kind (1 byte) + seq (8 bytes) + length (4 bytes) + payload``.
- parent -> child on stdin: ``T`` (first frame) with the JSON ``WriterTarget``; ``R`` with
  newline-joined JSON arrays of row arrays (column order of ``COLUMNS``, features and outputs
  already JSON text; an empty payload is a barrier); ``Q`` to write what it has and exit.
  End of input (the parent died) also stops it, after writing what it has.
- child -> parent on stdout: ``A`` once everything up to ``seq`` is committed; ``!`` with the
  reason when a write failed (the rows are kept and retried).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import sqlite3
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, BinaryIO

import orjson

log = logging.getLogger(__name__)

COLUMNS = (
    "request_id, row_index, created_at, model, version, route, entity_id, features, outputs, "
    "latency_ms, token_name"
)
RETRY_DELAY_S = 2.0
# When the parent is gone or asks to stop, keep trying a down store this long before giving up.
FINAL_RETRY_BUDGET_S = 20.0
_HEADER = struct.Struct(">cQI")


@dataclass(frozen=True)
class WriterTarget:
    """Where rows go: a SQLite file, or a PostgreSQL conninfo (libpq URL)."""

    dialect: str
    location: str


Row = list[Any]
RowWriter = Callable[[list[Row]], None]
Frame = tuple[bytes, int, bytes]


def write_frame(stream: BinaryIO, kind: bytes, seq: int = 0, payload: bytes = b"") -> None:
    stream.write(_HEADER.pack(kind, seq, len(payload)) + payload)
    stream.flush()


def read_frame(stream: BinaryIO) -> Frame | None:
    """The next frame, or None at end of input."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    kind, seq, length = _HEADER.unpack(header)
    payload = stream.read(length) if length else b""
    if len(payload) < length:
        return None
    return kind, seq, payload


def encode_target(target: WriterTarget) -> bytes:
    return json.dumps(asdict(target)).encode()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    if hasattr(os, "nice"):
        # Answering comes first: on a busy machine the log may lag by a few flushes (its
        # backlog is bounded, and serving refuses with 503 before it overflows).
        os.nice(10)
    first = read_frame(sys.stdin.buffer)
    if first is None or first[0] != b"T":
        log.error("prediction log writer: no target given")
        sys.exit(2)
    target = WriterTarget(**json.loads(first[2]))
    run_writer(sys.stdin.buffer, sys.stdout.buffer, _open_writer(target))


def run_writer(inbox: BinaryIO, outbox: BinaryIO, writer: RowWriter) -> None:
    # A reader thread keeps the pipe drained while a write runs, so that everything that
    # arrived meanwhile goes into the next transaction together.
    frames: queue.Queue[Frame | None] = queue.Queue()
    threading.Thread(target=_read_all, args=(inbox, frames), daemon=True).start()
    rows: list[Row] = []
    closing = False
    while not closing:
        last_seq: int | None = None
        frame: Frame | None = frames.get()
        while True:
            if frame is None or frame[0] == b"Q":
                closing = True
                break
            if frame[0] == b"R":
                last_seq = frame[1]
                for chunk in frame[2].split(b"\n") if frame[2] else ():
                    rows.extend(orjson.loads(chunk))
            try:
                frame = frames.get_nowait()
            except queue.Empty:
                break
        if not _write_with_retry(writer, rows, outbox, closing):
            log.error("prediction log: gave up on %d rows; the store stayed down", len(rows))
            return
        rows.clear()
        if last_seq is not None:
            _send(outbox, b"A", last_seq)


def _read_all(inbox: BinaryIO, frames: queue.Queue[Frame | None]) -> None:
    try:
        # Stop reading at Q: a thread blocked on stdin would hang the interpreter's exit.
        while (frame := read_frame(inbox)) is not None:
            frames.put(frame)
            if frame[0] == b"Q":
                return
    finally:
        frames.put(None)


def _write_with_retry(writer: RowWriter, rows: list[Row], outbox: BinaryIO, closing: bool) -> bool:
    started = time.monotonic()
    while True:
        try:
            if rows:
                writer(rows)
            return True
        except Exception as exc:
            log.exception("prediction log write failed; will retry")
            _send(outbox, b"!", 0, f"{type(exc).__name__}: {exc}".encode()[:2000])
            if closing and time.monotonic() - started > FINAL_RETRY_BUDGET_S:
                return False
            time.sleep(RETRY_DELAY_S)


def _send(outbox: BinaryIO, kind: bytes, seq: int, payload: bytes = b"") -> None:
    # If the parent is gone, the rows are written all the same.
    with contextlib.suppress(OSError, ValueError):
        write_frame(outbox, kind, seq, payload)


def _open_writer(target: WriterTarget) -> RowWriter:
    if target.dialect == "sqlite":
        return _sqlite_writer(target.location)
    if target.dialect == "postgresql":
        return _postgres_writer(target.location)
    raise ValueError(f"unsupported prediction log store {target.dialect!r}")


def _sqlite_writer(path: str) -> RowWriter:
    # The driver's executemany: SQLAlchemy's costs ~4x as much on this, the hottest table.
    connection = sqlite3.connect(path, timeout=10)
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA busy_timeout=10000")
    insert = f"INSERT INTO predictions ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)"

    def write(rows: list[Row]) -> None:
        with connection:  # one transaction, committed or rolled back
            connection.executemany(insert, rows)

    return write


def _postgres_writer(conninfo: str) -> RowWriter:
    # COPY: psycopg's executemany sends one INSERT per row (measured 36k rows/s); COPY streams
    # the batch in one statement. The connection is re-opened after a failure.
    import psycopg

    state: dict[str, Any] = {"connection": None}
    copy_sql = f"COPY predictions ({COLUMNS}) FROM STDIN"

    def write(rows: list[Row]) -> None:
        connection = state["connection"]
        if connection is None or connection.closed:
            connection = state["connection"] = psycopg.connect(conninfo, connect_timeout=10)
        try:
            with connection.cursor() as cursor, cursor.copy(copy_sql) as copy:
                for row in rows:
                    copy.write_row(row)
            connection.commit()
        except Exception:
            state["connection"] = None
            connection.close()
            raise

    return write


if __name__ == "__main__":
    main()
