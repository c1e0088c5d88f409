"""The server's side of the model probe (probe.py): one probe process per server process,
started on the first registration and reused, restarted if it ever stops answering."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from backend.errors import InputError, ServeDeckError

# A model file gets this long to load and predict on its example, and this much memory.
PROBE_TIMEOUT_S = 60.0
PROBE_MEMORY_BYTES = 4 * 2**30
# Starting the probe imports scikit-learn and pandas: allow for a slow, busy machine.
START_TIMEOUT_S = 120.0


class ModelProbe:
    def __init__(self, timeout_s: float = PROBE_TIMEOUT_S, memory_bytes: int = PROBE_MEMORY_BYTES):
        self.timeout_s = timeout_s
        self.memory_bytes = memory_bytes
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None

    def inspect(self, path: Path, fmt: str, trusted_types: list[str], **facts: Any) -> Any:
        """What registration needs to know of the model in ``path`` (see inspection.py), or
        an InputError naming why it cannot be registered: it crashed its loader, took too
        long, is not a model, or does not predict on its example."""
        request = {
            "path": str(path),
            "format": fmt,
            "trusted_types": trusted_types,
            "timeout_s": self.timeout_s,
            "memory_bytes": self.memory_bytes,
            **facts,
        }
        with self._lock:
            answer = self._ask(request)
        outcome = answer.get("outcome")
        if outcome == "done":
            return answer["result"]
        if outcome == "error":
            raise InputError(str(answer.get("error")), answer.get("field") or "artifact")
        if outcome == "timeout":
            raise InputError(
                f"loading the model file and predicting on its example took longer than "
                f"{self.timeout_s:g} s; it was stopped",
                "artifact",
            )
        raise InputError(
            f"loading the model file crashed the loader ({answer.get('how', 'no answer')}); "
            "the server was not affected, but the file cannot be served",
            "artifact",
        )

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        process = self._running()
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(json.dumps(request).encode() + b"\n")
            process.stdin.flush()
            line = self._read_line(process, self.timeout_s + 30)
        except (OSError, TimeoutError) as exc:
            self._stop()
            raise ServeDeckError(
                f"the model probe stopped answering ({exc}); try again", "artifact", status=503
            ) from None
        answer: dict[str, Any] = json.loads(line)
        return answer

    def _running(self) -> subprocess.Popen[bytes]:
        if self._process is not None and self._process.poll() is None:
            return self._process
        self._stop()
        environment = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        process = subprocess.Popen(
            [sys.executable, "-m", "backend.registry.probe"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=environment,
            cwd=Path(__file__).resolve().parents[2],
        )
        self._process = process
        try:
            ready = self._read_line(process, START_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            self._stop()
            raise ServeDeckError(
                f"the model probe did not start ({exc})", "artifact", status=503
            ) from None
        if ready.strip() != b"ready":
            self._stop()
            raise ServeDeckError("the model probe did not start", "artifact", status=503)
        return process

    @staticmethod
    def _read_line(process: subprocess.Popen[bytes], timeout_s: float) -> bytes:
        assert process.stdout is not None
        deadline = time.monotonic() + timeout_s
        fd = process.stdout.fileno()
        line = bytearray()
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError(f"no answer within {timeout_s:g} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise OSError(f"the probe ended (exit code {process.poll()})")
            line += chunk
        return bytes(line)

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


# Shared by every registry of the process: one probe to start, not one per workspace.
shared_probe = ModelProbe()
