"""Drift-window counts kept by the prediction-log writer, and windows read from them.

Every count is checked against counting the same rows directly (numpy ``searchsorted`` on the
reference's edges, a Counter of the values' text), after real writer processes drained real
spools, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from collections import Counter
from typing import Any

import numpy as np
import orjson
import pytest
from sqlalchemy import func, select

from backend.db.tables import (
    DriftReferenceRow,
    DriftWindowBucketRow,
    DriftWindowDeltaRow,
    PredictionRow,
)
from backend.predictions.log import PredictionLog, writer_target
from backend.predictions.rows import LogRow, log_row
from backend.predictions.store import open_store
from backend.predictions.summary_layout import (
    CONFIDENCE,
    FINE_BINS,
    MAX_CATEGORIES,
    OTHER,
    PREDICTION,
    category_text,
)
from backend.predictions.window_counts import (
    FOLD_BATCH,
    MAX_CATEGORY_TEXT,
    REFERENCE_RECHECK_S,
    Retention,
    WindowCounter,
)
from backend.predictions.window_layout import encode, merge, parse
from backend.predictions.window_reads import read_series, read_window
from backend.workspace import Workspace
from tests.helpers import logged_rows
from tests.log_durability import run_case

NUMERICAL = [f"x{i}" for i in range(14)]
CATEGORICAL = [f"c{i}" for i in range(6)]
CLASSES = ["no", "yes", "maybe"]
MINUTE, HOUR = 60, 3600


# ---------------------------------------------------------------- data and references


def _frame(rng: np.random.Generator, n: int) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    for i, name in enumerate(NUMERICAL):
        if i % 3 == 0:
            columns[name] = rng.normal(100 * i, 10 + i, n)
        elif i % 3 == 1:
            columns[name] = rng.lognormal(1, 0.5, n)
        else:
            columns[name] = rng.integers(0, 40, n).astype(float)  # heavy ties
    for i, name in enumerate(CATEGORICAL):
        columns[name] = rng.choice([f"v{j}" for j in range(3 + i)], n)
    columns[PREDICTION] = rng.choice(CLASSES, n)
    columns[CONFIDENCE] = rng.uniform(0.34, 1.0, n)
    return columns


def _reference(rng: np.random.Generator, n: int = 5_000) -> dict[str, Any]:
    """A reference summary built the way registration builds it (quantile edges)."""
    columns = _frame(rng, n)
    features: dict[str, Any] = {}
    for name in [*NUMERICAL, CONFIDENCE]:
        values = columns[name]
        edges = np.unique(np.quantile(values, np.linspace(0, 1, FINE_BINS + 1)))
        bins = np.searchsorted(edges, values, side="left")
        features[name] = {
            "kind": "numerical",
            "edges": edges.tolist(),
            "counts": np.bincount(bins, minlength=len(edges) + 1).tolist(),
            "sums": np.bincount(bins, weights=values, minlength=len(edges) + 1).tolist(),
            "n": n,
            "missing": 0,
            "mean": float(values.mean()),
            "std": float(values.std()),
            "min": float(values.min()),
            "max": float(values.max()),
        }
    for name in [*CATEGORICAL, PREDICTION]:
        categories = Counter(category_text(v) for v in columns[name].tolist())
        features[name] = {
            "kind": "categorical",
            "categories": dict(categories),
            "other": 0,
            "n": n,
            "missing": 0,
        }
    return {"rows": n, "features": features}


def _store_reference(ws: Workspace, model: str, version: str, summary: dict[str, Any]) -> None:
    """The test's own reference for the version, in place of one its registration stored."""
    with ws.sessions() as session:
        session.merge(
            DriftReferenceRow(
                model=model,
                version=version,
                summary=orjson.dumps(summary).decode(),
                rows=summary["rows"],
                source="training data",
            )
        )
        session.commit()


def _log_rows(
    rng: np.random.Generator,
    n: int,
    start: float,
    span_s: float,
    version: str = "1",
    route: str = "active",
    prefix: str = "r",
) -> list[LogRow]:
    columns = _frame(rng, n)
    times = np.sort(rng.uniform(start, start + span_s, n))
    rows = []
    for i in range(n):
        features = {name: columns[name][i].item() for name in NUMERICAL + CATEGORICAL}
        if i % 17 == 0:
            features["x1"] = None  # missing
        if i % 23 == 0:
            del features["c2"]  # absent
        confidence = float(columns[CONFIDENCE][i])
        rest = (1 - confidence) / 2
        rows.append(
            log_row(
                request_id=f"{prefix}-{i}",
                row_index=0,
                created_at=float(times[i]),
                model="m",
                version=version,
                route=route,
                entity_id=None,
                features=features,
                outputs={
                    "predict": columns[PREDICTION][i],
                    "predict_proba": [confidence, rest, rest],
                },
                latency_ms=1.0,
                token_name="test",
            )
        )
    return rows


