"""Live statistics per model: requests, latency percentiles, confidence and decisions over time.

Two rings of time buckets per model: one-second buckets for the last hour and one-minute
buckets for the last day. Each bucket keeps counts only (a latency histogram, a confidence
histogram, decision counts), so memory is fixed and a window of any length is answered from
sums. Latency percentiles come from the histogram, as Prometheus' histogram_quantile does:
exact to one bucket, and the buckets are 15 % apart.

Updated on the event loop (the request path), so no lock is needed.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Sequence

import numpy as np

from backend.predictions.observers import AnsweredBatch
from backend.schemas import DECISIONS, LiveSeries

# 0.01 ms to 100 s, geometric steps of ~15 %.
LATENCY_EDGES_MS: list[float] = [float(x) for x in np.geomspace(0.01, 100_000.0, 114)]
CONFIDENCE_BINS = 20
RESOLUTIONS = {1: 3_600, 60: 1_440}  # bucket seconds -> buckets kept


class _Ring:
    def __init__(self, resolution_s: int, buckets: int):
        self.resolution_s = resolution_s
        self.size = buckets
        self.bucket_start = np.full(buckets, -1, dtype=np.int64)
        self.requests = np.zeros(buckets, dtype=np.int64)
        self.latency = np.zeros((buckets, len(LATENCY_EDGES_MS) + 1), dtype=np.int64)
        self.confidence = np.zeros((buckets, CONFIDENCE_BINS), dtype=np.int64)
        self.decisions = np.zeros((buckets, len(DECISIONS)), dtype=np.int64)

    def slot(self, now: float) -> int:
        start = int(now) // self.resolution_s * self.resolution_s
        index = (start // self.resolution_s) % self.size
        if self.bucket_start[index] != start:
            self.bucket_start[index] = start
            self.requests[index] = 0
            self.latency[index] = 0
            self.confidence[index] = 0
            self.decisions[index] = 0
        return index


class ModelStats:
    """The rings of one model, plus the open second counted in plain Python lists.

    Counting into numpy element by element costs microseconds per request; the open second
    is folded into the rings once, when the next second starts or a series is read.
    """

    def __init__(self) -> None:
        self.rings = {res: _Ring(res, size) for res, size in RESOLUTIONS.items()}
        self._second = -1
        self._reset_open()

    def _reset_open(self) -> None:
        self._requests = 0
        self._latency = [0] * (len(LATENCY_EDGES_MS) + 1)
        self._confidence = [0] * CONFIDENCE_BINS
        self._decisions = [0] * len(DECISIONS)

    def record(
        self,
        now: float,
        latency_ms: float,
        confidences: Sequence[float | None],
        decision_index: int,
    ) -> None:
        second = int(now)
        if second != self._second:
            self.fold()
            self._second = second
        self._requests += 1
        self._latency[bisect.bisect_left(LATENCY_EDGES_MS, latency_ms)] += 1
        self._decisions[decision_index] += len(confidences)
        histogram = self._confidence
        for c in confidences:
            if c is not None and not math.isnan(c):
                histogram[min(int(c * CONFIDENCE_BINS), CONFIDENCE_BINS - 1)] += 1

    def fold(self, before: float | None = None) -> None:
        """Move the open second into the rings (only if it ended before ``before``)."""
        if self._requests == 0 or (before is not None and self._second >= int(before)):
            return
        latency = np.asarray(self._latency, dtype=np.int64)
        confidence = np.asarray(self._confidence, dtype=np.int64)
        decisions = np.asarray(self._decisions, dtype=np.int64)
        for ring in self.rings.values():
            index = ring.slot(self._second)
            ring.requests[index] += self._requests
            ring.latency[index] += latency
            ring.confidence[index] += confidence
            ring.decisions[index] += decisions
        self._reset_open()


class LiveStats:
    def __init__(self) -> None:
        self._models: dict[str, ModelStats] = {}

    def record(
        self,
        model: str,
        now: float,
        latency_ms: float,
        confidences: Sequence[float | None],
        decision: str = "answered",
    ) -> None:
        stats = self._models.get(model)
        if stats is None:
            stats = self._models[model] = ModelStats()
        stats.record(now, latency_ms, confidences, DECISIONS.index(decision))

    def observe(self, batch: AnsweredBatch) -> None:
        """The observer seam: one request's answer (a shadow copy is not traffic)."""
        if batch.counts_as_traffic:
            self.record(batch.model, batch.answered_at, batch.latency_ms, batch.confidences())

    def series(
        self,
        resolution_s: int,
        since: float | None = None,
        model: str | None = None,
        now: float | None = None,
    ) -> LiveSeries:
        """Complete buckets after ``since`` (all kept ones without it), oldest first."""
        now = time.time() if now is None else now
        size = RESOLUTIONS[resolution_s]
        current = int(now) // resolution_s * resolution_s
        oldest = current - (size - 1) * resolution_s
        first = (
            oldest
            if since is None
            else max(oldest, (int(since) // resolution_s + 1) * resolution_s)
        )
        starts = np.arange(first, current, resolution_s, dtype=np.int64)  # the current is open
        count = len(starts)
        requests = np.zeros(count, dtype=np.int64)
        latency = np.zeros((count, len(LATENCY_EDGES_MS) + 1), dtype=np.int64)
        confidence = np.zeros((count, CONFIDENCE_BINS), dtype=np.int64)
        decisions = np.zeros((count, len(DECISIONS)), dtype=np.int64)
        chosen = [self._models[model]] if model in self._models else []
        if model is None:
            chosen = list(self._models.values())
        for stats in chosen:
            stats.fold(before=now)
        if count:
            indices = (starts // resolution_s) % size
            for stats in chosen:
                ring = stats.rings[resolution_s]
                valid = ring.bucket_start[indices] == starts
                requests += np.where(valid, ring.requests[indices], 0)
                latency += np.where(valid[:, None], ring.latency[indices], 0)
                confidence += np.where(valid[:, None], ring.confidence[indices], 0)
                decisions += np.where(valid[:, None], ring.decisions[indices], 0)
        return LiveSeries(
            model=model,
            resolution_s=resolution_s,
            starts=[float(s) for s in starts],
            requests=requests.tolist(),
            latency_p50_ms=_percentile(latency, 0.50),
            latency_p95_ms=_percentile(latency, 0.95),
            latency_p99_ms=_percentile(latency, 0.99),
            confidence_bins=CONFIDENCE_BINS,
            confidence=confidence.tolist(),
            decisions={name: decisions[:, i].tolist() for i, name in enumerate(DECISIONS)},
        )


def _percentile(histograms: np.ndarray, q: float) -> list[float | None]:
    """Per bucket: the upper edge of the histogram bin holding the q-quantile."""
    totals = histograms.sum(axis=1)
    cumulative = histograms.cumsum(axis=1)
    upper = np.array([*LATENCY_EDGES_MS, LATENCY_EDGES_MS[-1]])
    result: list[float | None] = []
    for row, total in enumerate(totals):
        if total == 0:
            result.append(None)
            continue
        bin_index = int(np.searchsorted(cumulative[row], q * total, side="left"))
        result.append(round(float(upper[bin_index]), 4))
    return result
