"""The embedded backend: a ``servedeck-server`` subprocess on 127.0.0.1 and a free port.

It is the same installation run as a child process, so a crash in serving never takes the
console down and closing the console stops it cleanly (SIGTERM: uvicorn's graceful stop
flushes the prediction log). Readiness is the server's own handshake line on stdout.

It lives and dies with the console however the console ends: the server reads a pipe from
the console (``--exit-with-parent``) and stops the orderly way when the pipe closes, which
the kernel does even after a kill -9 of the console. A data directory already served by
another backend is reported with that backend's URL (``busy``) instead of a second server.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path

from PySide6.QtCore import QObject, Signal

log = logging.getLogger(__name__)

READY_PREFIX = "SERVEDECK READY "
BUSY_PREFIX = "SERVEDECK BUSY "
STOP_TIMEOUT_S = 20.0
# A secret never reaches the console's log, whatever a server version prints.
TOKEN_PATTERN = re.compile(r"sdk_[A-Za-z0-9_\-]+")


def redact_tokens(line: str) -> str:
    return TOKEN_PATTERN.sub("sdk_…(hidden)", line)


class LocalBackend(QObject):
    ready = Signal(str)  # the server's URL
    failed = Signal(str)  # why it did not start, with its last output lines
    exited = Signal(int)  # it ended after having been ready
    busy = Signal(str)  # another backend serves the data directory: its URL, or "" if unknown

    def __init__(self, data_dir: Path, demo: bool = False, rate: float = 20.0):
        super().__init__()
        self.data_dir = data_dir
        self.demo = demo
        self.rate = rate
        self.url: str | None = None
        self._process: subprocess.Popen[str] | None = None
        self._output: deque[str] = deque(maxlen=40)
        self._stopping = False

    def command(self) -> list[str]:
        if self.demo:
            args = ["demo", "--serve", "--rate", f"{self.rate:g}", "--port", "0"]
        else:
            args = ["serve", "--port", "0", "--log-level", "warning"]
        args += ["--data-dir", str(self.data_dir), "--exit-with-parent"]
        return [sys.executable, "-m", "backend.cli", *args]

    def start(self) -> None:
        """Start the server; ``ready``, ``busy`` or ``failed`` follows (never blocks the UI).

        Also restarts a server that stopped: a new port, the same data directory."""
        if self.is_running():
            return
        env = dict(os.environ)
        env.pop("QT_QPA_PLATFORM", None)
        env["PYTHONUNBUFFERED"] = "1"
        self.url = None
        self._stopping = False
        self._output.clear()
        try:
            # stdin is the lifeline: nothing is written to it; its end closing stops the server.
            # close_fds (the default) keeps other children from holding it open.
            self._process = subprocess.Popen(
                self.command(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.PIPE,
                text=True,
                env=env,
            )
        except OSError as exc:
            self.failed.emit(f"cannot start the local backend: {exc}")
            return
        threading.Thread(target=self._watch, name="local-backend", daemon=True).start()

    def admin_token(self) -> str:
        """The admin token the server wrote (0600) into its data directory on first start.

        Read from the file, never from the server's output: it is not printed anywhere."""
        return (self.data_dir / "admin.token").read_text(encoding="utf-8").strip()

    def last_output_line(self) -> str:
        """The server's last words (tokens hidden), to say why it ended."""
        return next((line for line in reversed(self._output) if line.strip()), "")

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> int | None:
        """Stop gracefully (the server flushes its prediction log); returns its exit code."""
        process = self._process
        if process is None:
            return None
        self._stopping = True
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.error("the local backend did not stop in %.0f s; killing it", STOP_TIMEOUT_S)
                process.kill()
                process.wait()
        return process.returncode

    def _watch(self) -> None:
        process = self._process
        assert process is not None and process.stdout is not None
        busy_url: str | None = None
        for raw in process.stdout:
            line = redact_tokens(raw.rstrip("\n"))
            self._output.append(line)
            log.info("backend: %s", line)
            if self.url is None and line.startswith(READY_PREFIX):
                self.url = line.removeprefix(READY_PREFIX).strip()
                self._emit(self.ready, self.url)
            elif self.url is None and line.startswith(BUSY_PREFIX):
                busy_url = line.removeprefix(BUSY_PREFIX).strip()
        code = process.wait()
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        if busy_url is not None and self.url is None:
            self._emit(self.busy, "" if busy_url == "-" else busy_url)
        elif self.url is None:
            self._emit(
                self.failed,
                f"the local backend exited with code {code} before it was ready:\n"
                + "\n".join(self._output),
            )
        elif not self._stopping:
            self._emit(self.exited, code)

    def _emit(self, signal: Signal, value: object) -> None:
        with contextlib.suppress(RuntimeError):  # the console is gone
            signal.emit(value)  # type: ignore[attr-defined]


def default_data_dir() -> Path:
    """Where the embedded backend keeps its data: as ``servedeck-server`` chooses it."""
    from platformdirs import user_data_dir

    configured = os.environ.get("SERVEDECK_DATA_DIR")
    return Path(configured) if configured else Path(user_data_dir("ServeDeck", appauthor=False))
