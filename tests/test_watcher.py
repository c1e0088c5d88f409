"""The server's watcher process judges the rules on stored counts off the serving workers: a
real server raises a drift alert from it, Prometheus shows the gauges it hands over, and it
ends with its server however the server ends."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import requests

from backend.monitoring.drift.gauge_file import DriftGaugeFile
from backend.monitoring.rules import DEFAULT_RULES, RuleStore
from backend.monitoring.stored_watches import ModelsWithActiveVersion
from backend.watcher import settings_from_json, settings_json
from backend.workspace import Workspace
from tests.helpers import (
    child_pids,
    child_pids_running,
    command_line,
    make_settings,
    register_toy_with_training_data,
    start_server,
)
from tests.test_drift_windows import _traffic


def _wait_for(condition: Callable[[], object], timeout_s: float, what: str) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout_s:g} s")


def test_the_settings_reach_the_watcher_whole(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, stored_rule_interval_s=1.5, monitoring="on")
    assert settings_from_json(settings_json(settings)) == settings


def test_only_models_with_an_active_version_are_judged(store: Workspace) -> None:
    serving = ModelsWithActiveVersion(store.registry)
    assert serving.models_serving() == []
    register_toy_with_training_data(store)
    assert serving.models_serving() == ["toy"]


def test_a_damaged_gauge_file_keeps_the_last_gauges(tmp_path: Path) -> None:
    gauges = DriftGaugeFile(tmp_path / "drift-gauges.json")
    assert gauges.read() == {}
    gauges.path.write_text(
        '{"toy": {"drifted_share": 0.5, "entries": [["amount", "ks", 0.3, 0.1, true]]}}'
    )
    first = gauges.read()
    assert first["toy"].drifted_share == 0.5 and first["toy"].entries[0][0] == "amount"
    gauges.path.write_text('{"toy": {"drifted_share": ')  # a half-written file (never by us)
    assert gauges.read() == first


def test_a_real_server_raises_drift_alerts_from_its_watcher(store: Workspace) -> None:
    workspace = store
    register_toy_with_training_data(workspace)
    # The default drift rule, raised at once and on fewer rows (the test sends 600).
    rule = DEFAULT_RULES["drift_features"].model_copy(update={"min_count": 200, "for_s": 0})
    RuleStore(workspace.sessions).replace("toy", [rule], "tests")
    token = workspace.admin_token()
    env = {
        "SERVEDECK_DATABASE_URL": workspace.settings.database_url,
        "SERVEDECK_STORED_RULE_INTERVAL": "1",
    }
    server = start_server(workspace.settings.data_dir, env=env)
    try:
        # The server starts its watcher one rule interval after it serves (backend.server).
        watchers: list[int] = _wait_for(  # type: ignore[assignment]
            lambda: child_pids_running(server.process.pid, "backend.watcher"), 20, "no watcher"
        )
        assert len(watchers) == 1, [command_line(p) for p in child_pids(server.process.pid)]
        # Background work yields to answering: the watcher and the log writer run niced.
        server_nice = os.getpriority(os.PRIO_PROCESS, server.process.pid)
        writers = child_pids_running(server.process.pid, "backend.predictions.writer")
        assert writers
        for pid in [*watchers, *writers]:
            _wait_for(
                lambda pid=pid: os.getpriority(os.PRIO_PROCESS, pid) >= server_nice + 10,
                20,
                f"{command_line(pid)} is not niced",
            )
        headers = {"Authorization": f"Bearer {token}"}
        session = requests.Session()
        rows = _traffic(600, seed=5, drifted=True)
        for start in range(0, len(rows), 100):
            answer = session.post(
                f"{server.url}/v1/models/toy:predict",
                headers=headers,
                json={"instances": rows[start : start + 100]},
                timeout=10,
            )
            assert answer.status_code == 200, answer.text

        def drift_alert() -> list[dict[str, object]]:
            listed = session.get(
                f"{server.url}/api/v1/alerts", headers=headers, params={"model": "toy"}, timeout=10
            )
            assert listed.status_code == 200, listed.text
            return [a for a in listed.json()["alerts"] if a["kind"] == "drift_features"]

        (alert,) = _wait_for(drift_alert, 60, "no drift alert from the watcher")  # type: ignore[misc]
        assert "amount" in alert["title"]

        def gauges() -> str:
            text = session.get(f"{server.url}/metrics", headers=headers, timeout=10).text
            return (
                text if 'servedeck_drift_detected{feature="amount",model="toy"} 1.0' in text else ""
            )

        _wait_for(gauges, 30, "the workers' /metrics never showed the watcher's drift gauges")
        # However the server ends, its watcher ends with it.
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=20)
        _wait_for(lambda: not command_line(watchers[0]), 20, "the watcher outlived its server")
    finally:
        if server.process.poll() is None:
            server.stop()
