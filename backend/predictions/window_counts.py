"""Current-window drift counts, kept by the log writer as it writes rows.

For every row it commits, the writer bins each feature of the row's version against that
version's reference summary (``drift_references``; layout in ``summary_layout``) and counts the
model's outputs the same way. A commit's counts go into ``drift_window_deltas`` (one row per
model, version, route and minute) in the SAME transaction as the rows they count, so a kill -9
of the writer or the server never counts a row twice or misses one: the counts are exactly as
durable as the log. Every few seconds a writer folds the deltas so far into one minute row and
one hour row of ``drift_window_buckets`` (``fold``, called by the stores' ``fold_windows``), so
that any window is read from a few stored rows (``window_reads``) and never from the raw log.

Rows of a version without a reference are not counted (``WindowCounter.uncounted`` says how
many): there is nothing to bin them against. A reference registered after the writer started
is picked up within ``REFERENCE_RECHECK_S``.

numpy bins the columns, imported only once a reference is there to count against: a writer
process without one starts in tens of milliseconds.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import orjson

from backend.predictions.rows import (
    ROW_CREATED_AT,
    ROW_FEATURES,
    ROW_MODEL,
    ROW_OUTPUTS,
    ROW_ROUTE,
    ROW_VERSION,
)
from backend.predictions.summary_layout import (
    CONFIDENCE,
    OTHER,
    PREDICTION,
    cap_values,
    category_text,
    numeric_value,
)

if TYPE_CHECKING:
    from backend.predictions.window_layout import NumericalCounts, ParsedWindow

log = logging.getLogger(__name__)

MINUTE_S = 60
HOUR_S = 3600
# How often references missing from the cache are looked for again (a version registered, or
# given a reference, after the writer started).
REFERENCE_RECHECK_S = 5.0
# A category longer than this is counted under OTHER: a hostile or accidental huge string
# would otherwise be stored, summed and sent with every window that holds it.
MAX_CATEGORY_TEXT = 256
# Defaults of how long bucket rows are kept (settings: ``drift_minute_retention_s`` and
# ``drift_hour_retention_s``).
MINUTE_RETENTION_S = 2 * 86_400
HOUR_RETENTION_S = 90 * 86_400
# How often a writer folds the deltas so far into their buckets (the minute in progress's
# too: a bucket only grows, and a read sums buckets and the deltas not folded yet), and how
# many delta rows one fold takes at most (a short transaction: on SQLite it holds the write
# lock every writer commits under).
FOLD_EVERY_S = 5.0
FOLD_BATCH = 2_000
# A fold rewrites whole minute and hour buckets (~1 MB of text for 20 features on fine bins),
# whatever it adds: at 1,000 rows/s that was most of what counting cost. So while rows keep
# coming, a writer folds once this many rows wait (what a read parses besides the buckets:
# as much as 5 s held at 4,000 requests/s) or after FOLD_AT_MOST_S; when they stop, at once.
FOLD_ROWS = 20_000
FOLD_AT_MOST_S = 30.0

# (model, version) -> the reference summary's JSON text.
References = dict[tuple[str, str], str]


@dataclass(frozen=True)
class Retention:
    minute_s: float = MINUTE_RETENTION_S
    hour_s: float = HOUR_RETENTION_S


@dataclass
class _Plan:
    """What the writer needs of a reference: which features to bin against which edges (numpy
    arrays, made once per reference)."""

    numerical: list[tuple[str, Any]]
    categorical: list[str]
    prediction_kind: str | None = None
    prediction_edges: Any = None
    confidence_edges: Any = None
    # A row's numerical features in plan order, taken in one C call (``_count_number_table``).
    take_numbers: Callable[[dict[str, Any]], tuple[Any, ...]] | None = None
    # Where each numerical feature's bins start among every feature's bins (a batch is counted
    # in one pass, not one per feature), and how many bins there are in all.
    offsets: Any = None
    all_bins: int = 0

    def prepare(self) -> None:
        import numpy as np

        names = [name for name, _ in self.numerical]
        if len(names) > 1:
            self.take_numbers = itemgetter(*names)
        elif names:
            only = names[0]
            self.take_numbers = lambda row: (row[only],)
        sizes = [len(edges) + 1 for _, edges in self.numerical]
        self.offsets = np.cumsum([0, *sizes], dtype=np.intp)[:-1]
        self.all_bins = int(sum(sizes))


def plan_of(summary: dict[str, Any]) -> _Plan:
    """The binning plan of a reference summary (only ``kind`` and ``edges`` are read)."""
    import numpy as np

    plan = _Plan(numerical=[], categorical=[])
    for name, feature in (summary.get("features") or {}).items():
        kind = feature.get("kind")
        edges = np.asarray([float(edge) for edge in feature.get("edges") or []], np.float64)
        if name == PREDICTION:
            plan.prediction_kind = kind
            plan.prediction_edges = edges if kind == "numerical" else None
        elif name == CONFIDENCE and kind == "numerical":
            plan.confidence_edges = edges
        elif kind == "numerical":
            plan.numerical.append((name, edges))
        elif kind == "categorical":
            plan.categorical.append(name)
    plan.prepare()
    return plan


@dataclass
class _Window:
    """The rows of one (model, version, route, minute) within one commit, counted column by
    column when the commit's delta is made: numpy bins a column, ``Counter`` counts
    categories, in C, where a loop over rows and features in Python cost ~10x more."""

    plan: _Plan
    features: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)

    def encoded(self) -> tuple[str, ParsedWindow]:
        from backend.predictions.window_layout import encode

        counted = self.counted()
        return encode(counted), counted

    def counted(self) -> ParsedWindow:
        """The window's counts in the stored layout (``window_layout``)."""
        from backend.predictions.window_layout import ParsedWindow

        plan, rows, get = self.plan, len(self.features), dict.get
        window = ParsedWindow(rows)
        if not _count_number_table(plan, self.features, window):
            for name, edges in plan.numerical:
                column = list(map(get, self.features, repeat(name)))
                window.numerical[name] = _count_numbers(edges, column)
        for name in plan.categorical:
            column = list(map(get, self.features, repeat(name)))
            values, missing = _count_values(column)
            window.categorical[name] = (values, rows - missing, missing)
        if plan.prediction_kind in ("numerical", "categorical"):
            predictions = list(map(get, self.outputs, repeat("predict")))
            if plan.prediction_kind == "numerical" and plan.prediction_edges is not None:
                window.numerical[PREDICTION] = _count_numbers(plan.prediction_edges, predictions)
            else:
                values, missing = _count_values(predictions)
                window.categorical[PREDICTION] = (values, rows - missing, missing)
        if plan.confidence_edges is not None:
            confidences = _top_probabilities(list(map(get, self.outputs, repeat("predict_proba"))))
            window.numerical[CONFIDENCE] = _count_numbers(plan.confidence_edges, confidences)
        return window


