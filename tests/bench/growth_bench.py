"""Benchmark 5: the prediction-log queries and serving as the log grows.

Two data dirs with the same registered models: one with an empty log, one filled with N old
rows (spread over past days, 5% labelled). Both then get the same "window": a fixed set of
rows and labels in the last minute, which is all the measured queries should read. Every
query of ``backend/predictions/reads.py`` is timed on both logs in alternation (medians), and
ServeDeck serves the same model at 1 connection from each data dir in turn. A query that
costs in proportion to its window takes the same time on both; one that costs in proportion
to the log shows up as a ratio well below the target.
"""

from __future__ import annotations

import gc
import os
import random
import sqlite3
import statistics
import sys
import time
import traceback
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from backend.predictions.reads import (
    labelled_since,
    models_of,
    newest_labelled,
    read_predictions,
    window_rows,
)
from backend.predictions.rows import COLUMNS, json_text
from backend.settings import Settings
from backend.workspace import Workspace
from tests.bench.loadgen import LoadTarget
from tests.bench.models import BenchModel, build_models, register_models, sqlite_url
from tests.bench.servers import running_server
from tests.bench.tables import fmt, format_table, short_error

TARGET = 0.9  # filled / empty for rates, empty / filled for times
PHASES = ("empty", "filled")
MODEL = "lr20"  # the model queried and served
SPARSE_MODEL = "pipeline"  # its labelled answers in the window are fewer than METRIC_WINDOW
# The old log: several models, mostly "active" traffic, an old version on canary/shadow.
FILL_MIX = (
    ("lr20", 0.45),
    ("pipeline", 0.45),
    ("legacy", 0.10),  # a model deleted long ago: its rows stay in the log
)
FILL_ROUTES = (("active", "1", 0.90), ("canary", "2", 0.07), ("shadow", "2", 0.03))
FILL_DAYS = 30
FILL_NEWEST_AGE_S = 3_600.0  # old rows end an hour ago, far before any measured window
FILL_CHUNK = 250_000  # rows per transaction
LABEL_SHARE = 0.05
# Rows per request, cycled: most requests carry one row, some a small batch.
REQUEST_SIZES = (1, 1, 1, 1, 1, 1, 1, 1, 3)
# The window: this many rows in the last minute, in both logs, 5 of 6 of them MODEL's.
WINDOW_ROWS = 6_000
WINDOW_SPAN_S = (55.0, 5.0)  # from 55 s to 5 s ago
# 40% labelled: the newest page of labels newest_labelled reads (2,000) is all window labels.
WINDOW_LABEL_SHARE = 0.4
METRIC_WINDOW = 500  # the policy's default metric_window
# Reads more on the filled log by design (older labels exist only there): shown, not judged.
SPARSE_QUERY = f"newest_labelled(sparse, window={METRIC_WINDOW})"
QUERY_REPEATS = 40
# Fewer repetitions (but at least MIN_QUERY_REPEATS) for a query that has taken this long.
QUERY_BUDGET_S = 30.0
MIN_QUERY_REPEATS = 3
SERVE_RUNS = 4  # server sessions per data dir, in the order E F F E E F F E
# Long enough to include a pass of the live-metric watch (every 10 s in each server).
SERVE_SECONDS = 10.0
SERVE_WARMUP = 2.0
# After the first session's load: CPU of the idle server, two passes of the watch included.
IDLE_SECONDS = 22.0

Pools = dict[str, list[str]]
Rows = list[tuple[Any, ...]]
Outputs = list[tuple[str, int]]


# ---------------------------------------------------------------------- rows


def _pools(models: list[BenchModel], size: int = 1_000) -> tuple[Pools, Outputs]:
    """Features JSON per model name (as the log stores it); outputs JSON and their answer."""
    rnd = random.Random(7)
    features: Pools = {}
    for model in models:
        features[model.name] = [
            json_text(orjson.loads(body)["instances"][0]) for body in model.bodies[:size]
        ]
    features["legacy"] = features["pipeline"]
    outputs = []
    for _ in range(size):
        p = rnd.random()
        answer = int(p > 0.5)
        outputs.append((json_text({"predict": answer, "predict_proba": [1.0 - p, p]}), answer))
    return features, outputs


