"""Drift benchmark (BENCH_ONLY=drift): speed and detection of the file drift report, beside
Evidently 0.7.23 on the same files.

Seeded data shaped as issue 12 describes: 1,000,000 reference and 1,000,000 current rows, 14
numerical and 6 categorical columns, drift injected in 5 of them (a 3% scale shift of a lognormal
amount, a quarter-standard-deviation mean shift, a 10% scale shift of a gamma, and two mild
category shifts). Both go to Parquet in the bench's temp dir.

- Speed: ``servedeck-server drift`` in-process (the command's own code path: read both files,
  summarise, score, print), median of 3, pinned to one core (``taskset -c 0`` when available);
  also the whole command as a fresh process, interpreter start and imports included.
- Detection: which of the 5 drifts the full current file shows.
- False alarms: the current file cut into 100 windows of 10,000 rows, each scored against the
  reference summary; on the 15 undrifted features, the share of (feature, window) pairs flagged,
  the most windows any one feature flagged, and the windows with any flag.
- Evidently 0.7.23's DataDriftPreset in its own venv (BENCH_CACHE_DIR, default
  ~/.cache/servedeck-bench), timing only its ``Report(...).run(...)``; skipped with the reason if
  it cannot be installed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tests.bench.tables import fmt, format_table, short_error

ROWS = 1_000_000
WINDOW_ROWS = 10_000
SEED = 12
EVIDENTLY = "evidently==0.7.23"

# name -> what was injected into the current data
DRIFTED = {
    "amount": "lognormal amount scaled by 1.03 (3%)",
    "balance": "normal, mean shifted by 0.25 standard deviations",
    "latency_ms": "gamma, scaled by 1.10",
    "channel": "mild category shift (web 40% -> 33%)",
    "merchant_category": "mild category shift (two categories +5 points)",
}
CHANNELS = ["web", "app", "pos", "phone"]
CHANNEL_P = [0.40, 0.30, 0.20, 0.10]
CHANNEL_P_DRIFT = [0.33, 0.33, 0.22, 0.12]
MERCHANTS = ["grocery", "fuel", "travel", "electronics", "fashion", "dining", "health", "other"]
MERCHANT_P = [0.22, 0.15, 0.08, 0.10, 0.12, 0.15, 0.10, 0.08]
MERCHANT_P_DRIFT = [0.17, 0.15, 0.08, 0.15, 0.12, 0.15, 0.10, 0.08]
COUNTRIES = ["DE", "FR", "US", "GB", "NL", "ES", "IT", "PL", "SE", "NG"]
COUNTRY_P = [0.2, 0.15, 0.15, 0.1, 0.08, 0.08, 0.08, 0.06, 0.05, 0.05]


def make_frame(rows: int, drifted: bool, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(3.0, 1.0, rows)
    balance = rng.normal(2_000.0, 500.0, rows)
    latency = rng.gamma(2.0, 50.0, rows)
    channel_p, merchant_p = CHANNEL_P, MERCHANT_P
    if drifted:
        amount *= 1.03
        balance += 0.25 * 500.0
        latency *= 1.10
        channel_p, merchant_p = CHANNEL_P_DRIFT, MERCHANT_P_DRIFT
    columns: dict[str, Any] = {
        "amount": amount,
        "balance": balance,
        "latency_ms": latency,
        "age": rng.integers(18, 90, rows).astype(np.int64),  # discrete ints
        "txn_count_7d": rng.poisson(6.0, rows).astype(np.int64),  # discrete, few values
        "session_s": rng.exponential(120.0, rows),
        "score": rng.beta(2.0, 5.0, rows),
        "distance_km": rng.lognormal(1.0, 1.5, rows),
        "temperature": rng.normal(15.0, 8.0, rows),
        "ratio": rng.uniform(0.0, 1.0, rows),
        # heavy ties: most discounts are 0, the rest in steps of 0.05
        "discount": np.where(rng.random(rows) < 0.7, 0.0, np.round(rng.uniform(0, 0.5, rows), 2)),
        "lat": rng.normal(48.0, 3.0, rows),
        "lon": rng.normal(11.0, 5.0, rows),
        "items": rng.poisson(3.0, rows).astype(np.int64),
    }
    columns["channel"] = rng.choice(CHANNELS, rows, p=channel_p)
    columns["merchant_category"] = rng.choice(MERCHANTS, rows, p=merchant_p)
    columns["country"] = rng.choice(COUNTRIES, rows, p=COUNTRY_P)
    columns["device"] = rng.choice(["ios", "android", "desktop"], rows, p=[0.4, 0.4, 0.2])
    columns["plan"] = rng.choice(["free", "basic", "pro"], rows, p=[0.6, 0.3, 0.1])
    columns["is_foreign"] = rng.random(rows) < 0.12
    return pa.table(columns)


def write_data(work_dir: Path, rows: int = ROWS) -> tuple[Path, Path]:
    reference, current = work_dir / "reference.parquet", work_dir / "current.parquet"
    pq.write_table(make_frame(rows, False, SEED), reference)
    pq.write_table(make_frame(rows, True, SEED + 1), current)
    return reference, current


def _pinned() -> list[str]:
    return ["taskset", "-c", "0"] if shutil.which("taskset") else []


def _pin_self() -> Any:
    """Pin this process to core 0 (as taskset -c 0), returning the affinity to restore."""
    try:
        before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(before)})
        return before
    except (AttributeError, OSError):
        return None


@dataclass
class DriftBench:
    rows: int
    file_mb: float = 0.0
    cli_s: list[float] = field(default_factory=list)
    cli_cpu_s: list[float] = field(default_factory=list)
    process_s: list[float] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    found: dict[str, dict[str, Any]] = field(default_factory=dict)
    false_flags: int = 0
    pairs: int = 0
    windows_with_flag: int = 0
    worst_feature: tuple[str, int] = ("-", 0)
    windows: int = 0
    window_report_s: list[float] = field(default_factory=list)
    drifted_windows: dict[str, int] = field(default_factory=dict)
    evidently_s: float | None = None
    evidently_found: list[str] = field(default_factory=list)
    evidently_error: str = ""


def _time_cli_in_process(reference: Path, current: Path) -> tuple[float, float, dict[str, Any]]:
    from backend.cli_drift import run_drift

    out = io.StringIO()
    started, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(out):
        run_drift(str(reference), str(current), as_json=True)
    wall, used = time.perf_counter() - started, time.process_time() - cpu
    return wall, used, json.loads(out.getvalue())


def _false_alarms(bench: DriftBench, reference: Path, current: Path) -> None:
    from backend.monitoring.drift.build import summarize_current, summarize_reference
    from backend.monitoring.drift.files import read_table
    from backend.monitoring.drift.report import drift_report
    from backend.monitoring.drift.summaries import CurrentSummary, ReferenceSummary

    ref_summary, _ = summarize_reference(read_table(reference, "reference"))
    table = read_table(current, "current")
    per_feature: dict[str, int] = {}
    detected: dict[str, int] = dict.fromkeys(DRIFTED, 0)
    for start in range(0, table.num_rows, WINDOW_ROWS):
        bench.windows += 1
        window = summarize_current(table.slice(start, WINDOW_ROWS), ref_summary)
        # As a window report from stored summaries is made: from their JSON, then scored.
        stored_reference, stored_window = ref_summary.to_json(), window.to_json()
        started = time.perf_counter()
        report = drift_report(
            ReferenceSummary.from_json(stored_reference), CurrentSummary.from_json(stored_window)
        )
        bench.window_report_s.append(time.perf_counter() - started)
        flagged = False
        for feature in report.features:
            if feature.name in DRIFTED:
                detected[feature.name] += feature.drifted
                continue
            bench.pairs += 1
            if feature.drifted:
                bench.false_flags += 1
                flagged = True
                per_feature[feature.name] = per_feature.get(feature.name, 0) + 1
        bench.windows_with_flag += flagged
    if per_feature:
        bench.worst_feature = max(per_feature.items(), key=lambda item: item[1])
    bench.drifted_windows = detected


EVIDENTLY_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset
    reference = pd.read_parquet(sys.argv[1])
    current = pd.read_parquet(sys.argv[2])
    report = Report([DataDriftPreset()])
    started = time.perf_counter()
    snapshot = report.run(current_data=current, reference_data=reference)
    elapsed = time.perf_counter() - started
    drifted = []
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            drifted.append(
                [config["column"], metric["value"], config["threshold"], config["method"]]
            )
    print(json.dumps({"seconds": elapsed, "values": drifted}))
    """
)