_NUMBER_TYPES = frozenset((float, int))
# numpy's kinds of an array made of JSON numbers and booleans (``numeric_value`` reads a
# boolean as 0 or 1, as numpy does); text, None, a list or a huge integer give another kind.
_NUMBER_KINDS = frozenset("fiub")


def _count_number_table(plan: _Plan, features: list[dict[str, Any]], window: ParsedWindow) -> bool:
    """Count every numerical feature of the rows at once when each row holds each of them as a
    JSON number (the usual case): one table of the rows, each feature's values sorted (a binary
    search of sorted values runs ~2x faster: its branches are predicted), every feature's bins
    counted and summed in one pass over the runs of equal bins. Returns False, having counted
    nothing, when a row lacks one of them or holds something else there: then each column is
    counted value by value."""
    import numpy as np

    if plan.take_numbers is None or not features:
        return not plan.numerical
    try:
        table = np.array(list(map(plan.take_numbers, features)))
    except (KeyError, TypeError, ValueError, OverflowError):
        return False
    if table.ndim != 2 or table.dtype.kind not in _NUMBER_KINDS:
        return False
    columns = np.sort(table.astype(np.float64).T, axis=1)
    rows = columns.shape[1]
    positions = np.empty(columns.shape, dtype=np.intp)
    for index, (_, edges) in enumerate(plan.numerical):
        positions[index] = np.searchsorted(edges, columns[index], side="left")
    positions += plan.offsets[:, None]
    finite = np.isfinite(columns)
    if finite.all():
        kept_positions, kept_values = positions.ravel(), columns.ravel()
        counted = [rows] * len(plan.numerical)
    else:
        kept_positions, kept_values = positions[finite], columns[finite]
        counted = finite.sum(axis=1).tolist()
    # Each feature's values are sorted and its bins follow the features before it, so the
    # positions are sorted: a bin's values are one run of them, summed by reduceat in the
    # same order as a bincount would (no array as long as every feature's bins together,
    # which cost more than the counting itself in a commit of a few rows).
    if kept_positions.size:
        starts = np.flatnonzero(np.diff(kept_positions)) + 1
        starts = np.concatenate(([0], starts))
        used = kept_positions[starts]
        used_counts = np.diff(np.append(starts, kept_positions.size)).astype(np.float64)
        used_sums = np.add.reduceat(kept_values, starts)
    else:
        used = kept_positions
        used_counts = used_sums = np.zeros(0)
    bounds = np.searchsorted(used, [*plan.offsets.tolist(), plan.all_bins]).tolist()
    for index, (name, _) in enumerate(plan.numerical):
        start, end, n = bounds[index], bounds[index + 1], int(counted[index])
        bins = used[start:end] - plan.offsets[index]
        window.numerical[name] = (bins, used_counts[start:end], used_sums[start:end], n, rows - n)
    return True


