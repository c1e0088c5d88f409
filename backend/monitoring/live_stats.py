"""Live statistics per model version: requests, refusals, latency percentiles, confidence and
decisions over time.

Two rings of time buckets per model version: one-second buckets for the last hour and one-minute
buckets for the last day. Each bucket keeps counts only (a latency histogram, a confidence
histogram, decision counts), so memory is fixed and a window of any length is answered from
sums. Latency percentiles come from the histogram, as Prometheus' histogram_quantile does:
exact to one bucket, and the buckets are 15 % apart.

Kept per (model, version), so a canary's versions can be compared; a series sums the keys a
question asks for. Refused requests (4xx) and failures (5xx) are counted where the API answers
them: a refusal that named no version (or a version that is not loaded) is counted under the
model with the version "" and a refusal for a model that does not serve under the model "",
so refusals with made-up names cannot grow the statistics.

Buckets before the statistics began (this process started) are not sent: nothing was
measured then, which is not the same as nothing happening.

Updated on the event loop (the request path), so no lock is needed.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Sequence, Set
from dataclasses import dataclass, field

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
        self.refused = np.zeros(buckets, dtype=np.int64)
        self.failed = np.zeros(buckets, dtype=np.int64)

    def slot(self, now: float) -> int:
        start = int(now) // self.resolution_s * self.resolution_s
        index = (start // self.resolution_s) % self.size
        if self.bucket_start[index] != start:
            self.bucket_start[index] = start
            self.requests[index] = 0
            self.latency[index] = 0
            self.confidence[index] = 0
            self.decisions[index] = 0
            self.refused[index] = 0
            self.failed[index] = 0
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
        self._refused = 0
        self._failed = 0

    def _open(self, now: float) -> None:
        second = int(now)
        if second != self._second:
            self.fold()
            self._second = second

    def record_refusal(self, now: float, status: int) -> None:
        self._open(now)
        if status >= 500:
            self._failed += 1
        else:
            self._refused += 1

    def record(
        self,
        now: float,
        latency_ms: float,
        confidences: Sequence[float | None],
        decision_index: int,
    ) -> None:
        self._open(now)
        self._requests += 1
        self._latency[bisect.bisect_left(LATENCY_EDGES_MS, latency_ms)] += 1
        self._decisions[decision_index] += len(confidences)
        histogram = self._confidence
        for c in confidences:
            if c is not None and not math.isnan(c):
                histogram[min(int(c * CONFIDENCE_BINS), CONFIDENCE_BINS - 1)] += 1

    def fold(self, before: float | None = None) -> None:
        """Move the open second into the rings (only if it ended before ``before``)."""
        if self._requests + self._refused + self._failed == 0 or (
            before is not None and self._second >= int(before)
        ):
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
            ring.refused[index] += self._refused
            ring.failed[index] += self._failed
        self._reset_open()


StatsKey = tuple[str, str]  # (model, version); version "" for refusals that named none


class LiveStats:
    def __init__(self, started_at: float | None = None) -> None:
        self.started_at = time.time() if started_at is None else started_at
        self._models: dict[StatsKey, ModelStats] = {}

    def _stats(self, key: StatsKey) -> ModelStats:
        stats = self._models.get(key)
        if stats is None:
            stats = self._models[key] = ModelStats()
        return stats

    def record(
        self,
        model: str,
        now: float,
        latency_ms: float,
        confidences: Sequence[float | None],
        decision: str = "answered",
        version: str = "",
    ) -> None:
        stats = self._stats((model, version))
        stats.record(now, latency_ms, confidences, DECISIONS.index(decision))

    def record_refusal(self, model: str, version: str, now: float, status: int) -> None:
        """A request the API refused (4xx) or failed (5xx); the caller bounds the names."""
        self._stats((model, version)).record_refusal(now, status)

    def observe(self, batch: AnsweredBatch) -> None:
        """The observer seam: one request's answer (a shadow copy is not traffic)."""
        if batch.counts_as_traffic:
            self.record(
                batch.model,
                batch.answered_at,
                batch.latency_ms,
                batch.confidences(),
                version=batch.version,
            )

    def series(
        self,
        resolution_s: int,
        since: float | None = None,
        models: Set[str] | None = None,
        now: float | None = None,
        version: str | None = None,
    ) -> LiveSeries:
        """Complete buckets after ``since`` (all kept ones without it), oldest first, summed
        over the given models (None: every model) and one version (or all); none from
        before the start."""
        now = time.time() if now is None else now
        size = RESOLUTIONS[resolution_s]
        current = int(now) // resolution_s * resolution_s
        oldest = max(
            current - (size - 1) * resolution_s,
            int(self.started_at) // resolution_s * resolution_s,
        )
        first = (
            oldest
            if since is None
            else max(oldest, (int(since) // resolution_s + 1) * resolution_s)
        )
        starts = np.arange(first, current, resolution_s, dtype=np.int64)  # the current is open
        count = len(starts)
        requests = np.zeros(count, dtype=np.int64)
        refused = np.zeros(count, dtype=np.int64)
        failed = np.zeros(count, dtype=np.int64)
        latency = np.zeros((count, len(LATENCY_EDGES_MS) + 1), dtype=np.int64)
        confidence = np.zeros((count, CONFIDENCE_BINS), dtype=np.int64)
        decisions = np.zeros((count, len(DECISIONS)), dtype=np.int64)
        chosen = [
            stats
            for (stats_model, stats_version), stats in self._models.items()
            if (models is None or stats_model in models)
            and (version is None or stats_version == version)
        ]
        for stats in chosen:
            stats.fold(before=now)
        if count:
            indices = (starts // resolution_s) % size
            for stats in chosen:
                ring = stats.rings[resolution_s]
                valid = ring.bucket_start[indices] == starts
                requests += np.where(valid, ring.requests[indices], 0)
                refused += np.where(valid, ring.refused[indices], 0)
                failed += np.where(valid, ring.failed[indices], 0)
                latency += np.where(valid[:, None], ring.latency[indices], 0)
                confidence += np.where(valid[:, None], ring.confidence[indices], 0)
                decisions += np.where(valid[:, None], ring.decisions[indices], 0)
        return LiveSeries(
            # Named when the series is one model's; a sum over several names none.
            model=next(iter(models)) if models is not None and len(models) == 1 else None,
            version=version,
            resolution_s=resolution_s,
            started_at=self.started_at,
            starts=[float(s) for s in starts],
            requests=requests.tolist(),
            refused=refused.tolist(),
            failed=failed.tolist(),
            latency_p50_ms=_percentile(latency, 0.50),
            latency_p95_ms=_percentile(latency, 0.95),
            latency_p99_ms=_percentile(latency, 0.99),
            confidence_bins=CONFIDENCE_BINS,
            confidence=confidence.tolist(),
            decisions={name: decisions[:, i].tolist() for i, name in enumerate(DECISIONS)},
        )

    def window_totals(self, model: str, window_s: float, now: float | None = None) -> WindowTotals:
        """One model's counts over its last ``window_s`` seconds of complete buckets, summed
        over its versions (for alert rules): one-second buckets up to an hour, else minutes."""
        now = time.time() if now is None else now
        resolution = 1 if window_s <= RESOLUTIONS[1] else 60
        series_since = now - window_s - resolution
        chosen = [stats for (name, _), stats in self._models.items() if name == model]
        totals = WindowTotals()
        if not chosen:
            return totals
        size = RESOLUTIONS[resolution]
        current = int(now) // resolution * resolution
        first = max(
            current - (size - 1) * resolution,
            (int(series_since) // resolution + 1) * resolution,
        )
        starts = np.arange(first, current, resolution, dtype=np.int64)
        indices = (starts // resolution) % size
        for stats in chosen:
            stats.fold(before=now)
            ring = stats.rings[resolution]
            kept = indices[ring.bucket_start[indices] == starts]
            totals.requests += int(ring.requests[kept].sum())
            totals.refused += int(ring.refused[kept].sum())
            totals.failed += int(ring.failed[kept].sum())
            totals.latency += ring.latency[kept].sum(axis=0)
            totals.decisions += ring.decisions[kept].sum(axis=0)
        return totals


@dataclass
class WindowTotals:
    """Counts over one window: answered requests, refusals (4xx), failures (5xx), the
    latency histogram (LATENCY_EDGES_MS) and rows per decision (DECISIONS order)."""

    requests: int = 0
    refused: int = 0
    failed: int = 0
    latency: np.ndarray = field(
        default_factory=lambda: np.zeros(len(LATENCY_EDGES_MS) + 1, dtype=np.int64)
    )
    decisions: np.ndarray = field(default_factory=lambda: np.zeros(len(DECISIONS), dtype=np.int64))

    def latency_quantile_ms(self, q: float) -> float | None:
        """The upper edge of the latency bin holding the q-quantile (None: no requests)."""
        return _percentile(self.latency[None, :], q)[0]


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
