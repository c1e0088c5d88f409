"""A label attaches only to a prediction its token may see, of the model it was meant for."""

from __future__ import annotations

import json
from typing import Any

from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from backend.db import create_db_engine, upgrade_database
from backend.db.engine import alembic_config
from backend.db.tables import LabelRow
from backend.workspace import Workspace
from tests.helpers import TOY_ROW

PRICE_ROW = {"x1": 0.5, "x2": -1.0}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def predict(client: TestClient, headers: dict[str, str], model: str, request_id: str) -> None:
    row = TOY_ROW if model == "toy" else PRICE_ROW
    response = client.post(
        f"/v1/models/{model}:predict", headers=headers, json={"instances": [row], "id": request_id}
    )
    assert response.status_code == 200, response.text


def flush(client: TestClient) -> None:
    client.app.state.serving.prediction_log.flush(10)  # type: ignore[attr-defined]


def records(client: TestClient, headers: dict[str, str], request_id: str) -> dict[str, Any]:
    """model -> its logged prediction of ``request_id`` (as the admin sees it)."""
    page = client.get("/api/v1/predictions", headers=headers, params={"request_id": request_id})
    assert page.status_code == 200, page.text
    return {record["model"]: record for record in page.json()["predictions"]}


def feedback(client: TestClient, token: str, *labels: dict[str, Any]) -> Any:
    return client.post("/api/v1/feedback", headers=bearer(token), json={"labels": list(labels)})


def test_a_label_never_lands_on_another_models_prediction(
    client: TestClient, workspace: Workspace, admin_headers: dict[str, str]
) -> None:
    price_app = workspace.tokens.create("price-app", "client", models=["price"])
    # A toy prediction not in the log yet: the price token's label stays with price.
    predict(client, admin_headers, "toy", "toy-only-1")
    answer = feedback(client, price_app, {"request_id": "toy-only-1", "label": 12.5})
    assert answer.status_code == 200 and answer.json() == {"accepted": 1, "unmatched": 1}
    flush(client)
    assert records(client, admin_headers, "toy-only-1")["toy"]["label"] is None
    # Once logged, the toy prediction is invisible to it: the label is kept for price again.
    answer = feedback(client, price_app, {"request_id": "toy-only-1", "label": 3.0})
    assert answer.json() == {"accepted": 1, "unmatched": 1}
    assert records(client, admin_headers, "toy-only-1")["toy"]["label"] is None
    # Naming the other model is refused outright.
    named = feedback(client, price_app, {"request_id": "toy-only-1", "label": 1, "model": "toy"})
    assert named.status_code == 403 and named.json()["field"] == "labels[0].model"
    with workspace.sessions() as session:
        assert set(session.scalars(select(LabelRow.model))) == {"price"}


def test_a_request_id_two_models_share_is_labelled_per_model(
    client: TestClient, workspace: Workspace, admin_headers: dict[str, str]
) -> None:
    price_app = workspace.tokens.create("price-app", "client", models=["price"])
    predict(client, admin_headers, "toy", "order-4711")
    predict(client, admin_headers, "price", "order-4711")
    flush(client)
    answer = feedback(client, price_app, {"request_id": "order-4711", "label": 7.5})
    assert answer.json() == {"accepted": 1, "unmatched": 0}
    logged = records(client, admin_headers, "order-4711")
    assert logged["price"]["label"] == 7.5 and logged["toy"]["label"] is None
    # A token that sees both must say which one it means.
    admin = workspace.admin_token()
    ambiguous = feedback(client, admin, {"request_id": "order-4711", "label": 1})
    assert ambiguous.status_code == 422 and ambiguous.json()["field"] == "labels[0].model"
    assert "several models" in ambiguous.json()["error"]
    named = feedback(client, admin, {"request_id": "order-4711", "label": 1, "model": "toy"})
    assert named.json() == {"accepted": 1, "unmatched": 0}
    logged = records(client, admin_headers, "order-4711")
    assert logged["toy"]["label"] == 1 and logged["price"]["label"] == 7.5
    # The same prediction twice in one request is refused; one per model is fine.
    both = feedback(
        client,
        admin,
        {"request_id": "order-4711", "label": 0, "model": "toy"},
        {"request_id": "order-4711", "label": 2.0, "model": "price"},
    )
    assert both.json() == {"accepted": 2, "unmatched": 0}
    twice = feedback(
        client,
        admin,
        {"request_id": "order-4711", "label": 0, "model": "toy"},
        {"request_id": "order-4711", "label": 1, "model": "toy"},
    )
    assert twice.status_code == 422 and twice.json()["field"] == "labels[1]"