def _count_numbers(edges: Any, column: list[Any]) -> NumericalCounts:
    """Bins used, their counts and sums, how many values were counted and how many missing."""
    import numpy as np

    values = None
    # Numbers as JSON gives them take the fast path (booleans are a type of their own, so
    # they and text, None or a list go value by value, as numeric_value reads them: numpy
    # would read the text "1.5" as a number).
    if set(map(type, column)) <= _NUMBER_TYPES:
        try:
            values = np.array(column, dtype=np.float64)
        except (OverflowError, TypeError, ValueError):
            values = None
    if values is None:
        numbers = [numeric_value(v) for v in column]
        values = np.array([math.nan if v is None else v for v in numbers], dtype=np.float64)
    values = values[np.isfinite(values)]
    positions = np.searchsorted(edges, values, side="left")
    counts = np.bincount(positions)
    used = np.flatnonzero(counts)
    sums = np.bincount(positions, weights=values)[used]
    return used, counts[used].astype(np.float64), sums, len(values), len(column) - len(values)


def _top_probabilities(column: list[Any]) -> list[float | None]:
    """Each row's top-class probability (None where there is none)."""
    try:
        return [float(p) for p in map(max, column)]
    except (TypeError, ValueError):  # a row without probabilities, or with text among them
        return [_top_probability(p) for p in column]


def _top_probability(probabilities: Any) -> float | None:
    if not isinstance(probabilities, list) or not probabilities:
        return None
    numbers = [numeric_value(p) for p in probabilities]
    if any(p is None for p in numbers):
        return None
    return max(p for p in numbers if p is not None)


def _count_values(column: list[Any]) -> tuple[dict[str, int], int]:
    """A column's values as text with their counts (at most MAX_CATEGORIES, the rest under
    OTHER), and how many are missing."""
    try:
        counted: Counter[Any] = Counter(column)
    except TypeError:  # an unhashable value (a list, an object): value by value
        return _count_texts(column)
    missing = counted.pop(None, 0)
    if all(type(k) is str and len(k) <= MAX_CATEGORY_TEXT for k in counted):
        return cap_values(counted), missing
    kinds = {type(k) for k in counted}
    if bool in kinds and (int in kinds or float in kinds):
        return _count_texts(column)  # True and 1 share a Counter key but not a text
    # Convert the distinct values, not every row (3 and 3.0 share a key and a text).
    texts: Counter[str] = Counter()
    for value, count in counted.items():
        text = category_text(value)
        if text is None:  # NaN
            missing += count
            continue
        texts[text if len(text) <= MAX_CATEGORY_TEXT else OTHER] += count
    return cap_values(texts), missing


