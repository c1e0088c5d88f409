"""Kill -9 under load: every answered prediction and every accepted label must be in the store.

Shared by the test (short runs) and the benchmark (``BENCH_ONLY=durability``, 3 runs of 20 s
per case). A run drives a real ``servedeck-server serve`` with 8 threads posting predictions
and, alongside, labels for predictions answered earlier; then kills the server, its log writer
or both with SIGKILL, brings the service back the way an operator would (the server restarts
a dead writer itself; a dead server is started again on the same data directory), and counts
what is missing or written twice.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field

import requests
from sqlalchemy import func, select

from backend.db.tables import LabelRow, PredictionRow
from backend.workspace import Workspace
from tests.helpers import TOY_ROW, ServerProcess, child_pids_running, start_server

KILL_CASES = ("server", "writer", "both")
THREADS = 8


@dataclass
class DurabilityRun:
    case: str
    answered: set[str] = field(default_factory=set)
    labelled: set[str] = field(default_factory=set)
    missing_predictions: int = 0
    duplicated_predictions: int = 0
    missing_labels: int = 0
    # Seconds from bringing the service back until every answered prediction was in the store.
    caught_up_s: float | None = None
    # Spool directories left once everything stopped (each drained spool is removed).
    leftover_spools: list[str] = field(default_factory=list)


def _load(
    url: str, token: str, run: DurabilityRun, stop: threading.Event, lock: threading.Lock
) -> None:
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}"}
    rng = random.Random()
    mine: list[str] = []
    while not stop.is_set():
        try:
            response = session.post(
                f"{url}/v1/models/toy:predict",
                headers=headers,
                json={"instances": [TOY_ROW]},
                timeout=10,
            )
            if response.status_code == 200:
                request_id = response.json()["request_id"]
                mine.append(request_id)
                with lock:
                    run.answered.add(request_id)
            if mine and rng.random() < 0.3:
                labelled = rng.choice(mine)
                response = session.post(
                    f"{url}/api/v1/feedback",
                    headers=headers,
                    json={
                        "labels": [
                            {"request_id": labelled, "label": rng.randint(0, 1), "model": "toy"}
                        ]
                    },
                    timeout=10,
                )
                if response.status_code == 200:
                    with lock:
                        run.labelled.add(labelled)
        except requests.RequestException:
            time.sleep(0.01)  # the server is gone (killed): keep trying until told to stop


# The kill comes once this many predictions were answered (there is enough to lose), and a
# killed writer's replacement must see this many more answered before the load stops.
ANSWERED_BEFORE_KILL = 150
ANSWERED_AFTER_WRITER_KILL = 50


def run_case(
    case: str,
    workspace: Workspace,
    env: dict[str, str],
    load_s: float = 0.0,
    catch_up_timeout_s: float = 60.0,
) -> DurabilityRun:
    """One run: load for at least ``load_s`` (the benchmark) and until ANSWERED_BEFORE_KILL
    were answered (the tests: no longer), kill, recover, count."""
    assert case in KILL_CASES
    data_dir = workspace.settings.data_dir
    token = workspace.admin_token()
    run = DurabilityRun(case)
    server: ServerProcess | None = start_server(data_dir, env=env)
    stop = threading.Event()
    lock = threading.Lock()
    assert server is not None
    threads = [
        threading.Thread(target=_load, args=(server.url, token, run, stop, lock), daemon=True)
        for _ in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    try:
        time.sleep(load_s)
        # On a busy machine the load may answer slowly: kill only once there is enough to
        # lose (at most 10 s more), so that the test judges durability, not speed.
        _wait_for_answers(run, lock, ANSWERED_BEFORE_KILL, timeout_s=max(load_s, 10.0))
        writers = child_pids_running(server.process.pid, "backend.predictions.writer")
        if case in ("writer", "both"):
            for pid in writers:
                os.kill(pid, signal.SIGKILL)
        if case in ("server", "both"):
            os.kill(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=10)
        else:
            # The server starts a new writer by itself; answer a while longer meanwhile: until
            # the replacement runs and more predictions were answered beside it.
            with lock:
                answered_at_kill = len(run.answered)
            deadline = time.monotonic() + 30.0
            while time.monotonic() < deadline:
                running = child_pids_running(server.process.pid, "backend.predictions.writer")
                replaced = bool(set(running) - set(writers))
                if replaced:
                    break
                time.sleep(0.05)
            _wait_for_answers(
                run,
                lock,
                answered_at_kill + ANSWERED_AFTER_WRITER_KILL,
                timeout_s=max(min(2.0, load_s), 10.0),
            )
            time.sleep(min(2.0, load_s))
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        if case in ("server", "both"):
            # An operator starts the server again; its writer adopts what the dead one left.
            server = start_server(data_dir, env=env)
        recovered = time.monotonic()
        deadline = recovered + catch_up_timeout_s
        while time.monotonic() < deadline:
            if _count_missing(workspace, run.answered) == 0:
                run.caught_up_s = time.monotonic() - recovered
                break
            time.sleep(0.1)
    finally:
        stop.set()
        if server is not None and server.process.poll() is None:
            server.stop()
    run.missing_predictions = _count_missing(workspace, run.answered)
    run.duplicated_predictions = _count_duplicated(workspace)
    run.missing_labels = _count_missing_labels(workspace, run.labelled)
    spool_dir = workspace.settings.spool_dir
    run.leftover_spools = sorted(p.name for p in spool_dir.iterdir()) if spool_dir.exists() else []
    return run


def _wait_for_answers(
    run: DurabilityRun, lock: threading.Lock, count: int, timeout_s: float
) -> None:
    """Until ``count`` predictions were answered, or ``timeout_s`` passed (the caller judges)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with lock:
            if len(run.answered) >= count:
                return
        time.sleep(0.02)


def _logged_ids(workspace: Workspace, request_ids: set[str]) -> set[str]:
    found: set[str] = set()
    ids = list(request_ids)
    with workspace.sessions() as session:
        for start in range(0, len(ids), 500):
            found.update(
                session.scalars(
                    select(PredictionRow.request_id).where(
                        PredictionRow.request_id.in_(ids[start : start + 500])
                    )
                )
            )
    return found


def _count_missing(workspace: Workspace, request_ids: set[str]) -> int:
    return len(request_ids - _logged_ids(workspace, request_ids))


def _count_duplicated(workspace: Workspace) -> int:
    with workspace.sessions() as session:
        per_key = (
            select(func.count().label("n"))
            .select_from(PredictionRow)
            .group_by(PredictionRow.request_id, PredictionRow.row_index, PredictionRow.route)
            .subquery()
        )
        return int(session.scalar(select(func.coalesce(func.sum(per_key.c.n - 1), 0))) or 0)


def _count_missing_labels(workspace: Workspace, request_ids: set[str]) -> int:
    ids = list(request_ids)
    found: set[str] = set()
    with workspace.sessions() as session:
        for start in range(0, len(ids), 500):
            found.update(
                session.scalars(
                    select(LabelRow.request_id).where(
                        LabelRow.request_id.in_(ids[start : start + 500])
                    )
                )
            )
    return len(request_ids - found)
