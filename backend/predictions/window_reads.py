"""Drift windows read from the counts the log writer keeps (``window_counts``), never the log.

A window [start, end) is read from hour buckets for the whole hours inside it, minute buckets
for the minutes at its edges, and the delta rows of minutes not yet folded, as one consistent
state (a fold moving deltas into buckets meanwhile is seen entirely or not at all: ``_read``).
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

Parsed buckets are kept in a bounded cache keyed by the bucket and its row count (a bucket only
grows, each fold adds rows, and an expired bucket is never made again): repeated reads (a page
refreshing, a sparkline moving on, alert checks) fetch and parse only the buckets that changed
and the unfolded deltas (see ``_read`` for how that stays one consistent state).
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from sqlalchemy import Connection, Text, and_, cast, literal, null, or_, select, union_all

from backend.db.tables import DriftReferenceRow, DriftWindowBucketRow, DriftWindowDeltaRow
from backend.predictions.summary_layout import cap_values
from backend.predictions.window_counts import HOUR_S, MINUTE_RETENTION_S, MINUTE_S
from backend.predictions.window_layout import ParsedWindow, parse, summed_bins

SHADOW_ROUTE = "shadow"
# Bounds of a series: its windows are read together.
MAX_SERIES_WINDOWS = 1_000
DELTA_RESOLUTION = 0  # how a delta row is marked among bucket rows in the first statement

Range = tuple[int, int]
NumericalArrays = tuple[np.ndarray, np.ndarray, np.ndarray, int, int]


@dataclass
class WindowRead:
    """The summed counts of one model over [start, end), and what went into them.

    ``summary`` is the window layout of ``summary_layout`` (sparse, bin indexes as text), made
    on first use; ``numerical_arrays`` gives the same numerical counts as numpy arrays, for a
    caller that computes with them (a series of many windows builds no dicts then)."""

    model: str
    version: str | None
    route: str | None
    # The window as counted (whole minutes, or hours where minute buckets are gone).
    start: int
    end: int
    rows: int = 0
    rows_by_version: dict[str, int] = field(default_factory=dict)
    # With several versions: the one whose reference edges numerical features are summed on,
    # and per numerical feature the versions left out (other edges).
    basis_version: str | None = None
    skipped: dict[str, list[str]] = field(default_factory=dict)
    buckets_read: int = 0
    _sum: _Sum | None = field(default=None, repr=False)
    _summary: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def summary(self) -> dict[str, Any]:
        if self._summary is None:
            self._summary = self._sum.summary() if self._sum else {"rows": 0, "features": {}}
        return self._summary

    def numerical_arrays(self) -> dict[str, NumericalArrays]:
        """Per numerical feature: (bins used, counts, sums, n, missing), bins ascending."""
        if self._sum is None:
            return {}
        found = {}
        for name, (bins, counts, sums, n, missing) in self._sum.numerical.items():
            used, counted, summed = summed_bins(bins, counts, sums)
            found[name] = (used, counted, summed, n, missing)
        return found


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
    ending at ``end`` (default now), oldest first, read together (the same two statements as
    one window)."""
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


# Per window: (version, parsed bucket or delta).
_Parts = list[tuple[str, ParsedWindow]]
# (database, model, version, route, resolution, bucket start): a bucket in the cache.
_Key = tuple[str, str, str, str, int, int]
# How often a read starts again when a fold changed a bucket between its two statements.
READ_ATTEMPTS = 3


def _read(
    plans: list[_Plan],
    connection: Connection,
    model: str,
    version: str | None,
    route: str | None,
) -> list[_Parts]:
    """Every bucket and delta of the plans' windows, one consistent state of them.

    The first statement reads the buckets' row counts (not their text) with the deltas' text;
    the second, the text of the buckets not parsed yet (the cache). A bucket only grows, and
    every fold adds rows to it, so a count equal in both statements is the same bucket: if a
    fold changed one in between (and maybe took in deltas read by the first), start again.
    """
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
        deltas.route,
        deltas.rows,
        deltas.counts,
    ).where(*scope(deltas), deltas.bucket_start >= first, deltas.bucket_start < last)
    statement: Any = from_deltas
    if ranges:
        from_buckets = select(
            buckets.resolution_s,
            buckets.bucket_start,
            buckets.version,
            buckets.route,
            buckets.rows,
            cast(null(), Text).label("counts"),
        ).where(*scope(buckets), or_(*ranges))
        statement = union_all(from_buckets, from_deltas)
    database = connection.engine.url.render_as_string(hide_password=True)
    starts = [plan.start for plan in plans]
    for _ in range(READ_ATTEMPTS):
        found: list[_Parts] = [[] for _ in plans]
        wanted: dict[_Key, tuple[int, int]] = {}  # bucket -> (rows, window index)
        for resolution, start, row_version, row_route, rows, counts in connection.execute(
            statement
        ):
            # Plans are consecutive and each bucket was chosen inside one of them.
            index = _window_of(starts, int(start))
            if resolution == DELTA_RESOLUTION:
                found[index].append((row_version, parse(counts)))
                continue
            key = (database, model, row_version, row_route, int(resolution), int(start))
            parsed = _cache.get(key, int(rows))
            if parsed is None:
                wanted[key] = (int(rows), index)
            else:
                found[index].append((row_version, parsed))
        if _fetch(connection, wanted, found):
            return found
    raise RuntimeError("drift window buckets kept changing while they were read")