def _count_texts(column: list[Any]) -> tuple[dict[str, int], int]:
    texts = [category_text(v) for v in column]
    counted = Counter(t if len(t) <= MAX_CATEGORY_TEXT else OTHER for t in texts if t is not None)
    return cap_values(counted), len(column) - sum(counted.values())


@dataclass(frozen=True)
class WindowDelta:
    """One commit's counts of one minute of one (model, version, route): a delta row."""

    model: str
    version: str
    route: str
    bucket_start: int
    rows: int
    counts: str  # the window layout's JSON text
    # The same counts parsed, for the committing store's fold cache (``FoldCache``): a writer
    # folding its own deltas need not parse back what it has just encoded.
    parsed: ParsedWindow | None = field(default=None, compare=False, repr=False)


class WindowCounter:
    """Counts rows being committed against their versions' references (one per drainer)."""

    def __init__(
        self,
        read_references: Callable[[list[tuple[str, str]] | None], References],
        clock: Callable[[], float] = time.monotonic,
    ):
        self.read_references = read_references
        self.clock = clock
        self._plans: dict[tuple[str, str], _Plan] = {}
        # Versions seen without a reference, and when the store was last asked about them.
        self._missing: set[tuple[str, str]] = set()
        self._missing_checked = -math.inf
        self.uncounted = 0  # rows of versions without a reference
        self.counted = 0  # rows counted into deltas (a writer folds by how many wait)
        self.malformed = 0  # rows whose features or outputs are not JSON objects

    def count(self, rows: Iterable[list[Any]]) -> list[WindowDelta]:
        windows: dict[tuple[str, str, str, int], _Window] = {}
        for (model, version, route, minute), group in _by_window(rows, self).items():
            plan = self._plans.get((model, version))
            if plan is None:
                plan = self._plan((model, version))
                if plan is None:
                    self.uncounted += len(group)
                    continue
            window = _Window(plan)
            self._decode(group, window)
            if window.features:
                windows[(model, version, route, minute)] = window
        deltas = []
        for (model, version, route, minute), window in windows.items():
            try:
                counts, parsed = window.encoded()
            except Exception:
                # Never a reason to hold up or set aside the rows themselves.
                log.exception("drift window counts of %s version %s failed", model, version)
                self.malformed += len(window.features)
                continue
            counted = len(window.features)
            self.counted += counted
            deltas.append(WindowDelta(model, version, route, minute, counted, counts, parsed))
        return deltas

    def _decode(self, group: list[list[Any]], window: _Window) -> None:
        """The group's features and outputs as dicts: all at once (the C loops of ``map``), or
        row by row when one of them is not a JSON object (the store decides about the row
        itself; counting never loses or holds it up)."""
        try:
            features = list(map(orjson.loads, map(itemgetter(ROW_FEATURES), group)))
            outputs = list(map(orjson.loads, map(itemgetter(ROW_OUTPUTS), group)))
            whole = set(map(type, features)) == {dict} and set(map(type, outputs)) == {dict}
        except Exception:
            whole = False
        if whole:
            window.features, window.outputs = features, outputs
            return
        for row in group:
            try:
                row_features = orjson.loads(row[ROW_FEATURES])
                row_outputs = orjson.loads(row[ROW_OUTPUTS])
            except Exception:
                self.malformed += 1
                continue
            if not isinstance(row_features, dict) or not isinstance(row_outputs, dict):
                self.malformed += 1
                continue
            window.features.append(row_features)
            window.outputs.append(row_outputs)

    def _plan(self, key: tuple[str, str]) -> _Plan | None:
        if key in self._missing:
            if self.clock() - self._missing_checked < REFERENCE_RECHECK_S:
                return None
            self._load(sorted(self._missing))
        else:
            # A version first seen: only its reference is read (a store holds many, each a
            # few MB of JSON, and a writer sees the few versions that serve).
            self._load([key])
        plan = self._plans.get(key)
        if plan is None:
            self._missing.add(key)
        return plan

    def _load(self, keys: list[tuple[str, str]] | None) -> None:
        self._missing_checked = self.clock()
        for key, text in self.read_references(keys).items():
            try:
                self._plans[key] = plan_of(orjson.loads(text))
            except Exception:
                log.exception("drift reference of %s version %s cannot be read", *key)
                continue
            self._missing.discard(key)


