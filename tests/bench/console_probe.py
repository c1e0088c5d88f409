"""The console under load, measured from inside its own process (run by console_bench).

Opens the console on an embedded demo backend and drives ``--rate`` demo requests/s at it
from an open-loop load generator: the demo simulator's requests, replayed by aiohttp. (The
simulator sends one request at a time with requests; three of them reached only ~200/s
next to the console and backend on two cores.) Measures the UI thread's stalls (a 10 ms
QTimer's lateness), the memory after one minute and at the end, and the chart redraw rate
with 100,000 points.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import orjson
from PySide6.QtCore import QElapsedTimer, QTimer
from PySide6.QtWidgets import QApplication

from backend.demo.simulate import DemoTraffic
from console.app import Console
from console.pages.live import LivePage
from console.widgets.live_charts import LiveCharts, series_columns

PROBE_INTERVAL_MS = 10
# Distinct requests replayed in a loop; one simulated day of traffic at 20 requests/s.
REPLAYED_REQUESTS = 20_000
MAX_IN_FLIGHT = 64
REDRAW_POINTS = 100_000
# Building the demo (training its models) comes first.
CONNECT_TIMEOUT_S = 300


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return math.nan


def write_demo_requests(path: Path, count: int) -> None:
    """The demo simulator's requests, one 'path<TAB>body' line each, for the load generator."""
    traffic = DemoTraffic(seed=100)
    with path.open("wb") as out:
        for _ in range(count):
            _, request_path, body, _ = traffic.next_request()
            out.write(request_path.encode() + b"\t" + orjson.dumps(body) + b"\n")


def redraw_rates(seconds: float = 3.0) -> tuple[float, float]:
    """Redraws/s of one chart with 100,000 points, and of all four charts with as many."""
    charts = LiveCharts(capacity={1: REDRAW_POINTS, 60: 16})
    charts.timer.stop()
    charts.resize(1200, 700)
    charts.show()
    now = time.time()
    times = np.linspace(now - 290, now, REDRAW_POINTS)
    rng = np.random.default_rng(3)
    values = {}
    for name, width in series_columns().items():
        shape = (REDRAW_POINTS, width) if width > 1 else REDRAW_POINTS
        values[name] = rng.random(shape) * 10
    charts.buffers[1].extend(times, values)
    app = QApplication.instance()
    assert app is not None
    requests = values["requests"]

    def one_chart() -> None:
        # The scene repaints from the event loop: only this chart's items changed.
        charts.requests_curve.setData(times, requests)
        app.processEvents()

    def all_charts() -> None:
        charts.redraw(now=now)
        app.processEvents()

    rates = []
    for redraw in (one_chart, all_charts):
        count = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            redraw()
            count += 1
        rates.append(count / (time.perf_counter() - started))
    charts.close()
    return rates[0], rates[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    app = QApplication(sys.argv[:1])
    console = Console(
        app, argparse.Namespace(demo=True, rate=20.0, connect=None, data_dir=args.data_dir)
    )
    result: dict[str, object] = {"rate_asked": args.rate, "seconds": args.seconds}
    lateness_ms: list[float] = []
    loads: list[subprocess.Popen[bytes]] = []
    clock = QElapsedTimer()
    state: dict[str, float] = {}

    def probe() -> None:
        elapsed = clock.nsecsElapsed() / 1e6
        clock.restart()
        lateness_ms.append(max(0.0, elapsed - PROBE_INTERVAL_MS))

    probe_timer = QTimer()
    probe_timer.setInterval(PROBE_INTERVAL_MS)
    probe_timer.timeout.connect(probe)

    def live_page() -> LivePage | None:
        window = console.window
        page = window.page("live") if window is not None else None
        return page if isinstance(page, LivePage) else None

    connect_deadline = time.monotonic() + CONNECT_TIMEOUT_S

    def start_load() -> None:
        page = live_page()
        if page is None or console.window is None or console.window.monitor.state != "connected":
            if time.monotonic() > connect_deadline:
                # The bench reports instead of hanging: console_bench shows this error.
                args.out.write_text(json.dumps({"error": "the console never connected"}))
                console.shutdown()
                app.quit()
                return
            QTimer.singleShot(200, start_load)
            return
        console.window.resize(1400, 900)
        assert console.local is not None and console.local.url is not None
        bodies = Path(tempfile.mkdtemp()) / "requests.txt"
        write_demo_requests(bodies, REPLAYED_REQUESTS)
        command = [sys.executable, "-m", "tests.bench.aio_loadgen"]
        command += ["--url", f"{console.local.url}/v1/models/fraud:predict"]
        command += ["--bodies", str(bodies)]
        command += ["--header", f"Authorization: Bearer {console.local.admin_token()}"]
        command += ["--rate", f"{args.rate:g}", "--concurrency", str(MAX_IN_FLIGHT)]
        command += ["--seconds", f"{args.seconds:g}"]
        loads.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))
        state["started"] = time.monotonic()
        state["received_at_start"] = page.received_total
        clock.start()
        probe_timer.start()
        QTimer.singleShot(60_000, lambda: state.__setitem__("rss_1min", rss_mb()))
        QTimer.singleShot(int(args.seconds * 1000), finish)

    def finish() -> None:
        probe_timer.stop()
        page = live_page()
        elapsed = time.monotonic() - state["started"]
        received = (page.received_total - state["received_at_start"]) if page else 0
        stalls = np.asarray(lateness_ms[50:] or [math.nan])  # skip the first half second
        result.update(
            {
                "rate_seen": received / elapsed,
                "table_rows": page.table.rowCount() if page else 0,
                "stall_p50_ms": float(np.percentile(stalls, 50)),
                "stall_p99_ms": float(np.percentile(stalls, 99)),
                "stall_max_ms": float(stalls.max()),
                "rss_1min_mb": state.get("rss_1min", math.nan),
                "rss_end_mb": rss_mb(),
            }
        )
        for load in loads:
            # It ends with the measured window (started just before it): wait for its report.
            output, _ = load.communicate(timeout=90)
            if output.strip():
                sent = json.loads(output)
                result["load_p50_ms"], result["load_p99_ms"] = sent["p50_ms"], sent["p99_ms"]
                result["load_errors"], result["load_behind"] = sent["errors"], sent["behind"]
        result["redraws_per_s_100k"], result["redraws_per_s_100k_all"] = redraw_rates()
        args.out.write_text(json.dumps(result))
        console.shutdown()
        app.quit()

    console.start()
    start_load()
    app.exec()


if __name__ == "__main__":
    main()
