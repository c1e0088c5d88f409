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
import json
import sys
import time
from dataclasses import dataclass, field

import orjson

from tests.bench.aio_loadgen import closed_loop, event_loop_runner, open_session, read_request_args

READY_LINE = "VERSION LOAD READY"

# One answer: completion time (epoch seconds), HTTP status (0: no response), model version.
Answer = tuple[float, int, str | None]


@dataclass
class Recorder:
    answers: list[Answer] = field(default_factory=list)
    error_sample: str = ""
    announced: bool = False

    def record(self, status: int, payload: bytes, _seconds: float) -> None:
        """An outcome as ``aio_loadgen.post`` reports it (status 0: no answer, error text)."""
        ok = 200 <= status < 300
        self.add(status, _version_of(payload) if ok else None)
        if status == 0:
            self.error_sample = self.error_sample or payload.decode()
        elif not ok:
            self.error_sample = self.error_sample or f"HTTP {status}: {payload[:200]!r}"

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


async def run(
    url: str, bodies: list[bytes], headers: dict[str, str], concurrency: int, seconds: float
) -> tuple[Recorder, float]:
    recorder = Recorder()
    async with open_session(concurrency, headers) as session:
        elapsed = await closed_loop(session, url, bodies, concurrency, seconds, recorder.record)
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
