"""Running the backend under uvicorn, with a ready handshake for whoever started it.

A data directory is served by one process at a time (``backend.claim``). When the app is
ready to serve, ``server.json`` (url, pid) is written to the data directory and one line
``SERVEDECK READY <url>`` goes to stdout: the console waits for it. When the directory is
already served, one line ``SERVEDECK BUSY <url or ->`` says where, and the command fails.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from backend.api.app import create_app
from backend.claim import DataDirClaim
from backend.errors import ServeDeckError
from backend.monitoring.drift.gauge_file import DriftGaugeFile
from backend.monitoring.prometheus import prepare_multiprocess_dir
from backend.registry.sandbox import shared_probe
from backend.settings import Settings
from backend.watcher import KeptWatcher
from backend.workspace import Workspace

READY_LINE = "SERVEDECK READY"


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def write_server_info(path: Path, url: str) -> None:
    temp = path.with_suffix(".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps({"url": url, "pid": os.getpid()}))
    os.replace(temp, path)


def app_from_environment() -> FastAPI:
    """Factory for multi-worker uvicorn: each worker opens the workspace from the environment."""
    # The server's watcher process judges the rules on stored counts (see _serve_claimed), and
    # the server prepared the workspace before starting its workers: they only join it.
    return create_app(
        workspace=Workspace.join(Settings.load()),
        on_stop=shared_probe.close,
        judge_stored_rules=False,
    )


def _announce_when_healthy(url: str, announce: Callable[[], None], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as response:
                if response.status == 200:
                    announce()
                    return
        except OSError:
            pass
        time.sleep(0.1)


def serve(
    settings: Settings,
    host: str,
    port: int,
    workers: int = 1,
    log_level: str = "info",
    claim: DataDirClaim | None = None,
) -> None:
    """Serve until stopped; takes the data directory's claim unless the caller holds it."""
    claim = claim or DataDirClaim.take(settings)
    try:
        _serve_claimed(settings, host, port, workers, log_level)
    finally:
        claim.release()


def _serve_claimed(settings: Settings, host: str, port: int, workers: int, log_level: str) -> None:
    workspace = Workspace.open(settings)
    try:
        sock = bind_socket(host, port)
    except OSError as exc:
        workspace.close()
        raise ServeDeckError(
            f"cannot listen on {host}:{port} ({exc.strerror}); pass --port 0 for a free port",
            "port",
        ) from None
    # One watcher per server, whatever its number of workers: the rules on stored counts are
    # judged there, off the workers' request path (see backend.watcher). Started once the
    # store is upgraded (above), so that the two never migrate a new store at once.
    # The drift gauges a previous run left are not this run's (nor, monitoring off, anyone's):
    # the workers show none until this run's watcher has judged a round.
    DriftGaugeFile(settings.drift_gauge_file).clear()
    # Its process is started one round's interval late: its first round would come no sooner
    # anyway (it judges at once when started), and a server that lives less than an interval
    # (a console opened for a glance, most of the test suite's servers) never pays its
    # start, ~4 s of CPU importing scipy, SQLAlchemy... beside the starting server.
    watcher = (
        KeptWatcher(settings, start_after_s=settings.stored_rule_interval_s)
        if settings.monitoring_on
        else None
    )
    try:
        _serve_listening(settings, workspace, sock, host, workers, log_level)
    finally:
        if watcher is not None:
            watcher.stop()


def _serve_listening(
    settings: Settings,
    workspace: Workspace,
    sock: socket.socket,
    host: str,
    workers: int,
    log_level: str,
) -> None:
    actual_port = sock.getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{actual_port}"

    def announce() -> None:
        write_server_info(settings.server_info_file, url)
        print(f"{READY_LINE} {url}", flush=True)

    common: dict[str, Any] = {
        "log_level": log_level,
        "access_log": False,
        "timeout_graceful_shutdown": 10,
    }
    if workers > 1:
        os.environ["SERVEDECK_DATA_DIR"] = str(settings.data_dir)
        os.environ["SERVEDECK_DATABASE_URL"] = settings.database_url
        os.environ["SERVEDECK_MAX_BATCH_SIZE"] = str(settings.max_batch_size)
        # A scrape reaches one worker at random: the workers' Prometheus counters are kept in
        # shared files and summed by whichever answers (see backend.monitoring.prometheus).
        prepare_multiprocess_dir(settings.data_dir)
        workspace.close()
        config = uvicorn.Config(
            "backend.server:app_from_environment", factory=True, workers=workers, **common
        )
        # Workers each open the workspace; the parent announces once one of them answers.
        threading.Thread(target=_announce_when_healthy, args=(url, announce), daemon=True).start()
        Multiprocess(config, sockets=[sock]).run()
        return

    def retire() -> None:
        # In the lifespan, not after run(): uvicorn re-raises the stop signal once it is done.
        settings.server_info_file.unlink(missing_ok=True)
        # The model probe would otherwise outlive the server while it finishes a file.
        shared_probe.close()

    app = create_app(workspace=workspace, on_stop=retire, judge_stored_rules=False)
    _StreamClosingServer(uvicorn.Config(app, **common), app, on_listening=announce).run(
        sockets=[sock]
    )


class _StreamClosingServer(uvicorn.Server):
    """Announces readiness once it accepts connections; ends open event streams on stop.

    The app's lifespan startup runs before uvicorn listens: a ready line printed there let a
    fast client connect in between and be refused. uvicorn waits for open responses before
    it shuts down; an event stream never ends by itself, so without closing them every stop
    with a console attached would wait for the timeout.
    """

    def __init__(self, config: uvicorn.Config, app: FastAPI, on_listening: Callable[[], None]):
        super().__init__(config)
        self._app = app
        self._on_listening = on_listening

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._on_listening()

    def handle_exit(self, sig: int, frame: Any) -> None:
        self._app.state.feed.close()
        super().handle_exit(sig, frame)
