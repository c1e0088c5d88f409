"""Adaptive micro-batching of concurrent requests for one loaded model version.

A lone request is dispatched at once (no added latency). While the model is busy, requests
that arrive meanwhile wait in line and go to the model together as one call, up to
``max_batch_size`` rows; an optional ``max_wait_s`` holds the first request of a batch back
to collect more (MLServer's max_batch_time), off by default. Model calls run on one worker
thread so the event loop keeps parsing and validating the next requests in the meantime.
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import Executor
from typing import Any

from backend.registry.loaded import LoadedVersion, Prediction


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
        self.batches = 0
        self.rows = 0

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
                try:
                    result = await loop.run_in_executor(
                        self.executor, self.loaded.predict, all_rows
                    )
                except Exception as exc:  # the model failed: every caller in the batch learns why
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                self.batches += 1
                self.rows += len(all_rows)
                self._hand_out(batch, result)
        finally:
            self._running = False

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
