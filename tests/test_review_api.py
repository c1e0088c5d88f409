"""The review API: every role, every refusal a JSON 4xx naming the field and the reason."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from backend.api import create_app
from backend.workspace import Workspace
from tests.review_helpers import add_held_out_rows

BASE = "/api/v1/models/toy/review"


@pytest.fixture
def api(sqlite_workspace: Workspace) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:
    tokens = {"admin": sqlite_workspace.admin_token()}
    for role in ("engineer", "support"):
        tokens[role] = sqlite_workspace.tokens.create(role, role)
    tokens["support-2"] = sqlite_workspace.tokens.create("support-2", "support")
    tokens["client"] = sqlite_workspace.tokens.create("client", "client", ["toy"])
    tokens["price-support"] = sqlite_workspace.tokens.create("price-support", "support", ["price"])
    headers = {name: {"Authorization": f"Bearer {token}"} for name, token in tokens.items()}
    add_held_out_rows(sqlite_workspace, 6, policy={"policy": "rule", "answer": 1})
    with TestClient(create_app(workspace=sqlite_workspace)) as client:
        yield client, headers


@pytest.mark.parametrize("role", ["admin", "engineer", "support"])
def test_support_engineers_and_admins_review(
    api: tuple[TestClient, dict[str, dict[str, str]]], role: str
) -> None:
    client, headers = api
    batch = client.get(f"{BASE}/next", params={"limit": 2}, headers=headers[role])
    assert batch.status_code == 200, batch.text
    items = batch.json()["items"]
    assert len(items) == 2 and items[0]["held_out"] == {"policy": "rule", "answer": 1}
    answered = client.post(
        f"{BASE}/{items[0]['item']}/answer", json={"label": 1}, headers=headers[role]
    )
    assert answered.status_code == 200, answered.text
    assert answered.json()["label_stored"] is True
    skipped = client.post(f"{BASE}/{items[1]['item']}/skip", headers=headers[role])
    assert skipped.json()["decision"] == "skip"
    undone = client.post(f"{BASE}/undo", headers=headers[role])
    assert undone.json()["undone"]["decision"] == "skip"
    assert undone.json()["item"]["item"] == items[1]["item"]
    stats = client.get(f"{BASE}/stats", headers=headers[role]).json()
    assert (stats["done"], stats["in_queue"], stats["total"]) == (1, 5, 6)
    assert stats["reviewers"][0]["reviewer"] == role


def test_clients_and_other_scopes_may_not_review(
    api: tuple[TestClient, dict[str, dict[str, str]]],
) -> None:
    client, headers = api
    for method, path in (
        ("GET", f"{BASE}/next"),
        ("POST", f"{BASE}/1/skip"),
        ("POST", f"{BASE}/undo"),
        ("GET", f"{BASE}/stats"),
    ):
        refused = client.request(method, path, headers=headers["client"])
        assert refused.status_code == 403, refused.text
        assert "client role may not read predictions" in refused.json()["reason"]
        scoped = client.request(method, path, headers=headers["price-support"])
        assert scoped.status_code == 403 and scoped.json()["field"] == "model"
        assert client.request(method, path).status_code == 401


def test_bad_input_is_a_4xx_naming_the_field_and_the_reason(
    api: tuple[TestClient, dict[str, dict[str, str]]],
) -> None:
    client, headers = api
    mine = client.get(f"{BASE}/next", params={"limit": 1}, headers=headers["support"]).json()
    item = mine["items"][0]["item"]

    def post(path: str, who: str = "support", **kwargs: object) -> tuple[int, dict[str, object]]:
        answer = client.post(f"{BASE}{path}", headers=headers[who], **kwargs)  # type: ignore[arg-type]
        return answer.status_code, answer.json()

    status, body = post(f"/{item}/answer", json={"label": 5})
    assert status == 422 and body["field"] == "label"
    assert "5 is not one of the model's classes: 0, 1" in str(body["reason"])
    status, body = post("/424242/answer", json={"label": 1})
    assert status == 404 and body["field"] == "item" and "no review item 424242" in body["error"]
    status, body = post(f"/{item}/answer", "support-2", json={"label": 1})
    assert status == 409 and body["field"] == "item"
    assert "handed to another reviewer" in str(body["reason"])
    status, body = post("/undo", "support-2")
    assert status == 409 and body["field"] == "undo" and "nothing to undo" in str(body["reason"])
    status, body = post(f"/{item}/answer", json={"label": [1]})
    assert status == 422 and body["field"] == "label"
    status, body = post(f"/{item}/answer", json={"label": 1, "extra": True})
    assert status == 422 and body["field"] == "extra"
    status, body = post(f"/{item}/answer", json={})
    assert status == 422 and body["field"] == "label"
    status, body = post("/0/answer", json={"label": 1})
    assert status == 422 and body["field"] == "item"
    status, body = post("/x/skip")
    assert status == 422 and body["field"] == "item"
    answer = client.get(f"{BASE}/next", params={"limit": 0}, headers=headers["support"])
    assert answer.status_code == 422 and answer.json()["field"] == "limit"
    answer = client.get("/api/v1/models/nope/review/next", headers=headers["support"])
    assert answer.status_code == 404 and answer.json()["reason"] == "no model named 'nope'"
    # A regression model takes a number, not a class.
    answer = client.get("/api/v1/models/price/review/stats", headers=headers["support"])
    assert answer.status_code == 200 and answer.json()["total"] == 0
