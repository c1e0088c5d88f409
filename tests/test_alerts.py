"""Alerts: raised once per cause, listed by scope, acknowledged by a person, streamed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import requests
from fastapi.testclient import TestClient
from sqlalchemy.exc import IntegrityError

from backend.db.tables import AlertRow
from backend.monitoring.alerts import AlertService
from backend.schemas import Alert
from backend.workspace import Workspace
from tests.helpers import ServerProcess, ToyDataDir, make_settings, start_server


def _raise(alerts: AlertService, model: str = "toy", version: str = "1") -> tuple[Alert, bool]:
    return alerts.raise_once(
        model,
        version,
        "live_metric",
        severity="critical",
        title=f"{model} version {version}: live accuracy 0.5 is below [0.8, 1]",
        explanation="What to do: compare with the previous version.",
        details={"value": 0.5},
    )


def test_an_active_cause_is_raised_once(workspace: Workspace) -> None:
    alerts = workspace.alerts
    first, raised = _raise(alerts)
    again, raised_again = _raise(alerts)
    assert raised and not raised_again and again.id == first.id
    assert first.raised_at.tzinfo is not None  # a date-time with its time zone on the wire
    other, _ = _raise(alerts, version="2")
    assert other.id != first.id
    assert alerts.resolve("toy", "1", "live_metric", "deployed again") == 1
    renewed, raised = _raise(alerts)
    assert raised and renewed.id not in (first.id, other.id)


def test_the_store_refuses_two_active_alerts_of_one_cause(workspace: Workspace) -> None:
    """Two workers raising at the same moment: the index lets one in."""
    _raise(workspace.alerts)
    row = AlertRow(
        model="toy",
        version="1",
        kind="live_metric",
        severity="critical",
        status="open",
        title="t",
        explanation="e",
        details={},
        raised_at=0.0,
        acknowledgement="",
        resolution="",
    )
    with pytest.raises(IntegrityError), workspace.sessions.begin() as session:
        session.add(row)


def test_list_acknowledge_and_roles(
    workspace: Workspace, client: TestClient, admin_headers: dict[str, str]
) -> None:
    alert, _ = _raise(workspace.alerts)
    hidden, _ = _raise(workspace.alerts, model="elsewhere")
    listed = client.get("/api/v1/alerts", headers=admin_headers).json()["alerts"]
    assert [a["id"] for a in listed] == [hidden.id, alert.id]  # newest first
    scoped = {"Authorization": f"Bearer {workspace.tokens.create('shop', 'client', ['toy'])}"}
    support = {"Authorization": f"Bearer {workspace.tokens.create('help', 'support')}"}
    engineer = {"Authorization": f"Bearer {workspace.tokens.create('eng', 'engineer')}"}
    # A client token has no reading role; support reads but does not acknowledge.
    assert client.get("/api/v1/alerts", headers=scoped).status_code == 403
    seen = client.get("/api/v1/alerts?model=toy", headers=support).json()["alerts"]
    assert [a["id"] for a in seen] == [alert.id]
    refused = client.post(f"/api/v1/alerts/{alert.id}/acknowledge", headers=support)
    assert refused.status_code == 403
    acknowledged = client.post(
        f"/api/v1/alerts/{alert.id}/acknowledge",
        headers=engineer,
        json={"note": "looking at the labels"},
    )
    assert acknowledged.status_code == 200
    body = acknowledged.json()
    assert (body["status"], body["acknowledged_by"], body["acknowledgement"]) == (
        "acknowledged",
        "eng",
        "looking at the labels",
    )
    twice = client.post(f"/api/v1/alerts/{alert.id}/acknowledge", headers=admin_headers)
    assert twice.status_code == 409 and "already acknowledged by eng" in twice.json()["reason"]
    assert client.get("/api/v1/alerts/999999", headers=admin_headers).status_code == 404
    assert client.get("/api/v1/alerts/0", headers=admin_headers).status_code == 422
    # Still active (someone owns it); a resolved one shows only when asked for.
    workspace.alerts.resolve("toy", "1", "live_metric", "deployed again")
    active = client.get("/api/v1/alerts?model=toy", headers=admin_headers).json()["alerts"]
    assert active == []
    resolved = client.get("/api/v1/alerts?model=toy&status=resolved", headers=admin_headers)
    assert [a["id"] for a in resolved.json()["alerts"]] == [alert.id]
    bad = client.get("/api/v1/alerts?status=sleeping", headers=admin_headers)
    assert bad.status_code == 422 and bad.json()["field"].startswith("status")


def test_a_scoped_token_sees_only_its_models_alerts(
    workspace: Workspace, client: TestClient
) -> None:
    mine, _ = _raise(workspace.alerts)
    theirs, _ = _raise(workspace.alerts, model="elsewhere")
    token = workspace.tokens.create("toy-support", "support", ["toy"])
    headers = {"Authorization": f"Bearer {token}"}
    listed = client.get("/api/v1/alerts", headers=headers).json()["alerts"]
    assert [a["id"] for a in listed] == [mine.id]
    # Another model's alert is answered as if it did not exist, naming nothing of it.
    hidden = client.get(f"/api/v1/alerts/{theirs.id}", headers=headers)
    assert hidden.status_code == 404 and "elsewhere" not in hidden.text
    assert client.get(f"/api/v1/alerts/{mine.id}", headers=headers).status_code == 200
    # A superscript two (as raw Latin-1, as a client may send it) passes str.isdigit().
    for bad in (b"\xb2", b"99999999999999999999", b"-1", b"abc"):
        refused = client.get("/api/v1/events/alerts", headers={**headers, "Last-Event-ID": bad})
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json()["field"] == "Last-Event-ID"


@pytest.fixture
def server(tmp_path: Path, toy_data_dir: ToyDataDir) -> Iterator[tuple[ServerProcess, str]]:
    token = toy_data_dir(tmp_path)
    process = start_server(tmp_path)
    yield process, token
    process.stop()


def test_new_alerts_stream_as_events(server: tuple[ServerProcess, str], tmp_path: Path) -> None:
    process, token = server
    workspace = Workspace.open(make_settings(tmp_path))
    try:
        earlier, _ = _raise(workspace.alerts, version="7")
        with requests.get(
            f"{process.url}/api/v1/events/alerts",
            headers={"Authorization": f"Bearer {token}", "Last-Event-ID": str(earlier.id)},
            stream=True,
            timeout=(5, 20),
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            # Raised after the stream's position (by any worker: it is read from the store).
            later, _ = _raise(workspace.alerts, version="8")
            event_id = kind = None
            for line in response.iter_lines(decode_unicode=True):
                if line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    data = orjson.loads(line[6:])
                    break
        assert (event_id, kind, data["id"], data["version"]) == (
            str(later.id),
            "alert",
            later.id,
            "8",
        )
    finally:
        workspace.close()
