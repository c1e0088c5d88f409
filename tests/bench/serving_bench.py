"""Benchmark 1: ServeDeck's full predict path against a bare FastAPI app, same model, same load.

All servers of a model are started together and kept running; load goes to one at a time (a
2-core machine cannot load two fairly). Each round runs every server back to back at each
concurrency, alternating the direction, so the two sides of an A/B pair are always seconds
apart. Ratios are medians of the per-round ratios: on a shared VM whose speed wanders by tens of
percent within minutes, pairing rounds cancels the wander that medians of separate sessions
keep. With a baseline ref (BENCH_BASELINE), a ServeDeck built from that commit runs beside the
current one in the same rounds, so before/after is measured in one run on the same machine.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
import traceback
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tests.bench import baseline
from tests.bench.baseline import Deck
from tests.bench.loadgen import LoadResult, LoadTarget
from tests.bench.models import BenchModel, build_models, register_models
from tests.bench.servers import ServerProcess, running_server
from tests.helpers import child_pids

# "servedeck-unbatched" is ServeDeck with --max-batch-size 1: what micro-batching itself buys.
# "servedeck-unmonitored" is ServeDeck with SERVEDECK_MONITORING=off (no Prometheus counting,
# no drift windows in the log writer): what monitoring costs serving.
SERVERS = ("bare", "servedeck", "servedeck-unmonitored", "servedeck-unbatched")
# ServeDeck from the BENCH_BASELINE commit; it runs right after "servedeck" (or right before,
# in the reversed turns), so the A/B pair is always adjacent in time.
BASELINE = "servedeck-baseline"
DEFAULT_BASELINE = "b543ac0"  # the last commit before the spooled prediction log


@dataclass
class Config:
    seconds: float
    warmup: float
    repeats: int
    concurrencies: tuple[int, ...] = (1, 16)
    baseline: str | None = None  # a git ref; None runs no baseline
    models: tuple[str, ...] = ()  # names of tests.bench.models' models; empty: all


@dataclass
class Run:
    model: str
    server: str
    concurrency: int
    repeat: int
    result: LoadResult | None = None
    error: str | None = None
    # CPU seconds (user + system) per 1,000 answered requests, warm-up included: the serving
    # process, and its children (the log writer). Steadier than req/s on a shared machine.
    server_cpu_ms_per_1k: float | None = None
    writer_cpu_ms_per_1k: float | None = None


@dataclass
class LogCheck:
    """Predictions ServeDeck answered with 2xx against the rows its log holds afterwards."""

    model: str
    answered: int
    logged: int | None


@dataclass
class Outcome:
    runs: list[Run] = field(default_factory=list)
    log_checks: list[LogCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    tracebacks: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None
    baseline_ref: str | None = None  # as asked for
    baseline_commit: str | None = None  # what it resolved to
    baseline_error: str | None = None  # the baseline could not be set up; the rest ran
    # (model, server) -> the last class probability of the first body: same model, same answer.
    sanity: dict[tuple[str, str], float] = field(default_factory=dict)


def _post(url: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    for name, value in headers.items():
        request.add_header(name, value)
    # No proxies: an exported http_proxy must not route 127.0.0.1 through a proxy.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as response:
        return dict(orjson.loads(response.read()))


def _first_probability(server: str, payload: dict[str, Any]) -> float:
    if server == "bare":
        return float(payload["probabilities"][0][-1])
    return float(list(payload["predictions"][0]["probabilities"].values())[-1])


def _logged_rows(data_dir: Path, model: str) -> int:
    with sqlite3.connect(data_dir / "servedeck.db", timeout=30) as connection:
        row = connection.execute(
            "SELECT count(*) FROM predictions WHERE model = ?", (model,)
        ).fetchone()
    return int(row[0])


def _server_argv(server: str, model: BenchModel, data_dir: Path) -> tuple[list[str], str, str]:
    """argv, ready-line prefix, and predict path for one server."""
    if server == "bare":
        argv = [sys.executable, "-m", "tests.bench.bare_app", "--model", str(model.artifact)]
        argv += ["--features", ",".join(model.feature_names), "--port", "0"]
        return argv, "BARE READY", "/predict"
    argv = [sys.executable, "-m", "backend.cli", "serve", "--data-dir", str(data_dir)]
    argv += ["--port", "0", "--log-level", "warning"]
    if server == "servedeck-unbatched":
        argv += ["--max-batch-size", "1"]
    return argv, "SERVEDECK READY", f"/v1/models/{model.name}:predict"


@dataclass
class _Live:
    """One server kept running for all of a model's rounds."""

    server: str
    label: str
    path: str
    headers: dict[str, str]
    deck: Deck
    proc: ServerProcess | None = None
    target: LoadTarget | None = None
    error: str | None = None
    answered: int = 0
    logged_before: int = 0

    @property
    def is_deck(self) -> bool:
        return self.server.startswith("servedeck")


