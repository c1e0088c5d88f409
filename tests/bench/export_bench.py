"""Benchmark: the retraining export of 1,000,000 logged predictions to Parquet.

A SQLite store gets a 10-feature classifier and 1M logged predictions with labels of every
source (feedback on most served rows, review on the held-out ones, confirmed error reports
on a few), written directly (the writer's speed is the log benchmark's business). Then
``servedeck-server export`` runs in a process of its own: the time it reports for the export
and its peak resident memory (the whole process, imports included) are the figures.
Targets: under 10 s and under 500 MB.
"""

from __future__ import annotations

import os
import resource
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow.parquet as pq
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from backend.demo.data import plain_records
from backend.registry.signature import infer_signature
from backend.schemas import ValidityAssets
from backend.settings import Settings
from backend.workspace import Workspace
from tests.bench.tables import format_table

ROWS = 1_000_000
TARGET_S = 10.0
TARGET_MB = 500.0
START = 1_780_000_000.0
CHUNK = 100_000
CATEGORIES = ("grocery", "fuel", "travel", "gaming")
COUNTRIES = ("DE", "FR", "US", "GB")
DEVICES = ("ios", "android", "web")


@dataclass
class ExportBench:
    rows: int
    exported: int = 0
    build_s: float = 0.0
    export_s: float | None = None
    process_s: float | None = None
    # CPU seconds of the export process (user + system): on a shared machine the wall time
    # depends on the other load, this does not.
    cpu_s: float | None = None
    peak_mb: float | None = None
    file_mb: float | None = None
    # The machine's 1-minute load average when the export ended (2 cores: above 2 it waits).
    load_average: float = 0.0
    error: str | None = None


def _frame(n: int, seed: int = 3) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "amount": rng.gamma(2.0, 60.0, n),
            "hour": rng.integers(0, 24, n),
            "tx_count_24h": rng.integers(0, 17, n),
            "avg_amount_30d": rng.gamma(2.0, 40.0, n),
            "distance_km": rng.exponential(30.0, n),
            "account_age_days": rng.integers(0, 3_650, n),
            "merchant_category": rng.choice(CATEGORIES, n),
            "country": rng.choice(COUNTRIES, n),
            "online": rng.random(n) < 0.5,
            "device": rng.choice(DEVICES, n),
        }
    )
    score = frame["amount"] / 120 + frame["online"] * 1.0 + (frame["country"] == "US") - 2
    return frame, (score + rng.normal(0, 0.5, n) > 0).astype(int)


def _register(workspace: Workspace) -> None:
    frame, labels = _frame(2_000)
    categorical = ["merchant_category", "country", "device"]
    numeric = [c for c in frame.columns if c not in categorical]
    model = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("cat", OneHotEncoder(handle_unknown="ignore"), categorical),
                        ("num", "passthrough", numeric),
                    ]
                ),
            ),
            ("clf", LogisticRegression(max_iter=2_000)),
        ]
    ).fit(frame, labels)
    held = frame.tail(200)
    validity = ValidityAssets(
        end_to_end=[
            {"inputs": row, "expected": int(e)}
            for row, e in zip(
                plain_records(held.head(10)), model.predict(held.head(10)), strict=True
            )
        ],
        confidence_set=[
            {"inputs": row, "label": int(y)}
            for row, y in zip(plain_records(held), labels.tail(200), strict=True)
        ],
        metric="accuracy",
        acceptable_range=(0.5, 1.0),
    )
    workspace.registry.register_version(
        "fraud",
        sio.dumps(model),
        filename="fraud.skops",
        validity=validity,
        registered_by="bench",
        signature=infer_signature(frame),
    )


