"""The serving bench's p99 at a common rate: the correction is wrk's own, sample for sample."""

from __future__ import annotations

import numpy as np

from tests.bench.latency import p99_pair_at_common_rate, wrk_corrected


def _wrk_stats_correct(latencies_us: list[int], expected: int) -> list[int]:
    """wrk 4's stats_correct, transliterated: a histogram of whole microseconds."""
    data = [0] * (max(latencies_us) + 1)
    for value in latencies_us:
        data[value] += 1
    for n in range(expected * 2, len(data)):
        count = data[n]
        m = n - expected
        while count and m > expected:
            data[m] += count
            m -= expected
    return [value for value, count in enumerate(data) for _ in range(count)]


def test_correction_matches_wrk_sample_for_sample() -> None:
    rng = np.random.default_rng(7)
    raw = np.concatenate([rng.integers(150, 400, 5000), rng.integers(400, 20_000, 60)])
    for expected in (100, 257, 400, 1000):
        ours = np.sort(wrk_corrected(raw.astype(float), float(expected)))
        assert ours.tolist() == _wrk_stats_correct(raw.tolist(), expected)


def test_no_sample_past_twice_the_interval_adds_nothing() -> None:
    raw = [1.0, 1.5, 1.99]
    assert wrk_corrected(raw, 1.0).tolist() == raw


def test_the_same_times_read_the_same_at_a_common_rate() -> None:
    """Two servers with identical raw times and stalls, one answering twice as often between
    them: wrk's own rates make the faster one's p99 worse; at a common rate they are equal."""
    rng = np.random.default_rng(3)
    times = np.concatenate([rng.uniform(0.2, 0.3, 9988), np.full(12, 4.0)]).tolist()
    own_slow = np.percentile(wrk_corrected(times, 0.5), 99)
    own_fast = np.percentile(wrk_corrected(times, 0.25), 99)
    assert own_slow < 0.3 < 1.0 < own_fast
    pair = p99_pair_at_common_rate(times, 2000.0, times, 4000.0)
    assert pair is not None and pair[0] == pair[1] == own_slow


def test_nothing_to_compare_without_times() -> None:
    assert p99_pair_at_common_rate([], 100.0, [1.0], 100.0) is None
    assert p99_pair_at_common_rate([1.0], 0.0, [1.0], 100.0) is None
