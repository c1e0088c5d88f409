"""The live prediction feed: a bounded ring of recent predictions that streams can resume from.

Predictions are published on the event loop (the request path), so the ring needs no lock.
The request path only appends what it already built for the log; the event dicts a stream
sends are made when a stream reads them, so nobody pays for them while no console watches.
Event ids are ``<epoch>-<seq>``: the epoch changes when the server restarts, so a client that
resumes across a restart gets what the new server has instead of a wrong position.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Sequence
from typing import Any

from backend.serving.prediction_log import LoggedPrediction

FEED_CAPACITY = 20_000
# A large batch request shows its first rows in the live feed; the log keeps all of them.
MAX_ROWS_PER_REQUEST = 100


class PredictionFeed:
    def __init__(self, capacity: int = FEED_CAPACITY):
        self.epoch = os.urandom(4).hex()
        # (seq, prediction, confidence of its top class)
        self._events: deque[tuple[int, LoggedPrediction, float | None]] = deque(maxlen=capacity)
        self._next_seq = 1
        self._waiters: list[asyncio.Future[None]] = []
        self._closed = False

    def publish(
        self, predictions: list[LoggedPrediction], confidences: Sequence[float | None]
    ) -> None:
        for prediction in predictions:
            self._events.append((self._next_seq, prediction, confidences[prediction.row_index]))
            self._next_seq += 1
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                _wake(waiter)

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
        if epoch != self.epoch or not seq.isdigit():
            return 0
        return min(int(seq), self._next_seq - 1)

    def since(
        self, after_seq: int, model: str | None = None, limit: int = 2_000
    ) -> tuple[list[dict[str, Any]], int, int]:
        """Events after ``after_seq``: (events, how many were missed, the new position)."""
        events = self._events
        if not events or events[-1][0] <= after_seq:
            return [], 0, after_seq
        first = events[0][0]
        missed = max(0, first - after_seq - 1) if after_seq else 0
        start = max(0, after_seq + 1 - first)
        selected: list[dict[str, Any]] = []
        position = after_seq
        for index in range(start, len(events)):
            position, prediction, confidence = events[index]
            if model is None or prediction.model == model:
                selected.append(_event(position, prediction, confidence))
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


def _event(seq: int, prediction: LoggedPrediction, confidence: float | None) -> dict[str, Any]:
    """The wire form, ``backend.schemas.PredictionEvent``."""
    return {
        "seq": seq,
        "request_id": prediction.request_id,
        "row": prediction.row_index,
        "created_at": prediction.created_at,
        "model": prediction.model,
        "version": prediction.version,
        "route": prediction.route,
        # The only decision until the guards (abstain, fallback, hold-out) land.
        "decision": "answered",
        "top_output": prediction.outputs["predict"],
        "confidence": confidence,
        "latency_ms": prediction.latency_ms,
        "entity_id": prediction.entity_id,
        "features": prediction.features,
        "outputs": prediction.outputs,
    }
