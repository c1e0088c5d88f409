"""The statistics behind the feedback-loop indicators: intervals of shares and their
differences, an F1 interval, label drift's tests, concentration, and the status rule."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

from backend.schemas import Interval, LoopStatus

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE
# From this many labels on each side label drift counts as decided by its effect size (any
# difference is significant there, so its size decides), below it by the chi-square test's
# p-value (as drift words it); both are required either way.
LARGE_SAMPLE = 1_000
BOOTSTRAP_DRAWS = 2_000
NO_INTERVAL = Interval()


def wilson(successes: float, trials: float, confidence: float = CONFIDENCE) -> Interval:
    """A share with its Wilson score interval (scipy's binomtest); none without trials."""
    n = round(trials)
    if n <= 0:
        return NO_INTERVAL
    k = min(max(round(successes), 0), n)
    found = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return Interval(value=k / n, low=float(found.low), high=float(found.high))


def newcombe(first: Interval, second: Interval) -> Interval:
    """first - second, with Newcombe's hybrid score interval from the two Wilson intervals
    (Newcombe 1998, method 10). Written here: scipy has no interval for a difference of two
    independent proportions, and this one keeps its coverage for small counts and shares near
    0 or 1, where the Wald interval does not."""
    if first.value is None or second.value is None:
        return NO_INTERVAL
    assert first.low is not None and first.high is not None
    assert second.low is not None and second.high is not None
    p1, p2 = first.value, second.value
    gap = p1 - p2
    low = gap - math.sqrt((p1 - first.low) ** 2 + (second.high - p2) ** 2)
    high = gap + math.sqrt((first.high - p1) ** 2 + (p2 - second.low) ** 2)
    return Interval(value=gap, low=max(-1.0, low), high=min(1.0, high))


def shifted(interval: Interval, offset: float, negate: bool = False) -> Interval:
    """offset + interval (or offset - interval): a known number against an estimated one."""
    if interval.value is None or interval.low is None or interval.high is None:
        return NO_INTERVAL
    if negate:
        return Interval(
            value=offset - interval.value, low=offset - interval.high, high=offset - interval.low
        )
    return Interval(
        value=offset + interval.value, low=offset + interval.low, high=offset + interval.high
    )


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denominator = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), np.nan)


def f1_intervals(
    served: Sequence[int], held_out: Sequence[int], seed: int = 0
) -> tuple[Interval, Interval, Interval]:
    """F1 of each side's (tp, fp, fn, tn) counts and their difference, with percentile
    bootstrap intervals (multinomial redraws of the confusion counts: F1 is no proportion, so
    no score interval fits it)."""
    rng = np.random.default_rng(seed)

    def draws(counts: Sequence[int]) -> tuple[float | None, np.ndarray | None]:
        total = int(sum(counts))
        if total == 0:
            return None, None
        tp, fp, fn, _ = counts
        point = _f1(np.array([tp]), np.array([fp]), np.array([fn]))[0]
        redrawn = rng.multinomial(total, np.asarray(counts, dtype=float) / total, BOOTSTRAP_DRAWS)
        values = _f1(redrawn[:, 0], redrawn[:, 1], redrawn[:, 2])
        return (None if math.isnan(point) else float(point)), values

    def interval(point: float | None, values: np.ndarray | None) -> Interval:
        if point is None or values is None or np.isnan(values).all():
            return NO_INTERVAL
        low, high = np.nanpercentile(values, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
        return Interval(value=point, low=float(low), high=float(high))

    served_point, served_draws = draws(served)
    held_point, held_draws = draws(held_out)
    gap = NO_INTERVAL
    if served_point is not None and held_point is not None:
        assert served_draws is not None and held_draws is not None
        gap = interval(served_point - held_point, served_draws - held_draws)
    return interval(served_point, served_draws), interval(held_point, held_draws), gap


def label_drift_test(
    served: Sequence[int], held_out: Sequence[int]
) -> tuple[float | None, float | None, float | None]:
    """(chi-square, its p-value, Jensen-Shannon distance in base 2) of two sides' class
    counts; classes neither side has are left out. None where a side has no labels."""
    table = np.array([served, held_out], dtype=float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] == 0 or (table.sum(axis=1) == 0).any():
        return None, None, None
    distance = float(jensenshannon(table[0], table[1], base=2))
    if table.shape[1] < 2:
        return 0.0, 1.0, distance
    chi2, p_value, _dof, _expected = stats.chi2_contingency(table, correction=False)
    return float(chi2), float(p_value), distance


def total_variation(served: Sequence[int], held_out: Sequence[int]) -> float | None:
    """Half the L1 distance between two sides' class shares: the share of labels that would
    have to change class for the mixes to agree (for two classes, the gap in either share)."""
    n, m = sum(served), sum(held_out)
    if n == 0 or m == 0:
        return None
    first = np.asarray(served, dtype=float) / n
    second = np.asarray(held_out, dtype=float) / m
    return float(np.abs(first - second).sum() / 2)


def total_variation_interval(
    served: Sequence[int], held_out: Sequence[int], seed: int = 0
) -> Interval:
    """The total variation distance with a percentile bootstrap interval (multinomial redraws
    of each side's class counts; no closed-form interval exists for it). A distance is never
    below 0, so redraws of two equal mixes still give a small positive distance: the low end
    says how far apart the mixes surely are, the high end how far they may be."""
    point = total_variation(served, held_out)
    if point is None:
        return NO_INTERVAL
    rng = np.random.default_rng(seed)
    n, m = int(sum(served)), int(sum(held_out))
    first = rng.multinomial(n, np.asarray(served, dtype=float) / n, BOOTSTRAP_DRAWS) / n
    second = rng.multinomial(m, np.asarray(held_out, dtype=float) / m, BOOTSTRAP_DRAWS) / m
    distances = np.abs(first - second).sum(axis=1) / 2
    low, high = np.percentile(distances, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    return Interval(value=point, low=float(low), high=float(high))


def concentration(counts: Sequence[int], classes: int) -> float | None:
    """Normalised Herfindahl index of answer shares: 0 when every class is answered equally
    often, 1 when one answer takes all the traffic."""
    total = float(sum(counts))
    if total <= 0:
        return None
    shares = np.asarray(counts, dtype=float) / total
    k = max(classes, len(counts))
    if k <= 1:
        return 1.0
    herfindahl = float((shares**2).sum())
    return (herfindahl - 1 / k) / (1 - 1 / k)


def judge(gap: Interval, warn_at: float, alert_at: float, enough: bool) -> LoopStatus:
    """ok unless there is enough data, the interval excludes no difference, and the gap is at
    least ``warn_at`` (warn) or ``alert_at`` (alert)."""
    if not enough or gap.value is None or gap.low is None or gap.high is None:
        return "ok"
    if gap.low <= 0.0 <= gap.high:
        return "ok"
    size = abs(gap.value)
    if size >= alert_at:
        return "alert"
    if size >= warn_at:
        return "warn"
    return "ok"


STATUS_ORDER: dict[LoopStatus, int] = {"ok": 0, "warn": 1, "alert": 2}


def worst(statuses: Sequence[LoopStatus]) -> LoopStatus:
    return max(statuses, key=STATUS_ORDER.__getitem__, default="ok")
