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
import statistics
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
from tests.bench.loadgen import LoadResult, LoadTarget, generator_name
from tests.bench.models import BenchModel, build_models, register_models
from tests.bench.servers import ServerProcess, running_server
from tests.bench.tables import fmt, format_table, short_error
from tests.helpers import child_pids

# "servedeck-unbatched" is ServeDeck with --max-batch-size 1: what micro-batching itself buys.
# "servedeck-unmonitored" is ServeDeck with SERVEDECK_MONITORING=off (no Prometheus counting,
# no drift windows in the log writer): what monitoring costs serving.
SERVERS = ("bare", "servedeck", "servedeck-unmonitored", "servedeck-unbatched")
MONITORING_TARGET = 0.95  # req/s with monitoring on at least this fraction of off
THROUGHPUT_TARGET = 0.8  # servedeck req/s at least this fraction of bare
P99_TARGET = 2.0  # servedeck p99 at most this multiple of bare
# ServeDeck from the BENCH_BASELINE commit; it runs right after "servedeck" (or right before,
# in the reversed turns), so the A/B pair is always adjacent in time.
BASELINE = "servedeck-baseline"
DEFAULT_BASELINE = "b543ac0"  # the last commit before the spooled prediction log
BASELINE_RPS_TARGET = 0.95  # current req/s at least this fraction of the baseline's
BASELINE_P99_TARGET = 1 / 0.95  # current p99 at most this multiple of the baseline's
_BASELINE_TARGETS = (BASELINE_RPS_TARGET, BASELINE_P99_TARGET)
ROUNDS_NOTE = (
    "\nratio: median of the per-round ratios; rounds: their quartiles (the middle half of"
    "\nrounds), how far one round's ratio strays on this machine. More rounds"
    "\n(BENCH_REPEATS) narrow the median's uncertainty, not that spread."
)


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


# ---------------------------------------------------------------------- summarising


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarise(outcome: Outcome) -> list[dict[str, Any]]:
    """One entry per (model, server, concurrency), medians over repeats."""
    keys = sorted({(r.model, r.server, r.concurrency) for r in outcome.runs})
    summary = []
    for model, server, concurrency in keys:
        runs = [
            r
            for r in outcome.runs
            if (r.model, r.server, r.concurrency) == (model, server, concurrency)
        ]
        results = [r.result for r in runs if r.result is not None]
        errors = [r.error for r in runs if r.error]
        samples = [res.error_sample for res in results if res.error_sample]
        summary.append(
            {
                "model": model,
                "server": server,
                "concurrency": concurrency,
                "runs_ok": len(results),
                "runs": len(runs),
                "rps": _median([res.rps for res in results]),
                "rps_all": [round(res.rps, 1) for res in results],
                # Per round, for the paired ratios.
                "rps_by_round": {r.repeat: r.result.rps for r in runs if r.result},
                "p99_by_round": {r.repeat: r.result.p99_ms for r in runs if r.result},
                "p50_ms": _median([res.p50_ms for res in results]),
                "p99_ms": _median([res.p99_ms for res in results]),
                "errors": sum(res.errors for res in results),
                "server_cpu_ms_per_1k": _median([r.server_cpu_ms_per_1k for r in runs]),
                "writer_cpu_ms_per_1k": _median([r.writer_cpu_ms_per_1k for r in runs]),
                "error": errors[0] if errors else (samples[0] if samples else None),
            }
        )
    return summary


