"""kill -9 of the server while reports are posted: every report answered 201 is kept, once.

A report is committed before its answer leaves (feedback/reports.file_report), so a kill at
any moment loses only reports that were never acknowledged.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid

import pytest
import requests
from sqlalchemy import select

from backend.db.report_tables import ErrorReportRow
from backend.workspace import Workspace
from tests.helpers import child_pids, start_server
from tests.review_helpers import add_held_out_rows

# Alone, after the parallel part: kill -9 under load.
pytestmark = pytest.mark.serial

THREADS = 6
PREDICTIONS = 40
# Kill once this many reports were acknowledged (or after KILL_AFTER_S, whichever first).
ACKNOWLEDGED_BEFORE_KILL = 80
KILL_AFTER_S = 8.0


def _post_reports(
    url: str,
    token: str,
    request_ids: list[str],
    acknowledged: dict[str, int],
    lock: threading.Lock,
    stop: threading.Event,
) -> None:
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}"}
    i = 0
    while not stop.is_set():
        marker = f"durability {uuid.uuid4().hex}"
        i += 1
        try:
            answer = session.post(
                f"{url}/api/v1/reports",
                headers=headers,
                json={
                    "request_id": request_ids[i % len(request_ids)],
                    "category": "wrong_answer",
                    "description": marker,
                },
                timeout=10,
            )
        except requests.RequestException:
            return  # the server is gone: what was not answered was never promised
        if answer.status_code == 201:
            with lock:
                acknowledged[marker] = answer.json()["id"]


def test_kill_9_loses_no_acknowledged_report(sqlite_workspace: Workspace) -> None:
    # SQLite only: the commit-before-answer path is the same code on PostgreSQL, and two more
    # server starts would double the time this serial test takes.
    workspace = sqlite_workspace
    request_ids = add_held_out_rows(workspace, PREDICTIONS, prefix="durable", route="active")
    token = workspace.tokens.create("durable-app", "client", ["toy"])
    env = {
        "SERVEDECK_DATABASE_URL": workspace.settings.database_url,
        "SERVEDECK_LOG_FLUSH_INTERVAL": "0.2",
    }
    data_dir = workspace.settings.data_dir
    acknowledged: dict[str, int] = {}
    lock = threading.Lock()
    stop = threading.Event()
    server = start_server(data_dir, env=env)
    threads = [
        threading.Thread(
            target=_post_reports,
            args=(server.url, token, request_ids, acknowledged, lock, stop),
            daemon=True,
        )
        for _ in range(THREADS)
    ]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + KILL_AFTER_S
        while time.monotonic() < deadline:
            with lock:
                if len(acknowledged) >= ACKNOWLEDGED_BEFORE_KILL:
                    break
            time.sleep(0.02)
        # Mid-load: requests are in flight when the process dies.
        for pid in child_pids(server.process.pid):
            os.kill(pid, signal.SIGKILL)
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
        with lock:
            promised = dict(acknowledged)
        assert len(promised) >= 20, "too few reports were answered before the kill"
        server = start_server(data_dir, env=env)
        with workspace.sessions() as session:
            stored = session.execute(
                select(ErrorReportRow.id, ErrorReportRow.description).where(
                    ErrorReportRow.description.like("durability %")
                )
            ).all()
        by_marker: dict[str, list[int]] = {}
        for report_id, description in stored:
            by_marker.setdefault(description, []).append(report_id)
        missing = [m for m in promised if m not in by_marker]
        twice = [m for m, ids in by_marker.items() if len(ids) > 1]
        wrong_id = [m for m, report_id in promised.items() if by_marker.get(m) != [report_id]]
        print(
            f"\nkill -9 while filing: {len(promised)} acknowledged, {len(stored)} stored; "
            f"missing {len(missing)}, stored twice {len(twice)}"
        )
        assert missing == [] and twice == [] and wrong_id == []
        # The restarted server still answers the reporter about an acknowledged report.
        some_id = next(iter(promised.values()))
        status = requests.get(
            f"{server.url}/api/v1/reports/{some_id}/status",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert status.status_code == 200 and status.json()["status"] == "new"
    finally:
        stop.set()
        if server.process.poll() is None:
            server.stop()
