"""``make bench``: run the benchmarks, print tables, save JSON to the temp dir, exit 0.

Environment knobs (defaults in brackets):
  BENCH_SECONDS [10]     measured seconds per load level
  BENCH_WARMUP [2]       warm-up seconds before each load level
  BENCH_REPEATS [3]      repeats of every (model, server) pair; tables show medians
  BENCH_LOG_ROWS [200000] rows per timed flush of the prediction-log writer
  BENCH_LOADGEN          'aiohttp' forces the Python load generator even if wrk is installed
  BENCH_ONLY             'serving', 'log', 'console' or 'switch' to run just one benchmark
  BENCH_CONSOLE_SECONDS [600] how long the console runs under load (memory: 1 min vs end)
  BENCH_CONSOLE_RATE [500] simulated requests/s during the console benchmark
  BENCH_SWITCH_SECONDS [20] seconds of load without, then with, 20 deployment switches
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
from pathlib import Path
from typing import Any

from tests.bench import console_bench, log_bench, serving_bench, switch_bench
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
        seconds=_env_number("BENCH_SECONDS", 10.0),
        warmup=_env_number("BENCH_WARMUP", 2.0),
        repeats=max(1, int(_env_number("BENCH_REPEATS", 3))),
    )
    log_rows = max(1, int(_env_number("BENCH_LOG_ROWS", 200_000)))
    only = os.environ.get("BENCH_ONLY", "").strip().lower()
    loadgen = generator_name()
    header = _machine_line(loadgen)
    print(header, flush=True)
    results: dict[str, Any] = {"machine": header, "config": config.__dict__}
    tables: list[str] = []
    work_dir = Path(tempfile.mkdtemp(prefix="servedeck-bench-"))
    try:
        if only in ("", "serving"):
            print("benchmark 1: serving overhead", flush=True)
            try:
                outcome = serving_bench.run_serving_bench(work_dir, config)
                tables.append(serving_bench.render(outcome, config))
                results["serving"] = serving_bench.to_json(outcome)
                if outcome.problems:
                    tables.append(
                        "Server log lines worth a look:\n"
                        + "\n".join(f"  {p}" for p in outcome.problems[:30])
                    )
            except Exception:
                # The bench reports, it never fails the build: the error goes in the output.
                message = traceback.format_exc()
                tables.append(f"Serving overhead: FAILED\n{message}")
                results["serving"] = {"error": message}
        if only in ("", "log"):
            print("benchmark 2: prediction-log writer", flush=True)
            try:
                log_results = log_bench.run_log_bench(work_dir, log_rows)
                tables.append(log_bench.render(log_results))
                results["prediction_log"] = log_bench.to_json(log_results)
            except Exception:
                message = traceback.format_exc()
                tables.append(f"Prediction-log writer: FAILED\n{message}")
                results["prediction_log"] = {"error": message}
        if only in ("", "console"):
            print("benchmark 3: the console under load", flush=True)
            try:
                console_result = console_bench.run_console_bench(
                    work_dir,
                    _env_number("BENCH_CONSOLE_SECONDS", 600.0),
                    _env_number("BENCH_CONSOLE_RATE", 500.0),
                )
                tables.append(console_bench.render(console_result))
                results["console"] = console_result
            except Exception:
                message = traceback.format_exc()
                tables.append(f"Console under load: FAILED\n{message}")
                results["console"] = {"error": message}
        if only in ("", "switch"):
            print("benchmark 4: deployment switches under load", flush=True)
            try:
                switch_result = switch_bench.run_switch_bench(
                    work_dir, _env_number("BENCH_SWITCH_SECONDS", 20.0)
                )
                tables.append(switch_bench.render(switch_result))
                results["switch"] = switch_bench.to_json(switch_result)
            except Exception:
                message = traceback.format_exc()
                tables.append(f"Deployment switches under load: FAILED\n{message}")
                results["switch"] = {"error": message}
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
