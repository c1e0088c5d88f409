"""What the alert rules and the event stream cost: one evaluation round over many models, and
a page of the event stream read from a store holding many events.

Run: .venv/bin/python -m tests.bench.alert_bench [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from backend.db.tables import AlertEventRow, AuditEventRow
from backend.monitoring.evaluator import AlertEvaluator
from backend.monitoring.event_log import EventCursor, events_after
from backend.monitoring.live_stats import LiveStats
from backend.monitoring.rules import RuleStore
from backend.settings import Settings
from backend.workspace import Workspace

MODELS = 50
EVENTS = 20_000
ROUNDS = 20


class Serving:
    """The models a worker serves (what the evaluator asks of the serving state)."""

    def __init__(self, models: list[str]):
        self.models = models

    def models_serving(self) -> list[str]:
        return self.models


def _traffic(stats: LiveStats, models: list[str], now: float) -> None:
    """An hour of traffic, 20 requests a second per model, spread over the seconds."""
    for second in range(3_600):
        at = now - 3_600 + second
        for model in models:
            stats.record(model, at, 5.0 + second % 7, [0.9], version="1")
            if second % 50 == 0:
                stats.record_refusal(model, "1", at, 500)


def bench_rounds(workspace: Workspace) -> dict[str, float]:
    models = [f"m{i}" for i in range(MODELS)]
    stats = LiveStats(started_at=time.time() - 7_200)
    now = time.time()
    _traffic(stats, models, now)
    evaluator = AlertEvaluator(
        workspace.alerts, RuleStore(workspace.sessions), stats, Serving(models)
    )
    rules = evaluator._rules(models)
    on_loop, per_model, whole = [], [], []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        evaluator.measure(rules, time.time())
        on_loop.append(time.perf_counter() - started)
        for model in models:  # the longest the loop is held: one model's sums
            started = time.perf_counter()
            evaluator.measure({model: rules[model]}, time.time())
            per_model.append(time.perf_counter() - started)
        started = time.perf_counter()
        asyncio.run(evaluator.evaluate())
        whole.append(time.perf_counter() - started)
    return {
        "measure_all_models_ms_median": statistics.median(on_loop) * 1000,
        "measure_one_model_ms_median": statistics.median(per_model) * 1000,
        "measure_one_model_ms_max": max(per_model) * 1000,
        "round_ms_median": statistics.median(whole) * 1000,
    }


def bench_stream(workspace: Workspace) -> dict[str, float]:
    alert = {"id": 1, "model": "m0", "version": None, "kind": "error_rate",
             "severity": "critical", "status": "open", "title": "t", "explanation": "e",
             "details": {}, "raised_at": "2026-12-02T00:00:00Z"}  # fmt: skip
    with workspace.sessions.begin() as session:
        base = time.time() - EVENTS
        for i in range(EVENTS):
            session.add(
                AlertEventRow(alert_id=1, model=f"m{i % MODELS}", action="changed",
                              at=base + i, actor="servedeck", note="", alert=alert)
            )  # fmt: skip
            session.add(AuditEventRow(actor="x", role="admin", model=f"m{i % MODELS}",
                                      action="policy", reason="", details={}))  # fmt: skip
    middle = EventCursor(EVENTS // 2, EVENTS // 2)
    times, scoped = [], []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        page = events_after(workspace.sessions, middle, None)
        times.append(time.perf_counter() - started)
        assert page is not None and len(page) > 0
        started = time.perf_counter()
        events_after(workspace.sessions, middle, frozenset({"m1", "m2"}))
        scoped.append(time.perf_counter() - started)
    return {
        "page_ms_median": statistics.median(times) * 1000,
        "scoped_page_ms_median": statistics.median(scoped) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        workspace = Workspace.open(
            Settings.load(data_dir=Path(directory), database_url=args.database_url)
        )
        try:
            print(f"store: {workspace.engine.dialect.name}")
            print(f"{MODELS} models, 4 live-statistics rules each, {ROUNDS} rounds:")
            for name, value in bench_rounds(workspace).items():
                print(f"  {name}: {value:.1f}")
            print(f"event stream page (200 + 200 rows) after {EVENTS} of each kind:")
            for name, value in bench_stream(workspace).items():
                print(f"  {name}: {value:.1f}")
        finally:
            workspace.close()


if __name__ == "__main__":
    main()
