"""Benchmark 2: how many rows/s ServeDeck's prediction-log writer puts into the database.

Rows are built and queued before the clock starts; only ``flush()`` is timed, which is the
work the writer thread does in production (JSON encoding, executemany, commit).
"""

from __future__ import annotations

import statistics
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from backend.db.tables import PredictionRow
from backend.predictions.log import PredictionLog
from backend.predictions.rows import LogRow, log_row
from backend.serving.request_ids import new_request_id
from backend.settings import Settings
from backend.workspace import Workspace
from tests.bench.tables import fmt, format_table, short_error

TARGET_ROWS_PER_S = 50_000
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass
class LogResult:
    backend: str
    rows: int
    rates: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.rates) if self.rates else None


def _rows(n: int) -> list[LogRow]:
    now = time.time()
    return [
        log_row(
            # The ids serving makes: their order decides what the request-id index costs.
            request_id=new_request_id(),
            row_index=0,
            created_at=now + i * 1e-4,
            model="fraud",
            version="1",
            route="active",
            entity_id=f"card-{i % 5_000}",
            # ~10 features of mixed types, like a realistic tabular model.
            features={
                "amount": 12.5 + (i % 997),
                "hour": i % 24,
                "tx_count_24h": i % 17,
                "avg_amount_30d": 80.25 + (i % 31),
                "distance_km": (i % 400) / 3.0,
                "account_age_days": i % 3_650,
                "merchant_category": ("grocery", "fuel", "travel", "gaming")[i % 4],
                "country": ("DE", "FR", "US", "GB")[i % 4],
                "online": bool(i % 2),
                "device": ("ios", "android", "web")[i % 3],
            },
            outputs={"predict": i % 2, "predict_proba": [0.73, 0.27]},
            latency_ms=1.5 + (i % 10) / 10.0,
            token_name="bench",
        )
        for i in range(n)
    ]


def measure(settings: Settings, backend: str, rows: int, rounds: int = 3) -> LogResult:
    result = LogResult(backend, rows)
    workspace = Workspace.open(settings)
    try:
        # A long interval: flush() wakes the writer at once, so the write is what is timed
        # (rows go through the spool to the writer process and are acknowledged when committed).
        log = PredictionLog(workspace.engine, settings.spool_dir, flush_interval_s=3600)
        log.start()
        for _ in range(rounds):
            failures_before = log.failed_flushes
            # Making the rows is timed too: it includes encoding them, which serving pays.
            started = time.perf_counter()
            batch = _rows(rows)
            log.append(batch)
            written = log.flush()
            elapsed = time.perf_counter() - started
            del batch  # keep one round of rows in memory at a time, not three
            if written != rows or log.failed_flushes != failures_before:
                result.error = f"wrote {written} of {rows} rows ({log.failed_flushes} failures)"
                break
            result.rates.append(written / elapsed)
        log.stop()
        with workspace.sessions() as session:
            stored = session.scalar(select(func.count()).select_from(PredictionRow))
        if result.error is None and stored != rows * rounds:
            result.error = f"{stored} rows in the table, expected {rows * rounds}"
    finally:
        workspace.close()
    return result


def _postgres_reachable() -> str | None:
    """None if PostgreSQL answers, else why not."""
    import psycopg

    try:
        psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3).close()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def measure_postgres(work_dir: Path, rows: int, rounds: int) -> LogResult:
    import psycopg

    name = f"servedeck_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].removeprefix("postgresql://")
        url = f"postgresql+psycopg://{base}/{name}"
        settings = Settings.load(data_dir=work_dir / "log-postgres", database_url=url)
        return measure(settings, "postgresql", rows, rounds)
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
            # FORCE: a pooled connection left behind by an error must not keep the DB alive.
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_log_bench(work_dir: Path, rows: int, rounds: int = 3) -> list[LogResult]:
    results: list[LogResult] = []
    print(f"  SQLite: {rounds} x {rows:,} rows...", flush=True)
    try:
        data_dir = work_dir / "log-sqlite"
        url = f"sqlite:///{data_dir.resolve() / 'servedeck.db'}"
        settings = Settings.load(data_dir=data_dir, database_url=url)
        results.append(measure(settings, "sqlite", rows, rounds))
    except Exception:
        results.append(LogResult("sqlite", rows, error=traceback.format_exc(limit=2)))
    unreachable = _postgres_reachable()
    if unreachable is not None:
        results.append(LogResult("postgresql", rows, error=f"skipped: {unreachable}"))
        return results
    print(f"  PostgreSQL: {rounds} x {rows:,} rows...", flush=True)
    try:
        results.append(measure_postgres(work_dir, rows, rounds))
    except Exception:
        results.append(LogResult("postgresql", rows, error=traceback.format_exc(limit=2)))
    return results


def render(results: list[LogResult]) -> str:
    rows = []
    for r in results:
        median = r.median
        verdict = "n/a" if median is None else ("ok" if median >= TARGET_ROWS_PER_S else "MISSED")
        rows.append(
            [
                r.backend,
                f"{r.rows:,}",
                fmt(median, 0),
                " / ".join(f"{v:,.0f}" for v in r.rates) or "-",
                f">= {TARGET_ROWS_PER_S:,}",
                verdict,
                short_error(r.error) if r.error else "",
            ]
        )
    headers = ["database", "rows/flush", "rows/s", "rows/s per run", "target", "met", "note"]
    return format_table("Prediction-log writer: flush() throughput", headers, rows)


def to_json(results: list[LogResult]) -> list[dict[str, Any]]:
    return [
        {
            "backend": r.backend,
            "rows": r.rows,
            "rows_per_s_median": r.median,
            "rows_per_s": r.rates,
            "error": r.error,
        }
        for r in results
    ]