def _fetch(
    connection: Connection, wanted: dict[_Key, tuple[int, int]], found: list[_Parts]
) -> bool:
    """Parse the wanted buckets into ``found``; False if one changed since it was counted."""
    if not wanted:
        return True
    buckets = DriftWindowBucketRow
    model = next(iter(wanted))[1]
    by_resolution: dict[int, set[int]] = {}
    for key in wanted:
        by_resolution.setdefault(key[4], set()).add(key[5])
    statement = select(
        buckets.version,
        buckets.route,
        buckets.resolution_s,
        buckets.bucket_start,
        buckets.rows,
        buckets.counts,
    ).where(
        buckets.model == model,
        or_(
            *(
                and_(buckets.resolution_s == resolution, buckets.bucket_start.in_(sorted(starts)))
                for resolution, starts in by_resolution.items()
            )
        ),
    )
    database = next(iter(wanted))[0]
    seen = 0
    for row_version, row_route, resolution, start, rows, counts in connection.execute(statement):
        key = (database, model, row_version, row_route, int(resolution), int(start))
        if key not in wanted:
            continue  # another version or route at the same time
        expected, index = wanted[key]
        if int(rows) != expected:
            return False
        parsed = parse(counts)
        _cache.put(key, expected, parsed)
        found[index].append((row_version, parsed))
        seen += 1
    return seen == len(wanted)


def _window_of(starts: list[int], bucket_start: int) -> int:
    low, high = 0, len(starts) - 1
    while low < high:  # the last window starting at or before the bucket
        middle = (low + high + 1) // 2
        if starts[middle] <= bucket_start:
            low = middle
        else:
            high = middle - 1
    return low


class _BucketCache:
    """Parsed buckets by bucket and row count, least recently used out first."""

    def __init__(self, max_size: int):
        self.max_size = max_size
        self._entries: OrderedDict[tuple[Any, ...], tuple[int, ParsedWindow]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: _Key, rows: int) -> ParsedWindow | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != rows:
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: _Key, rows: int, parsed: ParsedWindow) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._size -= old[1].size
            self._entries[key] = (rows, parsed)
            self._size += parsed.size
            while self._size > self.max_size and self._entries:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._size -= dropped.size


# About 2M bins and values (tens of MB): a day of hour buckets of many models.
_cache = _BucketCache(max_size=2_000_000)


class _Sum:
    """Sums parsed buckets: numerical bins with numpy, categories with a Counter."""

    def __init__(self) -> None:
        self.rows = 0
        # name -> [bins arrays, counts arrays, sums arrays, n, missing]
        self.numerical: dict[str, list[Any]] = {}
        # name -> [values Counter, n, missing]
        self.categorical: dict[str, list[Any]] = {}

    def add(self, parsed: ParsedWindow) -> None:
        self.rows += parsed.rows
        for name, (bins, counts, sums, n, missing) in parsed.numerical.items():
            into = self.numerical.setdefault(name, [[], [], [], 0, 0])
            into[0].append(bins)
            into[1].append(counts)
            into[2].append(sums)
            into[3] += n
            into[4] += missing
        for name, (values, n, missing) in parsed.categorical.items():
            into = self.categorical.setdefault(name, [Counter(), 0, 0])
            into[0].update(values)
            into[1] += n
            into[2] += missing

    def absorb(self, other: _Sum, numerical: set[str]) -> None:
        """Add another version's sums; of its numerical features only ``numerical``."""
        self.rows += other.rows
        for name, part in other.numerical.items():
            if name in numerical:
                into = self.numerical.setdefault(name, [[], [], [], 0, 0])
                for i in range(3):
                    into[i].extend(part[i])
                into[3] += part[3]
                into[4] += part[4]
        for name, part in other.categorical.items():
            into = self.categorical.setdefault(name, [Counter(), 0, 0])
            into[0].update(part[0])
            into[1] += part[1]
            into[2] += part[2]

    def summary(self) -> dict[str, Any]:
        features: dict[str, Any] = {}
        for name, (bins, counts, sums, n, missing) in self.numerical.items():
            counted, summed = _sparse(bins, counts, sums)
            features[name] = {
                "kind": "numerical",
                "counts": counted,
                "sums": summed,
                "n": n,
                "missing": missing,
            }
        for name, (values, n, missing) in self.categorical.items():
            features[name] = {
                "kind": "categorical",
                "values": cap_values(values),
                "n": n,
                "missing": missing,
            }
        return {"rows": self.rows, "features": features}


def _sparse(
    bins: list[np.ndarray], counts: list[np.ndarray], sums: list[np.ndarray]
) -> tuple[dict[str, int], dict[str, float]]:
    used, counted, summed = summed_bins(bins, counts, sums)
    keys = list(map(str, used.tolist()))
    return (
        dict(zip(keys, counted.tolist(), strict=True)),
        dict(zip(keys, summed.tolist(), strict=True)),
    )


def _finish(
    connection: Connection,
    model: str,
    version: str | None,
    route: str | None,
    plan: _Plan,
    parts: _Parts,
) -> WindowRead:
    by_version: dict[str, _Sum] = {}
    for row_version, parsed in parts:
        by_version.setdefault(row_version, _Sum()).add(parsed)
    read = WindowRead(model, version, route, plan.start, plan.end)
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
    read._sum = total
    read.rows = total.rows
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
