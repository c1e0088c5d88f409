"""Draining an owner's spool segments into the store, exactly once.

Rows and the segment's new committed offset are written in one transaction, guarded by the
offset read before (``SegmentStore.commit``): two drainers on the same segment (a writer
adopting a spool while another still finishes it) cannot both commit the same rows.

A record the store keeps refusing while it answers otherwise (a value it cannot hold) would
stall everything behind it forever: it is set aside in ``rejected/`` with the reason, and the
offset moves past it. A store that is down is not a reason to set anything aside: the batch
is kept and tried again.

Each batch is counted for the drift windows (``window_counts``) before it is committed, and its
counts go into the same transaction as its rows.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backend.predictions.rows import decode_rows
from backend.predictions.spool import (
    REJECTED_DIR,
    ReadResult,
    Segment,
    read_records,
    record_size,
    segments,
)
from backend.predictions.store import OffsetConflict, SegmentStore
from backend.predictions.window_counts import WindowCounter, WindowDelta

log = logging.getLogger(__name__)

# Bytes of records read into one transaction.
BATCH_BYTES = 4 * 1024 * 1024

# Told of each commit of a segment: (segment number, committed offset).
Progress = Callable[[int, int], None]


class Drainer:
    def __init__(self, store: SegmentStore, spool_dir: Path, count_windows: bool = True):
        self.store = store
        # Without monitoring (settings.monitoring "off") rows are written uncounted.
        self.counter: WindowCounter | None = (
            WindowCounter(store.references) if count_windows else None
        )
        self.rejected_dir = spool_dir / REJECTED_DIR
        # Committed offsets known to this drainer, by segment key.
        self._committed: dict[str, int] = {}
        self.drained_rows = 0  # rows committed so far (the writer paces its rounds by them)

    @property
    def counted_rows(self) -> int:
        """Rows counted into drift-window deltas so far."""
        return 0 if self.counter is None else self.counter.counted

    def forget_offsets(self) -> None:
        """Another drainer committed meanwhile: read the offsets from the store again."""
        self._committed.clear()

    def drain(self, directory: Path, final: bool, progress: Progress | None = None) -> None:
        """Write every whole record of an owner's segments; remove the sealed, drained ones.

        A segment is sealed once a newer one exists (its owner appends only to the newest) or,
        with ``final``, when its owner is gone. A sealed segment ends at its first bad record.
        With ``final`` the owner's rows in the store's offsets table are removed too.
        """
        found = segments(directory)
        for index, segment in enumerate(found):
            sealed = final or index < len(found) - 1
            offset, bad = self._drain_segment(segment, progress)
            if progress is not None:
                progress(segment.number, offset)
            if sealed:
                if bad:
                    log.warning(
                        "prediction spool %s: ignored a record cut short at byte %d "
                        "(its request was never answered)",
                        segment.key,
                        offset,
                    )
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(segment.path)
                self.store.forget(segment.key)
                self._committed.pop(segment.key, None)
        if final:
            # Offsets left by a crash between removing a file and forgetting its offset.
            self.store.forget_owner(directory.name)

    def _drain_segment(self, segment: Segment, progress: Progress | None) -> tuple[int, bool]:
        key = segment.key
        committed = self._committed.get(key)
        if committed is None:
            committed = self._committed[key] = self.store.committed_offset(key)
        while True:
            result = read_records(segment.path, committed, BATCH_BYTES)
            if not result.payloads:
                return committed, result.stopped_at_bad_record
            try:
                rows = [row for payload in result.payloads for row in decode_rows(payload)]
                self.store.commit(key, committed, result.offset, rows, self._count(rows))
                self.drained_rows += len(rows)
            except OffsetConflict:
                raise
            except Exception:
                if not self._store_answers(key):
                    raise  # down: keep the batch, try again later
                self._commit_one_by_one(segment, committed, result)
            committed = self._committed[key] = result.offset
            if progress is not None:
                progress(segment.number, committed)

    def _count(self, rows: list[list[Any]]) -> list[WindowDelta]:
        return [] if self.counter is None else self.counter.count(rows)

    def _store_answers(self, key: str) -> bool:
        try:
            self.store.committed_offset(key)
        except Exception:
            return False
        return True

    def _commit_one_by_one(self, segment: Segment, start: int, result: ReadResult) -> None:
        """Commit a refused batch record by record, setting aside those the store refuses."""
        offset = start
        for payload in result.payloads:
            end = offset + record_size(payload)
            try:
                rows = decode_rows(payload)
                self.store.commit(segment.key, offset, end, rows, self._count(rows))
            except OffsetConflict:
                raise
            except Exception as exc:
                self._set_aside(segment, offset, payload, exc)
                self.store.commit(segment.key, offset, end, [], [])
            offset = end

    def _set_aside(self, segment: Segment, offset: int, payload: bytes, error: Exception) -> None:
        self.rejected_dir.mkdir(mode=0o700, exist_ok=True)
        name = f"{segment.owner}-{segment.number:06d}-{offset}"
        reason = f"{type(error).__name__}: {error}"
        (self.rejected_dir / f"{name}.rows.json").write_bytes(payload)
        (self.rejected_dir / f"{name}.reason.txt").write_text(json.dumps({"reason": reason}))
        log.error(
            "prediction spool %s: the store refused a record at byte %d (%s); it is kept in %s",
            segment.key,
            offset,
            reason,
            self.rejected_dir,
        )