def _generate(
    rnd: random.Random,
    features: Pools,
    outputs: Outputs,
    n_rows: int,
    start: float,
    end: float,
    pick: Callable[[random.Random], tuple[str, str, str]],
    label_share: float,
) -> tuple[Rows, Rows]:
    """n_rows prediction rows (COLUMNS order) from start to end, time-ordered request ids as
    serving makes them, and labels (model, request_id, row_index, label, received_at, source)."""
    rows: Rows = []
    labels: Rows = []
    step = (end - start) / max(1, n_rows)
    t = start
    request = 0
    n_outputs = len(outputs)
    while len(rows) < n_rows:
        size = min(REQUEST_SIZES[request % len(REQUEST_SIZES)], n_rows - len(rows))
        model, version, route = pick(rnd)
        request_id = f"{int(t * 1e6):014x}{rnd.getrandbits(80):020x}"
        pool = features[model]
        latency = 1.0 + 3.0 * rnd.random()
        entity = f"card-{rnd.randrange(50_000)}"
        for index in range(size):
            output, answer = outputs[rnd.randrange(n_outputs)]
            rows.append(
                (
                    request_id,
                    index,
                    t,
                    model,
                    version,
                    route,
                    entity,
                    pool[rnd.randrange(len(pool))],
                    output,
                    latency,
                    "bench",
                )
            )
            if rnd.random() < label_share:
                # The outputs' own answer, wrong one time in ten.
                label = answer if rnd.random() < 0.9 else 1 - answer
                labels.append((model, request_id, index, str(label), t + 60.0, "bench"))
        t += step * size
        request += 1
    return rows, labels


def _pick_fill(rnd: random.Random) -> tuple[str, str, str]:
    u = rnd.random()
    model = FILL_MIX[-1][0]
    for name, share in FILL_MIX:
        if u < share:
            model = name
            break
        u -= share
    u = rnd.random()
    for route, version, share in FILL_ROUTES:
        if u < share:
            return model, version, route
        u -= share
    return model, "1", "active"


def _pick_window(rnd: random.Random) -> tuple[str, str, str]:
    return (MODEL if rnd.random() < 5 / 6 else SPARSE_MODEL), "1", "active"


_INSERT_ROWS = f"INSERT INTO predictions ({COLUMNS}) VALUES ({', '.join('?' * 11)})"
_INSERT_LABELS = (
    "INSERT INTO labels (model, request_id, row_index, label, received_at, source) "
    "VALUES (?,?,?,?,?,?)"
)


def _insert(connection: sqlite3.Connection, rows: Rows, labels: Rows) -> None:
    connection.execute("BEGIN")
    connection.executemany(_INSERT_ROWS, rows)
    connection.executemany(_INSERT_LABELS, labels)
    connection.execute("COMMIT")


def fill(db: Path, n_rows: int, features: Pools, outputs: Outputs) -> dict[str, Any]:
    """N old rows straight through sqlite3, in big transactions; nothing else may be open."""
    rnd = random.Random(42)
    end = time.time() - FILL_NEWEST_AGE_S
    start = end - FILL_DAYS * 86_400.0
    step = (end - start) / max(1, n_rows)
    started = time.perf_counter()
    n_labels = 0

    def chunk(done: int) -> tuple[Rows, Rows]:
        n = min(FILL_CHUNK, n_rows - done)
        t0 = start + done * step
        return _generate(rnd, features, outputs, n, t0, t0 + n * step, _pick_fill, LABEL_SHARE)

    connection = sqlite3.connect(db, isolation_level=None)
    try:
        # Rollback journal while filling: WAL would write every page twice. New pages at the
        # end of the file are not journaled, so the fill writes little more than the rows.
        connection.execute("PRAGMA journal_mode=DELETE")
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("PRAGMA cache_size=-262144")
        done = 0
        last_print = 0
        while done < n_rows:
            rows, labels = chunk(done)
            _insert(connection, rows, labels)
            done += len(rows)
            n_labels += len(labels)
            if done - last_print >= 1_000_000 or done == n_rows:
                last_print = done
                elapsed = time.perf_counter() - started
                print(
                    f"    filled {done:,}/{n_rows:,} rows in {elapsed:.0f} s "
                    f"({done / elapsed:,.0f} rows/s)",
                    flush=True,
                )
        connection.execute("PRAGMA journal_mode=WAL")  # as the data dir had it
    finally:
        connection.close()
    seconds = time.perf_counter() - started
    return {"rows": n_rows, "labels": n_labels, "seconds": seconds}


