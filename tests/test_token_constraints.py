"""Token constraints are typed by the model's signature and refused when they cannot apply;
a token revoked from the command line is refused by a running server within a second."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest
import requests
from fastapi.testclient import TestClient

from backend.workspace import Workspace
from tests.helpers import TOY_ROW, ServerProcess, start_server
from tests.test_cli import run_cli


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def cli(data_dir: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, "--data-dir", data_dir)


def test_command_line_constraints_take_the_features_types(sqlite_workspace: Workspace) -> None:
    data_dir = str(sqlite_workspace.settings.data_dir)
    made = cli(
        data_dir,
        "tokens",
        "create",
        "--role",
        "client",
        "--name",
        "till",
        "--models",
        "toy",
        "--constraint",
        "count=3,4",
        "--constraint",
        "online=true",
        "--constraint",
        "amount=120.5",
        "--constraint",
        "country=DE",
    )
    assert made.returncode == 0, made.stderr
    principal = sqlite_workspace.tokens.authenticate(f"Bearer {made.stdout.strip()}")
    assert principal.constraints == {
        "count": frozenset({3, 4}),
        "online": frozenset({True}),
        "amount": frozenset({120.5}),
        "country": frozenset({"DE"}),
    }
    assert all(type(v) is int for v in principal.constraints["count"])
    with TestClient(_app(sqlite_workspace)) as client:
        headers = bearer(made.stdout.strip())
        allowed = client.post(
            "/v1/models/toy:predict", headers=headers, json={"instances": [TOY_ROW]}
        )
        assert allowed.status_code == 200, allowed.text
        outside = client.post(
            "/v1/models/toy:predict",
            headers=headers,
            json={"instances": [{**TOY_ROW, "count": 5}]},
        )
        assert outside.status_code == 403 and outside.json()["field"] == "instances[0].count"
    for constraint, says in (
        ("hour=12", "model 'toy' has no feature 'hour'"),
        ("count=three", "expected an integer"),
        ("online=maybe", "expected true or false"),
        ("country=XX", "unknown category"),
    ):
        refused = cli(
            data_dir,
            "tokens",
            "create",
            "--role",
            "client",
            "--name",
            "refused",
            "--models",
            "toy",
            "--constraint",
            constraint,
        )
        assert refused.returncode != 0 and says in refused.stderr, (constraint, refused.stderr)
        assert "Traceback" not in refused.stderr
    assert "refused" not in {t.name for t in sqlite_workspace.tokens.list()}


def _app(workspace: Workspace) -> Any:
    from backend.api.app import create_app

    return create_app(workspace=workspace)


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"models": ["toy"], "constraints": {"hour": [12]}}, "constraints.hour", "no feature"),
        (
            {"models": ["price"], "constraints": {"country": ["DE"]}},
            "constraints.country",
            "model 'price' has no feature 'country'",
        ),
        (
            {"models": ["toy", "price"], "constraints": {"country": ["DE"]}},
            "constraints.country",
            "model 'price' has no feature",
        ),
        ({"models": ["toy"], "constraints": {"count": ["x"]}}, "constraints.count[0]", "integer"),
        ({"models": ["toy"], "constraints": {"count": [True]}}, "constraints.count[0]", "integer"),
        ({"models": ["toy"], "constraints": {"amount": [-1]}}, "constraints.amount[0]", "minimum"),
        ({"models": ["toy"], "constraints": {"country": [1]}}, "constraints.country[0]", "categ"),
        ({"models": ["toy"], "constraints": {"country": []}}, "constraints.country", "at least"),
        ({"models": ["ghost"], "constraints": {"country": ["DE"]}}, "models", "no model named"),
        ({"constraints": {"country": ["DE"]}}, "constraints", "scoped to models"),
    ],
)
def test_a_constraint_that_cannot_apply_is_refused_at_creation(
    client: TestClient,
    admin_headers: dict[str, str],
    body: dict[str, Any],
    field: str,
    says: str,
) -> None:
    answer = client.post(
        "/api/v1/tokens", headers=admin_headers, json={"name": "pos", "role": "client", **body}
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field and says in answer.json()["reason"], answer.text


def test_api_constraints_are_typed_too(client: TestClient, admin_headers: dict[str, str]) -> None:
    answer = client.post(
        "/api/v1/tokens",
        headers=admin_headers,
        json={
            "name": "pos",
            "role": "client",
            "models": ["toy"],
            "constraints": {"count": ["3", 3.0], "online": [1], "amount": ["120.5"]},
        },
    )
    assert answer.status_code == 201, answer.text
    constraints = answer.json()["constraints"]
    assert constraints == {"count": [3], "online": [True], "amount": [120.5]}
    allowed = client.post(
        "/v1/models/toy:predict",
        headers=bearer(answer.json()["token"]),
        json={"instances": [TOY_ROW]},
    )
    assert allowed.status_code == 200, allowed.text


@pytest.mark.serial  # measures what is refused within 1 s
def test_a_token_revoked_from_the_command_line_is_refused_within_a_second(
    sqlite_workspace: Workspace,
) -> None:
    data_dir = sqlite_workspace.settings.data_dir
    secret = sqlite_workspace.tokens.create("kiosk", "support")
    server: ServerProcess = start_server(data_dir)
    try:
        session = requests.Session()
        url = f"{server.url}/api/v1/whoami"
        # Used all along, so the server holds it in its token cache the whole time.
        assert session.get(url, headers=bearer(secret), timeout=10).status_code == 200
        revoke = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "backend.cli",
                "tokens",
                "revoke",
                "kiosk",
                "--data-dir",
                str(data_dir),
            ],
        )
        while revoke.poll() is None:
            assert session.get(url, headers=bearer(secret), timeout=10).status_code in (200, 401)
        assert revoke.returncode == 0
        revoked_at = time.monotonic()
        statuses: list[tuple[float, int]] = []
        while time.monotonic() - revoked_at < 1.5:
            status = session.get(url, headers=bearer(secret), timeout=10).status_code
            statuses.append((time.monotonic() - revoked_at, status))
        late = [status for after, status in statuses if after >= 1.0]
        assert late and set(late) == {401}, statuses
    finally:
        server.stop()


def test_the_upgrade_types_constraints_stored_as_text(database_url: str) -> None:
    from alembic import command
    from sqlalchemy import text

    from backend.db import create_db_engine, upgrade_database
    from backend.db.engine import alembic_config

    engine = create_db_engine(database_url)
    command.upgrade(alembic_config(engine), "0006")
    signature = '[{"name": "hour", "type": "int"}, {"name": "night", "type": "bool"}, ' + (
        '{"name": "fare", "type": "float"}, {"name": "city", "type": "category"}]'
    )
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO models (id, name, task, description, active_version, "
                "state_generation, created_at) VALUES (1, 'ride-price', 'regression', '', '1', "
                "1, CURRENT_TIMESTAMP)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO model_versions (model_id, number, artifact_sha256, artifact_format,"
                " artifact_size, skops_trusted_types, task, signature, example_input, validity,"
                " description, registered_by, created_at) VALUES (1, 1, 'x', 'skops', 1, '[]',"
                " 'regression', :signature, '{}', '{}', '', 't', CURRENT_TIMESTAMP)"
            ),
            {"signature": signature},
        )
        connection.execute(
            text(
                "INSERT INTO tokens (name, role, secret_sha256, models, constraints, created_at)"
                " VALUES ('taxi', 'client', 'a', '[\"ride-price\"]', :constraints,"
                " CURRENT_TIMESTAMP)"
            ),
            {
                "constraints": '{"hour": ["12", "x"], "night": ["true"], "fare": ["2.5"], '
                '"city": ["12"]}'
            },
        )
    upgrade_database(engine)
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT constraints FROM tokens")).scalar_one()
    engine.dispose()
    constraints = json.loads(stored) if isinstance(stored, str) else stored
    assert constraints == {"hour": [12, "x"], "night": [True], "fare": [2.5], "city": ["12"]}


def test_a_feature_typed_differently_in_two_models_is_refused() -> None:
    """One stored value must equal every scoped model's validated input: "12" for a text
    feature and 12 for an int one cannot both hold, so such a token is refused, not made."""
    from backend.errors import InputError
    from backend.registry.constraints import typed_constraints
    from backend.schemas import FeatureSpec

    as_text = [FeatureSpec(name="hour", type="string")]
    as_int = [FeatureSpec(name="hour", type="int")]
    with pytest.raises(InputError) as refused:
        typed_constraints({"kiosk": as_text, "fraud": as_int}, {"hour": ["12"]})
    assert refused.value.field == "constraints.hour"
    assert "'kiosk'" in str(refused.value) and "'fraud'" in str(refused.value)
    # The same type in both models is one value for both.
    both = typed_constraints({"a": as_int, "b": as_int}, {"hour": ["12"]})
    assert both == {"hour": [12]}
