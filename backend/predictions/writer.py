"""The prediction-log writer process: drains spool segments into the store.

It runs in its own process so that decoding, binding and writing rows never hold the serving
process's GIL: in one process, a writer thread multiplied the event loop's p99 latency under
load. It is started as ``python -m backend.predictions.writer`` (not multiprocessing's spawn,
which re-imports the parent's main module) and imports only the standard library and orjson
(psycopg for PostgreSQL), so it starts in tens of milliseconds.

Each serving process has one writer, which drains its parent's spool directory every interval
(and at once when asked), and adopts the directories of serving processes that are gone (a kill
-9, a machine crash) once it can take their lock. Rows and the segment's new committed offset
are written in one transaction, guarded by the offset read before: two writers draining the same
segment (one adopting it while the other still finishes) cannot both commit the same rows.
The drift-window counts of those rows go into the same transaction (``window_counts``); every
``FOLD_EVERY_S`` the main loop folds them into minute and hour buckets.

Pipe protocol, frames of ``kind (1 byte) + seq (8 bytes) + length (4 bytes) + payload``:
- parent -> child on stdin: ``T`` (first frame) with the JSON ``WriterConfig``; ``N`` to drain
  now; ``Q`` to drain everything and exit. End of input (the parent died) does the same.
- child -> parent on stdout: ``A`` with seq = the committed offset and payload = the segment
  number, after each commit of the parent's rows and for every segment after each round;
  ``!`` with the reason when a write failed (the rows stay in the spool and are tried again).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import queue
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

from backend.predictions.drain import Drainer
from backend.predictions.spool import claim_owner, owner_database, owner_directories, remove_owner
from backend.predictions.store import OffsetConflict, SegmentStore, open_store
from backend.predictions.window_counts import (
    FOLD_AT_MOST_S,
    FOLD_BATCH,
    FOLD_EVERY_S,
    FOLD_ROWS,
    HOUR_RETENTION_S,
    MINUTE_RETENTION_S,
    MINUTE_S,
    Retention,
)

log = logging.getLogger(__name__)

RETRY_DELAY_S = 2.0
# When the parent is gone or asks to stop, keep trying a down store this long before leaving
# the rest in the spool (the next writer to start takes it from there).
FINAL_RETRY_BUDGET_S = 20.0
# How often directories of serving processes that are gone are looked for.
ORPHAN_SCAN_S = 5.0
# After the parent is gone, how long to wait for its lock (the kernel releases it as the
# process ends, which may come a moment after its pipe closed).
CLAIM_PARENT_S = 5.0
# Under heavy traffic a round is stretched to BUSY_INTERVAL_S: a commit's cost is mostly its
# own (the transaction, the drift-window delta of every bin its rows touched, its fold), not
# its rows', so at ~4,000 rows/s one commit a second instead of five took about a third off
# the writer's CPU per row, and that CPU is taken from the serving process beside it (a
# 2-core machine). A round that drained fewer than BUSY_ROWS keeps the configured interval,
# so light traffic still reaches the store within it; a flush asks at once either way.
BUSY_ROWS = 500
BUSY_INTERVAL_S = 1.0
_HEADER = struct.Struct(">cQI")

Frame = tuple[bytes, int, bytes]


@dataclass(frozen=True)
class WriterConfig:
    """Where rows go (a SQLite file, or a PostgreSQL conninfo) and where they come from."""

    dialect: str
    location: str
    spool_dir: str
    # The parent's spool directory's name.
    owner: str
    # The store's identity (``log.store_identity``): only spools of this store are adopted.
    database: str
    interval_s: float = 0.2
    # Commit durably (SQLite synchronous=FULL): with the fsync policy ``always``.
    durable: bool = False
    # How long drift-window minute and hour buckets are kept.
    window_minute_retention_s: float = MINUTE_RETENTION_S
    window_hour_retention_s: float = HOUR_RETENTION_S
    # Off: rows are written without counting their drift windows (settings.monitoring).
    count_windows: bool = True


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


def encode_config(config: WriterConfig) -> bytes:
    return json.dumps(asdict(config)).encode()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    if hasattr(os, "nice"):
        # Answering comes first: on a busy machine the log may lag by a few intervals (the
        # backlog is bounded, and serving refuses with 503 before it overflows).
        os.nice(10)
    first = read_frame(sys.stdin.buffer)
    if first is None or first[0] != b"T":
        log.error("prediction log writer: no configuration given")
        sys.exit(2)
    config = WriterConfig(**json.loads(first[2]))

    def store() -> SegmentStore:
        return open_store(config.dialect, config.location, durable=config.durable)

    Writer(config, store, sys.stdout.buffer).run(sys.stdin.buffer)


class Writer:
    """Drains the parent's spool (main thread) and adopts dead owners' spools (a thread of
    its own, with its own store connection, so a large backlog left by a crash never holds
    up the live spool)."""

    def __init__(self, config: WriterConfig, store: Callable[[], SegmentStore], outbox: BinaryIO):
        self.config = config
        self.store_factory = store
        self.outbox = outbox
        self.spool_dir = Path(config.spool_dir)
        self.parent_dir = self.spool_dir / config.owner
        self.parent = Drainer(store(), self.spool_dir, config.count_windows)
        # This store both commits and folds: its folds take its own deltas from memory.
        self.parent.store.keep_fold_cache()
        # The last position told to the parent, per segment; and whether it asked (a flush).
        self._told: dict[int, int] = {}
        self._asked = False
        self.retention = Retention(config.window_minute_retention_s, config.window_hour_retention_s)
        self._next_fold = time.monotonic()
        self._last_fold = time.monotonic()
        # Rows counted when the deltas were last folded, and at the last round.
        self._counted_at_fold = 0
        self._counted_last_round = 0
        # Rows the parent's drainer had committed at the last round (see BUSY_ROWS).
        self._drained_last_round = 0

    def run(self, inbox: BinaryIO) -> None:
        frames: queue.Queue[Frame | None] = queue.Queue()
        threading.Thread(target=_read_all, args=(inbox, frames), daemon=True).start()
        threading.Thread(target=self._adopt_forever, name="adopt", daemon=True).start()
        self._attempt(functools.partial(self._drain_parent, final=False), report_failure=True)
        while True:
            quitting = False
            try:
                frame = frames.get(timeout=self._round_wait())
                while True:
                    if frame is None or frame[0] == b"Q":
                        quitting = True
                    self._asked = True
                    frame = frames.get_nowait()
            except queue.Empty:
                pass
            if quitting:
                self._finish()
                return
            self._attempt(functools.partial(self._drain_parent, final=False), report_failure=True)
            self._fold_if_due()

    # -------------------------------------------------------------- draining

    def _drain_parent(self, final: bool) -> None:
        self.parent.drain(self.parent_dir, final, progress=self._acknowledge)
        self._asked = False

    def _round_wait(self) -> float:
        """How long until the next round unless asked sooner (see BUSY_ROWS)."""
        drained = self.parent.drained_rows
        busy = drained - self._drained_last_round >= BUSY_ROWS
        self._drained_last_round = drained
        return max(self.config.interval_s, BUSY_INTERVAL_S) if busy else self.config.interval_s

    def _acknowledge(self, segment: int, offset: int) -> None:
        # Told when it moved, and when the parent asked even if nothing moved: it may have
        # counted its last rows only after our last acknowledgement went out. Otherwise quiet,
        # so an idle server's threads are not woken every interval.
        if self._told.get(segment) == offset and not self._asked:
            return
        self._told[segment] = offset
        self._send(b"A", offset, str(segment).encode())

    def _attempt(self, work: Callable[[], None], report_failure: bool) -> bool:
        try:
            work()
            return True
        except OffsetConflict:
            # Another writer committed this segment meanwhile: read its offset again.
            self.parent.forget_offsets()
            return False
        except Exception as exc:
            log.exception("prediction log write failed; will retry")
            if report_failure:
                self._send(b"!", 0, f"{type(exc).__name__}: {exc}".encode()[:2000])
            time.sleep(RETRY_DELAY_S)
            return False

    def _fold_if_due(self) -> None:
        """Fold the drift-window deltas so far, the minute in progress's too (a backlog in
        several rounds): a window read then sums a few bucket rows, not one delta per commit
        (at 5,000 requests/s a minute of deltas was ~100 MB to parse for every read). At most
        every FOLD_EVERY_S; while rows keep coming, once FOLD_ROWS wait or FOLD_AT_MOST_S
        passed; when they stop, at once."""
        started = time.monotonic()
        if started < self._next_fold:
            return
        counted = self.parent.counted_rows
        waiting, coming = counted - self._counted_at_fold, counted != self._counted_last_round
        self._counted_last_round = counted
        if (
            waiting
            and coming
            and waiting < FOLD_ROWS
            and started - self._last_fold < FOLD_AT_MOST_S
        ):
            return  # rows keep coming: fold them in larger steps (see FOLD_ROWS)
        self._counted_at_fold, self._last_fold = counted, started
        now = time.time()
        before = int(now // MINUTE_S * MINUTE_S) + MINUTE_S
        try:
            folded = self.parent.store.fold_windows(before, self.retention, now)
        except Exception:
            log.exception("drift window counts could not be folded; will retry")
            folded = 0
        # Straight on while a backlog remains; otherwise wait a few seconds.
        self._next_fold = time.monotonic() + (0.0 if folded >= FOLD_BATCH else FOLD_EVERY_S)

    def _adopt_forever(self) -> None:
        drainer: Drainer | None = None
        while True:
            try:
                drainer = drainer or Drainer(
                    self.store_factory(), self.spool_dir, self.config.count_windows
                )
                self._adopt_orphans(drainer)
            except OffsetConflict:
                if drainer is not None:
                    drainer.forget_offsets()
            except Exception:
                log.exception("could not finish the spool of a stopped server; will retry")
            time.sleep(ORPHAN_SCAN_S)

    def _adopt_orphans(self, drainer: Drainer) -> None:
        """Finish the spools of serving processes that are gone."""
        for directory in owner_directories(self.spool_dir):
            if directory == self.parent_dir:
                continue
            database = owner_database(directory)
            if database is not None and database != self.config.database:
                continue  # another database's rows: its own writer will take them
            lock = claim_owner(directory)
            if lock is None:
                continue  # its serving process lives, or another writer is on it
            try:
                drainer.drain(directory, final=True)
                remove_owner(directory)
            finally:
                os.close(lock)

    def _finish(self) -> None:
        """The parent stopped or died: drain its spool to the end and remove it."""
        lock = None
        deadline = time.monotonic() + CLAIM_PARENT_S
        while lock is None and time.monotonic() < deadline:
            lock = claim_owner(self.parent_dir)
            if lock is None:
                if not self.parent_dir.exists():
                    return
                time.sleep(0.05)
        if lock is None:
            return  # another writer adopted it already
        try:
            started = time.monotonic()
            drain = functools.partial(self._drain_parent, final=True)
            while not self._attempt(drain, report_failure=True):
                if time.monotonic() - started > FINAL_RETRY_BUDGET_S:
                    log.error("prediction log: the store stayed down; rows are kept in the spool")
                    return
            remove_owner(self.parent_dir)
        finally:
            os.close(lock)

    def _send(self, kind: bytes, seq: int, payload: bytes = b"") -> None:
        # If the parent is gone, the rows are written all the same.
        with contextlib.suppress(OSError, ValueError):
            write_frame(self.outbox, kind, seq, payload)


def _read_all(inbox: BinaryIO, frames: queue.Queue[Frame | None]) -> None:
    try:
        # Stop reading at Q: a thread blocked on stdin would hang the interpreter's exit.
        while (frame := read_frame(inbox)) is not None:
            frames.put(frame)
            if frame[0] == b"Q":
                return
    finally:
        frames.put(None)


if __name__ == "__main__":
    main()