def add_window(db: Path, features: Pools, outputs: Outputs) -> dict[str, Any]:
    """The same window rows (same seed) in either log, ending a few seconds ago."""
    now = time.time()
    start, end = now - WINDOW_SPAN_S[0], now - WINDOW_SPAN_S[1]
    rnd = random.Random(1234)
    rows, labels = _generate(
        rnd, features, outputs, WINDOW_ROWS, start, end, _pick_window, WINDOW_LABEL_SHARE
    )
    connection = sqlite3.connect(db, isolation_level=None, timeout=30)
    try:
        _insert(connection, rows, labels)
    finally:
        connection.close()
    mine = [row for row in rows if row[3] == MODEL]
    return {
        # Since one second before the window: what the queries read is only the window.
        "since": start - 1.0,
        "rows": len(rows),
        "model_rows": len(mine),
        "labels": len(labels),
        "newest_request_id": mine[-1][0],
        "recent_keys": [(row[0], row[1]) for row in mine[-100:]],
    }


def db_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in data_dir.glob("servedeck.db*") if p.is_file())


# ---------------------------------------------------------------------- queries


def _queries(workspace: Workspace, window: dict[str, Any]) -> dict[str, Callable[[], int]]:
    """Each query of reads.py as the backend calls it; each returns how many rows it got."""
    sessions = workspace.sessions
    since = window["since"]

    def by_keys() -> int:
        with sessions() as session:
            return len(models_of(session, window["recent_keys"]))

    return {
        "read_predictions(model, limit=100)": lambda: len(
            read_predictions(sessions, model=MODEL, limit=100)
        ),
        "read_predictions(limit=100)": lambda: len(read_predictions(sessions, limit=100)),
        "read_predictions(request_id)": lambda: len(
            read_predictions(sessions, request_id=window["newest_request_id"])
        ),
        "models_of(100 recent keys)": by_keys,
        f"newest_labelled(window={METRIC_WINDOW})": lambda: len(
            newest_labelled(sessions, MODEL, "1", METRIC_WINDOW)
        ),
        # Fewer labelled answers than the window among the recent labels: it pages back
        # through older labels (at most MAX_LABEL_PAGES), as the live watch does every 10 s.
        SPARSE_QUERY: lambda: len(newest_labelled(sessions, SPARSE_MODEL, "1", METRIC_WINDOW)),
        "window_rows(60 s, with_answers)": lambda: len(
            window_rows(sessions, MODEL, since, with_answers=True, limit=100_000)
        ),
        "window_rows(60 s)": lambda: len(
            window_rows(sessions, MODEL, since, with_answers=False, limit=100_000)
        ),
        "labelled_since(60 s)": lambda: len(
            labelled_since(sessions, MODEL, "1", "active", since, limit=100_000)
        ),
    }


