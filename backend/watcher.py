"""The server's watcher process: judges the alert rules on stored counts (drift windows,
feedback loops, user signals; ``monitoring.stored_watches``) off the serving workers, once
per server whatever its number of workers, and hands the drift gauges to the workers through
a file (``monitoring.drift.gauge_file``).

Started by ``backend.server`` with the server's settings as JSON in its argument and a pipe
on its stdin that is never written: when the server ends, however it ends, the pipe closes
and this process stops (``ParentWatch``). An alert is one transaction in the store, so a
kill at any moment loses nothing a round had finished.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

from backend.monitoring.drift.gauge_file import DriftGaugeFile
from backend.monitoring.stored_watches import (
    ModelsWithActiveVersion,
    StoredWatches,
    publish_drift_gauges,
)
from backend.parent_watch import ParentWatch
from backend.settings import Settings
from backend.workspace import Workspace

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 10.0


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


def start_watcher(settings: Settings) -> subprocess.Popen[bytes]:
    """The watcher process of a server with these settings (stop it with ``stop_watcher``)."""
    return subprocess.Popen(
        [sys.executable, "-m", "backend.watcher", settings_json(settings)],
        stdin=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[1],
    )


def stop_watcher(process: subprocess.Popen[bytes]) -> None:
    if process.stdin is not None:
        process.stdin.close()  # the watcher's ParentWatch stops it
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def watch(settings: Settings) -> None:
    workspace = Workspace.open(settings)
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
        await watches.run(after_drift_round=publish_drift_gauges(watches.drift, gauges))
    finally:
        workspace.close()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s watcher: %(message)s")
    settings = settings_from_json(sys.argv[1])
    ParentWatch().start()
    asyncio.run(watch(settings))


if __name__ == "__main__":
    main()
