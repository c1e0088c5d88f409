"""Adaptive micro-batching of concurrent requests for one loaded model version.

A lone request is dispatched at once (no added latency). While the model is busy, requests
that arrive meanwhile wait in line and go to the model together as one call, up to
``max_batch_size`` rows; an optional ``max_wait_s`` holds the first request of a batch back
to collect more (MLServer's max_batch_time), off by default.

Where a call runs adapts to the model: a call expected to finish within ``INLINE_BUDGET_S``
runs on the event loop, because handing it to a thread costs more (a thread switch, and
waiting for the GIL up to the 5 ms switch interval while the loop holds it). Slower calls go
to the model thread so the loop keeps parsing and validating the next requests meanwhile.
Either way, requests that arrive during a call form the next batch.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import Executor
from typing import Any

from backend.registry.loaded import LoadedVersion, Prediction

INLINE_BUDGET_S = 0.001
# Weight of the newest call in the running estimate of a call's duration.
_EWMA_WEIGHT = 0.2


class MicroBatcher:
    def __init__(
        self,
        loaded: LoadedVersion,
        executor: Executor,
        max_batch_size: int = 64,
        max_wait_s: float = 0.0,
    ):
        self.loaded = loaded
        self.executor = executor
        self.max_batch_size = max(1, max_batch_size)
        self.max_wait_s = max_wait_s
        self._pending: deque[tuple[list[dict[str, Any]], asyncio.Future[Prediction]]] = deque()
        self._running = False
        # Held so the drain task cannot be garbage-collected while it runs.
        self._drain_task: asyncio.Task[None] | None = None
        # Model calls made, and how many of them ran on the loop.
        self.calls = 0
        self.inline_batches = 0
        # Running estimates of one call: its duration and its size. None until measured.
        self._call_s: float | None = None
        self._call_rows = 1.0

    def can_predict_now(self, rows: int) -> bool:
        """True when nothing is queued and the call is cheap enough to run on the loop."""
        return not self._running and self._expected_s(rows) <= INLINE_BUDGET_S

    def predict_now(self, rows: list[dict[str, Any]]) -> Prediction:
        result, seconds = self._timed_predict(rows)
        self._observe(seconds, len(rows))
        self.inline_batches += 1
        return result

    async def predict(self, rows: list[dict[str, Any]]) -> Prediction:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Prediction] = loop.create_future()
        self._pending.append((rows, future))
        if not self._running:
            self._running = True
            self._drain_task = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                if self.max_wait_s > 0 and self._queued_rows() < self.max_batch_size:
                    await asyncio.sleep(self.max_wait_s)
                batch = self._take_batch()
                all_rows = [row for rows, _ in batch for row in rows]
                inline = self._expected_s(len(all_rows)) <= INLINE_BUDGET_S
                try:
                    if inline:
                        result, seconds = self._timed_predict(all_rows)
                    else:
                        result, seconds = await loop.run_in_executor(
                            self.executor, self._timed_predict, all_rows
                        )
                except Exception as exc:  # the model failed: every caller in the batch learns why
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                self._observe(seconds, len(all_rows))
                self.inline_batches += inline
                self._hand_out(batch, result)
                if inline:
                    # Let the loop read the requests that arrived meanwhile: the next batch.
                    await asyncio.sleep(0)
        finally:
            self._running = False

    def _timed_predict(self, rows: list[dict[str, Any]]) -> tuple[Prediction, float]:
        # Timed where it runs, so the estimate is the model's cost, not the hop or GIL wait.
        started = time.perf_counter()
        result = self.loaded.predict(rows)
        return result, time.perf_counter() - started

    def _expected_s(self, rows: int) -> float:
        if self._call_s is None:
            return float("inf")  # unmeasured: run it off the loop once to learn its cost
        return self._call_s * max(1.0, rows / self._call_rows)

    def _observe(self, seconds: float, rows: int) -> None:
        self.calls += 1
        if self._call_s is None:
            self._call_s, self._call_rows = seconds, float(rows)
            return
        self._call_s += _EWMA_WEIGHT * (seconds - self._call_s)
        self._call_rows += _EWMA_WEIGHT * (rows - self._call_rows)

    def _queued_rows(self) -> int:
        return sum(len(rows) for rows, _ in self._pending)

    def _take_batch(self) -> list[tuple[list[dict[str, Any]], asyncio.Future[Prediction]]]:
        batch = [self._pending.popleft()]
        size = len(batch[0][0])
        while self._pending and size + len(self._pending[0][0]) <= self.max_batch_size:
            item = self._pending.popleft()
            size += len(item[0])
            batch.append(item)
        return batch

    @staticmethod
    def _hand_out(
        batch: list[tuple[list[dict[str, Any]], asyncio.Future[Prediction]]], result: Prediction
    ) -> None:
        start = 0
        for rows, future in batch:
            end = start + len(rows)
            if not future.done():  # the caller may have gone away
                future.set_result(
                    Prediction(
                        result.labels[start:end],
                        result.probabilities[start:end] if result.probabilities else None,
                    )
                )
            start = end
