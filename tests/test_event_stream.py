"""One resumable event stream: alert changes and deployment changes, resumed with
Last-Event-ID without gaps or repeats (SQLite and PostgreSQL), scoped by the token's models,
following what another process writes, and ending when its token is revoked."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from fastapi.testclient import TestClient

from backend.db.tables import AlertEventRow
from backend.monitoring.event_log import EventCursor, events_after, newest_cursor
from backend.schemas import Alert, ServingPolicy
from backend.workspace import Workspace
from tests.deploy_helpers import register_toy
from tests.helpers import SETUP, ServerProcess, ToyDataDir, make_settings, start_server


def _raise(workspace: Workspace, model: str, kind: str = "error_rate") -> Alert:
    alert, _ = workspace.alerts.raise_once(
        model, None, kind, severity="critical",  # type: ignore[arg-type]
        title=f"{model}: failing", explanation="What to do: read the log.", details={},
    )  # fmt: skip
    return alert


def _history(workspace: Workspace) -> None:
    """Alert and deployment changes of two models, interleaved (toy's version 2 is
    registered before)."""
    toy = _raise(workspace, "toy")
    workspace.deploy.set_policy("price", ServingPolicy(), "watch it closer", SETUP)
    price = _raise(workspace, "price")
    workspace.alerts.acknowledge(toy.id, "ann", "looking")
    workspace.deploy.deploy("toy", "2", "a better version", SETUP)
    workspace.alerts.resolve("price", None, "error_rate", "cleared")
    workspace.alerts.resolve("toy", None, "error_rate", "cleared")
    assert price.id != toy.id


def _all(workspace: Workspace, models: frozenset[str] | None, cursor: EventCursor) -> list[Any]:
    found = []
    while True:
        page = events_after(workspace.sessions, cursor, models, limit=3)
        assert page is not None
        if not page:
            return found
        found += page
        cursor = page[-1].cursor


def test_resuming_anywhere_gives_the_rest_without_gaps_or_repeats(workspace: Workspace) -> None:
    register_toy(workspace)
    start = newest_cursor(workspace.sessions)  # the toy models' setup deployments are before
    _history(workspace)
    everything = _all(workspace, None, start)
    described = [(s.event.kind, s.event.model, s.event.action) for s in everything]
    assert described == [
        ("alert", "toy", "raised"),
        ("deployment", "price", "policy"),
        ("alert", "price", "raised"),
        ("alert", "toy", "acknowledged"),
        ("deployment", "toy", "deploy"),
        ("alert", "price", "resolved"),
        ("alert", "toy", "resolved"),
    ]
    assert everything[3].event.alert is not None
    assert everything[3].event.alert.acknowledged_by == "ann"
    assert everything[4].event.deployment is not None
    assert everything[4].event.deployment.reason == "a better version"
    # Resumed after any event (pages of 3, as a client reconnecting at any moment).
    for index, stored in enumerate(everything):
        rest = _all(workspace, None, EventCursor.parse(stored.cursor.text()))
        assert [r.cursor for r in rest] == [r.cursor for r in everything[index + 1 :]]
    # A token scoped to one model sees its events only, and resumes the same way.
    toy = _all(workspace, frozenset({"toy"}), start)
    assert [s.event.action for s in toy] == ["raised", "acknowledged", "deploy", "resolved"]
    assert {s.event.model for s in toy} == {"toy"}
    assert _all(workspace, frozenset({"toy"}), toy[1].cursor) == toy[2:]


def test_a_transaction_still_open_holds_the_stream_back_instead_of_leaving_a_gap(
    workspace: Workspace,
) -> None:
    """Two workers write alert events; the one with the smaller id commits last. A reader
    that went by ids alone would pass over it for good."""
    start = newest_cursor(workspace.sessions)
    if workspace.engine.dialect.name == "sqlite":
        pytest.skip("SQLite has one writer at a time: ids always commit in order")
    slow = workspace.sessions()
    slow.begin()
    slow.add(_event_row("slow"))
    slow.flush()  # its id is taken, not yet committed
    fast = _raise(workspace, "price")  # a larger id, committed at once
    try:
        # The slow writer is still open: the read is skipped, not passed over it.
        assert events_after(workspace.sessions, start, None) is None
    finally:
        slow.commit()
        slow.close()
    found = events_after(workspace.sessions, start, None)
    assert found is not None
    assert [(s.event.model, s.event.action) for s in found] == [
        ("slow", "raised"),
        ("price", "raised"),
    ]
    assert found[1].event.alert is not None and found[1].event.alert.id == fast.id


def _event_row(model: str) -> AlertEventRow:
    alert = Alert(
        id=999_999, model=model, version=None, kind="p99_latency", severity="warning",
        status="open", title="t", explanation="e", raised_at=time.time(),  # type: ignore[arg-type]
    )  # fmt: skip
    return AlertEventRow(
        alert_id=alert.id, model=model, action="raised", at=time.time(), actor="servedeck",
        note="", alert=alert.model_dump(mode="json", exclude={"history"}),
    )  # fmt: skip


# ---------------------------------------------------------------- over HTTP


def _messages(lines: Iterator[str], count: int) -> list[dict[str, Any]]:
    """The next ``count`` messages (id, event, data) of a server-sent event stream."""
    found: list[dict[str, Any]] = []
    message: dict[str, Any] = {}
    for line in lines:
        if line.startswith("id: "):
            message["id"] = line[4:]
        elif line.startswith("event: "):
            message["event"] = line[7:]
        elif line.startswith("data: "):
            message["data"] = orjson.loads(line[6:])
        elif line == "" and "data" in message:
            found.append(message)
            message = {}
            if len(found) == count:
                return found
    raise AssertionError(f"the stream ended after {found}")


def test_the_stream_resumes_with_last_event_id(
    workspace: Workspace, client: TestClient, admin_headers: dict[str, str]
) -> None:
    register_toy(workspace)
    start = newest_cursor(workspace.sessions).text()
    _history(workspace)
    headers = {**admin_headers, "Last-Event-ID": start}
    with client.stream("GET", "/api/v1/events", headers=headers) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        first = _messages(answer.iter_lines(), 3)
    assert [(m["event"], m["data"]["model"], m["data"]["action"]) for m in first] == [
        ("alert", "toy", "raised"),
        ("deployment", "price", "policy"),
        ("alert", "price", "raised"),
    ]
    # Reconnected after the third: the fourth comes next, nothing again, nothing left out.
    with client.stream(
        "GET", "/api/v1/events", headers={**admin_headers, "Last-Event-ID": first[-1]["id"]}
    ) as answer:
        rest = _messages(answer.iter_lines(), 4)
    assert [(m["data"]["model"], m["data"]["action"]) for m in rest] == [
        ("toy", "acknowledged"),
        ("toy", "deploy"),
        ("price", "resolved"),
        ("toy", "resolved"),
    ]
    assert len({m["id"] for m in first + rest}) == 7
    # A scoped token reads its model only.
    scoped = {"Authorization": f"Bearer {workspace.tokens.create('ts', 'support', ['toy'])}"}
    with client.stream(
        "GET", "/api/v1/events", headers={**scoped, "Last-Event-ID": start}
    ) as answer:
        mine = _messages(answer.iter_lines(), 4)
    assert {m["data"]["model"] for m in mine} == {"toy"}
    price = client.get("/api/v1/events?model=price", headers=scoped)
    assert price.status_code == 403
    for bad in (b"12", b"1-2-3", b"\xb2-1", b"99999999999999999999-1", b"-1-1"):
        refused = client.get("/api/v1/events", headers={**admin_headers, "Last-Event-ID": bad})
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json()["field"] == "Last-Event-ID"


@pytest.fixture
def server(tmp_path: Path, toy_data_dir: ToyDataDir) -> Iterator[tuple[ServerProcess, str]]:
    token = toy_data_dir(tmp_path)
    process = start_server(tmp_path)
    yield process, token
    process.stop()


def test_a_server_streams_what_another_process_writes_and_ends_on_revocation(
    server: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    process, _admin = server
    workspace = Workspace.open(make_settings(tmp_path))
    try:
        token = workspace.tokens.create("watcher", "support")
        with requests.get(
            f"{process.url}/api/v1/events",
            headers={"Authorization": f"Bearer {token}"},
            stream=True,
            timeout=(5, 20),
        ) as response:
            assert response.status_code == 200
            lines = response.iter_lines(decode_unicode=True)
            # Written after the stream opened, by another process: it starts from now.
            alert = _raise(workspace, "toy", "p99_latency")
            workspace.deploy.set_policy("toy", ServingPolicy(), "watch it", SETUP)
            got = _messages(lines, 2)
            assert [(m["event"], m["data"]["action"]) for m in got] == [
                ("alert", "raised"),
                ("deployment", "policy"),
            ]
            assert got[0]["data"]["alert"]["id"] == alert.id
            workspace.tokens.revoke("watcher")
            revoked_at = time.time()
            ended = [line for line in lines if line.startswith(": stream ended")]
            assert ended and time.time() - revoked_at < 10
    finally:
        workspace.close()