def time_queries(
    workspaces: dict[str, Workspace], windows: dict[str, dict[str, Any]], repeats: int
) -> list[dict[str, Any]]:
    """Median ms of every query on each log; the logs alternate within every repetition."""
    queries = {phase: _queries(workspaces[phase], windows[phase]) for phase in PHASES}
    names = list(queries[PHASES[0]])
    times: dict[tuple[str, str], list[float]] = {(n, p): [] for n in names for p in PHASES}
    counts: dict[tuple[str, str], int] = {}
    spent = dict.fromkeys(names, 0.0)
    for repeat in range(repeats + 1):  # the first round warms connections and caches
        order = PHASES if repeat % 2 == 0 else PHASES[::-1]
        for name in names:
            samples = min(len(times[(name, p)]) for p in PHASES)
            if samples >= MIN_QUERY_REPEATS and spent[name] > QUERY_BUDGET_S:
                continue  # a query that costs seconds: enough samples for a median
            for phase in order:
                # The cycle collector off while timing: a full collection walks this process's
                # whole heap (pandas, sklearn...), and whichever query it lands in doubles.
                gc.collect()
                gc.disable()
                try:
                    started = time.perf_counter()
                    counts[(name, phase)] = queries[phase][name]()
                    elapsed = time.perf_counter() - started
                finally:
                    gc.enable()
                spent[name] += elapsed
                # Warm caches do not matter to a query of seconds: its first run counts.
                if repeat > 0 or elapsed > 1.0:
                    times[(name, phase)].append(elapsed * 1000.0)
    return [
        {
            "query": name,
            **{f"{p}_ms": statistics.median(times[(name, p)]) for p in PHASES},
            **{f"{p}_rows": counts[(name, p)] for p in PHASES},
            "repeats": min(len(times[(name, p)]) for p in PHASES),
            **{f"{p}_ms_all": [round(v, 3) for v in times[(name, p)]] for p in PHASES},
        }
        for name in names
    ]


# ---------------------------------------------------------------------- serving


def _post(url: str, body: bytes, token: str) -> None:
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Bearer {token}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as response:
        response.read()


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds used) of a process, from /proc; None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _server_cpu(data_dir: Path) -> float | None:
    """CPU seconds of the server serving data_dir and its children (the log writer)."""
    if not Path("/proc/self/stat").exists():
        return None
    stats: dict[int, tuple[int, float]] = {}
    roots: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        stat = _proc_stat(pid)
        if stat is None:
            continue
        stats[pid] = stat
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in argv and str(data_dir).encode() in argv:
            roots.append(pid)
    if len(roots) != 1:
        return None
    tree = set(roots)
    grown = True
    while grown:
        children = {pid for pid, (ppid, _) in stats.items() if ppid in tree} - tree
        tree |= children
        grown = bool(children)
    return sum(stats[pid][1] for pid in tree)


def serve_once(
    data_dir: Path, model: BenchModel, token: str, load_dir: Path, label: str, idle_s: float
) -> dict[str, Any]:
    """One server on the data dir: time to ready, then requests/s at 1 connection and the
    server's CPU per answered request (the log writer and background work included), then
    with idle_s > 0 the CPU it uses without requests (its background work alone)."""
    argv = [sys.executable, "-m", "backend.cli", "serve", "--data-dir", str(data_dir)]
    argv += ["--port", "0", "--log-level", "warning"]
    path = f"/v1/models/{model.name}:predict"
    outcome: dict[str, Any] = {"rps": None, "p50_ms": None, "startup_s": None, "error": None}
    outcome["cpu_ms_per_request"] = outcome["idle_cpu_s_per_min"] = None
    started = time.perf_counter()
    proc = None
    try:
        with running_server(label, argv, "SERVEDECK READY") as proc:
            outcome["startup_s"] = time.perf_counter() - started
            assert proc.url is not None
            _post(proc.url + path, model.bodies[0], token)
            target = LoadTarget(load_dir, proc.url, path, {"Authorization": f"Bearer {token}"})
            target.prepare(model.bodies)
            cpu_before = _server_cpu(data_dir)
            result = target.run(1, SERVE_SECONDS, SERVE_WARMUP)
            cpu_after = _server_cpu(data_dir)
            outcome.update(rps=result.rps, p50_ms=result.p50_ms, p99_ms=result.p99_ms)
            if cpu_before is not None and cpu_after is not None and result.ok_total:
                outcome["cpu_ms_per_request"] = (cpu_after - cpu_before) * 1000 / result.ok_total
            if result.errors:
                outcome["error"] = f"{result.errors} errors: {result.error_sample}"
            if idle_s > 0:
                time.sleep(1.0)  # the writer commits the last answers
                cpu_before = _server_cpu(data_dir)
                time.sleep(idle_s)
                cpu_after = _server_cpu(data_dir)
                if cpu_before is not None and cpu_after is not None:
                    outcome["idle_cpu_s_per_min"] = (cpu_after - cpu_before) * 60.0 / idle_s
    except Exception as exc:
        outcome["error"] = f"{type(exc).__name__}: {exc}"
    outcome["problems"] = list(proc.problems) if proc is not None else []
    return outcome