def ratios(
    summary: list[dict[str, Any]],
    reference: str = "bare",
    measured: str = "servedeck",
    rps_target: float = THROUGHPUT_TARGET,
    p99_target: float = P99_TARGET,
) -> list[dict[str, Any]]:
    """``measured`` over ``reference`` per model and concurrency, checked against targets: the
    median of the ratios of the rounds where both ran (see the module docstring)."""
    index = {(s["model"], s["server"], s["concurrency"]): s for s in summary}
    out = []
    for model, concurrency in sorted({(s["model"], s["concurrency"]) for s in summary}):
        bare = index.get((model, reference, concurrency), {})
        deck = index.get((model, measured, concurrency), {})
        rps_ratio = _paired_ratio(bare.get("rps_by_round"), deck.get("rps_by_round"))
        p99_ratio = _paired_ratio(bare.get("p99_by_round"), deck.get("p99_by_round"))
        rps_spread = _middle_half(bare.get("rps_by_round"), deck.get("rps_by_round"))
        p99_spread = _middle_half(bare.get("p99_by_round"), deck.get("p99_by_round"))
        out.append(
            {
                "model": model,
                "concurrency": concurrency,
                "throughput_ratio": rps_ratio,
                "throughput_ok": None if rps_ratio is None else rps_ratio >= rps_target,
                "throughput_middle_half": rps_spread,
                "p99_middle_half": p99_spread,
                "p99_ratio": p99_ratio,
                "p99_ok": None if p99_ratio is None else p99_ratio <= p99_target,
                "reference_rps": bare.get("rps"),
                "measured_rps": deck.get("rps"),
                "reference_p99_ms": bare.get("p99_ms"),
                "measured_p99_ms": deck.get("p99_ms"),
            }
        )
    return out


def _per_round_ratios(
    reference: dict[int, float | None] | None, measured: dict[int, float | None] | None
) -> list[float]:
    """measured / reference of each round where both have a value."""
    reference, measured = reference or {}, measured or {}
    pairs = []
    for round_, ref in reference.items():
        value = measured.get(round_)
        if ref and value is not None:
            pairs.append(value / ref)
    return pairs


def _paired_ratio(
    reference: dict[int, float | None] | None, measured: dict[int, float | None] | None
) -> float | None:
    """Median over rounds of measured / reference, from the rounds where both have a value."""
    pairs = _per_round_ratios(reference, measured)
    return statistics.median(pairs) if pairs else None


def _middle_half(
    reference: dict[int, float | None] | None, measured: dict[int, float | None] | None
) -> str:
    """The per-round ratios' quartiles: how far one round's ratio strays on this machine."""
    pairs = _per_round_ratios(reference, measured)
    if len(pairs) < 4:
        return "-"
    low, _, high = statistics.quantiles(pairs, n=4)
    return f"{low:.2f}-{high:.2f}"


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("ok" if ok else "MISSED")


def render(outcome: Outcome, config: Config) -> str:
    if outcome.error:
        return format_table("Serving overhead", ["error"], [[short_error(outcome.error, 200)]])
    summary = summarise(outcome)
    title = (
        f"Serving overhead: medians of {config.repeats} round(s), {config.seconds:g} s each "
        f"after {config.warmup:g} s warm-up, one row per request"
    )
    rows = [
        [
            s["model"],
            s["server"],
            s["concurrency"],
            fmt(s["rps"]),
            " / ".join(f"{v:.0f}" for v in s["rps_all"]) or "-",
            fmt(s["p50_ms"], 2),
            fmt(s["p99_ms"], 2),
            s["errors"],
            short_error(s["error"]) if s["error"] else "",
        ]
        for s in summary
    ]
    headers = ["model", "server", "conc", "req/s", "req/s per round", "p50 ms", "p99 ms"]
    table = format_table(title, [*headers, "errors", "note"], rows)
    if generator_name() == "wrk":
        # Without this note the wrk and aiohttp percentiles look like the same statistic.
        table += (
            "\nwrk corrects latencies for coordinated omission: a server stall of T ms adds"
            "\nsamples as if requests had kept arriving at the measured rate, so a few long"
            "\npauses (e.g. a full GC) dominate p99 even at 1 connection."
        )
    table += (
        "\nRatios below are medians of per-round ratios (both sides seconds apart), so they"
        "\nneed not equal the ratio of the medians above."
    )
    parts = [table]
    ratio_rows = [
        [
            r["model"],
            r["concurrency"],
            fmt(r["throughput_ratio"], 2) + "x" if r["throughput_ratio"] else "-",
            f">= {THROUGHPUT_TARGET:.1f}x",
            _verdict(r["throughput_ok"]),
            fmt(r["p99_ratio"], 2) + "x" if r["p99_ratio"] else "-",
            f"<= {P99_TARGET:.1f}x",
            _verdict(r["p99_ok"]),
        ]
        for r in ratios(summary)
    ]
    ratio_headers = ["model", "conc", "req/s ratio", "target", "met", "p99 ratio", "target", "met"]
    parts.append(format_table("ServeDeck / bare", ratio_headers, ratio_rows))
    if outcome.baseline_ref:
        parts.append(_baseline_table(outcome, summary))
    parts.append(_batching_table(summary))
    parts.append(_monitoring_table(summary))
    log_rows = [
        [
            c.model,
            c.answered,
            "-" if c.logged is None else c.logged,
            "-" if c.logged is None else c.logged - c.answered,
        ]
        for c in outcome.log_checks
    ]
    parts.append(
        format_table(
            "ServeDeck prediction log after graceful stop (2xx answers vs rows written)",
            ["model", "answered", "logged", "difference"],
            log_rows,
        )
        # The load generator does not count requests still in flight when it stops, but the
        # server may answer and log them: a small positive difference is expected.
        + "\nlogged may exceed answered by the requests in flight when each load run ends."
    )
    return "\n\n".join(parts)


