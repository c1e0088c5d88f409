"""Closed-loop HTTP load that records which model version answered each request, and when.

wrk cannot read response bodies, and the switch benchmark needs the ``model_version`` of
every answer: N workers share one keep-alive connector; each sends a request, waits for the
full response, notes ``[time.time(), status, version]`` and sends the next. The wall clock
(not perf_counter) is used so the parent process can line the answers up with the moments
it sent its deploy and rollback calls.

Prints ``VERSION LOAD READY`` once the first answer arrived, writes one JSON line per answer
to ``--out`` when the run ends (kept in memory until then: file writes mid-run would take
CPU from the server), and prints a one-line JSON summary. A failed connection is recorded as
status 0 with no version.

    python -m tests.bench.version_load --url URL --bodies FILE --header "Authorization: Bearer T"
        --concurrency 16 --seconds 20 --out answers.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field

import aiohttp
import orjson

from tests.bench.aio_loadgen import event_loop_runner, open_session, read_request_args

READY_LINE = "VERSION LOAD READY"

# One answer: completion time (epoch seconds), HTTP status (0: no response), model version.
Answer = tuple[float, int, str | None]


@dataclass
class Recorder:
    answers: list[Answer] = field(default_factory=list)
    error_sample: str = ""
    announced: bool = False

    def add(self, status: int, version: str | None) -> None:
        self.answers.append((time.time(), status, version))
        if not self.announced and status:
            # The parent starts its clock only once load really flows, not at process start.
            self.announced = True
            print(READY_LINE, flush=True)


def _version_of(payload: bytes) -> str | None:
    try:
        version = orjson.loads(payload).get("model_version")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return None if version is None else str(version)


async def _send(session: aiohttp.ClientSession, url: str, body: bytes, recorder: Recorder) -> bool:
    try:
        async with session.post(url, data=body) as response:
            payload = await response.read()
            status = response.status
    except Exception as exc:  # recorded, never raised: the load goes on
        recorder.add(0, None)
        recorder.error_sample = recorder.error_sample or f"{type(exc).__name__}: {exc}"
        return False
    ok = 200 <= status < 300
    recorder.add(status, _version_of(payload) if ok else None)
    if not ok:
        recorder.error_sample = recorder.error_sample or f"HTTP {status}: {payload[:200]!r}"
    return True


async def _worker(
    session: aiohttp.ClientSession,
    url: str,
    bodies: list[bytes],
    offset: int,
    deadline: float,
    recorder: Recorder,
) -> None:
    index = offset
    while time.monotonic() < deadline:
        answered = await _send(session, url, bodies[index % len(bodies)], recorder)
        index += 1
        if not answered:
            await asyncio.sleep(0.01)  # a dead server must not turn this into a busy loop


async def run(
    url: str, bodies: list[bytes], headers: dict[str, str], concurrency: int, seconds: float
) -> tuple[Recorder, float]:
    recorder = Recorder()
    async with open_session(concurrency, headers) as session:
        started = time.monotonic()
        deadline = started + seconds
        stride = max(1, len(bodies) // concurrency)
        await asyncio.gather(
            *(
                _worker(session, url, bodies, i * stride, deadline, recorder)
                for i in range(concurrency)
            )
        )
        elapsed = time.monotonic() - started
    return recorder, elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--bodies", required=True, help="one JSON body per line")
    parser.add_argument("--header", action="append", default=[], help="'Name: value'")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", required=True, help="JSON lines [t, status, version]")
    args = parser.parse_args(argv)
    bodies, headers = read_request_args(args)
    recorder, elapsed = event_loop_runner()(
        run(args.url, bodies, headers, args.concurrency, args.seconds)
    )
    with open(args.out, "wb") as out:
        for answer in recorder.answers:
            out.write(orjson.dumps(answer) + b"\n")
    failed = sum(1 for _, status, _ in recorder.answers if not 200 <= status < 300)
    summary = {
        "answers": len(recorder.answers),
        "failed": failed,
        "seconds": elapsed,
        "error_sample": recorder.error_sample,
    }
    json.dump(summary, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
