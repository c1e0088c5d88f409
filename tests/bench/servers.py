"""Server subprocesses: start, wait for the ready line, keep draining output, always stop."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# Log lines worth showing in the report; everything else is only kept as a short tail.
_PROBLEM_MARKERS = ("ERROR", "CRITICAL", "WARNING", "Exception", "Error:")
# Lines of a traceback that are not indented but do not end it either.
_TRACEBACK_CONTINUATIONS = ("Traceback", "During handling", "The above exception")


def clean_env() -> dict[str, str]:
    # A developer's exported SERVEDECK_* settings (database URL, batch size...) must not leak
    # into the measured server: the bench compares ServeDeck's defaults.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVEDECK_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ServerProcess:
    def __init__(
        self,
        label: str,
        argv: list[str],
        ready_prefix: str,
        *,
        cwd: Path | None = None,
        extra_env: dict[str, str] | None = None,
    ):
        self.label = label
        self.argv = argv
        self.ready_prefix = ready_prefix
        # Another checkout to run from (the serving bench's baseline); the repository otherwise.
        self.cwd = cwd or REPO_ROOT
        self.extra_env = dict(extra_env or {})
        self.url: str | None = None
        self.tail: deque[str] = deque(maxlen=40)
        # Problem summary -> how often; a traceback is summarised by its exception line, so
        # a thousand identical errors are one entry, not a thousand lines.
        self.problem_counts: dict[str, int] = {}
        self.tracebacks: dict[str, list[str]] = {}
        self._traceback: list[str] | None = None
        self._pending_marker: str | None = None
        self._marker_before_traceback: str | None = None
        self._ready = threading.Event()
        self._proc: subprocess.Popen[str] | None = None
        self._drain: threading.Thread | None = None

    def start(self, timeout_s: float = 120.0) -> str:
        self._proc = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env={**clean_env(), **self.extra_env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            # Own session: a Ctrl-C in the terminal reaches only the bench, whose finally
            # blocks then stop the server in order instead of racing it.
            start_new_session=True,
        )
        self._drain = threading.Thread(target=self._read, name=f"drain-{self.label}", daemon=True)
        self._drain.start()
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(0.1):
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"{self.label} exited with code {self._proc.returncode} before it was "
                    f"ready: {' | '.join(list(self.tail)[-5:])}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.label} not ready after {timeout_s:.0f}s")
        assert self.url is not None
        return self.url

    def _read(self) -> None:
        # Drained for the server's whole life: a full pipe would block its logging and stall
        # the very requests being measured.
        assert self._proc is not None and self._proc.stdout is not None
        for raw in self._proc.stdout:
            line = raw.rstrip("\n")
            self.tail.append(line)
            if self.url is None and line.startswith(self.ready_prefix):
                self.url = line[len(self.ready_prefix) :].strip()
                self._ready.set()
            else:
                self._classify(line)
        self._flush_marker()

    def _classify(self, line: str) -> None:
        if self._traceback is not None:
            self._traceback.append(line)
            if line and not line[0].isspace() and not line.startswith(_TRACEBACK_CONTINUATIONS):
                header = self._marker_before_traceback
                key = f"{header.strip()} -> {line.strip()}" if header else line.strip()
                self._count(key, self._traceback)
                self._traceback = None
                self._marker_before_traceback = None
            return
        if line.startswith("Traceback"):
            # uvicorn logs "ERROR: Exception in ASGI application" just before the traceback.
            self._traceback = [line]
            self._marker_before_traceback = self._pending_marker
            self._pending_marker = None
            return
        self._flush_marker()
        if any(marker in line for marker in _PROBLEM_MARKERS):
            self._pending_marker = line

    def _flush_marker(self) -> None:
        if self._pending_marker is not None:
            self._count(self._pending_marker.strip(), None)
            self._pending_marker = None

    def _count(self, key: str, traceback: list[str] | None) -> None:
        self.problem_counts[key] = self.problem_counts.get(key, 0) + 1
        if traceback is not None and key not in self.tracebacks and len(self.tracebacks) < 5:
            self.tracebacks[key] = traceback[-40:]

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def problems(self) -> list[str]:
        return [f"{count}x {key}" for key, count in self.problem_counts.items()]

    def stop(self, grace_s: float = 30.0) -> int | None:
        """SIGTERM (ServeDeck drains its prediction log on it), then SIGKILL after grace_s."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self._count(f"ignored SIGTERM for {grace_s:.0f}s; killed", None)
                proc.kill()
                proc.wait(10)
        if self._drain is not None:
            self._drain.join(5)
        return proc.returncode


@contextmanager
def running_server(
    label: str,
    argv: list[str],
    ready_prefix: str,
    *,
    cwd: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[ServerProcess]:
    server = ServerProcess(label, argv, ready_prefix, cwd=cwd, extra_env=extra_env)
    try:
        server.start()
        yield server
    finally:
        server.stop()