@contextmanager
def _kept_running(
    server: str, model: BenchModel, deck: Deck, outcome: Outcome, sanity: dict[Any, float]
) -> Iterator[_Live]:
    """Start one server and check one answer; on the way out stop it and count its log."""
    argv, prefix, path = _server_argv(server, model, deck.data_dir)
    live = _Live(server, f"{server}/{model.name}", path, {}, deck)
    if live.is_deck:
        live.headers = {"Authorization": f"Bearer {deck.token}"}
        live.logged_before = _logged_rows(deck.data_dir, model.name)
    extra_env = dict(deck.extra_env)
    if server == "servedeck-unmonitored":
        extra_env["SERVEDECK_MONITORING"] = "off"
    with ExitStack() as stack:
        try:
            live.proc = stack.enter_context(
                running_server(live.label, argv, prefix, cwd=deck.src, extra_env=extra_env)
            )
            assert live.proc.url is not None
            # One request first: a 401/422 here would make every load run pure error counts.
            payload = _post(live.proc.url + path, model.bodies[0], live.headers)
            live.answered += 1
            sanity[(model.name, server)] = _first_probability(server, payload)
            live.target = LoadTarget(
                deck.data_dir.parent / "load", live.proc.url, path, live.headers
            )
            live.target.prepare(model.bodies)
        except Exception as exc:
            live.error = f"{type(exc).__name__}: {exc}"
        try:
            yield live
        finally:
            stack.close()  # stops the server: ServeDeck flushes its log on SIGTERM
            if live.proc is not None:
                outcome.problems.extend(f"[{live.label}] {line}" for line in live.proc.problems)
                for key, lines in live.proc.tracebacks.items():
                    outcome.tracebacks.setdefault(f"{live.label}: {key}", lines)
            if live.is_deck:
                _check_log(live, model, outcome)


def _check_log(live: _Live, model: BenchModel, outcome: Outcome) -> None:
    """After SIGTERM ServeDeck has flushed its log, so every answer should have a row."""
    try:
        logged: int | None = _logged_rows(live.deck.data_dir, model.name) - live.logged_before
    except Exception as exc:
        outcome.problems.append(f"[{live.label}] cannot count logged rows: {exc}")
        logged = None
    outcome.log_checks.append(LogCheck(f"{model.name} ({live.server})", live.answered, logged))


def _measure(live: _Live, run: Run, config: Config) -> None:
    """One load run on a server that is already up."""
    if live.target is None:
        run.error = live.error or "the server did not start"
        return
    try:
        pid = live.proc.pid if live.proc is not None and live.is_deck else None
        before = _cpu_seconds(pid)
        run.result = live.target.run(run.concurrency, config.seconds, config.warmup)
        live.answered += run.result.ok_total
        after = _cpu_seconds(pid)
        if before and after and run.result.ok_total:
            per_1k = 1000.0 / run.result.ok_total
            run.server_cpu_ms_per_1k = (after[0] - before[0]) * 1000 * per_1k
            run.writer_cpu_ms_per_1k = (after[1] - before[1]) * 1000 * per_1k
    except Exception as exc:  # one failed run must not hide the others
        run.error = f"{type(exc).__name__}: {exc}"


def _cpu_seconds(pid: int | None) -> tuple[float, float] | None:
    """(the process's CPU seconds, its children's), user + system, from /proc (Linux only)."""
    if pid is None:
        return None
    tick = os.sysconf("SC_CLK_TCK")

    def of(one: int) -> float:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / tick  # utime, stime

    return of(pid), sum(of(child) for child in child_pids(pid))


def chosen_servers() -> tuple[str, ...]:
    """BENCH_SERVERS (comma-separated) picks some of SERVERS; default all."""
    raw = os.environ.get("BENCH_SERVERS", "").strip()
    if not raw:
        return SERVERS
    wanted = {name.strip() for name in raw.split(",")}
    return tuple(server for server in SERVERS if server in wanted)


def chosen_concurrencies() -> tuple[int, ...]:
    """BENCH_CONCURRENCIES (comma-separated connection counts); default 1 and 16."""
    raw = os.environ.get("BENCH_CONCURRENCIES", "").strip()
    picked = tuple(int(part) for part in raw.split(",") if part.strip().isdigit())
    return tuple(c for c in picked if c > 0) or (1, 16)


