"""HTTP load in its own process: closed-loop for machines without wrk, or open-loop at a rate.

Closed loop (default): N workers share one keep-alive connector; each sends a request, waits
for the full response, records the latency with perf_counter, and sends the next.

Open loop (``--rate R``): requests start on a fixed schedule, R per second, whatever the
server's pace, with at most ``--concurrency`` in flight; a request that cannot start because
all are busy is counted as ``behind``. This is what a busy service sees from its callers.
Bodies may be prefixed by their path and a tab, to mix endpoints. Prints one JSON object.

    python -m tests.bench.aio_loadgen --url URL --bodies FILE --concurrency 16 --seconds 10
    python -m tests.bench.aio_loadgen --url URL --bodies FILE --rate 500 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np


@dataclass
class Phase:
    latencies: list[float] = field(default_factory=list)
    ok: int = 0
    errors: int = 0
    error_sample: str = ""
    elapsed: float = 0.0


# What one request came to: (HTTP status, response body, seconds); status 0 and the error's
# text when no answer came.
Record = Callable[[int, bytes, float], None]


def _record_into(phase: Phase) -> Record:
    def record(status: int, payload: bytes, seconds: float) -> None:
        if status == 0:
            phase.errors += 1
            phase.error_sample = phase.error_sample or payload.decode()
            return
        phase.latencies.append(seconds)
        if 200 <= status < 300:
            phase.ok += 1
        else:
            phase.errors += 1
            phase.error_sample = phase.error_sample or f"HTTP {status}: {payload[:200]!r}"

    return record


async def post(session: aiohttp.ClientSession, url: str, body: bytes, record: Record) -> bool:
    """Send one request and record its outcome; False when no answer came."""
    started = time.perf_counter()
    try:
        async with session.post(url, data=body) as response:
            payload = await response.read()
            status = response.status
    except Exception as exc:  # recorded, never raised: the load goes on
        record(0, f"{type(exc).__name__}: {exc}".encode(), time.perf_counter() - started)
        return False
    record(status, payload, time.perf_counter() - started)
    return True


async def closed_loop(
    session: aiohttp.ClientSession,
    url: str,
    bodies: list[bytes],
    concurrency: int,
    seconds: float,
    record: Record,
) -> float:
    """``concurrency`` workers each send a body, wait for the answer and send the next, until
    ``seconds`` have passed; returns the time it took. Workers start at spread-out bodies."""
    started = time.perf_counter()
    deadline = started + seconds
    count = len(bodies)
    stride = max(1, count // concurrency)

    async def worker(index: int) -> None:
        while time.perf_counter() < deadline:
            if not await post(session, url, bodies[index % count], record):
                await asyncio.sleep(0.01)  # a dead server must not turn this into a busy loop
            index += 1

    await asyncio.gather(*(worker(i * stride) for i in range(concurrency)))
    return time.perf_counter() - started


async def _phase(
    session: aiohttp.ClientSession, url: str, bodies: list[bytes], concurrency: int, seconds: float
) -> Phase:
    phase = Phase()
    phase.elapsed = await closed_loop(
        session, url, bodies, concurrency, seconds, _record_into(phase)
    )
    return phase


def open_session(max_in_flight: int, headers: dict[str, str]) -> aiohttp.ClientSession:
    """One keep-alive connector for every request of a run, JSON bodies, the given headers."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max_in_flight, keepalive_timeout=60),
        headers={"Content-Type": "application/json", **headers},
        timeout=aiohttp.ClientTimeout(total=30),
    )


def event_loop_runner() -> Any:
    """uvloop's runner where installed: it roughly halves the client's own CPU cost, which
    matters on a small machine where client and server share the cores."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


def read_request_args(args: argparse.Namespace) -> tuple[list[bytes], dict[str, str]]:
    """The body lines (``--bodies``) and headers (``--header 'Name: value'``) of a run."""
    bodies = [line for line in Path(args.bodies).read_bytes().splitlines() if line]
    return bodies, dict(h.split(": ", 1) for h in args.header)


def _summary(measured: Phase, ok_total: int, error_sample: str) -> dict[str, Any]:
    completed = len(measured.latencies)
    millis = np.asarray(measured.latencies) * 1000.0
    return {
        "requests": completed,
        "seconds": measured.elapsed,
        "rps": completed / measured.elapsed if measured.elapsed > 0 else 0.0,
        "p50_ms": float(np.percentile(millis, 50)) if completed else None,
        "p99_ms": float(np.percentile(millis, 99)) if completed else None,
        "errors": measured.errors,
        "ok_total": ok_total,
        "error_sample": error_sample,
    }


def split_path(line: bytes, default_url: str) -> tuple[str, bytes]:
    """A body line is either JSON, or 'path<TAB>JSON' to send it to another path."""
    path, tab, body = line.partition(b"\t")
    if not tab:
        return default_url, line
    base = default_url.split("/", 3)
    return "/".join(base[:3]) + path.decode(), body


async def run_open_loop(
    url: str,
    lines: list[bytes],
    headers: dict[str, str],
    rate: float,
    max_in_flight: int,
    seconds: float,
) -> dict[str, Any]:
    requests = [split_path(line, url) for line in lines]
    phase = Phase()
    record = _record_into(phase)
    behind = 0
    in_flight: set[asyncio.Task[bool]] = set()
    async with open_session(max_in_flight, headers) as session:
        started = time.perf_counter()
        sent = 0
        while True:
            now = time.perf_counter()
            if now - started >= seconds:
                break
            due = int((now - started) * rate) + 1
            while sent < due:
                if len(in_flight) >= max_in_flight:
                    behind += due - sent  # skipped, not queued: a backlog would burst later
                    sent = due
                    break
                target, body = requests[sent % len(requests)]
                task = asyncio.create_task(post(session, target, body, record))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                sent += 1
            await asyncio.sleep(max(0.0, started + sent / rate - time.perf_counter()))
        if in_flight:
            await asyncio.wait(in_flight, timeout=30)
        phase.elapsed = time.perf_counter() - started
    return {**_summary(phase, phase.ok, phase.error_sample), "behind": behind}


async def run(
    url: str,
    bodies: list[bytes],
    headers: dict[str, str],
    concurrency: int,
    seconds: float,
    warmup: float,
) -> dict[str, Any]:
    async with open_session(concurrency, headers) as session:
        warm = await _phase(session, url, bodies, concurrency, warmup) if warmup > 0 else Phase()
        measured = await _phase(session, url, bodies, concurrency, seconds)
    return _summary(measured, warm.ok + measured.ok, measured.error_sample or warm.error_sample)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--bodies", required=True, help="one JSON body per line")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--header", action="append", default=[], help="'Name: value'")
    parser.add_argument("--rate", type=float, help="open loop: start this many requests/s")
    args = parser.parse_args(argv)
    bodies, headers = read_request_args(args)
    if args.rate:
        work = run_open_loop(args.url, bodies, headers, args.rate, args.concurrency, args.seconds)
    else:
        work = run(args.url, bodies, headers, args.concurrency, args.seconds, args.warmup)
    result = event_loop_runner()(work)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