def _baseline_table(outcome: Outcome, summary: list[dict[str, Any]]) -> str:
    """The current ServeDeck against the one built from the baseline commit, same run."""
    ref, commit = outcome.baseline_ref or "", outcome.baseline_commit
    title = f"ServeDeck now vs baseline {ref}"
    if commit and commit != ref:
        title += f" ({commit})"
    if outcome.baseline_error:
        # The exception line says what went wrong; the whole traceback is in the JSON.
        last = outcome.baseline_error.strip().splitlines()[-1]
        return format_table(title, ["baseline not run"], [[short_error(last, 200)]])
    rows = []
    for r in ratios(summary, BASELINE, "servedeck", *_BASELINE_TARGETS):
        old = outcome.sanity.get((r["model"], BASELINE))
        now = outcome.sanity.get((r["model"], "servedeck"))
        same = "-" if old is None or now is None else ("yes" if abs(old - now) <= 1e-9 else "NO")
        rows.append(
            [
                r["model"],
                r["concurrency"],
                fmt(r["reference_rps"]),
                fmt(r["measured_rps"]),
                fmt(r["throughput_ratio"], 2) + "x" if r["throughput_ratio"] else "-",
                r["throughput_middle_half"],
                _verdict(r["throughput_ok"]),
                fmt(r["reference_p99_ms"], 2),
                fmt(r["measured_p99_ms"], 2),
                fmt(r["p99_ratio"], 2) + "x" if r["p99_ratio"] else "-",
                r["p99_middle_half"],
                _verdict(r["p99_ok"]),
                same,
            ]
        )
    headers = ["model", "conc", "req/s base", "req/s now", "ratio", "rounds", "met"]
    headers += ["p99 ms base", "p99 ms now", "ratio", "rounds", "met", "same answer"]
    return (
        format_table(title, headers, rows)
        + f"\ntargets: req/s ratio >= {BASELINE_RPS_TARGET:.2f}x, "
        + f"p99 ratio <= {BASELINE_P99_TARGET:.3f}x (1/{BASELINE_RPS_TARGET:.2f})."
        + ROUNDS_NOTE
    )


