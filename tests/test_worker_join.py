"""A worker of a multi-worker server joins the workspace its server prepared: one that
uvicorn starts again after it died writes nothing there, not even a first-start admin token
its owner deleted on purpose (the watcher's case: tests/test_watcher_life.py)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import requests

from tests.helpers import ToyDataDir, child_pids, command_line, start_server
from tests.test_watcher import _wait_for


def _workers(server_pid: int) -> list[int]:
    return [p for p in child_pids(server_pid) if "multiprocessing.spawn" in command_line(p)]


def _ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/v2/health/ready", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def test_a_worker_started_again_writes_no_admin_token(
    toy_data_dir: ToyDataDir, tmp_path: Path
) -> None:
    toy_data_dir(tmp_path)
    server = start_server(tmp_path, "--workers", "2")
    try:

        def both_started() -> list[int]:
            found = _workers(server.process.pid)
            return found if len(found) == 2 else []

        first: list[int] = _wait_for(both_started, 30, "no two workers")  # type: ignore[assignment]
        # Its owner deleted the admin token file on purpose while the server runs.
        (tmp_path / "admin.token").unlink()
        # Both killed: an answer then comes from a worker started again, past its create_app.
        for worker in first:
            os.kill(worker, signal.SIGKILL)

        def replaced() -> bool:
            now = _workers(server.process.pid)
            return len(now) == 2 and not set(now) & set(first)

        _wait_for(replaced, 60, "uvicorn started no new workers")
        _wait_for(lambda: _ready(server.url), 60, "no new worker answered")
        assert not (tmp_path / "admin.token").exists()
    finally:
        server.stop()
