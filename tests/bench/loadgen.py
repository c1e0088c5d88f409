"""Driving a server from another process: wrk when installed, else tests.bench.aio_loadgen.

wrk is preferred because its C event loop needs far less CPU per request than any Python
client, and on a 2-core machine the client's CPU is taken from the server being measured.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tests.bench.latency import wrk_corrected
from tests.bench.servers import REPO_ROOT


@dataclass
class LoadResult:
    requests: int  # completed in the measured window
    seconds: float
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    errors: int
    ok_total: int  # 2xx including the warm-up: what the prediction log should hold
    error_sample: str = ""
    # Each request's own time (ms) as the client saw it, without wrk's correction (see
    # tests.bench.latency); recorded at one connection only, where a response pairs with the
    # request before it. Kept out of the JSON: tens of thousands of numbers per round.
    latencies_ms: list[float] | None = field(default=None, repr=False, compare=False)
    # From those times: their p99 as they are, and corrected as wrk corrects (a check that the
    # script's times agree with wrk's own p99).
    raw_p99_ms: float | None = None
    recomputed_p99_ms: float | None = None

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data.pop("latencies_ms")
        return data


def generator_name() -> str:
    forced = os.environ.get("BENCH_LOADGEN", "").strip().lower()
    if forced in ("aiohttp", "python"):
        return "aiohttp"
    return "wrk" if shutil.which("wrk") else "aiohttp"


class LoadTarget:
    """One endpoint, its headers and its body pool, written once to files both tools read."""

    def __init__(self, work_dir: Path, base_url: str, path: str, headers: dict[str, str]):
        self.base_url = base_url
        self.path = path
        self.headers = headers
        self.work_dir = work_dir
        self._bodies_file: Path | None = None
        self._lua_file: Path | None = None

    def prepare(self, bodies: list[bytes]) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=self.work_dir, suffix=".jsonl")
        with os.fdopen(handle, "wb") as out:
            out.write(b"\n".join(bodies) + b"\n")
        self._bodies_file = Path(name)
        handle, name = tempfile.mkstemp(dir=self.work_dir, suffix=".lua")
        with os.fdopen(handle, "w") as out:
            out.write(_lua_script(self.path, self.headers, bodies))
        self._lua_file = Path(name)

    def run(self, concurrency: int, seconds: float, warmup: float) -> LoadResult:
        if generator_name() == "wrk":
            return self._run_wrk(concurrency, seconds, warmup)
        return self._run_aiohttp(concurrency, seconds, warmup)

    # ------------------------------------------------------------------ wrk

    def _wrk(self, concurrency: int, seconds: int, *, record: bool = False) -> LoadResult:
        assert self._lua_file is not None
        # One thread drives 16 connections easily at these rates; a second would only take
        # a core away from the server.
        argv = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
        argv += ["-s", str(self._lua_file), self.base_url]
        env = dict(os.environ)
        times_file = None
        if record and concurrency == 1:
            handle, name = tempfile.mkstemp(dir=self.work_dir, suffix=".times")
            os.close(handle)
            times_file = Path(name)
            env[LATENCY_FILE_ENV] = name
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=seconds + 60, env=env
            )
            # wrk runs plain GETs when the script does not load, so insist on the script's mark.
            if done.returncode != 0 or "BENCH SCRIPT OK" not in done.stdout:
                raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()[:300]}")
            result = parse_wrk(done.stdout)
            if times_file is not None:
                times = [float(line) / 1000.0 for line in times_file.read_text().split()]
                if times and result.rps > 0:
                    result.latencies_ms = times
                    result.raw_p99_ms = float(np.percentile(times, 99))
                    corrected = wrk_corrected(times, 1000.0 / result.rps)
                    result.recomputed_p99_ms = float(np.percentile(corrected, 99))
            return result
        finally:
            if times_file is not None:
                times_file.unlink(missing_ok=True)

    def _run_wrk(self, concurrency: int, seconds: float, warmup: float) -> LoadResult:
        # wrk takes whole seconds only.
        warm_ok = 0
        if warmup > 0:
            warm = self._wrk(concurrency, max(1, round(warmup)))
            warm_ok = warm.ok_total
        result = self._wrk(concurrency, max(1, round(seconds)), record=True)
        result.ok_total += warm_ok
        return result

    # ------------------------------------------------------------------ aiohttp

    def _run_aiohttp(self, concurrency: int, seconds: float, warmup: float) -> LoadResult:
        assert self._bodies_file is not None
        argv = [sys.executable, "-m", "tests.bench.aio_loadgen", "--url"]
        argv += [self.base_url + self.path, "--bodies", str(self._bodies_file)]
        argv += ["--concurrency", str(concurrency), "--seconds", str(seconds)]
        argv += ["--warmup", str(warmup)]
        for name, value in self.headers.items():
            argv += ["--header", f"{name}: {value}"]
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            timeout=seconds + warmup + 120,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"aio_loadgen failed ({done.returncode}): {done.stderr.strip()[-300:]}"
            )
        data = json.loads(done.stdout.strip().splitlines()[-1])
        return LoadResult(**data)


# Where the script writes each request's time (µs, one per line) when this is set.
LATENCY_FILE_ENV = "BENCH_LATENCY_FILE"


def _lua_string(text: str) -> str:
    # Long brackets need no escaping; pick a level the text does not contain.
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


def _lua_script(path: str, headers: dict[str, str], bodies: list[bytes]) -> str:
    header_items = {"Content-Type": "application/json", **headers}
    header_lua = ", ".join(
        f"[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in header_items.items()
    )
    body_lua = ",\n".join(_lua_string(b.decode()) for b in bodies)
    return f"""-- generated by tests/bench/loadgen.py: POST a pool of bodies round-robin