# ---------------------------------------------------------------------- the run


def _open(data_dir: Path) -> Workspace:
    return Workspace.open(Settings.load(data_dir=data_dir, database_url=sqlite_url(data_dir)))


def run_growth_bench(work_dir: Path, rows: int) -> dict[str, Any]:
    base = work_dir / "growth"
    result: dict[str, Any] = {"rows": rows, "errors": [], "problems": []}
    models = build_models(base / "models")
    model = next(m for m in models if m.name == MODEL)
    features, outputs = _pools(models)
    dirs = {phase: base / phase for phase in PHASES}
    tokens = {phase: register_models(dirs[phase], models) for phase in PHASES}
    db = {phase: dirs[phase] / "servedeck.db" for phase in PHASES}

    print(f"  filling the log with {rows:,} rows...", flush=True)
    result["fill"] = fill(db["filled"], rows, features, outputs)
    result["db_bytes"] = {phase: db_bytes(dirs[phase]) for phase in PHASES}

    windows = {phase: add_window(db[phase], features, outputs) for phase in PHASES}
    result["window"] = {
        k: v for k, v in windows["filled"].items() if k in ("rows", "model_rows", "labels")
    }
    print(f"  queries on both logs, {QUERY_REPEATS} rounds...", flush=True)
    workspaces: dict[str, Workspace] = {}
    try:
        for phase in PHASES:
            workspaces[phase] = _open(dirs[phase])
        result["queries"] = time_queries(workspaces, windows, QUERY_REPEATS)
    except Exception:
        result["errors"].append("queries: " + traceback.format_exc(limit=4))
        result["queries"] = []
    finally:
        for workspace in workspaces.values():
            workspace.close()

    serving: dict[str, list[dict[str, Any]]] = {phase: [] for phase in PHASES}
    for run in range(SERVE_RUNS):
        order = PHASES if run % 2 == 0 else PHASES[::-1]
        for phase in order:
            print(f"  serving {run + 1}/{SERVE_RUNS}: {MODEL} on the {phase} log...", flush=True)
            label = f"{phase}/{MODEL}"
            idle_s = IDLE_SECONDS if run == 0 else 0.0
            outcome = serve_once(dirs[phase], model, tokens[phase], base / "load", label, idle_s)
            serving[phase].append(outcome)
            result["problems"].extend(f"[{label} r{run + 1}] {p}" for p in outcome["problems"])
    result["serving"] = serving
    return result


