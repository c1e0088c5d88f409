"""Switching versions on real servers under load: no request fails, every worker follows."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from backend.workspace import Workspace
from tests.deploy_helpers import register_toy
from tests.helpers import TOY_ROW, ServerProcess, make_settings, register_toy_models, start_server

SWITCH_DEADLINE_S = 1.0

# Alone, after the parallel part: switch times under load are measured.
pytestmark = pytest.mark.serial


class Load:
    """Threads sending predictions until stopped; every answer's status and version kept."""

    def __init__(self, url: str, token: str, threads: int = 4, fresh_connections: bool = False):
        self.url = f"{url}/v1/models/toy:predict"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.fresh = fresh_connections
        self.answers: list[tuple[float, int, str | None]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send, args=(i,)) for i in range(threads)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _send(self, index: int) -> None:
        session = requests.Session()
        i = 0
        while not self._stop.is_set():
            if self.fresh:
                session.close()
                session = requests.Session()
            body = {"instances": [TOY_ROW], "entity_id": f"card-{index}-{i}"}
            try:
                response = session.post(self.url, json=body, headers=self.headers, timeout=10)
                version = response.json().get("model_version") if response.ok else None
                outcome = (time.monotonic(), response.status_code, version)
            except requests.RequestException:
                outcome = (time.monotonic(), 0, None)
            with self._lock:
                self.answers.append(outcome)
            i += 1

    def wait_for_traffic(self, answers: int = 20) -> None:
        deadline = time.monotonic() + 15
        while len(self.answers) < answers:
            assert time.monotonic() < deadline, "no traffic reached the server"
            time.sleep(0.02)

    def first_time_all_on(self, version: str, since: float) -> float | None:
        """Seconds after ``since`` from which every answer came from ``version``."""
        with self._lock:
            later = [a for a in self.answers if a[0] >= since]
        last_other = max((t for t, _, v in later if v != version), default=since)
        return last_other - since if any(t > last_other for t, _, _ in later) else None


def _post(url: str, token: str, path: str, body: dict) -> dict:  # type: ignore[type-arg]
    response = requests.post(
        f"{url}{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def _wait_until_all_on(load: Load, version: str, since: float, settle_s: float = 0.6) -> float:
    """Wait until answers have come only from ``version`` for ``settle_s``; the switch time."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        switched = load.first_time_all_on(version, since)
        if switched is not None and time.monotonic() - (since + switched) >= settle_s:
            return switched
        time.sleep(0.05)
    raise AssertionError(f"not every answer came from version {version} within 15 s")


@pytest.fixture
def toy_dir(workspace: Workspace) -> Workspace:
    """The toy models, copied from this process's template store (registering them anew took
    seconds of this serial test), and a second toy version to switch to."""
    register_toy(workspace)
    return workspace


def test_rollbacks_and_deployments_under_load_fail_no_request(toy_dir: Workspace) -> None:
    env = {"SERVEDECK_DATABASE_URL": toy_dir.settings.database_url}
    server: ServerProcess = start_server(toy_dir.settings.data_dir, env=env)
    token = toy_dir.admin_token()
    try:
        with Load(server.url, token) as load:
            load.wait_for_traffic()
            for round_ in range(3):
                started = time.monotonic()
                _post(
                    server.url,
                    token,
                    "/api/v1/models/toy/deploy",
                    {"version": "2", "reason": f"round {round_}"},
                )
                assert _wait_until_all_on(load, "2", started) <= SWITCH_DEADLINE_S
                started = time.monotonic()
                _post(
                    server.url, token, "/api/v1/models/toy/rollback", {"reason": f"round {round_}"}
                )
                assert _wait_until_all_on(load, "1", started) <= SWITCH_DEADLINE_S
        statuses = {status for _, status, _ in load.answers}
        assert statuses == {200}, f"some requests failed: {statuses}"
        assert len(load.answers) > 100
    finally:
        server.stop()


def test_two_workers_on_postgresql_switch_together(tmp_path, postgres_url: str) -> None:  # type: ignore[no-untyped-def]
    workspace = Workspace.open(make_settings(tmp_path, postgres_url))
    register_toy_models(workspace)
    register_toy(workspace)
    token = workspace.admin_token()
    env = {"SERVEDECK_DATABASE_URL": postgres_url}
    server = start_server(workspace.settings.data_dir, "--workers", "2", env=env)
    try:
        # Fresh connections: the kernel hands them to either worker.
        with Load(server.url, token, threads=4, fresh_connections=True) as load:
            load.wait_for_traffic()
            started = time.monotonic()
            _post(
                server.url,
                token,
                "/api/v1/models/toy/deploy",
                {"version": "2", "reason": "both workers"},
            )
            switched = _wait_until_all_on(load, "2", started)
        assert switched <= SWITCH_DEADLINE_S, f"the last worker switched after {switched:.2f} s"
        assert {status for _, status, _ in load.answers} == {200}
    finally:
        server.stop()
        workspace.close()
