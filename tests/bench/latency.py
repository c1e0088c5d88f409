"""p99 of two servers at one connection, compared at the same request rate.

wrk corrects its latencies for coordinated omission: a request of latency L adds samples
L - e, L - 2e, ... (down to e) as if requests had kept arriving every e, where e is the
run's own mean time per request. At one connection a faster server has a smaller e, so the
same stall adds more samples to its tail: a server answering 1.5x as many requests per
second gets about 1.5x the extra samples from every hiccup it shares with the slower one,
and its p99 reads worse for being faster. To compare two servers' p99 fairly, both sets of
raw times (recorded by the bench's wrk script) are corrected here with the same e: the
slower server's, a rate both carry.
"""

from __future__ import annotations

import numpy as np


def wrk_corrected(latencies_ms: list[float] | np.ndarray, interval_ms: float) -> np.ndarray:
    """The samples wrk's ``stats_correct`` would hold for these raw times and interval: each
    sample n >= 2e gains n - k*e for every k >= 1 with n - k*e > e."""
    raw = np.asarray(latencies_ms, dtype=np.float64)
    if interval_ms <= 0 or raw.size == 0:
        return raw
    tail = raw[raw >= 2 * interval_ms]
    added = np.ceil((tail - interval_ms) / interval_ms).astype(np.int64) - 1
    added = np.maximum(added, 0)
    total = int(added.sum())
    if total == 0:
        return raw
    starts = np.repeat(np.cumsum(added) - added, added)
    steps = np.arange(total, dtype=np.int64) - starts + 1
    synthetic = np.repeat(tail, added) - steps * interval_ms
    return np.concatenate([raw, synthetic])


def p99_pair_at_common_rate(
    reference_ms: list[float], reference_rps: float, measured_ms: list[float], measured_rps: float
) -> tuple[float, float] | None:
    """(reference p99, measured p99) in ms, both corrected at the slower one's rate."""
    if not reference_ms or not measured_ms or reference_rps <= 0 or measured_rps <= 0:
        return None
    interval_ms = 1000.0 / min(reference_rps, measured_rps)
    return (
        float(np.percentile(wrk_corrected(reference_ms, interval_ms), 99)),
        float(np.percentile(wrk_corrected(measured_ms, interval_ms), 99)),
    )
