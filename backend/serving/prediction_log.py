"""The prediction log: rows are encoded on the request path and written by a writer process.

The request path encodes its rows once (orjson, a few microseconds) and appends the bytes to a
list. A sender thread hands them to the writer process (see ``log_writer``) every flush
interval; the process decodes, binds and writes them on its own core and acknowledges each
message once committed. Rows stay in memory until acknowledged: if the writer process dies, a
new one is started and gets them again. A kill -9 of the server loses at most the rows not yet
handed over (one flush interval); the writer process still writes what it has. A graceful stop
drains everything.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import orjson
from sqlalchemy import Engine

from backend.serving.log_writer import WriterTarget, encode_target, read_frame, write_frame

log = logging.getLogger(__name__)

# A bounded backlog protects memory when the store is down; past it, serving refuses requests
# (503) rather than answer predictions it cannot log.
MAX_QUEUED_ROWS = 1_000_000
# A message to the writer carries at most this many bytes, so one failed write retries a
# bounded batch and the pipe never holds one huge message.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
RESTART_DELAY_S = 2.0
STOP_TIMEOUT_S = 30.0
# The directory holding the ``backend`` package, for the writer's ``python -m``.
_SOURCE_ROOT = str(Path(__file__).resolve().parents[2])


@dataclass(slots=True)
class _Message:
    seq: int
    payload: bytes
    rows: int


# One row as the writer inserts it, in the column order of ``log_writer.COLUMNS``: request id,
# row index, created at, model, version, route, entity id, features and outputs (JSON text),
# latency in ms, token name. Scalars and strings only: a ring of them (the live feed) is
# left alone by the garbage collector, where objects with dicts made it scan tens of thousands
# of objects every few hundred requests.
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


def writer_target(engine: Engine) -> WriterTarget:
    url = engine.url
    if engine.dialect.name == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ValueError("the prediction log needs a SQLite file, not an in-memory database")
        return WriterTarget("sqlite", url.database)
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return WriterTarget("postgresql", conninfo)


class PredictionLog:
    def __init__(
        self, engine: Engine, flush_interval_s: float = 0.2, max_queued_rows: int = MAX_QUEUED_ROWS
    ):
        self.target = writer_target(engine)
        self.flush_interval_s = flush_interval_s
        self.max_queued_rows = max_queued_rows
        self.failed_flushes = 0
        self.writer_restarts = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._stopping = False
        # Encoded frames appended by the request path, not yet handed to the writer.
        self._pending: list[tuple[bytes, int]] = []
        # Handed to the writer, kept until it acknowledges them.
        self._unacked: deque[_Message] = deque()
        # Rows appended and rows acknowledged since start: their difference is the backlog.
        self._appended_total = 0
        self._acked_total = 0
        self._next_seq = 1
        self._process: subprocess.Popen[bytes] | None = None
        # The writer's stdin; None once the ack reader saw the writer die.
        self._connection: BinaryIO | None = None
        self._sender: threading.Thread | None = None

    @property
    def writer_pid(self) -> int | None:
        process = self._process
        return None if process is None else int(process.pid)

    # -------------------------------------------------------------- request path

    def has_room(self, rows: int) -> bool:
        return self._appended_total - self._acked_total + rows <= self.max_queued_rows

    def append(self, rows: list[LogRow]) -> None:
        """Append rows made by ``log_row`` (serving shares the same tuples with the feed)."""
        frame = orjson.dumps(rows)
        with self._lock:
            self._pending.append((frame, len(rows)))
            self._appended_total += len(rows)

    # -------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self._sender is not None:
            return
        self._start_writer()
        self._sender = threading.Thread(target=self._send_loop, name="prediction-log", daemon=True)
        self._sender.start()

    def flush(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """Write everything appended so far; returns the number of rows acknowledged meanwhile.

        Returns early (having written less) if a write fails, so callers see the failure in
        ``failed_flushes`` instead of waiting on a store that is down.
        """
        if self._sender is None:
            raise RuntimeError("the prediction log is not started")
        deadline = time.monotonic() + timeout_s
        with self._lock:
            target = self._appended_total
            acked_before = self._acked_total
            failures_before = self.failed_flushes
            self._wake.set()
            while self._acked_total < target and self.failed_flushes == failures_before:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            return self._acked_total - acked_before

    def stop(self) -> None:
        if self._sender is None:
            return
        self.flush()
        with self._lock:
            self._stopping = True
        self._wake.set()
        self._sender.join(timeout=STOP_TIMEOUT_S)
        self._sender = None
        if self._process is not None:
            self._close_pipe()
            self._wait_for_writer(STOP_TIMEOUT_S)
            self._process = None
        left = self._appended_total - self._acked_total
        if left:
            log.error("prediction log: %d rows could not be written before stopping", left)

    # -------------------------------------------------------------- sender thread

    def _start_writer(self) -> None:
        self._close_pipe()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            part for part in (_SOURCE_ROOT, env.get("PYTHONPATH")) if part
        )
        # Not daemonic and in its own process group: after a kill -9 of the server it still
        # writes what it was handed; a Ctrl+C in the terminal reaches it through the server.
        process = subprocess.Popen(
            [sys.executable, "-m", "backend.serving.log_writer"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        assert process.stdin is not None and process.stdout is not None
        self._process = process
        self._connection = cast(BinaryIO, process.stdin)
        self._send(b"T", 0, encode_target(self.target))
        threading.Thread(
            target=self._read_acks,
            args=(process.stdin, process.stdout),
            name="prediction-log-acks",
            daemon=True,
        ).start()

    def _close_pipe(self) -> None:
        # Only the sender thread (or stop, after it ended) closes: never under a running write.
        if self._process is not None and self._process.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                self._process.stdin.close()

    def _wait_for_writer(self, timeout_s: float) -> None:
        assert self._process is not None
        try:
            self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.error("prediction log writer did not stop; terminating it")
            self._process.kill()
            self._process.wait()

    def _send_loop(self) -> None:
        while True:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            with self._lock:
                stopping = self._stopping
                writer_died = self._connection is None
            if writer_died:
                self._restart_writer()
            self._send_pending()
            if stopping:
                self._send(b"Q")
                return

    def _send_pending(self) -> None:
        with self._lock:
            frames, self._pending = self._pending, []
            if not frames:
                return
            messages = self._into_messages(frames)
            self._unacked.extend(messages)
        for message in messages:
            if not self._send(b"R", message.seq, message.payload):
                return  # the writer died: the ack reader saw it and the rows are still kept

    def _into_messages(self, frames: list[tuple[bytes, int]]) -> list[_Message]:
        """Cut frames into messages of bounded size."""
        messages: list[_Message] = []
        batch: list[bytes] = []
        size = rows = 0
        for frame, frame_rows in frames:
            if batch and size + len(frame) > MAX_MESSAGE_BYTES:
                messages.append(self._message(batch, rows))
                batch, size, rows = [], 0, 0
            batch.append(frame)
            size += len(frame) + 1
            rows += frame_rows
        if batch:
            messages.append(self._message(batch, rows))
        return messages

    def _message(self, frames: list[bytes], rows: int) -> _Message:
        seq = self._next_seq
        self._next_seq += 1
        return _Message(seq, b"\n".join(frames), rows)

    def _send(self, kind: bytes, seq: int = 0, payload: bytes = b"") -> bool:
        connection = self._connection
        if connection is None:
            return False
        try:
            write_frame(connection, kind, seq, payload)
        except (OSError, ValueError):
            return False
        return True

    def _restart_writer(self) -> None:
        self.writer_restarts += 1
        log.error("prediction log writer died; restarting it (%d)", self.writer_restarts)
        if self._process is not None:
            self._wait_for_writer(1.0)
        time.sleep(RESTART_DELAY_S if self.writer_restarts > 1 else 0)
        self._start_writer()
        with self._lock:
            again = list(self._unacked)
        for message in again:
            if not self._send(b"R", message.seq, message.payload):
                return

    # -------------------------------------------------------------- ack reader thread

    def _read_acks(self, connection: BinaryIO, acks: BinaryIO) -> None:
        while True:
            try:
                frame = read_frame(acks)
            except (OSError, ValueError):
                frame = None
            if frame is None:
                break
            kind, seq, payload = frame
            if kind == b"A":
                self._acknowledge(seq)
            elif kind == b"!":
                log.error("prediction log write failed: %s", payload.decode(errors="replace"))
                with self._lock:
                    self.failed_flushes += 1
                    self._changed.notify_all()
        acks.close()
        with self._lock:
            if not self._stopping and connection is self._connection:
                self._connection = None
        self._wake.set()

    def _acknowledge(self, seq: int) -> None:
        with self._lock:
            while self._unacked and self._unacked[0].seq <= seq:
                self._acked_total += self._unacked.popleft().rows
            self._changed.notify_all()