def _expected(rows: list[Any], reference: dict[str, Any]) -> dict[str, Any]:
    """The window summary of rows, counted directly (numpy and Counter), dense."""
    features: dict[str, Any] = {}
    decoded = [(orjson.loads(r[7]), orjson.loads(r[8])) for r in rows]
    for name, ref in reference["features"].items():
        if name == PREDICTION:
            raw = [o.get("predict") for _, o in decoded]
        elif name == CONFIDENCE:
            raw = [_top(o["predict_proba"]) for _, o in decoded]
        else:
            raw = [f.get(name) for f, _ in decoded]
        if ref["kind"] == "numerical":
            # As summary_layout.numeric_value: numbers (booleans as 0/1), never text.
            numbers = [v for v in raw if isinstance(v, (int, float))]
            values = np.asarray(numbers, dtype=float)
            edges = np.asarray(ref["edges"])
            bins = np.searchsorted(edges, values, side="left")
            features[name] = {
                "counts": np.bincount(bins, minlength=len(edges) + 1),
                "sums": np.bincount(bins, weights=values, minlength=len(edges) + 1),
                "n": len(numbers),
                "missing": len(raw) - len(numbers),
            }
        else:
            texts = [category_text(v) for v in raw]
            present = [t for t in texts if t is not None]
            features[name] = {
                "values": Counter(present),
                "n": len(present),
                "missing": len(texts) - len(present),
            }
    return {"rows": len(rows), "features": features}


def _top(probabilities: list[Any]) -> float | None:
    numbers = all(isinstance(p, (int, float)) for p in probabilities)
    return max(probabilities) if numbers and probabilities else None


def _assert_same(read: dict[str, Any], expected: dict[str, Any]) -> None:
    assert read["rows"] == expected["rows"]
    if expected["rows"] == 0:
        assert read["features"] == {}  # nothing counted, nothing to say
        return
    assert set(read["features"]) == set(expected["features"])
    for name, want in expected["features"].items():
        got = read["features"][name]
        assert (got["n"], got["missing"]) == (want["n"], want["missing"]), name
        if "counts" in want:
            size = len(want["counts"])
            counts = np.zeros(size, dtype=np.int64)
            sums = np.zeros(size)
            for b, c in got["counts"].items():
                counts[int(b)] += c
            for b, s in got["sums"].items():
                sums[int(b)] += s
            np.testing.assert_array_equal(counts, want["counts"], err_msg=name)
            np.testing.assert_allclose(sums, want["sums"], rtol=1e-9, atol=1e-6, err_msg=name)
        else:
            assert Counter(got["values"]) == want["values"], name


def _in(rows: list[Any], start: float, end: float) -> list[Any]:
    return [r for r in rows if start <= r[2] < end]


def _logged(ws: Workspace) -> list[list[Any]]:
    """The log's rows as the writer wrote them (features and outputs as JSON text)."""
    with ws.sessions() as session:
        found = session.execute(
            select(
                PredictionRow.request_id,
                PredictionRow.row_index,
                PredictionRow.created_at,
                PredictionRow.model,
                PredictionRow.version,
                PredictionRow.route,
                PredictionRow.entity_id,
                PredictionRow.features,
                PredictionRow.outputs,
            )
        ).all()
    return [[*r[:7], orjson.dumps(r[7]).decode(), orjson.dumps(r[8]).decode()] for r in found]


def _deltas_left(ws: Workspace) -> int:
    with ws.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(DriftWindowDeltaRow)) or 0)


