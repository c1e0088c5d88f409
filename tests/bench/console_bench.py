"""Benchmark 3: the console under simulated load (runs ``console_probe`` in a subprocess)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.bench.tables import format_table

STALL_P99_TARGET_MS = 50.0
REDRAW_TARGET = 30.0
MEMORY_GROWTH_TARGET_MB = 50.0


def run_console_bench(work_dir: Path, seconds: float, rate: float) -> dict[str, Any]:
    out = work_dir / "console.json"
    command = [
        sys.executable, "-m", "tests.bench.console_probe", "--data-dir", str(work_dir / "console"),
        "--seconds", f"{seconds:g}", "--rate", f"{rate:g}", "--out", str(out),
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 600)
    if not out.exists():
        tail = "\n".join((completed.stdout + completed.stderr).splitlines()[-30:])
        raise RuntimeError(
            f"the console probe wrote no result (exit {completed.returncode}):\n{tail}"
        )
    result: dict[str, Any] = json.loads(out.read_text())
    if "error" in result:
        raise RuntimeError(result["error"])
    return result


def _met(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def render(result: dict[str, Any]) -> str:
    # NaN when the run was shorter than a minute: there is no one-minute sample to compare.
    growth = result["rss_end_mb"] - result["rss_1min_mb"]
    minutes = result["seconds"] / 60
    stall_p99 = result["stall_p99_ms"]
    redraws = result["redraws_per_s_100k"]
    rows = [
        ["requests/s seen by the console", f"{result['rate_seen']:.0f}", "", ""],
        ["requests/s asked of the load generator", f"{result['rate_asked']:g}", "", ""],
        [
            "load generator: latency p50 / p99 (ms), errors, skipped",
            f"{result.get('load_p50_ms') or math.nan:.1f} / "
            f"{result.get('load_p99_ms') or math.nan:.1f}, "
            f"{result.get('load_errors', '?')}, {result.get('load_behind', '?')}",
            "",
            "",
        ],
        ["UI stall p50 (ms)", f"{result['stall_p50_ms']:.1f}", "", ""],
        [
            "UI stall p99 (ms)",
            f"{stall_p99:.1f}",
            f"< {STALL_P99_TARGET_MS:g}",
            _met(stall_p99 < STALL_P99_TARGET_MS),
        ],
        ["UI stall max (ms)", f"{result['stall_max_ms']:.1f}", "", ""],
        [
            "redraws/s, one chart of 100,000 points",
            f"{redraws:.1f}",
            f">= {REDRAW_TARGET:g}",
            _met(redraws >= REDRAW_TARGET),
        ],
        [
            "redraws/s, all four charts (8 curves of 100,000 points)",
            f"{result['redraws_per_s_100k_all']:.1f}",
            "",
            "",
        ],
        ["memory after 1 min (MB)", f"{result['rss_1min_mb']:.0f}", "", ""],
        [f"memory after {minutes:g} min (MB)", f"{result['rss_end_mb']:.0f}", "", ""],
        [
            "memory growth (MB)",
            f"{growth:.0f}",
            f"< {MEMORY_GROWTH_TARGET_MB:g}",
            _met(growth < MEMORY_GROWTH_TARGET_MB) if not math.isnan(growth) else "n/a",
        ],
        ["rows in the live table (bounded)", str(result["table_rows"]), "", ""],
    ]
    return format_table(
        "Console under load (embedded demo backend, open-loop demo load)",
        ["measure", "value", "target", "met"],
        rows,
    )
