"""The embedded backend: a ``servedeck-server`` subprocess on 127.0.0.1 and a free port.

It is the same installation run as a child process, so a crash in serving never takes the
console down and closing the console stops it cleanly (SIGTERM: uvicorn's graceful stop
flushes the prediction log). Readiness is the server's own handshake line on stdout.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path

from PySide6.QtCore import QObject, Signal

log = logging.getLogger(__name__)

READY_PREFIX = "SERVEDECK READY "
STOP_TIMEOUT_S = 20.0


class LocalBackend(QObject):
    ready = Signal(str)  # the server's URL
    failed = Signal(str)  # why it did not start, with its last output lines
    exited = Signal(int)  # it ended after having been ready

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
        args += ["--data-dir", str(self.data_dir)]
        return [sys.executable, "-m", "backend.cli", *args]

    def start(self) -> None:
        """Start the server; ``ready`` or ``failed`` follows (never blocks the UI thread)."""
        env = dict(os.environ)
        env.pop("QT_QPA_PLATFORM", None)
        env["PYTHONUNBUFFERED"] = "1"
        try:
            self._process = subprocess.Popen(
                self.command(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                env=env,
            )
        except OSError as exc:
            self.failed.emit(f"cannot start the local backend: {exc}")
            return
        threading.Thread(target=self._watch, name="local-backend", daemon=True).start()

    def admin_token(self) -> str:
        """The admin token the server wrote into its data directory on first start."""
        return (self.data_dir / "admin.token").read_text(encoding="utf-8").strip()

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
        for line in process.stdout:
            line = line.rstrip("\n")
            self._output.append(line)
            log.info("backend: %s", line)
            if self.url is None and line.startswith(READY_PREFIX):
                self.url = line.removeprefix(READY_PREFIX).strip()
                self._emit(self.ready, self.url)
        code = process.wait()
        if self.url is None:
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
