"""The live prediction feed: a bounded ring of recent predictions that streams can resume from.

Predictions are published on the event loop (the request path), so the ring needs no lock.
The request path only appends the rows it already encoded for the log (flat tuples of
scalars and JSON text, which the garbage collector stops scanning); the event dicts a stream
sends are made when a stream reads them, so nobody pays for them while no console watches.
Event ids are ``<epoch>-<seq>``: the epoch changes when the server restarts, so a client that
resumes across a restart gets what the new server has instead of a wrong position.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Sequence, Set
from typing import Any

import orjson

from backend.predictions.observers import AnsweredBatch
from backend.predictions.rows import (
    ROW_CREATED_AT,
    ROW_ENTITY_ID,
    ROW_FEATURES,
    ROW_INDEX,
    ROW_LATENCY_MS,
    ROW_MODEL,
    ROW_OUTPUTS,
    ROW_REQUEST_ID,
    ROW_ROUTE,
    ROW_VERSION,
    LogRow,
)

FEED_CAPACITY = 20_000
# A large batch request shows its first rows in the live feed; the log keeps all of them.
MAX_ROWS_PER_REQUEST = 100


class PredictionFeed:
    def __init__(self, capacity: int = FEED_CAPACITY):
        self.epoch = os.urandom(4).hex()
        # (seq, confidence of the top class, top output) + the logged row: one flat tuple.
        self._events: deque[tuple[Any, ...]] = deque(maxlen=capacity)
        self._next_seq = 1
        self._waiters: list[asyncio.Future[None]] = []
        self._closed = False

    def publish(
        self,
        rows: list[LogRow],
        top_outputs: Sequence[Any],
        confidences: Sequence[float | None],
    ) -> None:
        """Rows of one request in order as the log encoded them, with their answers and
        confidences (row i of the request is rows[i], top_outputs[i], confidences[i])."""
        events = self._events
        seq = self._next_seq
        for i, row in enumerate(rows):
            events.append((seq, confidences[i], top_outputs[i], *row))
            seq += 1
        self._next_seq = seq
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                _wake(waiter)

    def observe(self, batch: AnsweredBatch) -> None:
        """The observer seam: a large batch shows its first rows; the log keeps all of them."""
        self.publish(batch.log_rows()[:MAX_ROWS_PER_REQUEST], batch.labels, batch.confidences())

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """The server is stopping: open streams end instead of holding the shutdown up.

        Called from the stop-signal handler, so waiters are woken through their loop.
        """
        self._closed = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.get_loop().call_soon_threadsafe(_wake, waiter)

    def event_id(self, seq: int) -> str:
        return f"{self.epoch}-{seq}"

    def resume_after(self, last_event_id: str | None) -> int:
        """The sequence number to continue after (0: from the oldest event kept)."""
        if not last_event_id:
            # A new subscriber starts with the recent past rather than an empty table.
            return max(0, self._next_seq - 1 - 500)
        epoch, _, seq = last_event_id.partition("-")
        if epoch != self.epoch or not (seq.isascii() and seq.isdigit()) or len(seq) > 18:
            return 0
        return min(int(seq), self._next_seq - 1)

    def since(
        self, after_seq: int, models: Set[str] | None = None, limit: int = 2_000
    ) -> tuple[list[dict[str, Any]], int, int]:
        """Events after ``after_seq`` of the given models (None: every model): (events, how
        many were missed, the new position)."""
        events = self._events
        if not events or events[-1][0] <= after_seq:
            return [], 0, after_seq
        first = events[0][0]
        missed = max(0, first - after_seq - 1) if after_seq else 0
        start = max(0, after_seq + 1 - first)
        selected: list[dict[str, Any]] = []
        position = after_seq
        for index in range(start, len(events)):
            event = events[index]
            position = event[0]
            if models is None or event[_FIRST + ROW_MODEL] in models:
                selected.append(_event(event))
                if len(selected) >= limit:
                    break
        return selected, missed, position

    async def wait(self, timeout_s: float) -> bool:
        """Wait for new predictions (or the close); False if the time ran out first."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout_s)
            return True
        except TimeoutError:
            return False
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


# A stored event is (seq, confidence, top output) followed by the LogRow's fields.
_FIRST = 3


def _event(event: tuple[Any, ...]) -> dict[str, Any]:
    """The wire form, ``backend.schemas.PredictionEvent``."""
    row = event[_FIRST:]
    return {
        "seq": event[0],
        "request_id": row[ROW_REQUEST_ID],
        "row": row[ROW_INDEX],
        "created_at": row[ROW_CREATED_AT],
        "model": row[ROW_MODEL],
        "version": row[ROW_VERSION],
        "route": row[ROW_ROUTE],
        # The only decision until the guards (abstain, fallback, hold-out) land.
        "decision": "answered",
        "top_output": event[2],
        "confidence": event[1],
        "latency_ms": row[ROW_LATENCY_MS],
        "entity_id": row[ROW_ENTITY_ID],
        # Already JSON text (the log's): embedded as it is, never decoded and re-encoded.
        "features": orjson.Fragment(row[ROW_FEATURES]),
        "outputs": orjson.Fragment(row[ROW_OUTPUTS]),
    }