def chosen_models() -> tuple[str, ...]:
    """BENCH_SERVING_MODELS (comma-separated names); default every bench model."""
    raw = os.environ.get("BENCH_SERVING_MODELS", "")
    return tuple(name.strip() for name in raw.split(",") if name.strip())


def baseline_ref(raw: str | None) -> str | None:
    """BENCH_BASELINE: unset means the default ref; empty or 'none' turns the baseline off."""
    if raw is None:
        return DEFAULT_BASELINE
    ref = raw.strip()
    return None if ref.lower() in ("", "none") else ref


def _servers(decks: dict[str, Deck]) -> tuple[str, ...]:
    """The running order: the baseline right before ServeDeck and monitoring off right after
    it, so that both A/B pairs run back to back (in either direction)."""
    order: list[str] = []
    for server in chosen_servers():
        if server == "servedeck" and BASELINE in decks:
            order.append(BASELINE)
        order.append(server)
    return tuple(order)


def _set_up_baseline(
    work_dir: Path, config: Config, models: list[BenchModel], outcome: Outcome, stack: ExitStack
) -> Deck | None:
    """The baseline's checkout and data dir; on failure the error is kept and the rest runs."""
    if not config.baseline:
        return None
    outcome.baseline_ref = config.baseline
    try:
        outcome.baseline_commit = baseline.resolve(config.baseline)
        print(f"  baseline: ServeDeck at {outcome.baseline_commit}...", flush=True)
        src = stack.enter_context(
            baseline.worktree(config.baseline, work_dir / "baseline-src", outcome.problems)
        )
        return baseline.register(src, work_dir, models)
    except Exception:
        outcome.baseline_error = traceback.format_exc(limit=3)
        return None


def run_serving_bench(work_dir: Path, config: Config) -> Outcome:
    outcome = Outcome()
    decks: dict[str, Deck] = {}
    try:
        models = [
            model
            for model in build_models(work_dir / "models")
            if not config.models or model.name in config.models
        ]
        data_dir = work_dir / "servedeck"
        current = Deck(data_dir, register_models(data_dir, models))
        for server in chosen_servers():
            decks[server] = current
            if server.startswith("servedeck") and server != "servedeck":
                # Servers stay up side by side, and a data directory serves one process at a
                # time: each variant runs on its own copy of the registered workspace.
                copy = work_dir / server
                shutil.copytree(data_dir, copy)
                decks[server] = Deck(copy, current.token)
    except Exception:
        outcome.error = "setup failed: " + traceback.format_exc(limit=3)
        return outcome
    sanity: dict[tuple[str, str], float] = {}
    with ExitStack() as stack:  # removes the baseline's worktree, also on failure
        old = _set_up_baseline(work_dir, config, models, outcome, stack)
        if old is not None:
            decks[BASELINE] = old
        servers = _servers(decks)
        for index, model in enumerate(models):
            # Every server of the model stays up for all its rounds, and each round runs them
            # back to back: an A/B pair is seconds apart, and its ratio is taken per round.
            with ExitStack() as running:
                live: dict[str, _Live] = {}
                for server in servers:
                    print(f"  starting {server} for {model.name}...", flush=True)
                    live[server] = running.enter_context(
                        _kept_running(server, model, decks[server], outcome, sanity)
                    )
                for repeat in range(config.repeats):
                    for level, concurrency in enumerate(config.concurrencies):
                        # Alternate the direction, so drift (thermal, a noisy neighbour) hits
                        # both sides of every pair alike.
                        turn = index + repeat + level
                        order = servers if turn % 2 == 0 else servers[::-1]
                        for server in order:
                            print(
                                f"  round {repeat + 1}/{config.repeats}: {model.name} on "
                                f"{server}, {concurrency} connection(s)...",
                                flush=True,
                            )
                            run = Run(model.name, server, concurrency, repeat)
                            outcome.runs.append(run)
                            _measure(live[server], run, config)
    outcome.sanity = sanity
    for model in models:
        # Every server must give the same answer to the same body as the bare app.
        bare = sanity.get((model.name, "bare"))
        for server in servers:
            other = sanity.get((model.name, server))
            if bare is not None and other is not None and abs(bare - other) > 1e-9:
                outcome.problems.append(
                    f"{model.name}: {server} disagrees with bare on the same body "
                    f"({other!r} vs {bare!r})"
                )
    return outcome
