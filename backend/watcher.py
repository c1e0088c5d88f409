"""The server's watcher process: judges the alert rules on stored counts (drift windows,
feedback loops, user signals; ``monitoring.stored_watches``) off the serving workers, once
per server whatever its number of workers, and hands the drift gauges to the workers through
a file (``monitoring.drift.gauge_file``).

Started by ``backend.server`` with a pipe on its stdin that carries the server's settings as
one line of JSON and nothing more: when the server ends, however it ends, the pipe closes and
this process stops (``ParentWatch``); if this process dies, the server starts another. An
alert is one transaction in the store, so a kill at any moment loses nothing a round had
finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from backend.monitoring.drift.gauge_file import DriftGaugeFile
from backend.monitoring.prometheus import MULTIPROCESS_ENV
from backend.monitoring.stored_watches import ModelsWithActiveVersion, StoredWatches
from backend.parent_watch import ParentWatch
from backend.settings import Settings
from backend.workspace import Workspace

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 10.0
# The watcher's niceness (0 normal, 19 lowest): see KeptWatcher._spawn.
WATCHER_NICENESS = 10
# A watcher that dies soon after its start (its store unreachable, a broken install) is
# restarted at once, then after 2, 4, 8... seconds, at most a minute apart: each start costs ~4 s
# of CPU, so a fixed short delay kept a core busy for as long as the store was down. One that
# lived a minute was working: its death starts the schedule over.
RESTART_DELAY_S = 2.0
RESTART_DELAY_MAX_S = 60.0
HEALTHY_AFTER_S = 60.0


class RestartSchedule:
    """How long to wait before replacing a watcher that has just died."""

    def __init__(self) -> None:
        self.quick_deaths = 0

    def delay_after(self, lived_s: float) -> float:
        if lived_s >= HEALTHY_AFTER_S:
            self.quick_deaths = 0
        self.quick_deaths += 1
        if self.quick_deaths == 1:
            return 0.0
        return min(RESTART_DELAY_S * 2 ** (self.quick_deaths - 2), RESTART_DELAY_MAX_S)


def settings_json(settings: Settings) -> str:
    return json.dumps(
        {
            field.name: str(value) if isinstance(value, Path) else value
            for field in dataclasses.fields(settings)
            for value in [getattr(settings, field.name)]
        }
    )


def settings_from_json(text: str) -> Settings:
    values: dict[str, Any] = json.loads(text)
    values["data_dir"] = Path(values["data_dir"])
    return Settings(**values)


# The directory holding the ``backend`` package, for the watcher's ``python -m``.
_SOURCE_ROOT = str(Path(__file__).resolve().parents[1])


class KeptWatcher:
    """The watcher process of a server, kept running: one that dies (a crash, a kill, the
    out-of-memory killer) is replaced, as the log writer is (``predictions.log``); else the
    alerts on stored counts would stop without a word while the server goes on serving."""

    def __init__(self, settings: Settings, start_after_s: float = 0.0):
        """``start_after_s``: how long after now the first watcher process is started (the
        server waits one round's interval: see ``backend.server._serve_claimed``)."""
        self.settings = settings
        self.restarts = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        if start_after_s <= 0:
            self._start()
        self._follower = threading.Thread(
            target=self._follow, args=(start_after_s,), name="watcher-follow", daemon=True
        )
        self._follower.start()

    @property
    def pid(self) -> int:
        assert self._process is not None, "the watcher process is not started yet"
        return self._process.pid

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            part for part in (_SOURCE_ROOT, env.get("PYTHONPATH")) if part
        )
        # Its counters are none of the workers' (see monitoring.prometheus).
        env.pop(MULTIPROCESS_ENV, None)
        # In its own process group: a Ctrl+C in the terminal reaches it through the server's
        # orderly stop (else it would die first and be replaced while the server stops).
        process = subprocess.Popen(
            [sys.executable, "-m", "backend.watcher"],
            stdin=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        # Background work: its start (~4 s of CPU importing scipy, SQLAlchemy...) and its
        # rounds yield the CPU to the serving workers (at full priority its start fell in the
        # serving bench's first load: 685 ms of CPU beside the server per 1,000 requests).
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, process.pid, WATCHER_NICENESS)
        assert process.stdin is not None
        # The settings go through the pipe: a command line is readable by every user, and the
        # database URL may hold a password. The pipe then stays open until the server ends.
        with contextlib.suppress(OSError):
            process.stdin.write(settings_json(self.settings).encode() + b"\n")
            process.stdin.flush()
        return process

    def _start(self) -> bool:
        """A new watcher process (the dead one's pipe closed); False once stopping."""
        with self._lock:
            if self._stopping.is_set():
                return False
            if self._process is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._process.stdin.close()  # type: ignore[union-attr]
            self._process = self._spawn()
            return True

    def _follow(self, start_after_s: float) -> None:
        if self._process is None and (self._stopping.wait(start_after_s) or not self._start()):
            return
        schedule = RestartSchedule()
        started = time.monotonic()
        while True:
            process = self._process
            assert process is not None  # started above, replaced only by _start
            process.wait()
            if self._stopping.is_set():
                return
            self.restarts += 1
            delay = schedule.delay_after(time.monotonic() - started)
            log.error(
                "the watcher of the rules on stored counts ended (%s); restarting it%s (%d)",
                process.returncode,
                f" in {delay:g} s" if delay else "",
                self.restarts,
            )
            if (delay and self._stopping.wait(delay)) or not self._start():
                return
            started = time.monotonic()

    def stop(self) -> None:
        with self._lock:
            self._stopping.set()
            process = self._process
        if process is not None:  # None: stopped before its start was due
            with contextlib.suppress(OSError, ValueError):
                process.stdin.close()  # type: ignore[union-attr]  # its ParentWatch stops it
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._follower.join(timeout=STOP_TIMEOUT_S)


async def watch(settings: Settings) -> None:
    workspace = Workspace.join(settings)
    try:
        watches = StoredWatches.build(
            workspace.sessions,
            workspace.registry,
            workspace.drift,
            workspace.alerts,
            ModelsWithActiveVersion(workspace.registry),
            settings.stored_rule_interval_s,
        )
        gauges = DriftGaugeFile(settings.drift_gauge_file)
        # Started one interval after its server (KeptWatcher's start_after_s), or restarted
        # after a death: either way a round is due now.
        await watches.run(
            after_drift_round=lambda: gauges.write(watches.drift.latest), first_round_at_once=True
        )
    finally:
        workspace.close()


def _first_line(fd: int) -> str:
    line = bytearray()
    while not line.endswith(b"\n"):
        chunk = os.read(fd, 1)
        if not chunk:
            break
        line += chunk
    return line.decode()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s watcher: %(message)s")
    # The settings line is read from the descriptor, as the parent watch then reads it: never
    # through sys.stdin's buffered reader, whose lock a blocked read holds at exit (see
    # backend.parent_watch).
    try:
        settings = settings_from_json(_first_line(sys.stdin.fileno()))
    except (ValueError, TypeError, KeyError, OSError) as exc:
        log.error("no settings on stdin (%s): the watcher is started by its server", exc)
        sys.exit(2)
    ParentWatch(fd=sys.stdin.fileno()).start()
    asyncio.run(watch(settings))


if __name__ == "__main__":
    main()