def _evidently_python() -> tuple[Path | None, str]:
    cache = Path(os.environ.get("BENCH_CACHE_DIR", Path.home() / ".cache" / "servedeck-bench"))
    venv = cache / "evidently-venv"
    python = venv / "bin" / "python"
    marker = venv / ".evidently-0.7.23"
    if marker.exists():
        return python, ""
    cache.mkdir(parents=True, exist_ok=True)
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", EVIDENTLY, "pandas<3", "pyarrow"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            return None, f"{' '.join(step[:4])}... failed: {(done.stderr or done.stdout)[-300:]}"
    marker.touch()
    return python, ""


def _run_evidently(bench: DriftBench, reference: Path, current: Path, work_dir: Path) -> None:
    python, why = _evidently_python()
    if python is None:
        bench.evidently_error = why
        return
    script = work_dir / "evidently_run.py"
    script.write_text(EVIDENTLY_SCRIPT)
    done = subprocess.run(
        [*_pinned(), str(python), str(script), str(reference), str(current)],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if done.returncode != 0:
        bench.evidently_error = f"Evidently failed: {done.stderr[-300:]}"
        return
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    bench.evidently_s = answer["seconds"]
    for column, value, threshold, method in answer["values"]:
        # Distances (its defaults above 1000 rows) drift at or above the threshold, p-values below.
        p_value = "p_value" in method.lower().replace("-", "_")
        if (value < threshold) if p_value else (value >= threshold):
            bench.evidently_found.append(column)


def run_drift_bench(work_dir: Path, rows: int = ROWS) -> DriftBench:
    bench = DriftBench(rows=rows)
    data_dir = work_dir / "drift"
    data_dir.mkdir(parents=True, exist_ok=True)
    reference, current = write_data(data_dir, rows)
    bench.file_mb = (reference.stat().st_size + current.stat().st_size) / 2 / 1e6
    previous = _pin_self()
    try:
        report: dict[str, Any] = {}
        for _ in range(3):
            wall, cpu, report = _time_cli_in_process(reference, current)
            bench.cli_s.append(wall)
            bench.cli_cpu_s.append(cpu)
        bench.timings = report["timings"]
        for feature in report["features"]:
            if feature["name"] in DRIFTED:
                bench.found[feature["name"]] = feature
        _false_alarms(bench, reference, current)
    finally:
        if previous is not None:
            os.sched_setaffinity(0, previous)
    command = [sys.executable, "-m", "backend.cli", "drift", "--reference", str(reference)]
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run(
            [*_pinned(), *command, "--current", str(current)],
            check=True,
            capture_output=True,
        )
        bench.process_s.append(time.perf_counter() - started)
    try:
        _run_evidently(bench, reference, current, data_dir)
    except Exception as exc:  # the bench reports, never fails
        bench.evidently_error = f"{type(exc).__name__}: {exc}"
    return bench


def render(bench: DriftBench) -> str:
    cli = statistics.median(bench.cli_s)
    rows = [
        ["servedeck-server drift, in process (read+summarise+score+print)", fmt(cli, 3),
         fmt(statistics.median(bench.cli_cpu_s), 3), "-"],
        ["  of which reading both files", fmt(bench.timings.get("read_s"), 3), "-", "-"],
        ["  of which summarising both", fmt(bench.timings.get("summarize_s"), 3), "-", "-"],
        ["  of which scoring 20 features", fmt(bench.timings.get("score_s"), 3), "-", "-"],
        ["servedeck-server drift, whole process (start + imports)",
         fmt(statistics.median(bench.process_s), 3), "-", "-"],
        ["a 10,000-row window's report from stored summaries (JSON in, 20 features)",
         fmt(statistics.median(bench.window_report_s) if bench.window_report_s else None, 4),
         "-", "-"],
    ]  # fmt: skip
    if bench.evidently_s is not None:
        rows.append(["Evidently 0.7.23 DataDriftPreset Report.run", fmt(bench.evidently_s, 2),
                     "-", f"{bench.evidently_s / cli:,.0f}x"])  # fmt: skip
    else:
        rows.append(["Evidently 0.7.23", "skipped", "-", short_error(bench.evidently_error)])
    speed = format_table(
        f"Drift over files, {bench.rows:,} x 20 each ({bench.file_mb:.0f} MB Parquet each), "
        "one core, median of 3",
        ["what", "wall s", "cpu s", "Evidently / ServeDeck"],
        rows,
    )
    detection_rows = []
    for name, what in DRIFTED.items():
        found = bench.found.get(name)
        detection_rows.append(
            [
                name,
                what,
                "found" if found and found["drifted"] else "MISSED",
                f"{found['test']} {found['statistic']:.4f} (>= {found['threshold']:.4g})"
                if found
                else "-",
                f"{bench.drifted_windows.get(name, 0)}/{bench.windows}",
                "found"
                if name in bench.evidently_found
                else ("MISSED" if bench.evidently_s else "-"),
            ]
        )
    detection = format_table(
        f"Injected drifts: found in the full current ({bench.rows:,} rows)? And in how many "
        f"{WINDOW_ROWS:,}-row windows",
        ["feature", "injected", "ServeDeck", "score", "windows", "Evidently"],
        detection_rows,
    )
    share = bench.false_flags / bench.pairs if bench.pairs else 0.0
    alarms = format_table(
        f"False alarms: {bench.windows} windows of {WINDOW_ROWS:,} rows x 15 undrifted features "
        "(goal <= 1%)",
        ["measure", "value"],
        [
            ["(feature, window) pairs flagged", f"{bench.false_flags}/{bench.pairs} "
             f"({share * 100:.2f}%)"],
            ["most windows flagged for one feature", f"{bench.worst_feature[1]}/{bench.windows} "
             f"({bench.worst_feature[0]})"],
            ["windows with any undrifted feature flagged",
             f"{bench.windows_with_flag}/{bench.windows}"],
        ],
    )  # fmt: skip
    return "\n\n".join([speed, detection, alarms])


def to_json(bench: DriftBench) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(bench)
