"""Instructions per request, now against a baseline commit: an A/B that machine noise cannot move.

On a shared 2-core machine a 5% difference in requests/s at one connection is inside the noise
of wall-clock runs (seen here: the same bare app at 1,182 and 514 req/s in one bench run).
valgrind's callgrind counts the instructions a process executes in user space, the same count
for the same code and inputs whatever else the machine does. Each server runs under callgrind
with counting off; after a warm-up, counting is switched on for the serving process and its
log writer (``callgrind_control -i on``), a fixed number of sequential keep-alive requests is
sent, and counting is switched off and dumped.

Not counted: the kernel's share (system calls, the network stack, page cache), and waiting.
This complements the wall-clock serving bench; it does not replace it.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.bench import baseline
from tests.bench.baseline import Deck
from tests.bench.models import BenchModel, build_models, register_models
from tests.bench.servers import running_server
from tests.bench.tables import format_table, short_error
from tests.helpers import child_pids, command_line

WARMUP_REQUESTS = 200
# The longest the background of the serving process is counted for (see _count_one).
MAX_IDLE_S = 300.0
_TOTALS = re.compile(r"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


@dataclass
class Count:
    model: str
    server: str
    requests: int
    serving_ir: int | None = None  # the requests' own: the background's share taken out
    background_ir_per_s: float | None = None  # with no request, per second under callgrind
    writer_ir: int | None = None
    error: str | None = None


@dataclass
class Measured:
    baseline_commit: str | None = None
    counts: list[Count] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    error: str | None = None


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=120)


def _total(out_file: Path) -> int | None:
    """The instruction total of a process's dumps (the dump file and its numbered parts)."""
    found = 0
    seen = False
    for part in sorted(out_file.parent.glob(out_file.name + "*")):
        for match in _TOTALS.finditer(part.read_text(errors="replace")):
            found += int(match.group(1))
            seen = True
    return found if seen else None


