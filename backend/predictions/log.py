"""The prediction log, serving side: append answered rows to the spool, keep a writer running.

``append`` encodes a request's rows once (orjson) and copies them into this process's
memory-mapped spool segment before the answer leaves (see ``spool``): an acknowledged
prediction survives a kill -9 of this process, of the writer or of both. The writer process
(``writer``) drains the spool into the store and reports each commit over its stdout; if it
dies, a new one is started and continues from the committed offset. There is no sender thread:
the request path's write is the whole hand-over.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import BinaryIO, cast

from sqlalchemy import Engine, insert, select

from backend.db.tables import StoreIdentityRow
from backend.predictions.observers import AnsweredBatch
from backend.predictions.rows import LogRow, encode_rows
from backend.predictions.spool import SpoolAppender
from backend.predictions.window_counts import HOUR_RETENTION_S, MINUTE_RETENTION_S
from backend.predictions.writer import WriterConfig, encode_config, read_frame, write_frame

log = logging.getLogger(__name__)

# A bounded backlog keeps the spool from filling the disk while the store is down; past it,
# serving refuses requests (503) rather than answer predictions it cannot log.
MAX_QUEUED_ROWS = 1_000_000
RESTART_DELAY_S = 2.0
STOP_TIMEOUT_S = 30.0
FSYNC_POLICIES = ("never", "always")
# The directory holding the ``backend`` package, for the writer's ``python -m``.
_SOURCE_ROOT = str(Path(__file__).resolve().parents[2])


def writer_target(engine: Engine) -> tuple[str, str]:
    """(dialect, location) of the store: a SQLite file, or a PostgreSQL conninfo."""
    url = engine.url
    if engine.dialect.name == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ValueError("the prediction log needs a SQLite file, not an in-memory database")
        return "sqlite", str(Path(url.database).resolve())
    return "postgresql", url.set(drivername="postgresql").render_as_string(hide_password=False)


def store_identity(engine: Engine) -> str:
    """The store's identity (made by a migration): names the database a spool's rows are
    for, whatever its connection string (a new password, a moved data directory)."""
    with engine.begin() as connection:
        found = connection.execute(select(StoreIdentityRow.id)).scalar()
        if found is None:  # a store made without the migrations (tests building tables)
            found = str(uuid.uuid4())
            connection.execute(insert(StoreIdentityRow).values(id=found))
        return str(found)


class PredictionLog:
    def __init__(
        self,
        engine: Engine,
        spool_dir: Path,
        flush_interval_s: float = 0.2,
        max_queued_rows: int = MAX_QUEUED_ROWS,
        fsync: str = "never",
        window_minute_retention_s: float = MINUTE_RETENTION_S,
        window_hour_retention_s: float = HOUR_RETENTION_S,
        count_windows: bool = True,
    ):
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync policy must be one of {FSYNC_POLICIES}, got {fsync!r}")
        self.engine = engine
        self.dialect, self.location = writer_target(engine)
        self.spool_dir = spool_dir
        self.flush_interval_s = flush_interval_s
        self.max_queued_rows = max_queued_rows
        self.fsync = fsync
        self.window_retention_s = (window_minute_retention_s, window_hour_retention_s)
        self.count_windows = count_windows
        self.failed_flushes = 0
        self.writer_restarts = 0
        self._spool: SpoolAppender | None = None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = False
        # (segment, offset after the record, rows appended so far) per record not yet
        # committed: appended by the request path, taken off by the ack reader.
        self._positions: deque[tuple[int, int, int]] = deque()
        self._appended_total = 0
        self._acked_total = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._pipe_lock = threading.Lock()
        self._reader: threading.Thread | None = None

    @property
    def writer_pid(self) -> int | None:
        process = self._process
        return None if process is None else int(process.pid)

    @property
    def spool_owner(self) -> str | None:
        return None if self._spool is None else self._spool.owner

    # -------------------------------------------------------------- request path

    def has_room(self, rows: int) -> bool:
        return self._appended_total - self._acked_total + rows <= self.max_queued_rows

    def append(self, rows: list[LogRow]) -> None:
        """Keep rows made by ``log_row``; once this returns they survive a process kill.

        Raises ``SpoolWriteError`` if the spool cannot take them (the caller must not answer).
        """
        if self._spool is None:
            raise RuntimeError("the prediction log is not started")
        segment, offset = self._spool.append(encode_rows(rows))
        self._appended_total += len(rows)
        self._positions.append((segment, offset, self._appended_total))

    def observe(self, batch: AnsweredBatch) -> None:
        """The observer seam: the first observer, so a batch it cannot keep is not answered."""
        self.append(batch.log_rows())

    # -------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self._reader is not None:
            return
        self.database = store_identity(self.engine)
        self._spool = SpoolAppender(self.spool_dir, self.database, fsync=self.fsync == "always")
        self._start_writer()
        self._reader = threading.Thread(
            target=self._read_acks, name="prediction-log-acks", daemon=True
        )
        self._reader.start()

    def flush(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """Wait until everything appended so far is in the store; returns the rows committed
        meanwhile. Returns early (having written less) if a write fails, so callers see the
        failure in ``failed_flushes`` instead of waiting on a store that is down."""
        if self._reader is None:
            raise RuntimeError("the prediction log is not started")
        deadline = time.monotonic() + timeout_s
        self._send(b"N")
        with self._lock:
            target = self._appended_total
            acked_before = self._acked_total
            failures_before = self.failed_flushes
            while self._acked_total < target and self.failed_flushes == failures_before:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(min(remaining, self.flush_interval_s))
                if self._acked_total < target:
                    self._send(b"N")
            return self._acked_total - acked_before

    def stop(self) -> None:
        """Write everything, release the spool and let the writer finish and exit."""
        if self._reader is None:
            return
        self.flush()
        with self._lock:
            self._stopping = True
        if self._spool is not None:
            self._spool.close()  # the writer can now take the spool's lock and remove it
        self._send(b"Q")
        if self._process is not None:
            self._wait_for_writer(STOP_TIMEOUT_S)
            if self._process.stdin is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._process.stdin.close()
        self._reader.join(timeout=STOP_TIMEOUT_S)
        self._reader = None
        left = self._appended_total - self._acked_total
        if left:
            log.error(
                "prediction log: %d rows were not written before stopping; they stay in the "
                "spool and the next start writes them",
                left,
            )

    # -------------------------------------------------------------- writer process

    def _start_writer(self) -> None:
        assert self._spool is not None
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            part for part in (_SOURCE_ROOT, env.get("PYTHONPATH")) if part
        )
        # In its own process group: a Ctrl+C in the terminal reaches it through the server's
        # orderly stop, and after a kill -9 of the server it still finishes the spool.
        config = WriterConfig(
            dialect=self.dialect,
            location=self.location,
            spool_dir=str(self.spool_dir),
            owner=self._spool.owner,
            database=self.database,
            interval_s=self.flush_interval_s,
            durable=self.fsync == "always",
            window_minute_retention_s=self.window_retention_s[0],
            window_hour_retention_s=self.window_retention_s[1],
            count_windows=self.count_windows,
        )
        # The configuration goes first: a flush's nudge must not reach a writer before it.
        with self._pipe_lock:
            process = subprocess.Popen(
                [sys.executable, "-m", "backend.predictions.writer"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
            assert process.stdin is not None
            with contextlib.suppress(OSError, ValueError):
                write_frame(cast(BinaryIO, process.stdin), b"T", 0, encode_config(config))
            self._process = process

    def _send(self, kind: bytes, seq: int = 0, payload: bytes = b"") -> None:
        process = self._process
        if process is None or process.stdin is None:
            return
        with self._pipe_lock, contextlib.suppress(OSError, ValueError):
            write_frame(cast(BinaryIO, process.stdin), kind, seq, payload)

    def _wait_for_writer(self, timeout_s: float) -> None:
        assert self._process is not None
        try:
            self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.error("prediction log writer did not stop; terminating it")
            self._process.kill()
            self._process.wait()

    def _read_acks(self) -> None:
        """Take the writer's acknowledgements; start a new writer whenever one dies."""
        while True:
            try:
                if self._follow_writer():
                    return
            except Exception:  # this thread must outlive any one failure: it is the log's
                log.exception("prediction log: could not follow or restart the writer")
                time.sleep(RESTART_DELAY_S)

    def _follow_writer(self) -> bool:
        """Read the current writer until it ends, then start another; True once stopping."""
        process = self._process
        assert process is not None and process.stdout is not None
        self._read_until_closed(cast(BinaryIO, process.stdout))
        with self._lock:
            stopping = self._stopping
        if stopping:
            return True
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=1.0)
        with contextlib.suppress(OSError, ValueError):
            if process.stdin is not None:
                process.stdin.close()
        self.writer_restarts += 1
        log.error("prediction log writer died; restarting it (%d)", self.writer_restarts)
        if self.writer_restarts > 1:
            time.sleep(RESTART_DELAY_S)
        with self._lock:
            if self._stopping:
                return True
        self._start_writer()
        return False

    def _read_until_closed(self, acks: BinaryIO) -> None:
        while True:
            try:
                frame = read_frame(acks)
            except (OSError, ValueError):
                frame = None
            if frame is None:
                break
            kind, seq, payload = frame
            if kind == b"A":
                self._acknowledge(int(payload), seq)
            elif kind == b"!":
                log.error("prediction log write failed: %s", payload.decode(errors="replace"))
                with self._lock:
                    self.failed_flushes += 1
                    self._changed.notify_all()
        with contextlib.suppress(OSError, ValueError):
            acks.close()

    def _acknowledge(self, segment: int, offset: int) -> None:
        positions = self._positions
        with self._lock:
            while positions:
                first_segment, first_offset, appended = positions[0]
                if first_segment > segment or (first_segment == segment and first_offset > offset):
                    break
                positions.popleft()
                self._acked_total = appended
            self._changed.notify_all()
