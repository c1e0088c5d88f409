"""Drift windows read from the counts the log writer keeps (``window_counts``), never the log.

A window [start, end) is read from hour buckets for the whole hours inside it, minute buckets
for the minutes at its edges, and the delta rows of minutes not yet folded, in one statement
(one snapshot: a fold moving deltas into buckets meanwhile is seen entirely or not at all).
Its cost is in proportion to the buckets read, never to the rows logged.

Windows are counted in whole minutes: [start, end) covers every minute that starts before
``end`` and ends after ``start``. Where minute buckets are past their retention (2 days by
default), the edges widen to whole hours. A series of windows (sparklines) ends at ``end``
rounded up to the minute, or to the hour when the windows are whole hours, so that the hour
buckets serve it.

Route ``None`` reads every route that answers traffic (active, canary), not ``shadow``: a
shadow candidate's answers were never seen by anyone and are read by naming that route.
Version ``None`` reads every version: numerical features are binned on each version's own
reference edges, so they are summed only over the versions whose edges equal those of the
version with the most rows in the window (the basis); the others are named in ``skipped``.
Categorical features always add up.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from sqlalchemy import Connection, and_, literal, or_, select, union_all

from backend.db.tables import DriftReferenceRow, DriftWindowBucketRow, DriftWindowDeltaRow
from backend.predictions.summary_layout import MAX_CATEGORIES, OTHER
from backend.predictions.window_counts import HOUR_S, MINUTE_RETENTION_S, MINUTE_S

SHADOW_ROUTE = "shadow"
# Bounds of a series: its windows are read in one statement.
MAX_SERIES_WINDOWS = 1_000
DELTA_RESOLUTION = 0  # how a delta row is marked among bucket rows in the one statement

Range = tuple[int, int]


@dataclass
class WindowRead:
    """The summed current-window summary (``summary_layout``'s window layout, sparse, bin
    indexes as text) of one model over [start, end), and what went into it."""

    model: str
    version: str | None
    route: str | None
    # The window as counted (whole minutes, or hours where minute buckets are gone).
    start: int
    end: int
    summary: dict[str, Any]
    rows_by_version: dict[str, int] = field(default_factory=dict)
    # With several versions: the one whose reference edges numerical features are summed on,
    # and per numerical feature the versions left out (other edges).
    basis_version: str | None = None
    skipped: dict[str, list[str]] = field(default_factory=dict)
    buckets_read: int = 0

    @property
    def rows(self) -> int:
        return int(self.summary["rows"])


@dataclass
class _Plan:
    start: int
    end: int
    hours: list[Range]
    minutes: list[Range]


def _plan(start: float, end: float, minutes_from: float) -> _Plan:
    first = math.floor(start / MINUTE_S) * MINUTE_S
    last = math.ceil(end / MINUTE_S) * MINUTE_S
    if first < minutes_from:
        first = first // HOUR_S * HOUR_S
    if last - last % HOUR_S < minutes_from:
        last = math.ceil(last / HOUR_S) * HOUR_S
    whole_from = math.ceil(first / HOUR_S) * HOUR_S
    whole_to = last // HOUR_S * HOUR_S
    if whole_from < whole_to:
        edges = [(first, whole_from), (whole_to, last)]
        return _Plan(first, last, [(whole_from, whole_to)], [r for r in edges if r[0] < r[1]])
    return _Plan(first, last, [], [(first, last)] if first < last else [])


def read_window(
    connection: Connection,
    model: str,
    start: float,
    end: float,
    version: str | None = None,
    route: str | None = None,
    *,
    now: float | None = None,
    minute_retention_s: float = MINUTE_RETENTION_S,
) -> WindowRead:
    """The summed counts of one window (see the module's docstring)."""
    if not end > start:
        raise ValueError("a window's end must be after its start")
    minutes_from = (time.time() if now is None else now) - minute_retention_s
    plan = _plan(start, end, minutes_from)
    found = _read([plan], connection, model, version, route)
    return _finish(connection, model, version, route, plan, found[0])


def read_series(
    connection: Connection,
    model: str,
    windows: int,
    width_s: float,
    version: str | None = None,
    route: str | None = None,
    *,
    end: float | None = None,
    minute_retention_s: float = MINUTE_RETENTION_S,
) -> list[WindowRead]:
    """``windows`` consecutive windows of ``width_s`` seconds (rounded up to whole minutes)
    ending at ``end`` (default now), oldest first, read in one statement."""
    if not 1 <= windows <= MAX_SERIES_WINDOWS:
        raise ValueError(f"a series has 1 to {MAX_SERIES_WINDOWS} windows")
    if not width_s > 0:
        raise ValueError("a window's width must be positive")
    now = time.time()
    width = math.ceil(width_s / MINUTE_S) * MINUTE_S
    unit = HOUR_S if width % HOUR_S == 0 else MINUTE_S
    last = math.ceil((now if end is None else end) / unit) * unit
    first = last - windows * width
    minutes_from = now - minute_retention_s
    plans = [
        _plan(first + i * width, first + (i + 1) * width, minutes_from) for i in range(windows)
    ]
    found = _read(plans, connection, model, version, route)
    return [
        _finish(connection, model, version, route, plan, parts)
        for plan, parts in zip(plans, found, strict=True)
    ]


# (version, counts JSON text) of each bucket or delta row of a window.
_Parts = list[tuple[str, str]]


def _read(
    plans: list[_Plan],
    connection: Connection,
    model: str,
    version: str | None,
    route: str | None,
) -> list[_Parts]:
    buckets, deltas = DriftWindowBucketRow, DriftWindowDeltaRow

    def scope(table: Any) -> list[Any]:
        conditions = [table.model == model]
        if version is not None:
            conditions.append(table.version == version)
        conditions.append(table.route != SHADOW_ROUTE if route is None else table.route == route)
        return conditions

    ranges = []
    for plan in plans:
        for resolution, spans in ((HOUR_S, plan.hours), (MINUTE_S, plan.minutes)):
            ranges += [
                and_(
                    buckets.resolution_s == resolution,
                    buckets.bucket_start >= lo,
                    buckets.bucket_start < hi,
                )
                for lo, hi in spans
            ]
    first, last = plans[0].start, plans[-1].end
    from_deltas = select(
        literal(DELTA_RESOLUTION).label("resolution_s"),
        deltas.bucket_start,
        deltas.version,
        deltas.counts,
    ).where(*scope(deltas), deltas.bucket_start >= first, deltas.bucket_start < last)
    statement: Any = from_deltas
    if ranges:
        from_buckets = select(
            buckets.resolution_s, buckets.bucket_start, buckets.version, buckets.counts
        ).where(*scope(buckets), or_(*ranges))
        statement = union_all(from_buckets, from_deltas)
    found: list[_Parts] = [[] for _ in plans]
    starts = [plan.start for plan in plans]
    for _, bucket_start, row_version, counts in connection.execute(statement):
        # Plans are consecutive and each bucket was chosen inside one of them.
        index = _window_of(starts, int(bucket_start))
        found[index].append((row_version, counts))
    return found


def _window_of(starts: list[int], bucket_start: int) -> int:
    low, high = 0, len(starts) - 1
    while low < high:  # the last window starting at or before the bucket
        middle = (low + high + 1) // 2
        if starts[middle] <= bucket_start:
            low = middle
        else:
            high = middle - 1
    return low


class _Sum:
    """Sums window summaries: numerical bins with numpy, categories with a Counter."""

    def __init__(self) -> None:
        self.rows = 0
        # name -> [count keys, counts, sum keys, sums, n, missing]
        self.numerical: dict[str, list[Any]] = {}
        # name -> [values Counter, n, missing]
        self.categorical: dict[str, list[Any]] = {}

    def add(self, window: dict[str, Any]) -> None:
        self.rows += window.get("rows", 0)
        for name, feature in window.get("features", {}).items():
            if feature.get("kind") == "numerical":
                into = self.numerical.get(name)
                if into is None:
                    into = self.numerical[name] = [[], [], [], [], 0, 0]
                counts, sums = feature["counts"], feature["sums"]
                # list.extend over dict views: C loops, no per-bin Python code.
                into[0].extend(counts.keys())
                into[1].extend(counts.values())
                into[2].extend(sums.keys())
                into[3].extend(sums.values())
            else:
                into = self.categorical.get(name)
                if into is None:
                    into = self.categorical[name] = [Counter(), 0, 0]
                into[0].update(feature["values"])
            into[-2] += feature.get("n", 0)
            into[-1] += feature.get("missing", 0)

    def absorb(self, other: _Sum, numerical: set[str]) -> None:
        """Add another version's sums; of its numerical features only ``numerical``."""
        self.rows += other.rows
        for name, part in other.numerical.items():
            if name in numerical:
                into = self.numerical.setdefault(name, [[], [], [], [], 0, 0])
                for i in range(4):
                    into[i].extend(part[i])
                into[4] += part[4]
                into[5] += part[5]
        for name, part in other.categorical.items():
            into = self.categorical.setdefault(name, [Counter(), 0, 0])
            into[0].update(part[0])
            into[1] += part[1]
            into[2] += part[2]

    def summary(self) -> dict[str, Any]:
        features: dict[str, Any] = {}
        for name, (count_keys, counts, sum_keys, sums, n, missing) in self.numerical.items():
            features[name] = {
                "kind": "numerical",
                "counts": _sparse(count_keys, counts, whole=True),
                "sums": _sparse(sum_keys, sums, whole=False),
                "n": n,
                "missing": missing,
            }
        for name, (values, n, missing) in self.categorical.items():
            features[name] = {
                "kind": "categorical",
                "values": _capped(values),
                "n": n,
                "missing": missing,
            }
        return {"rows": self.rows, "features": features}


def _sparse(keys: list[str], amounts: list[float], whole: bool) -> dict[str, Any]:
    if not keys:
        return {}
    bins = np.array(keys, dtype=np.int64)
    totals = np.bincount(bins, weights=np.asarray(amounts, dtype=np.float64))
    used = np.flatnonzero(np.bincount(bins))
    picked = totals[used]
    values = picked.round().astype(np.int64).tolist() if whole else picked.tolist()
    return dict(zip(map(str, used.tolist()), values, strict=True))


def _capped(values: Counter[str]) -> dict[str, int]:
    if len(values) <= MAX_CATEGORIES:
        return dict(values)
    kept = dict(values.most_common(MAX_CATEGORIES - 1))
    kept[OTHER] = sum(values.values()) - sum(kept.values())
    return kept


def _finish(
    connection: Connection,
    model: str,
    version: str | None,
    route: str | None,
    plan: _Plan,
    parts: _Parts,
) -> WindowRead:
    by_version: dict[str, _Sum] = {}
    for row_version, counts in parts:
        by_version.setdefault(row_version, _Sum()).add(orjson.loads(counts))
    read = WindowRead(model, version, route, plan.start, plan.end, {"rows": 0, "features": {}})
    read.buckets_read = len(parts)
    read.rows_by_version = {v: s.rows for v, s in sorted(by_version.items())}
    if not by_version:
        return read
    basis = max(by_version, key=lambda v: (by_version[v].rows, v))
    total = by_version.pop(basis)
    read.basis_version = basis
    if by_version:
        edges = _reference_edges(connection, model, [basis, *by_version])
        for other, part in sorted(by_version.items()):
            same = {
                name
                for name in part.numerical
                if name in edges.get(basis, {})
                and edges.get(other, {}).get(name) == edges[basis][name]
            }
            for name in sorted(set(part.numerical) - same):
                read.skipped.setdefault(name, []).append(other)
            total.absorb(part, same)
    read.summary = total.summary()
    return read


def _reference_edges(
    connection: Connection, model: str, versions: list[str]
) -> dict[str, dict[str, list[float]]]:
    rows = connection.execute(
        select(DriftReferenceRow.version, DriftReferenceRow.summary).where(
            DriftReferenceRow.model == model, DriftReferenceRow.version.in_(versions)
        )
    )
    edges: dict[str, dict[str, list[float]]] = {}
    for row_version, text in rows:
        features = orjson.loads(text).get("features", {})
        edges[row_version] = {
            name: feature["edges"]
            for name, feature in features.items()
            if feature.get("kind") == "numerical"
        }
    return edges