def test_a_pending_label_needs_a_model_unless_the_token_has_one(
    client: TestClient, workspace: Workspace
) -> None:
    admin = workspace.admin_token()
    unnamed = feedback(client, admin, {"request_id": "not-yet", "label": 1})
    assert unnamed.status_code == 422 and unnamed.json()["field"] == "labels[0].model"
    both = workspace.tokens.create("both-app", "client", models=["price", "toy"])
    unnamed = feedback(client, both, {"request_id": "not-yet", "label": 1})
    assert unnamed.status_code == 422 and unnamed.json()["field"] == "labels[0].model"
    # A pending label is checked against its model: a class the toy model never had, a
    # string for a regression, a model that does not exist.
    for label, model, field in (
        (7, "toy", "labels[0].label"),
        ("cheap", "price", "labels[0].label"),
        (1, "nonexistent", "labels[0].model"),
    ):
        refused = feedback(client, admin, {"request_id": "not-yet", "label": label, "model": model})
        assert refused.status_code == 422 and refused.json()["field"] == field, refused.text
    accepted = feedback(client, both, {"request_id": "not-yet", "label": 1, "model": "toy"})
    assert accepted.json() == {"accepted": 1, "unmatched": 1}


def test_the_upgrade_gives_existing_labels_the_model_they_joined(database_url: str) -> None:
    engine = create_db_engine(database_url)
    command.upgrade(alembic_config(engine), "0006")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO tokens (name, role, secret_sha256, models, constraints, created_at)"
                " VALUES ('toy-app', 'client', 'a', '[\"toy\"]', '{}', CURRENT_TIMESTAMP),"
                " ('eng', 'engineer', 'b', NULL, '{}', CURRENT_TIMESTAMP)"
            )
        )
        for request_id, model in (("r1", "toy"), ("shared", "toy"), ("shared", "price")):
            connection.execute(
                text(
                    "INSERT INTO predictions (request_id, row_index, created_at, model, version,"
                    " route, features, outputs, latency_ms, token_name) VALUES (:rid, 0, 1.0,"
                    " :model, '1', 'active', '{}', '{}', 1.0, 'eng')"
                ),
                {"rid": request_id, "model": model},
            )
        for request_id, source in (
            ("r1", "eng"),  # joined one prediction
            ("shared", "toy-app"),  # joined two, its token saw one
            ("shared-eng", "eng"),  # pending, token of all models: model unknown
            ("pending", "toy-app"),  # pending, its token had one model
        ):
            connection.execute(
                text(
                    "INSERT INTO labels (request_id, row_index, label, received_at, source)"
                    " VALUES (:rid, 0, '1', 1.0, :source)"
                ),
                {"rid": request_id, "source": source},
            )
        connection.execute(
            text(
                # A label in words: PostgreSQL hands it back decoded, and copying it must
                # still give valid JSON.
                "INSERT INTO labels (request_id, row_index, label, received_at, source)"
                " VALUES ('shared', 1, '\"fraud\"', 1.0, 'eng')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO predictions (request_id, row_index, created_at, model, version,"
                " route, features, outputs, latency_ms, token_name) VALUES ('shared', 1, 1.0,"
                " 'toy', '1', 'active', '{}', '{}', 1.0, 'eng'), ('shared', 1, 1.0, 'price',"
                " '1', 'active', '{}', '{}', 1.0, 'eng')"
            )
        )
    upgrade_database(engine)
    with engine.connect() as connection:
        labels = connection.execute(
            text("SELECT request_id, row_index, model FROM labels ORDER BY id")
        ).all()
        copied = connection.execute(
            text("SELECT label FROM labels WHERE request_id = 'shared' AND row_index = 1")
        ).all()
    sqlite = engine.dialect.name == "sqlite"  # hands JSON back as text; PostgreSQL decoded
    engine.dispose()
    assert [json.loads(v) if sqlite else v for (v,) in copied] == ["fraud"] * 2
    assert sorted((r, i, m or "") for r, i, m in labels) == sorted(
        [
            ("r1", 0, "toy"),
            ("shared", 0, "toy"),
            ("shared-eng", 0, ""),
            ("pending", 0, "toy"),
            # The engineer saw both models' predictions: the label stays on both.
            ("shared", 1, "price"),
            ("shared", 1, "toy"),
        ]
    )