WindowKey = tuple[str, str, str, int]  # model, version, route, minute start


def _by_window(rows: Iterable[list[Any]], counter: WindowCounter) -> dict[WindowKey, list[Any]]:
    """Rows grouped by (model, version, route, minute). A commit's rows are usually one group
    (one model and route, within one minute): that is checked with a few C loops over the
    rows, where a Python loop over them cost ~1 µs a row."""
    rows = rows if isinstance(rows, list) else list(rows)
    if not rows:
        return {}
    try:
        served = set(map(itemgetter(ROW_MODEL, ROW_VERSION, ROW_ROUTE), rows))
        times = list(map(itemgetter(ROW_CREATED_AT), rows))
        if len(served) == 1 and set(map(type, times)) <= _NUMBER_TYPES:
            first, last = int(min(times) // MINUTE_S), int(max(times) // MINUTE_S)
            if first == last:
                ((model, version, route),) = served
                return {(model, version, route, first * MINUTE_S): rows}
    except Exception:
        pass  # something unexpected in a row: row by row, as below
    groups: dict[WindowKey, list[Any]] = {}
    for row in rows:
        try:
            key = (
                row[ROW_MODEL],
                row[ROW_VERSION],
                row[ROW_ROUTE],
                int(row[ROW_CREATED_AT] // MINUTE_S) * MINUTE_S,
            )
            group = groups.get(key)
        except Exception:
            # The store decides about the row itself; counting never loses or holds it up.
            counter.malformed += 1
            continue
        if group is None:
            groups[key] = [row]
        else:
            group.append(row)
    return groups


# ---------------------------------------------------------------- folding windows

# A bucket: (model, version, route, resolution_s, bucket_start).
BucketKey = tuple[str, str, str, int, int]
# A delta row as read for folding: (model, version, route, bucket_start, counts), the counts as
# JSON text, or already parsed (the fold cache's).
DeltaRow = tuple[str, str, str, int, "str | ParsedWindow"]


def fold(deltas: Iterable[DeltaRow]) -> dict[BucketKey, ParsedWindow]:
    """What delta rows add to their minute and hour buckets: the deltas of each minute summed,
    and each hour's minutes summed (not every delta twice)."""
    from backend.predictions.window_layout import merge, parse

    minutes: dict[BucketKey, list[ParsedWindow]] = {}
    for model, version, route, bucket_start, counts in deltas:
        try:
            part = counts if not isinstance(counts, str) else parse(counts)
        except Exception:
            # One unreadable delta must not stop every fold after it (the fold would roll
            # back and retry the same rows forever): it is dropped with the folded ones.
            log.exception("drift window delta of %s version %s unreadable; dropped", model, version)
            continue
        minute = int(bucket_start) // MINUTE_S * MINUTE_S
        minutes.setdefault((model, version, route, MINUTE_S, minute), []).append(part)
    added = {key: merge(found) for key, found in minutes.items()}
    hours: dict[BucketKey, list[ParsedWindow]] = {}
    for (model, version, route, _, minute), total in list(added.items()):
        hours.setdefault((model, version, route, HOUR_S, minute // HOUR_S * HOUR_S), []).append(
            total
        )
    for key, found in hours.items():
        added[key] = found[0] if len(found) == 1 else merge(found)
    return added