def _monitoring_table(summary: list[dict[str, Any]]) -> str:
    """Monitoring on (default) against off, in the same run."""
    rows = []
    for r in ratios(
        summary,
        reference="servedeck-unmonitored",
        measured="servedeck",
        rps_target=MONITORING_TARGET,
        p99_target=1 / MONITORING_TARGET,
    ):
        rows.append(
            [
                r["model"],
                r["concurrency"],
                fmt(r["reference_rps"]),
                fmt(r["measured_rps"]),
                fmt(r["throughput_ratio"], 2) + "x" if r["throughput_ratio"] else "-",
                r["throughput_middle_half"],
                _verdict(r["throughput_ok"]),
                fmt(r["reference_p99_ms"], 2),
                fmt(r["measured_p99_ms"], 2),
                fmt(r["p99_ratio"], 2) + "x" if r["p99_ratio"] else "-",
                r["p99_middle_half"],
                _verdict(r["p99_ok"]),
            ]
        )
    headers = ["model", "conc", "req/s off", "req/s on", "ratio", "rounds", "met"]
    headers += ["p99 ms off", "p99 ms on", "ratio", "rounds", "met"]
    cpu_rows = []
    by_key = {(r["model"], r["server"], r["concurrency"]): r for r in summary}
    for (model, server, concurrency), on in sorted(by_key.items()):
        off = by_key.get((model, "servedeck-unmonitored", concurrency))
        if server != "servedeck" or off is None:
            continue
        row: list[Any] = [model, concurrency]
        for part in ("server_cpu_ms_per_1k", "writer_cpu_ms_per_1k"):
            row += [fmt(off[part], 0), fmt(on[part], 0)]
        totals = [
            (r["server_cpu_ms_per_1k"] or 0) + (r["writer_cpu_ms_per_1k"] or 0) for r in (off, on)
        ]
        row.append(f"{totals[1] / totals[0]:.3f}x" if totals[0] else "-")
        cpu_rows.append(row)
    cpu_headers = ["model", "conc", "server off", "server on", "writer off", "writer on"]
    cpu_headers.append("on/off (both)")
    return (
        format_table(
            "Monitoring: ServeDeck with monitoring off / on (Prometheus, drift windows)",
            headers,
            rows,
        )
        + f"\ntarget: monitoring on >= {MONITORING_TARGET:.2f}x of off (req/s), p99 within 1/0.95."
        + ROUNDS_NOTE
        + "\n"
        + format_table(
            "Monitoring's CPU: ms of CPU per 1,000 answered requests (median over rounds)",
            cpu_headers,
            cpu_rows,
        )
    )


def _batching_table(summary: list[dict[str, Any]]) -> str:
    """Micro-batching on (default) against off, both the full ServeDeck path."""
    index = {(s["model"], s["server"], s["concurrency"]): s for s in summary}
    rows = []
    for model, concurrency in sorted({(s["model"], s["concurrency"]) for s in summary}):
        on = index.get((model, "servedeck", concurrency), {})
        off = index.get((model, "servedeck-unbatched", concurrency), {})
        gain = on["rps"] / off["rps"] if on.get("rps") and off.get("rps") else None
        rows.append(
            [
                model,
                concurrency,
                fmt(off.get("rps")),
                fmt(on.get("rps")),
                fmt(gain, 2) + "x" if gain else "-",
                fmt(off.get("p99_ms"), 2),
                fmt(on.get("p99_ms"), 2),
            ]
        )
    headers = ["model", "conc", "req/s off", "req/s on", "gain", "p99 ms off", "p99 ms on"]
    return format_table("Micro-batching: ServeDeck with batching off / on", headers, rows)


def to_json(outcome: Outcome) -> dict[str, Any]:
    return {
        "error": outcome.error,
        "runs": [
            {
                "model": r.model,
                "server": r.server,
                "concurrency": r.concurrency,
                "repeat": r.repeat,
                "result": r.result.as_dict() if r.result else None,
                "error": r.error,
            }
            for r in outcome.runs
        ],
        "summary": summarise(outcome) if not outcome.error else [],
        "ratios": ratios(summarise(outcome)) if not outcome.error else [],
        "baseline": {
            "ref": outcome.baseline_ref,
            "commit": outcome.baseline_commit,
            "error": outcome.baseline_error,
            "ratios": (
                ratios(summarise(outcome), BASELINE, "servedeck", *_BASELINE_TARGETS)
                if outcome.baseline_ref and not outcome.error
                else []
            ),
        },
        "sanity": {f"{m} on {s}": v for (m, s), v in outcome.sanity.items()},
        "log_checks": [c.__dict__ for c in outcome.log_checks],
        "server_log_problems": outcome.problems,
        "server_tracebacks": outcome.tracebacks,
    }
