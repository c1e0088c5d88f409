"""A token scoped to several models reads all of them, and nothing else, on every read route:
predictions, live statistics, alerts and both event streams (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import skops.io as sio
from fastapi.testclient import TestClient

from backend.api import create_app
from backend.auth import Principal, read_scope
from backend.errors import Forbidden
from backend.workspace import Workspace
from tests.helpers import (
    SETUP,
    TOY_CLASS_NAMES,
    TOY_ROW,
    TOY_SIGNATURE,
    toy_classifier,
    toy_validity,
)

PRICE_ROW = {"x1": 0.5, "x2": -1.0}
# (model, predictions made): "other" is outside the scoped token's models.
TRAFFIC = {"toy": 2, "price": 1, "other": 1}
SCOPED = {"toy", "price"}


def _register_other(workspace: Workspace) -> None:
    workspace.registry.register_version(
        "other",
        sio.dumps(toy_classifier()),
        filename="other.skops",
        validity=toy_validity(),
        registered_by="tests",
        signature=TOY_SIGNATURE,
        class_names=TOY_CLASS_NAMES,
    )
    workspace.deploy.deploy("other", "1", "test setup", SETUP)


def _raise_alert(workspace: Workspace, model: str) -> int:
    alert, _ = workspace.alerts.raise_once(
        model,
        "1",
        "live_metric",
        severity="warning",
        title=f"{model} alert",
        explanation="raised by the scope test",
        details={},
    )
    return alert.id


def _stream_messages(
    client: TestClient, path: str, headers: dict[str, str], count: int, **params: str
) -> list[Any]:
    """The data of the stream's first ``count`` messages."""
    messages: list[Any] = []
    with client.stream("GET", path, headers=headers, params=params) as answer:
        assert answer.status_code == 200, answer.read()
        for line in answer.iter_lines():
            if line.startswith("data: "):
                messages.append(json.loads(line.removeprefix("data: ")))
                if len(messages) == count:
                    break
    return messages


def _live_requests(client: TestClient, headers: dict[str, str], **params: str) -> int:
    answer = client.get("/api/v1/monitor/live", headers=headers, params=params)
    assert answer.status_code == 200, answer.text
    return sum(answer.json()["requests"])


@pytest.fixture
def client(workspace: Workspace) -> Iterator[TestClient]:
    """The app serving a third model, registered before it starts."""
    _register_other(workspace)
    with TestClient(create_app(workspace=workspace)) as test_client:
        yield test_client


@pytest.fixture
def scoped_world(
    workspace: Workspace, client: TestClient, admin_headers: dict[str, str]
) -> dict[str, Any]:
    """Three serving models with predictions and an alert each; a support token for two."""
    for model, count in TRAFFIC.items():
        for _ in range(count):
            row = PRICE_ROW if model == "price" else TOY_ROW
            answer = client.post(
                f"/v1/models/{model}:predict", headers=admin_headers, json={"instances": [row]}
            )
            assert answer.status_code == 200, answer.text
    client.app.state.serving.prediction_log.flush(10)  # type: ignore[attr-defined]
    # "other" is raised between the two visible ones: a stream that leaked it would show it
    # as its second message.
    alerts = {model: _raise_alert(workspace, model) for model in ("toy", "other", "price")}
    token = workspace.tokens.create("two-models", "support", sorted(SCOPED))
    # The current second is still open: wait until every prediction is in a complete bucket.
    deadline = time.monotonic() + 5
    while _live_requests(client, admin_headers) < sum(TRAFFIC.values()):
        assert time.monotonic() < deadline, "live statistics never counted the predictions"
        time.sleep(0.2)
    return {"headers": {"Authorization": f"Bearer {token}"}, "alerts": alerts}


def test_a_token_scoped_to_two_models_reads_both_without_naming_one(
    client: TestClient, scoped_world: dict[str, Any]
) -> None:
    headers = scoped_world["headers"]
    predictions = client.get("/api/v1/predictions", headers=headers)
    assert predictions.status_code == 200, predictions.text
    shown = [p["model"] for p in predictions.json()["predictions"]]
    assert sorted(shown) == ["price", "toy", "toy"]

    # The sum of the two models' buckets: the third model's prediction is not in it.
    assert _live_requests(client, headers) == TRAFFIC["toy"] + TRAFFIC["price"]

    alerts = client.get("/api/v1/alerts", headers=headers)
    assert alerts.status_code == 200, alerts.text
    assert {a["model"] for a in alerts.json()["alerts"]} == SCOPED

    (batch,) = _stream_messages(client, "/api/v1/events/predictions", headers, 1)
    assert sorted(e["model"] for e in batch["events"]) == ["price", "toy", "toy"]

    streamed = _stream_messages(
        client, "/api/v1/events/alerts", {**headers, "Last-Event-ID": "0"}, 2
    )
    assert [a["model"] for a in streamed] == ["toy", "price"]


def test_a_token_scoped_to_two_models_reads_one_it_names(
    client: TestClient, scoped_world: dict[str, Any]
) -> None:
    headers = scoped_world["headers"]
    predictions = client.get("/api/v1/predictions", headers=headers, params={"model": "price"})
    assert [p["model"] for p in predictions.json()["predictions"]] == ["price"]
    assert _live_requests(client, headers, model="toy") == TRAFFIC["toy"]
    assert _live_requests(client, headers, model="toy", version="1") == TRAFFIC["toy"]
    live = client.get("/api/v1/monitor/live", headers=headers, params={"model": "price"})
    assert live.json()["model"] == "price"
    alerts = client.get("/api/v1/alerts", headers=headers, params={"model": "toy"})
    assert [a["id"] for a in alerts.json()["alerts"]] == [scoped_world["alerts"]["toy"]]
    (batch,) = _stream_messages(client, "/api/v1/events/predictions", headers, 1, model="toy")
    assert [e["model"] for e in batch["events"]] == ["toy", "toy"]
    (alert,) = _stream_messages(
        client, "/api/v1/events/alerts", {**headers, "Last-Event-ID": "0"}, 1, model="price"
    )
    assert alert["id"] == scoped_world["alerts"]["price"]
    # A version still needs its model: which model's version "1" would it be?
    orphan = client.get("/api/v1/monitor/live", headers=headers, params={"version": "1"})
    assert orphan.status_code == 422 and orphan.json()["field"] == "version"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/predictions",
        "/api/v1/monitor/live",
        "/api/v1/alerts",
        "/api/v1/events/predictions",
        "/api/v1/events/alerts",
        "/api/v1/audit",
    ],
)
def test_a_model_outside_the_scope_is_refused_by_name(
    client: TestClient, scoped_world: dict[str, Any], path: str
) -> None:
    answer = client.get(path, headers=scoped_world["headers"], params={"model": "other"})
    assert answer.status_code == 403, answer.text
    body = answer.json()
    assert body["field"] == "model" and "other" in body["error"]


def test_read_scope_is_the_named_model_or_the_tokens_models() -> None:
    two = Principal("two", "support", frozenset(SCOPED))
    assert read_scope(two, "read_predictions").models == SCOPED
    named = read_scope(two, "read_predictions", "toy")
    assert (named.model, named.models) == ("toy", frozenset({"toy"}))
    assert named.includes("toy") and not named.includes("price")
    everything = read_scope(Principal("all", "support"), "read")
    assert everything.models is None and everything.includes("anything")
    with pytest.raises(Forbidden) as outside:
        read_scope(two, "read", "other")
    assert outside.value.field == "model"
    with pytest.raises(Forbidden):  # the role, before the model
        read_scope(Principal("app", "client", frozenset({"toy"})), "read_predictions", "toy")
