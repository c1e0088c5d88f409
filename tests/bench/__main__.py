"""``make bench``: run the benchmarks, print tables, save JSON to the temp dir, exit 0.

Environment knobs (defaults in brackets):
  BENCH_SECONDS [3]      measured seconds per load level of the serving benchmark
  BENCH_WARMUP [1]       warm-up seconds before each load level (servers stay up between)
  BENCH_REPEATS [12]     rounds of the serving benchmark; each runs every server back to
                         back, and A/B ratios are medians of the per-round ratios
  BENCH_CONCURRENCIES [1,16] connections of the serving benchmark's load levels
  BENCH_SERVING_MODELS [lr20,pipeline] the serving benchmark's models
  BENCH_BASELINE [b543ac0] git ref of a baseline ServeDeck the serving benchmark also runs
                         (a worktree, its own data dir), to show now/baseline ratios from
                         the same run; '' or 'none' skips it
  BENCH_LOG_ROWS [200000] rows per timed flush of the prediction-log writer
  BENCH_SERVERS          some of bare,servedeck,servedeck-unmonitored,servedeck-unbatched
                         for the serving benchmark (default all; the baseline follows servedeck)
  BENCH_LOADGEN          'aiohttp' forces the Python load generator even if wrk is installed
  BENCH_ONLY             'serving', 'log', 'console', 'switch', 'growth', 'durability',
                         'instructions', 'drift', 'export' or 'reports' to run just one benchmark
  BENCH_DRIFT_ROWS [1000000] reference and current rows of the drift benchmark
  BENCH_EXPORT_ROWS [1000000] logged predictions of the retraining-export benchmark
  BENCH_CACHE_DIR [~/.cache/servedeck-bench] where the drift benchmark keeps Evidently's venv
  BENCH_CONSOLE_SECONDS [600] how long the console runs under load (memory: 1 min vs end)
  BENCH_CONSOLE_RATE [500] simulated requests/s during the console benchmark
  BENCH_SWITCH_SECONDS [20] seconds of load without, then with, 20 deployment switches
  BENCH_GROWTH_ROWS [5000000] old rows in the filled prediction log of the log-growth
                         benchmark (queries and serving on an empty vs a filled log)
  BENCH_DURABILITY_SECONDS [20] load before each kill -9 (3 runs each of the server, the log
                         writer, both)
  BENCH_INSTRUCTION_REQUESTS [300] requests counted under callgrind per (model, server):
                         instructions per request now vs the baseline, free of machine noise
  BENCH_INSTRUCTION_MODELS [all] comma-separated models of the instructions benchmark
  BENCH_KEEP_CALLGRIND   a directory to keep the instructions benchmark's callgrind files in
  BENCH_REPORTS [100000] error reports in the SQLite store of the report-inbox benchmark
  BENCH_REPORT_REPEATS [60] repetitions of each inbox query (median and p95 of them)
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tests.bench import (
    console_bench,
    drift_bench,
    durability_bench,
    export_bench,
    growth_bench,
    instructions_bench,
    log_bench,
    report_bench,
    serving_bench,
    serving_report,
    switch_bench,
)
from tests.bench.loadgen import generator_name


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        return float(raw) if raw else default
    except ValueError:
        print(f"ignoring {name}={raw!r}: not a number", file=sys.stderr)
        return default


def _machine_line(loadgen: str) -> str:
    cores = os.cpu_count()
    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = cores
    return (
        f"machine: {platform.machine()} {platform.system()} {platform.release()}, "
        f"{usable}/{cores} usable cores, Python {platform.python_version()} "
        f"({platform.python_implementation()}), load generator: {loadgen}"
    )


def main() -> int:
    started = time.perf_counter()
    config = serving_bench.Config(
        seconds=_env_number("BENCH_SECONDS", 3.0),
        warmup=_env_number("BENCH_WARMUP", 1.0),
        repeats=max(1, int(_env_number("BENCH_REPEATS", 12))),
        baseline=serving_bench.baseline_ref(os.environ.get("BENCH_BASELINE")),
        concurrencies=serving_bench.chosen_concurrencies(),
        models=serving_bench.chosen_models(),
    )
    log_rows = max(1, int(_env_number("BENCH_LOG_ROWS", 200_000)))
    only = os.environ.get("BENCH_ONLY", "").strip().lower()
    loadgen = generator_name()
    header = _machine_line(loadgen)
    print(header, flush=True)
    results: dict[str, Any] = {"machine": header, "config": config.__dict__}
    tables: list[str] = []

    def serving(work_dir: Path) -> tuple[list[str], Any]:
        outcome = serving_bench.run_serving_bench(work_dir, config)
        found = [serving_report.render(outcome, config)]
        if outcome.problems:
            found.append(
                "Server log lines worth a look:\n"
                + "\n".join(f"  {p}" for p in outcome.problems[:30])
            )
        return found, serving_report.to_json(outcome)

    def prediction_log(work_dir: Path) -> tuple[list[str], Any]:
        measured = log_bench.run_log_bench(work_dir, log_rows)
        return [log_bench.render(measured)], log_bench.to_json(measured)

    def console(work_dir: Path) -> tuple[list[str], Any]:
        measured = console_bench.run_console_bench(
            work_dir,
            _env_number("BENCH_CONSOLE_SECONDS", 600.0),
            _env_number("BENCH_CONSOLE_RATE", 500.0),
        )
        return [console_bench.render(measured)], measured

    def switches(work_dir: Path) -> tuple[list[str], Any]:
        measured = switch_bench.run_switch_bench(
            work_dir, _env_number("BENCH_SWITCH_SECONDS", 20.0)
        )
        return [switch_bench.render(measured)], switch_bench.to_json(measured)

    def growth(work_dir: Path) -> tuple[list[str], Any]:
        rows = max(1, int(_env_number("BENCH_GROWTH_ROWS", 5_000_000)))
        measured = growth_bench.run_growth_bench(work_dir, rows)
        return [growth_bench.render(measured)], measured

    def durability(work_dir: Path) -> tuple[list[str], Any]:
        measured = durability_bench.run_durability_bench(
            work_dir, _env_number("BENCH_DURABILITY_SECONDS", 20.0)
        )
        return [durability_bench.render(measured)], measured

    def instructions(work_dir: Path) -> tuple[list[str], Any]:
        requests = max(1, int(_env_number("BENCH_INSTRUCTION_REQUESTS", 300)))
        measured = instructions_bench.run_instructions_bench(work_dir, config.baseline, requests)
        return [instructions_bench.render(measured)], asdict(measured)

    def drift(work_dir: Path) -> tuple[list[str], Any]:
        rows = max(10_000, int(_env_number("BENCH_DRIFT_ROWS", 1_000_000)))
        measured = drift_bench.run_drift_bench(work_dir, rows)
        return [drift_bench.render(measured)], drift_bench.to_json(measured)

    def export(work_dir: Path) -> tuple[list[str], Any]:
        rows = max(1_000, int(_env_number("BENCH_EXPORT_ROWS", 1_000_000)))
        measured = export_bench.run_export_bench(work_dir, rows)
        return [export_bench.render(measured)], export_bench.to_json(measured)

    def reports(work_dir: Path) -> tuple[list[str], Any]:
        measured = report_bench.run_report_bench(
            work_dir,
            max(1_000, int(_env_number("BENCH_REPORTS", report_bench.REPORTS))),
            max(5, int(_env_number("BENCH_REPORT_REPEATS", report_bench.REPEATS))),
        )
        return [report_bench.render(measured)], report_bench.to_json(measured)

    # BENCH_ONLY key, results key, what is running, the table's title, the run.
    benches: list[tuple[str, str, str, str, Callable[[Path], tuple[list[str], Any]]]] = [
        ("serving", "serving", "serving overhead", "Serving overhead", serving),
        ("log", "prediction_log", "prediction-log writer", "Prediction-log writer",
         prediction_log),
        ("console", "console", "the console under load", "Console under load", console),
        ("switch", "switch", "deployment switches under load",
         "Deployment switches under load", switches),
        ("growth", "growth", "queries and serving as the log grows", "Log growth", growth),
        ("durability", "durability", "kill -9 under load", "kill -9 under load", durability),
        ("instructions", "instructions", "instructions per request (callgrind)",
         "Instructions per request", instructions),
        ("drift", "drift", "drift over files beside Evidently", "Drift", drift),
        ("export", "export", "the retraining export of 1M rows", "Retraining export", export),
        ("reports", "reports", "the error-report inbox with 100,000 reports",
         "Error-report inbox", reports),
    ]  # fmt: skip
    work_dir = Path(tempfile.mkdtemp(prefix="servedeck-bench-"))
    try:
        for number, (key, result_key, what, title, run) in enumerate(benches, 1):
            if only not in ("", key):
                continue
            print(f"benchmark {number}: {what}", flush=True)
            try:
                bench_tables, data = run(work_dir)
                tables.extend(bench_tables)
                results[result_key] = data
            except Exception:
                # The bench reports, it never fails the build: the error goes in the output.
                message = traceback.format_exc()
                tables.append(f"{title}: FAILED\n{message}")
                results[result_key] = {"error": message}
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)

    elapsed = time.perf_counter() - started
    results["elapsed_s"] = elapsed
    print()
    print(header)
    print()
    print("\n\n".join(tables))
    print()
    try:
        handle, name = tempfile.mkstemp(prefix="servedeck-bench-", suffix=".json")
        with os.fdopen(handle, "w") as out:
            json.dump(results, out, indent=2, default=str)
        print(f"results: {name}")
    except OSError as exc:
        print(f"could not write the JSON results: {exc}")
    print(f"took {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    try:
        main()
    except Exception:
        traceback.print_exc()
    sys.exit(0)