# ---------------------------------------------------------------------- rendering


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _ratio_cells(ratio: float | None, judged: bool = True) -> list[str]:
    if ratio is None:
        return ["-", f">= {TARGET:.1f}x" if judged else "", "n/a"]
    if not judged:
        return [f"{ratio:.2f}x", "", "info"]
    return [f"{ratio:.2f}x", f">= {TARGET:.1f}x", "ok" if ratio >= TARGET else "MISSED"]


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def render(result: dict[str, Any]) -> str:
    rows = result["rows"]
    window = result.get("window", {})
    title = (
        f"Log growth: empty log vs {rows:,} rows; the window is the last 60 s with "
        f"{window.get('model_rows', 0):,} {MODEL} rows ({window.get('rows', 0):,} in all, "
        f"{window.get('labels', 0):,} labelled) in both"
    )
    table: list[list[str]] = []
    for q in result.get("queries", []):
        ratio = q["empty_ms"] / q["filled_ms"] if q["filled_ms"] else None
        table.append(
            [
                q["query"],
                "ms",
                fmt(q["empty_ms"], 2),
                fmt(q["filled_ms"], 2),
                f"{q['empty_rows']}/{q['filled_rows']}",
                str(q["repeats"]),
                *_ratio_cells(ratio, judged=q["query"] != SPARSE_QUERY),
            ]
        )
    serving = result.get("serving", {})
    if serving:
        rps = {p: _median([s["rps"] for s in serving[p]]) for p in PHASES}
        startup = {p: _median([s["startup_s"] for s in serving[p]]) for p in PHASES}
        rps_ratio = rps["filled"] / rps["empty"] if rps["empty"] and rps["filled"] else None
        start_ratio = (
            startup["empty"] / startup["filled"] if startup["empty"] and startup["filled"] else None
        )
        cpu = {p: _median([s.get("cpu_ms_per_request") for s in serving[p]]) for p in PHASES}
        cpu_ratio = cpu["empty"] / cpu["filled"] if cpu["empty"] and cpu["filled"] else None
        sessions = str(min(len(serving[p]) for p in PHASES))
        table.append(
            [f"serving {MODEL}, 1 conn", "req/s", fmt(rps["empty"]), fmt(rps["filled"]), "",
             sessions, *_ratio_cells(rps_ratio)]
        )  # fmt: skip
        table.append(
            ["server CPU per request", "ms", fmt(cpu["empty"], 3), fmt(cpu["filled"], 3), "",
             sessions, *_ratio_cells(cpu_ratio)]
        )  # fmt: skip
        idle = {p: _median([s.get("idle_cpu_s_per_min") for s in serving[p]]) for p in PHASES}
        idle_ratio = idle["empty"] / idle["filled"] if idle["empty"] and idle["filled"] else None
        table.append(
            ["server CPU when idle", "s/min", fmt(idle["empty"], 2), fmt(idle["filled"], 2), "",
             "1", *_ratio_cells(idle_ratio, judged=False)]
        )  # fmt: skip
        table.append(
            ["server start to ready", "s", fmt(startup["empty"], 2), fmt(startup["filled"], 2),
             "", sessions, *_ratio_cells(start_ratio, judged=False)]
        )  # fmt: skip
    headers = ["measure", "unit", "empty", f"{rows:,} rows", "rows got", "n", "ratio", "target"]
    headers.append("met")
    parts = [format_table(title, headers, table)]
    fill_info = result.get("fill")
    if fill_info:
        sizes = result.get("db_bytes", {})
        parts.append(
            f"fill: {fill_info['rows']:,} rows + {fill_info['labels']:,} labels in "
            f"{fill_info['seconds']:.0f} s ({fill_info['rows'] / fill_info['seconds']:,.0f} "
            f"rows/s); database {_mb(sizes.get('filled', 0))} (empty: "
            f"{_mb(sizes.get('empty', 0))})"
        )
    if serving:
        per_run = " / ".join(
            f"{s['rps']:.0f}" if s["rps"] else "-" for p in PHASES for s in serving[p]
        )
        parts.append(
            f"serving: {SERVE_RUNS} alternating sessions per log, {SERVE_SECONDS:g} s after "
            f"{SERVE_WARMUP:g} s warm-up; req/s per run (empty..., filled...): "
            f"{per_run}\nserver CPU per request: CPU time of the server and its log writer "
            "over the load run / requests answered, background work included (the live-metric "
            "watch runs every 10 s); other load on the machine moves it less than req/s.\n"
            f"server CPU when idle: CPU seconds per minute over {IDLE_SECONDS:g} s without "
            "requests after the first session's load, the server's background work alone."
        )
        errors = [f"{p}: {s['error']}" for p in PHASES for s in serving[p] if s["error"]]
        parts.extend(f"serving error: {short_error(e, 200)}" for e in errors[:6])
    parts.append(
        "ratio: empty/filled for times, filled/empty for rates. Times are medians of n runs,"
        f" the logs alternating ({QUERY_REPEATS}, or fewer, at least {MIN_QUERY_REPEATS}, for"
        f" a query past {QUERY_BUDGET_S:g} s in all). rows got: empty/filled.\n"
        f"newest_labelled(sparse): {SPARSE_MODEL} has fewer labelled answers than the window"
        " among the recent labels, so it pages back through older labels (at most"
        " MAX_LABEL_PAGES pages of LABEL_PAGE): only the filled log has them, hence info only."
    )
    parts.extend(f"ERROR {e}" for e in result.get("errors", []))
    if result.get("problems"):
        parts.append(
            "Server log lines worth a look:\n"
            + "\n".join(f"  {p}" for p in result["problems"][:20])
        )
    return "\n".join(parts)
