"""The watcher process's life beside its server: what it is started with, that a dead watcher
is replaced (else the alerts on stored counts would stop without a word), and that the drift
gauges a server shows are this run's, of models still judged, and the same from any worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from backend.monitoring.drift.alerting import DriftAlertWatch
from backend.monitoring.rules import RuleStore
from backend.monitoring.stored_watches import ModelsWithActiveVersion
from backend.schemas import AlertRule
from backend.watcher import HEALTHY_AFTER_S, KeptWatcher, RestartSchedule
from backend.workspace import Workspace
from tests.helpers import (
    ToyDataDir,
    child_pids,
    child_pids_running,
    command_line,
    make_settings,
    start_server,
)
from tests.test_watcher import _wait_for

STALE_GAUGES = '{"gone": {"drifted_share": 1.0, "entries": [["amount", "ks", 0.9, 0.1, true]]}}'


def test_the_watcher_keeps_secrets_off_its_command_line_and_runs_where_its_server_does(
    tmp_path: Path, postgres_url: str
) -> None:
    # Every user of the machine can read a process's command line (ps, /proc/*/cmdline).
    # (The test server trusts local connections: the password is only there to be seen.)
    with_password = postgres_url.replace("postgres@", "postgres:s3cret-pw@")
    settings = make_settings(tmp_path / "a data dir", with_password, stored_rule_interval_s=3600.0)
    watcher = KeptWatcher(settings)
    try:
        # Read once the process has its own: right after the spawn, /proc may still show an
        # empty command line while the child is inside execve.
        shown = str(
            _wait_for(
                lambda: (
                    "backend.watcher" in command_line(watcher.pid) and command_line(watcher.pid)
                ),
                10.0,
                "the watcher's command line",
            )
        )
        assert "s3cret-pw" not in shown, shown
        # A relative SQLite URL or data directory means the same file to both processes.
        assert os.readlink(f"/proc/{watcher.pid}/cwd") == os.getcwd()
        # A Ctrl+C in the terminal reaches the watcher through its server's orderly stop,
        # never directly (else it would die first, and be restarted while the server stops).
        assert os.getpgid(watcher.pid) != os.getpgid(os.getpid())
    finally:
        watcher.stop()


def test_a_killed_watcher_is_replaced_by_its_server(
    toy_data_dir: ToyDataDir, tmp_path: Path
) -> None:
    toy_data_dir(tmp_path)
    server = start_server(tmp_path, env={"SERVEDECK_STORED_RULE_INTERVAL": "1"})
    try:
        (first,) = _wait_for(
            lambda: child_pids_running(server.process.pid, "backend.watcher"), 20, "no watcher"
        )  # type: ignore[misc]
        # Its owner deleted the admin token file on purpose while the server runs.
        (tmp_path / "admin.token").unlink()
        os.kill(first, signal.SIGKILL)

        def replaced() -> list[int]:
            found = child_pids_running(server.process.pid, "backend.watcher")
            return [pid for pid in found if pid != first]

        _wait_for(replaced, 30, "the server did not replace its killed watcher")
        assert len(child_pids_running(server.process.pid, "backend.watcher")) == 1
        # The new watcher judged a round (so it opened the workspace) and wrote no new token:
        # a process joining the workspace never creates an admin.
        (tmp_path / "drift-gauges.json").unlink(missing_ok=True)
        gauges_again = (tmp_path / "drift-gauges.json").exists
        _wait_for(gauges_again, 30, "the new watcher judged no round")
        assert not (tmp_path / "admin.token").exists()
        watcher = child_pids_running(server.process.pid, "backend.watcher")[0]
        assert server.stop() in (0, -signal.SIGTERM)
        _wait_for(lambda: not command_line(watcher), 20, "the watcher outlived its server")
    finally:
        if server.process.poll() is None:
            server.stop()


@pytest.mark.parametrize("monitoring", ["on", "off"])
def test_a_fresh_server_shows_no_drift_gauges_of_a_previous_run(
    toy_data_dir: ToyDataDir, tmp_path: Path, monitoring: str
) -> None:
    token = toy_data_dir(tmp_path)
    (tmp_path / "drift-gauges.json").write_text(STALE_GAUGES)
    # And a copy a watcher killed while writing left behind.
    (tmp_path / ".drift-gauges.json.4242.tmp").write_text(STALE_GAUGES[:20])
    # The watcher is started one rule interval after its server (backend.server).
    env = {"SERVEDECK_MONITORING": monitoring, "SERVEDECK_STORED_RULE_INTERVAL": "0.5"}
    server = start_server(tmp_path, env=env)
    try:
        metrics = requests.get(
            f"{server.url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert metrics.status_code == 200, metrics.text
        assert 'model="gone"' not in metrics.text
        assert not (tmp_path / ".drift-gauges.json.4242.tmp").exists()
        assert "cannot be read" not in "".join(server.output)
        if monitoring == "on":
            watchers = _wait_for(
                lambda: child_pids_running(server.process.pid, "backend.watcher"), 20, "no watcher"
            )
            assert len(watchers) == 1  # type: ignore[arg-type]
        else:
            # None at all, not even late: looked for over four times the delay of its start.
            looked_until = time.monotonic() + 2.0
            while time.monotonic() < looked_until:
                assert not child_pids_running(server.process.pid, "backend.watcher")
                time.sleep(0.1)
    finally:
        server.stop()


def _drift_watch(workspace: Workspace) -> DriftAlertWatch:
    return DriftAlertWatch(
        workspace.drift,
        RuleStore(workspace.sessions),
        workspace.alerts,
        ModelsWithActiveVersion(workspace.registry),
    )


def test_drift_gauges_are_dropped_for_a_model_no_longer_judged(sqlite_workspace: Workspace) -> None:
    workspace = sqlite_workspace
    watch = _drift_watch(workspace)
    watch.evaluate(["toy"])
    assert "toy" in watch.latest
    # Its drift rule switched off: nothing judges its windows, so no gauge may say it does.
    off = AlertRule(kind="drift_features", enabled=False, severity="warning")
    RuleStore(workspace.sessions).replace("toy", [off], "tests")
    watch.evaluate(["toy"])
    assert "toy" not in watch.latest
    # Deleted or no longer serving.
    RuleStore(workspace.sessions).replace("toy", [], "tests")
    watch.evaluate(["toy"])
    assert "toy" in watch.latest
    watch.evaluate([])
    assert watch.latest == {}


def test_a_server_of_two_workers_has_one_watcher_and_every_worker_shows_its_gauges(
    toy_data_dir: ToyDataDir, tmp_path: Path
) -> None:
    token = toy_data_dir(tmp_path)
    # The watcher starts one rule interval after its server (backend.server).
    server = start_server(tmp_path, "--workers", "2", env={"SERVEDECK_STORED_RULE_INTERVAL": "1"})
    paused: list[int] = []
    try:
        watchers: list[int] = _wait_for(  # type: ignore[assignment]
            lambda: child_pids_running(server.process.pid, "backend.watcher"), 30, "no watcher"
        )
        assert len(watchers) == 1
        workers = [p for p in child_pids(server.process.pid) if p not in watchers]
        assert not [w for p in workers for w in child_pids_running(p, "backend.watcher")]
        _wait_for((tmp_path / "drift-gauges.json").exists, 30, "the watcher judged no round")
        # Its next rounds would replace the gauges written below: paused (not ended, so its
        # server does not replace it) while the workers are read.
        os.kill(watchers[0], signal.SIGSTOP)
        paused.append(watchers[0])
        # What the watcher writes after a round (replaced whole), read by whichever worker
        # answers the scrape (a new connection each time, for either worker to take).
        temp = tmp_path / "test-gauges.json.tmp"
        temp.write_text(STALE_GAUGES.replace("gone", "toy"))
        os.replace(temp, tmp_path / "drift-gauges.json")
        for _ in range(8):
            with requests.Session() as session:
                text = session.get(
                    f"{server.url}/metrics",
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=10,
                ).text
            assert 'servedeck_drift_detected{feature="amount",model="toy"} 1.0' in text
    finally:
        for pid in paused:
            os.kill(pid, signal.SIGCONT)  # else it could not see its server's pipe close
        server.stop()


def test_an_alert_of_a_rule_switched_off_is_resolved_though_its_kind_is_not_read(
    sqlite_workspace: Workspace,
) -> None:
    """A model whose rules of a kind are all off is skipped, unless one of them has an alert
    still active: that one must be resolved, not left open for ever."""
    workspace = sqlite_workspace
    watch = _drift_watch(workspace)
    _, raised = workspace.alerts.raise_once(
        "toy",
        None,
        "drift_features",
        severity="warning",
        title="toy: amount drifted",
        explanation="",
        details={},
        cooldown_s=3_600,
    )
    assert raised
    off = AlertRule(kind="drift_features", enabled=False, severity="warning")
    RuleStore(workspace.sessions).replace("toy", [off], "tests")
    outcomes = watch.evaluate(["toy"])
    assert outcomes[("toy", "drift_features")] == "resolved: rule switched off"
    assert not workspace.alerts.list(statuses=("open", "acknowledged"), limit=10)


def test_ctrl_c_stops_the_server_and_its_watcher_without_a_traceback(
    toy_data_dir: ToyDataDir, tmp_path: Path
) -> None:
    toy_data_dir(tmp_path)
    # A terminal's Ctrl+C: SIGINT to the whole foreground process group of the server.
    process = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "serve", "--port", "0", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        # Its watcher starts one rule interval after it serves (backend.server).
        env={**os.environ, "SERVEDECK_STORED_RULE_INTERVAL": "1"},
    )
    try:
        assert process.stdout is not None
        seen = [process.stdout.readline()]
        while seen[-1] and not seen[-1].startswith("SERVEDECK READY"):
            seen.append(process.stdout.readline())
        (watcher,) = _wait_for(  # type: ignore[misc]
            lambda: child_pids_running(process.pid, "backend.watcher"), 20, "no watcher"
        )
        os.killpg(process.pid, signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
        _wait_for(lambda: not command_line(watcher), 20, "the watcher outlived its server")
        output = "".join(seen) + rest
        assert "Traceback" not in output and "restarting it" not in output, output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_watcher_that_keeps_dying_is_restarted_less_and_less_often() -> None:
    # Its store unreachable, each start (~4 s of CPU) would die again: at once, then 2, 4, 8 s
    # apart, at most a minute; one that lived a minute was working, so its death starts over.
    schedule = RestartSchedule()
    delays = [schedule.delay_after(lived_s=3.0) for _ in range(9)]
    assert delays == [0.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert schedule.delay_after(lived_s=HEALTHY_AFTER_S) == 0.0
    assert schedule.delay_after(lived_s=1.0) == 2.0