def _fill(database: Path, rows: int) -> None:
    """Predictions, labels and reports written straight into the SQLite file."""
    connection = sqlite3.connect(database)
    try:
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            predictions: list[tuple[Any, ...]] = []
            labels: list[tuple[Any, ...]] = []
            for i in range(start, start + n):
                held_out = i % 50 == 0
                request_id = f"req-{i:08d}"
                features = {
                    "amount": 12.5 + (i % 997),
                    "hour": i % 24,
                    "tx_count_24h": i % 17,
                    "avg_amount_30d": 80.25 + (i % 31),
                    "distance_km": (i % 400) / 3.0,
                    "account_age_days": i % 3_650,
                    "merchant_category": CATEGORIES[i % 4],
                    "country": COUNTRIES[i % 4],
                    "online": bool(i % 2),
                    "device": DEVICES[i % 3],
                }
                p = (i % 100) / 100
                outputs = {"predict": int(p > 0.5), "predict_proba": [1 - p, p]}
                predictions.append(
                    (
                        request_id,
                        0,
                        START + i * 0.01,
                        "fraud",
                        "1",
                        "held_out" if held_out else "active",
                        f"card-{i % 5_000}",
                        orjson.dumps(features).decode(),
                        orjson.dumps(outputs).decode(),
                        1.5,
                        "bench",
                    )
                )
                if held_out:
                    labels.append(("fraud", request_id, 0, str(i % 2), START + i, "review", False))
                elif i % 10 < 7:
                    labels.append(("fraud", request_id, 0, str(i % 2), START + i, "shop", None))
            connection.executemany(
                "INSERT INTO predictions (request_id, row_index, created_at, model, version, "
                "route, entity_id, features, outputs, latency_ms, token_name) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                predictions,
            )
            connection.executemany(
                "INSERT INTO labels (model, request_id, row_index, label, received_at, source, "
                "influenced) VALUES (?, ?, ?, ?, ?, ?, ?)",
                labels,
            )
            connection.commit()
        # A confirmed report on every 1000th row: its correction is that row's label.
        connection.executemany(
            "INSERT INTO error_reports (model, version, request_id, row_index, route, linked, "
            "category, description, correction, filed_by, status, status_rank, severity_rank, "
            "filed_at, updated_at) VALUES ('fraud', '1', ?, 0, 'active', 1, 'wrong_answer', "
            "'bench', '1', 'support', 'confirmed', 3, 0, ?, ?)",
            [(f"req-{i:08d}", START + i, START + i) for i in range(1, rows, 1_000)],
        )
        connection.commit()
    finally:
        connection.close()


def run_export_bench(work_dir: Path, rows: int = ROWS) -> ExportBench:
    bench = ExportBench(rows)
    data_dir = work_dir / "export-store"
    started = time.perf_counter()
    settings = Settings.load(data_dir=data_dir)
    workspace = Workspace.open(settings)
    try:
        _register(workspace)
    finally:
        workspace.close()
    print(f"  filling the store with {rows:,} predictions...", flush=True)
    _fill(data_dir / "servedeck.db", rows)
    bench.build_s = time.perf_counter() - started
    out = work_dir / "export-out"
    print("  exporting to Parquet in a process of its own...", flush=True)
    begun = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_before = before.ru_utime + before.ru_stime
    done = subprocess.run(
        [
            *(sys.executable, "-m", "backend.cli", "export", "--data-dir", str(data_dir)),
            *("--model", "fraud", "--out", str(out)),
            *("--source", "review", "--source", "report"),
            *("--source", "feedback", "--source", "unlabelled"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ},
        check=False,
    )
    bench.process_s = time.perf_counter() - begun
    bench.load_average = os.getloadavg()[0]
    # The children waited for: this one process (ru_maxrss in kB on Linux).
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    bench.peak_mb = used.ru_maxrss / 1024
    bench.cpu_s = used.ru_utime + used.ru_stime - cpu_before
    if done.returncode != 0:
        bench.error = (done.stderr or done.stdout)[-2_000:]
        return bench
    line = done.stdout.strip().splitlines()[-1]
    bench.export_s = float(line.rsplit(" in ", 1)[1].split(" s")[0])
    parquet = out / "data.parquet"
    bench.exported = pq.ParquetFile(parquet).metadata.num_rows
    bench.file_mb = parquet.stat().st_size / 1e6
    if bench.exported != rows:
        bench.error = f"exported {bench.exported} rows of {rows}"
    return bench


def render(bench: ExportBench) -> str:
    if bench.error:
        return f"Retraining export: FAILED\n{bench.error}"
    assert bench.export_s is not None and bench.peak_mb is not None
    verdict = "ok" if bench.export_s < TARGET_S and bench.peak_mb < TARGET_MB else "over target"
    return format_table(
        f"Retraining export: {bench.rows:,} logged predictions to Parquet (target "
        f"< {TARGET_S:g} s, < {TARGET_MB:g} MB)",
        [
            *("rows", "export s", "process s", "process CPU s", "peak RSS MB", "file MB"),
            *("store build s", "load average", "verdict"),
        ],
        [
            [
                f"{bench.exported:,}",
                f"{bench.export_s:.1f}",
                f"{bench.process_s:.1f}",
                f"{bench.cpu_s:.1f}",
                f"{bench.peak_mb:.0f}",
                f"{bench.file_mb:.1f}",
                f"{bench.build_s:.0f}",
                f"{bench.load_average:.1f}",
                verdict,
            ]
        ],
    )


def to_json(bench: ExportBench) -> dict[str, Any]:
    return bench.__dict__.copy()