def _wait_until(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def _drain(ws: Workspace, rows: list[LogRow], batch: int = 200) -> PredictionLog:
    """Rows through a real spool and a real writer process; the log is left running."""
    log = PredictionLog(ws.engine, ws.settings.spool_dir, flush_interval_s=0.05)
    log.start()
    _append_all(ws, log, rows, batch)
    return log


def _append_all(ws: Workspace, log: PredictionLog, rows: list[LogRow], batch: int = 200) -> None:
    """Append rows and wait until the writer has them all in the store."""
    before = logged_rows(ws)
    for i in range(0, len(rows), batch):
        log.append(rows[i : i + batch])
    deadline = time.monotonic() + 60
    while logged_rows(ws) < before + len(rows):
        assert time.monotonic() < deadline, "the writer did not write every row"
        log.flush(timeout_s=max(0.1, deadline - time.monotonic()))
    assert logged_rows(ws) == before + len(rows)


# ---------------------------------------------------------------- tests


def test_counts_equal_counting_the_rows_directly(store: Workspace) -> None:
    rng = np.random.default_rng(12)
    reference = _reference(rng)
    _store_reference(store, "m", "1", reference)
    # Two and a half hours, ending well in the past: the writer folds them as it goes.
    start = (time.time() // HOUR - 4) * HOUR + 7 * MINUTE
    rows = _log_rows(rng, 3_000, start, 2.5 * HOUR)
    log = _drain(store, rows)
    try:
        logged = _logged(store)
        assert len(logged) == len(rows)
        with store.engine.connect() as connection:
            everything = read_window(connection, "m", start - HOUR, start + 3 * HOUR)
        _assert_same(everything.summary, _expected(logged, reference))
        # The writer folds closed minutes into minute and hour buckets by itself.
        _wait_until(lambda: _deltas_left(store) == 0, 40, "the writer folded the deltas")
        with store.engine.connect() as connection:
            whole = read_window(connection, "m", start - HOUR, start + 3 * HOUR)
            _assert_same(whole.summary, _expected(logged, reference))
            # Hours in the middle, minutes at both (unaligned) edges.
            lo, hi = start + 23 * MINUTE + 20, start + 2 * HOUR + 11 * MINUTE + 40
            window = read_window(connection, "m", lo, hi)
            assert (window.start, window.end) == (lo - 20, hi + 20)  # whole minutes
            _assert_same(window.summary, _expected(_in(logged, lo - 20, hi + 20), reference))
            assert window.buckets_read < 2 * 60 + 3  # not one per minute: hour buckets
            # A series for a sparkline: 12 windows of 15 minutes, read together.
            series = read_series(connection, "m", 12, 15 * MINUTE, end=start + 2.5 * HOUR)
            assert [w.end - w.start for w in series] == [15 * MINUTE] * 12
            for w in series:
                _assert_same(w.summary, _expected(_in(logged, w.start, w.end), reference))
            assert sum(w.rows for w in series) == len(_in(logged, series[0].start, series[-1].end))
            # Whole hours: the windows align on hours and read hour buckets.
            hours = read_series(connection, "m", 3, HOUR, end=start + 2.5 * HOUR)
            assert all(w.start % HOUR == 0 for w in hours)
            for w in hours:
                _assert_same(w.summary, _expected(_in(logged, w.start, w.end), reference))
    finally:
        log.stop()


def test_routes_versions_and_a_version_without_a_reference(store: Workspace) -> None:
    rng = np.random.default_rng(3)
    reference = _reference(rng)
    _store_reference(store, "m", "1", reference)
    start = time.time() - 30 * MINUTE
    active = _log_rows(rng, 400, start, 10 * MINUTE, prefix="a")
    canary = _log_rows(rng, 150, start, 10 * MINUTE, version="2", route="canary", prefix="c")
    shadow = _log_rows(rng, 120, start, 10 * MINUTE, version="1", route="shadow", prefix="s")
    log = _drain(store, active + canary + shadow)
    log.stop()
    with store.engine.connect() as connection:
        traffic = read_window(connection, "m", start, start + 11 * MINUTE)
        # Version 2 has no reference: its rows are logged but not counted.
        assert traffic.rows_by_version == {"1": 400}
        _assert_same(traffic.summary, _expected(active, reference))
        shadowed = read_window(connection, "m", start, start + 11 * MINUTE, route="shadow")
        _assert_same(shadowed.summary, _expected(shadow, reference))
        both = read_window(connection, "m", start, start + 11 * MINUTE, version="1", route=None)
        assert both.rows == 400
    assert len(_logged(store)) == 670

    # A reference registered later is picked up (re-read at most every few seconds).
    other = _reference(np.random.default_rng(4))
    _store_reference(store, "m", "2", other)
    clock = [0.0]
    dialect, location = writer_target(store.engine)
    counting = open_store(dialect, location)
    counter = WindowCounter(counting.references, clock=lambda: clock[0])
    first = [list(r) for r in _log_rows(rng, 10, start, 60, version="3", prefix="late")]
    assert counter.count(first) == [] and counter.uncounted == 10
    _store_reference(store, "m", "3", reference)
    assert counter.count(first) == []  # not asked again yet
    clock[0] += REFERENCE_RECHECK_S
    deltas = counter.count(first)
    assert sum(d.rows for d in deltas) == 10

    # Several versions: numerical features add up only over the same reference edges.
    later = _log_rows(rng, 200, start + 20 * MINUTE, 5 * MINUTE, version="2", route="canary")
    log = _drain(store, later)
    log.stop()
    with store.engine.connect() as connection:
        mixed = read_window(connection, "m", start, start + 30 * MINUTE)
    assert mixed.rows_by_version == {"1": 400, "2": 200}
    assert mixed.basis_version == "1"
    assert mixed.skipped == {name: ["2"] for name in sorted([*NUMERICAL, CONFIDENCE])}
    assert mixed.summary["features"]["x0"]["n"] == 400
    assert mixed.summary["features"]["c0"]["n"] + mixed.summary["features"]["c0"]["missing"] == 600


def test_hostile_values_do_not_stop_the_writer(store: Workspace) -> None:
    rng = np.random.default_rng(5)
    reference = _reference(rng)
    _store_reference(store, "m", "1", reference)
    start = time.time() - 10 * MINUTE
    rows = _log_rows(rng, 60, start, 60)
    huge = "é" * (1 << 20)
    hostile = [
        {"x0": "12.5", "x1": huge, "c0": huge, "c1": {"a": [1]}, "c3": True, "x2": [1, 2]},
        {"x0": 1e308, "x3": -1e308, "c0": 3.0, "c4": None, "x4": True},
        {name: f"v{i}" for i, name in enumerate(NUMERICAL)},
    ]
    for i, features in enumerate(hostile):
        rows.append(
            log_row(
                request_id=f"h{i}",
                row_index=0,
                created_at=start + 1,
                model="m",
                version="1",
                route="active",
                entity_id=None,
                features=features,
                outputs={"predict": None, "predict_proba": ["x", 0.5]},
                latency_ms=1.0,
                token_name="test",
            )
        )
    # More distinct values than a window keeps.
    many = _log_rows(rng, MAX_CATEGORIES + 50, start, 60, prefix="many")
    for i, row in enumerate(many):
        features = orjson.loads(row[7])
        features["c5"] = f"value-{i}"
        many[i] = (*row[:7], orjson.dumps(features).decode(), *row[8:])  # type: ignore[assignment]
    log = _drain(store, rows + many)
    try:
        # The writer still writes rows after them.
        more = _log_rows(rng, 20, start, 60, prefix="after")
        _append_all(store, log, more)
    finally:
        log.stop()
    with store.engine.connect() as connection:
        window = read_window(connection, "m", start - MINUTE, start + 2 * MINUTE)
    features = window.summary["features"]
    assert window.rows == len(rows) + len(many) + 20
    # Text in a numerical feature is missing, not a crash; huge text counts under OTHER.
    assert features["x1"]["missing"] >= 1
    assert all(len(text) <= MAX_CATEGORY_TEXT for text in features["c0"]["values"])
    assert features["c0"]["values"][OTHER] == 1
    assert features["c0"]["values"]["3"] == 1  # 3.0 counts as "3"
    assert len(set(features["c5"]["values"]) - {OTHER}) == MAX_CATEGORIES
    assert features["c5"]["values"][OTHER] >= 50
    assert sum(features["c5"]["values"].values()) == features["c5"]["n"]
    assert features[CONFIDENCE]["missing"] == 3  # a text probability: no confidence
    assert features[PREDICTION]["missing"] == 3
    # Everything else is exactly what direct counting gives.
    expected = _expected(rows + many + more, reference)
    capped = ("c0", "c5")
    for name in capped:
        del expected["features"][name]
    others = {k: v for k, v in features.items() if k not in capped}
    _assert_same({"rows": window.rows, "features": others}, expected)


def test_two_writers_fold_every_delta_once(store: Workspace) -> None:
    rng = np.random.default_rng(9)
    reference = _reference(rng)
    _store_reference(store, "m", "1", reference)
    start = (time.time() // HOUR - 3) * HOUR
    rows = [list(r) for r in _log_rows(rng, 6_000, start, 2 * HOUR + 30 * MINUTE)]
    dialect, location = writer_target(store.engine)
    writing = open_store(dialect, location)
    counter = WindowCounter(writing.references)
    key = "owner/000001"
    offset = writing.committed_offset(key)
    # Small commits, as a busy writer makes them: many deltas per minute.
    for i in range(0, len(rows), 2):
        part = rows[i : i + 2]
        writing.commit(key, offset, offset + 1, part, counter.count(part))
        offset += 1
    deltas = _deltas_left(store)
    assert deltas > FOLD_BATCH  # both folders need several rounds
    folded = [0, 0]
    errors: list[BaseException] = []

    def fold(index: int) -> None:
        folding = open_store(dialect, location)
        try:
            while (done := folding.fold_windows(int(time.time()), Retention(), time.time())) > 0:
                folded[index] += done
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=fold, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    assert sum(folded) == deltas and _deltas_left(store) == 0
    with store.engine.connect() as connection:
        window = read_window(connection, "m", start, start + 3 * HOUR)
        _assert_same(window.summary, _expected(rows, reference))
    with store.sessions() as session:
        buckets = session.execute(
            select(DriftWindowBucketRow.resolution_s, func.sum(DriftWindowBucketRow.rows))
            .group_by(DriftWindowBucketRow.resolution_s)
            .order_by(DriftWindowBucketRow.resolution_s)
        ).all()
    assert [(r, int(n)) for r, n in buckets] == [(MINUTE, 6_000), (HOUR, 6_000)]

    # Retention: minute buckets older than an hour and hour buckets older than two go.
    now = start + 3 * HOUR
    assert writing.fold_windows(int(now), Retention(minute_s=HOUR, hour_s=2 * HOUR), now) == 0
    with store.sessions() as session:
        kept = session.execute(
            select(DriftWindowBucketRow.resolution_s, func.min(DriftWindowBucketRow.bucket_start))
            .group_by(DriftWindowBucketRow.resolution_s)
            .order_by(DriftWindowBucketRow.resolution_s)
        ).all()
    assert [(r, int(first)) for r, first in kept] == [(MINUTE, now - HOUR), (HOUR, now - 3 * HOUR)]
    with store.engine.connect() as connection:
        # Past the minutes kept, a window's edges widen to whole hours.
        old = read_window(connection, "m", start + 10 * MINUTE, start + 50 * MINUTE, now=now,
                          minute_retention_s=HOUR)  # fmt: skip
        assert (old.start, old.end) == (start, start + HOUR)
        _assert_same(old.summary, _expected(_in(rows, start, start + HOUR), reference))


@pytest.mark.serial
@pytest.mark.parametrize("case", ["writer", "both"])
def test_kill_9_counts_every_logged_row_once(case: str, workspace: Workspace) -> None:
    """kill -9 of the writer (or server and writer) under load: counts == rows in the log."""
    rng = np.random.default_rng(21)
    toy = {
        "amount": rng.gamma(2.0, 200.0, 2_000),
        "count": rng.integers(0, 20, 2_000).astype(float),
        PREDICTION: np.array([0, 1] * 1_000),
        CONFIDENCE: rng.uniform(0.5, 1, 2_000),
    }
    features: dict[str, Any] = {}
    for name in ("amount", "count", CONFIDENCE):
        edges = np.unique(np.quantile(toy[name], np.linspace(0, 1, FINE_BINS + 1)))
        features[name] = {"kind": "numerical", "edges": edges.tolist()}
    for name in ("country", "online", PREDICTION):
        features[name] = {"kind": "categorical", "categories": {}, "other": 0}
    reference = {"rows": 2_000, "features": features}
    _store_reference(workspace, "toy", "1", reference)
    env = {
        "SERVEDECK_DATABASE_URL": workspace.settings.database_url,
        "SERVEDECK_LOG_FLUSH_INTERVAL": "0.2",
    }
    run = run_case(case, workspace, env)
    assert len(run.answered) >= 100 and run.missing_predictions == 0
    assert run.duplicated_predictions == 0
    logged = [r for r in _logged(workspace) if r[3] == "toy"]
    with workspace.engine.connect() as connection:
        window = read_window(connection, "toy", time.time() - HOUR, time.time() + MINUTE)
    assert window.rows == len(logged) >= len(run.answered)
    _assert_same(window.summary, _expected(logged, reference))


@pytest.mark.serial
def test_a_day_of_minute_buckets_reads_in_under_50_ms(store: Workspace) -> None:
    rng = np.random.default_rng(1)
    reference = _reference(rng)
    _store_reference(store, "m", "1", reference)
    now = time.time()
    day = now - 86_400
    rows = [list(r) for r in _log_rows(rng, 28_800, day, 86_400)]  # 20 a minute
    dialect, location = writer_target(store.engine)
    writing = open_store(dialect, location)
    counter = WindowCounter(writing.references)
    key = "owner/000001"
    offset = writing.committed_offset(key)
    for i in range(0, len(rows), 1_000):
        part = rows[i : i + 1_000]
        writing.commit(key, offset, offset + 1, part, counter.count(part))
        offset += 1
    while writing.fold_windows(int(now - 120), Retention(), now) > 0:
        pass

    def timed(read: Any) -> tuple[float, float, Any]:
        """(first read, median of the next 5, result): the first parses every bucket, the
        next ones find the unchanged buckets parsed already (window_reads' cache)."""
        times, result = [], None
        for _ in range(6):
            started = time.perf_counter()
            with store.engine.connect() as connection:
                result = read(connection)
            times.append(time.perf_counter() - started)
        return times[0], statistics.median(times[1:]), result

    day_cold, day_s, window = timed(lambda c: read_window(c, "m", now - 86_400, now))
    series_cold, series_s, series = timed(lambda c: read_series(c, "m", 24, HOUR, end=now))
    minutes_cold, minutes_s, sparkline = timed(
        lambda c: read_series(c, "m", 96, 15 * MINUTE, end=now)
    )
    print(
        f"\nA day of 20-feature windows ({len(rows):,} rows), first read / again (ms): "
        f"last 24 h {day_cold * 1000:.1f} / {day_s * 1000:.1f} ({window.buckets_read} "
        f"buckets); 24 x 1 h {series_cold * 1000:.1f} / {series_s * 1000:.1f}; 96 x 15 min "
        f"{minutes_cold * 1000:.1f} / {minutes_s * 1000:.1f} "
        f"({sum(w.buckets_read for w in sparkline)} buckets)"
    )
    assert window.rows == len(_in(rows, window.start, window.end))
    assert sum(w.rows for w in series) == len(_in(rows, series[0].start, series[-1].end))
    assert day_s < 0.050 and series_s < 0.050


def test_kill_of_the_writer_process_mid_stream_keeps_counts_exact(store: Workspace) -> None:
    """The writer killed while it commits: replayed batches are counted once."""
    rng = np.random.default_rng(33)
    reference = _reference(rng)
    _store_reference(store, "m", "1", reference)
    start = time.time() - 20 * MINUTE
    rows = _log_rows(rng, 4_000, start, 15 * MINUTE)
    log = PredictionLog(store.engine, store.settings.spool_dir, flush_interval_s=0.02)
    log.start()
    try:
        killed: list[int] = []
        for i in range(0, len(rows), 50):
            log.append(rows[i : i + 50])
            if i in (1_000, 2_500):
                # A writer not yet started again after the first kill: wait for the new one.
                _wait_until(
                    lambda: log.writer_pid not in (None, *killed), 30, "a new writer started"
                )
                pid = log.writer_pid
                assert pid is not None
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        deadline = time.monotonic() + 60
        while logged_rows(store) < len(rows) and time.monotonic() < deadline:
            log.flush(timeout_s=max(0.1, deadline - time.monotonic()))
        assert len(killed) == 2 and log.writer_restarts >= 2
    finally:
        log.stop()
    logged = _logged(store)
    assert len(logged) == len(rows)
    with store.engine.connect() as connection:
        window = read_window(connection, "m", start - MINUTE, start + 20 * MINUTE)
    _assert_same(window.summary, _expected(logged, reference))


def _earlier_layout(text: str) -> str:
    """A window's counts as writers before the array layout stored them: numerical counts and
    sums as {bin text: value} maps, per feature."""
    window = orjson.loads(text)
    parsed = parse(text)
    del window["numerical"]
    for name, (bins, counts, sums, n, missing) in parsed.numerical.items():
        keys = [str(b) for b in bins.tolist()]
        window["features"][name] = {
            "kind": "numerical",
            "counts": dict(zip(keys, counts.astype(int).tolist(), strict=True)),
            "sums": dict(zip(keys, sums.tolist(), strict=True)),
            "n": n,
            "missing": missing,
        }
    return orjson.dumps(window).decode()


def test_counts_stored_in_the_earlier_layout_are_read_and_folded_into(store: Workspace) -> None:
    """A data directory from before the array layout: its buckets and deltas keep their maps;
    reads sum them with new counts, and a fold adds new deltas to an old bucket."""
    rng = np.random.default_rng(21)
    reference = _reference(rng)
    _store_reference(store, "m", "1", reference)
    hour = (time.time() // HOUR - 3) * HOUR
    old_rows = [list(r) for r in _log_rows(rng, 300, hour, 10 * MINUTE, prefix="old")]
    new_rows = [list(r) for r in _log_rows(rng, 300, hour + 20 * MINUTE, 10 * MINUTE)]
    dialect, location = writer_target(store.engine)
    writing = open_store(dialect, location)
    counter = WindowCounter(writing.references)
    key = "owner/000001"
    offset = writing.committed_offset(key)
    writing.commit(key, offset, offset + 1, old_rows, counter.count(old_rows))
    # Rewrite the old rows' deltas in the earlier layout, fold them (into old-layout buckets
    # once rewritten too), then count and fold newer rows on top.
    with store.engine.begin() as connection:
        for delta_id, counts in connection.execute(
            select(DriftWindowDeltaRow.id, DriftWindowDeltaRow.counts)
        ).all():
            connection.execute(
                DriftWindowDeltaRow.__table__.update()
                .where(DriftWindowDeltaRow.id == delta_id)
                .values(counts=_earlier_layout(counts))
            )
    while writing.fold_windows(int(time.time()), Retention(), time.time()) > 0:
        pass
    with store.engine.begin() as connection:
        for row in connection.execute(select(DriftWindowBucketRow)).all():
            connection.execute(
                DriftWindowBucketRow.__table__.update()
                .where(
                    DriftWindowBucketRow.model == row.model,
                    DriftWindowBucketRow.version == row.version,
                    DriftWindowBucketRow.route == row.route,
                    DriftWindowBucketRow.resolution_s == row.resolution_s,
                    DriftWindowBucketRow.bucket_start == row.bucket_start,
                )
                .values(counts=_earlier_layout(row.counts))
            )
    writing.commit(key, offset + 1, offset + 2, new_rows, counter.count(new_rows))
    with store.engine.connect() as connection:
        # Old-layout buckets and new-layout deltas read together.
        mixed = read_window(connection, "m", hour, hour + HOUR)
    _assert_same(mixed.summary, _expected(old_rows + new_rows, reference))
    while writing.fold_windows(int(time.time()), Retention(), time.time()) > 0:
        pass
    assert _deltas_left(store) == 0
    with store.engine.connect() as connection:
        folded = read_window(connection, "m", hour, hour + HOUR)
        (hour_bucket,) = connection.execute(
            select(DriftWindowBucketRow.counts).where(DriftWindowBucketRow.resolution_s == HOUR)
        ).one()
    _assert_same(folded.summary, _expected(old_rows + new_rows, reference))
    assert '"bins":"' in hour_bucket  # the fold wrote the bucket back with packed arrays


def test_a_feature_whose_kind_changed_keeps_the_counts_of_its_latest_kind() -> None:
    """A version's reference replaced with one that reads a feature as categories: the counts
    summed from then on are of the new kind only (as the window layout can hold one kind)."""
    numbers = parse(
        '{"rows": 2, "features": {"f": {"kind": "numerical", "bins": [3, 7], '
        '"counts": [1, 1], "sums": [0.5, 2.0], "n": 2, "missing": 0}}}'
    )
    categories = parse(
        '{"rows": 3, "features": {"f": {"kind": "categorical", "values": {"a": 2, "b": 1}, '
        '"n": 3, "missing": 0}}}'
    )
    total = merge([numbers, numbers, categories, categories])
    assert total.rows == 10
    assert total.numerical == {}
    assert total.categorical == {"f": ({"a": 4, "b": 2}, 6, 0)}
    back = merge([parse(encode(total)), numbers])
    assert set(back.numerical) == {"f"} and back.categorical == {}
    bins, counts, sums, n, missing = back.numerical["f"]
    assert (n, missing) == (2, 0)
    assert bins.tolist() == [3, 7] and counts.tolist() == [1, 1] and sums.tolist() == [0.5, 2.0]