local path = {_lua_string(path)}
local headers = {{{header_lua}}}
local bodies = {{
{body_lua}
}}
local n = #bodies
local i = 0
local threads = {{}}
err_sample = ""

-- Each request's own time, when asked for (one connection: a response answers the request
-- sent just before it). wrk's LuaJIT reads the monotonic clock through its FFI.
local times_file = os.getenv("{LATENCY_FILE_ENV}")
local ffi = require("ffi")
ffi.cdef[[
typedef struct {{ long tv_sec; long tv_nsec; }} bench_timespec;
int clock_gettime(int clock, bench_timespec *now);
]]
local clock = ffi.new("bench_timespec")
local function now_us()
  ffi.C.clock_gettime(1, clock)  -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) * 1000000 + tonumber(clock.tv_nsec) / 1000
end
local sent_at = nil
times = {{}}
local timed = 0

function setup(thread)
  table.insert(threads, thread)
end

function request()
  i = i % n + 1
  if times_file then sent_at = now_us() end
  return wrk.format("POST", path, headers, bodies[i])
end

function response(status, hdrs, body)
  if sent_at then
    timed = timed + 1
    times[timed] = now_us() - sent_at
    sent_at = nil
  end
  if status >= 300 and err_sample == "" then
    err_sample = status .. " " .. string.gsub(string.sub(body or "", 1, 200), "%s+", " ")
  end
end

function done(summary, latency, requests)
  io.write("BENCH SCRIPT OK\\n")
  if times_file then
    local out = assert(io.open(times_file, "w"))
    for _, thread in ipairs(threads) do
      for _, micros in ipairs(thread:get("times")) do
        out:write(string.format("%.1f\\n", micros))
      end
    end
    out:close()
  end
  for _, thread in ipairs(threads) do
    local sample = thread:get("err_sample")
    if sample ~= nil and sample ~= "" then
      io.write("ERROR SAMPLE: " .. sample .. "\\n")
      break
    end
  end
end
"""


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_UNITS_S = {"us": 1e-6, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_wrk(output: str) -> LoadResult:
    """Read wrk's text report: totals, the --latency percentiles, and every error count."""
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)", output)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if total is None or rate is None:
        raise RuntimeError(f"unexpected wrk output: {output.strip()[:300]}")
    percentiles: dict[str, float] = {}
    for pct, value, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.M):
        percentiles[pct] = float(value) * _UNITS_MS[unit]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    errors = int(non_2xx.group(1)) if non_2xx else 0
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    sample = re.search(r"^ERROR SAMPLE: (.*)$", output, re.M)
    requests = int(total.group(1))
    return LoadResult(
        requests=requests,
        seconds=float(total.group(2)) * _UNITS_S[total.group(3)],
        rps=float(rate.group(1)),
        p50_ms=percentiles.get("50"),
        p99_ms=percentiles.get("99"),
        errors=errors,
        ok_total=requests - (int(non_2xx.group(1)) if non_2xx else 0),
        error_sample=sample.group(1) if sample else "",
    )