def _count_one(model: BenchModel, server: str, deck: Deck, work_dir: Path, requests: int) -> Count:
    count = Count(model.name, server, requests)
    out_dir = work_dir / f"callgrind-{server}-{model.name}"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--trace-children=yes"]
    argv += [f"--callgrind-out-file={out_dir}/cg.%p", sys.executable, "-m", "backend.cli"]
    argv += ["serve", "--data-dir", str(deck.data_dir), "--port", "0", "--log-level", "warning"]
    # pymalloc's arenas make counts depend on what was allocated before; plain malloc does not.
    env = {**deck.extra_env, "PYTHONMALLOC": "malloc"}
    label = f"callgrind {server}/{model.name}"
    with running_server(label, argv, "SERVEDECK READY", cwd=deck.src, extra_env=env) as proc:
        assert proc.url is not None and proc.pid is not None
        parts = urlsplit(proc.url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
        headers = {"Authorization": f"Bearer {deck.token}", "Content-Type": "application/json"}
        path = f"/v1/models/{model.name}:predict"

        def send(times: int) -> None:
            for i in range(times):
                connection.request("POST", path, model.bodies[i % len(model.bodies)], headers)
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    raise RuntimeError(f"{path} answered {response.status}")

        send(WARMUP_REQUESTS)
        serving = proc.pid
        # The log writer, of this code or the baseline's; not the watcher, which judges stored
        # rules every 30 s off the request path (nor the baseline's model probe, never started).
        writers = [
            pid for pid in child_pids(serving) if "-m backend.watcher" not in command_line(pid)
        ]
        for pid in (serving, *writers):
            _control("-i", "on", str(pid))
        started = time.monotonic()
        send(requests)
        took = time.monotonic() - started
        for pid in (serving, *writers):
            _control("-i", "off", str(pid))
            _control("-d", str(pid))
        # Timers (state polls, rule rounds) run by the clock, and under callgrind a request
        # takes ~50x longer: their share of the run above is ~50x what it is at full speed.
        # The serving process is counted again, as long, with no request: its background.
        idle_s = min(took, MAX_IDLE_S)
        _control("-i", "on", str(serving))
        time.sleep(idle_s)
        _control("-i", "off", str(serving))
        _control("-d", str(serving))
        connection.close()
    keep = os.environ.get("BENCH_KEEP_CALLGRIND", "").strip()
    if keep:  # for callgrind_annotate: where the instructions went, function by function
        shutil.copytree(out_dir, Path(keep) / out_dir.name, dirs_exist_ok=True)
    with_background = _total(out_dir / f"cg.{serving}.1")
    background = _total(out_dir / f"cg.{serving}.2")
    if with_background is not None and background is not None and idle_s > 0:
        count.background_ir_per_s = background / idle_s
        count.serving_ir = max(0, round(with_background - count.background_ir_per_s * took))
    totals = [_total(out_dir / f"cg.{pid}") for pid in writers]
    count.writer_ir = sum(t for t in totals if t is not None) if totals else None
    return count


def run_instructions_bench(work_dir: Path, ref: str | None, requests: int) -> Measured:
    measured = Measured()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        measured.error = "valgrind is not installed (Debian package valgrind)"
        return measured
    models = build_models(work_dir / "models")
    data_dir = work_dir / "servedeck"
    token = register_models(data_dir, models)
    decks = {
        "servedeck": Deck(data_dir, token),
        # The same data directory served with monitoring off: what monitoring costs a request.
        "servedeck-unmonitored": Deck(
            data_dir, token, settings_env=(("SERVEDECK_MONITORING", "off"),)
        ),
    }
    with ExitStack() as stack:
        if ref:
            try:
                measured.baseline_commit = baseline.resolve(ref)
                src = stack.enter_context(
                    baseline.worktree(ref, work_dir / "baseline-src", measured.problems)
                )
                decks["baseline"] = baseline.register(src, work_dir, models)
            except Exception as exc:
                measured.problems.append(f"baseline {ref} not set up: {exc}")
        wanted = {m for m in os.environ.get("BENCH_INSTRUCTION_MODELS", "").split(",") if m}
        for model in models:
            if wanted and model.name not in wanted:
                continue
            for server, deck in decks.items():
                print(f"  {model.name} on {server} under callgrind...", flush=True)
                try:
                    measured.counts.append(_count_one(model, server, deck, work_dir, requests))
                except Exception as exc:
                    failed = Count(model.name, server, requests, error=f"{exc}")
                    measured.counts.append(failed)
    return measured


def _per_request(value: int | None, requests: int) -> str:
    return "-" if value is None else f"{value / requests / 1000:,.0f}k"


def render(measured: Measured) -> str:
    if measured.error:
        return f"Instructions per request: not run: {measured.error}"
    rows: list[list[Any]] = []
    by_key = {(c.model, c.server): c for c in measured.counts}
    for count in measured.counts:
        if count.error:
            rows.append(
                [count.model, count.server, "-", "-", "-", "-", "-", short_error(count.error)]
            )
            continue
        ratio = monitoring = "-"
        base = by_key.get((count.model, "baseline"))
        if count.server == "servedeck" and base and base.serving_ir and count.serving_ir:
            ratio = f"{count.serving_ir / base.serving_ir:.3f}x"
        off = by_key.get((count.model, "servedeck-unmonitored"))
        if count.server == "servedeck" and off and off.serving_ir and count.serving_ir:
            on_total = count.serving_ir + (count.writer_ir or 0)
            off_total = off.serving_ir + (off.writer_ir or 0)
            monitoring = f"{on_total / off_total:.3f}x"
        per = count.requests
        rows.append(
            [
                count.model,
                count.server,
                _per_request(count.serving_ir, per),
                _per_request(count.writer_ir, per),
                "-"
                if count.background_ir_per_s is None
                else f"{count.background_ir_per_s / 1e6:,.1f}M",
                ratio,
                monitoring,
                "",
            ]
        )
    title = "Instructions per request (callgrind, user space, sequential keep-alive requests)"
    if measured.baseline_commit:
        title += f"; baseline = {measured.baseline_commit}"
    headers = [
        "model",
        "server",
        "serving process",
        "log writer",
        "background/s",
        "now/base",
        "on/off (both)",
        "note",
    ]
    lines = [
        format_table(title, headers, rows),
        "The serving column is the request path's CPU work: the serving process's count with",
        "no request, as long (background/s: timers, polls, rule rounds, per second under",
        "callgrind, ~50x their share at full speed), taken out. The writer's work is batched,",
        "so it depends on how many requests arrived per round. Kernel work is not counted.",
        "on/off: serving process and writer together, monitoring on vs SERVEDECK_MONITORING=off.",
    ]
    lines += [f"  problem: {p}" for p in measured.problems]
    return "\n".join(lines)
