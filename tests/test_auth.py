"""Tokens, roles, per-model scopes and input constraints."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text

from backend.auth import TokenService
from backend.errors import Unauthorized
from backend.workspace import Workspace
from tests.helpers import TOY_ROW, oip_tensors


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


PROTECTED = [
    ("GET", "/v2"),
    ("GET", "/v2/models/toy"),
    ("GET", "/v2/models/toy/ready"),
    ("POST", "/v2/models/toy/infer"),
    ("POST", "/v1/models/toy:predict"),
    ("GET", "/api/v1/models"),
    ("GET", "/api/v1/models/toy"),
    ("GET", "/api/v1/predictions"),
    ("POST", "/api/v1/feedback"),
    ("GET", "/api/v1/tokens"),
    ("GET", "/api/v1/whoami"),
    ("GET", "/api/v1/events/predictions"),
    ("GET", "/api/v1/monitor/live"),
    ("GET", "/api/v1/alerts"),
    ("GET", "/api/v1/alerts/1"),
    ("POST", "/api/v1/alerts/1/acknowledge"),
    ("GET", "/api/v1/events/alerts"),
]
PUBLIC = {"/v2/health/live", "/v2/health/ready", "/openapi.json", "/docs", "/redoc"}


def test_the_protected_list_covers_every_route(client: TestClient) -> None:
    paths = {getattr(route, "path", "") for route in client.app.routes}  # type: ignore[attr-defined]
    listed = {path for _, path in PROTECTED}
    # Routes with parameters are listed with example values: compare their fixed prefixes.
    uncovered = [
        path
        for path in paths - PUBLIC
        if path
        and not path.startswith("/docs/")
        and not any(p.startswith(path.split("{")[0].rstrip("/")) for p in listed)
    ]
    assert not uncovered, f"routes missing from PROTECTED: {uncovered}"


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_endpoint_but_health_needs_a_token(
    client: TestClient, method: str, path: str
) -> None:
    for headers in ({}, bearer("sdk_wrong"), {"Authorization": "Basic abc"}):
        response = client.request(method, path, headers=headers, json={})
        assert response.status_code == 401, (path, headers, response.text)
        assert response.json()["field"] == "authorization"


def test_roles(client: TestClient, workspace: Workspace) -> None:
    support = workspace.tokens.create("helpdesk", "support")
    engineer = workspace.tokens.create("eng", "engineer")
    body = {"instances": [TOY_ROW]}
    denied = client.post("/v1/models/toy:predict", headers=bearer(support), json=body)
    assert denied.status_code == 403 and "support role may not predict" in denied.json()["error"]
    assert client.get("/api/v1/models", headers=bearer(support)).status_code == 200
    assert client.get("/api/v1/tokens", headers=bearer(engineer)).status_code == 403
    assert (
        client.post("/v1/models/toy:predict", headers=bearer(engineer), json=body).status_code
        == 200
    )
    whoami = client.get("/api/v1/whoami", headers=bearer(engineer)).json()
    assert whoami["name"] == "eng" and whoami["role"] == "engineer"


def test_client_scope_and_constraints(client: TestClient, workspace: Workspace) -> None:
    app_token = workspace.tokens.create(
        "shop", "client", models=["toy"], constraints={"country": ["DE", "FR"]}
    )
    headers = bearer(app_token)
    assert (
        client.post(
            "/v1/models/toy:predict", headers=headers, json={"instances": [TOY_ROW]}
        ).status_code
        == 200
    )
    outside = client.post(
        "/v1/models/toy:predict",
        headers=headers,
        json={"instances": [TOY_ROW, {**TOY_ROW, "country": "US"}]},
    )
    assert outside.status_code == 403
    assert outside.json()["field"] == "instances[1].country"
    other_model = client.post(
        "/v2/models/price/infer",
        headers=headers,
        json={"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}]},
    )
    assert other_model.status_code == 403 and other_model.json()["field"] == "model"
    # A client may address the served version, but not one that is not being served.
    assert (
        client.post(
            "/v2/models/toy/versions/1/infer", headers=headers, json=oip_tensors([TOY_ROW])
        ).status_code
        == 200
    )
    unserved = client.post(
        "/v2/models/toy/versions/2/infer", headers=headers, json=oip_tensors([TOY_ROW])
    )
    assert unserved.status_code == 403, unserved.text
    listed = client.get("/api/v1/models", headers=headers)
    assert listed.status_code == 403
    assert client.get("/api/v1/tokens", headers=headers).status_code == 403


def test_token_api_and_revocation(client: TestClient, admin_headers: dict[str, str]) -> None:
    created = client.post(
        "/api/v1/tokens", headers=admin_headers, json={"name": "batch-job", "role": "engineer"}
    )
    assert created.status_code == 201
    secret = created.json()["token"]
    assert client.get("/api/v1/whoami", headers=bearer(secret)).status_code == 200
    duplicate = client.post(
        "/api/v1/tokens", headers=admin_headers, json={"name": "batch-job", "role": "engineer"}
    )
    assert duplicate.status_code == 409 and duplicate.json()["field"] == "name"
    bad_role = client.post(
        "/api/v1/tokens", headers=admin_headers, json={"name": "x", "role": "overlord"}
    )
    assert bad_role.status_code == 422 and bad_role.json()["field"] == "role"
    unscoped_client = client.post(
        "/api/v1/tokens", headers=admin_headers, json={"name": "y", "role": "client"}
    )
    assert unscoped_client.status_code == 422 and unscoped_client.json()["field"] == "models"
    listed = client.get("/api/v1/tokens", headers=admin_headers).json()
    assert {t["name"] for t in listed} >= {"admin", "batch-job"}
    assert all("secret" not in str(t) and "sdk_" not in str(t) for t in listed)
    assert client.delete("/api/v1/tokens/batch-job", headers=admin_headers).status_code == 204
    assert client.get("/api/v1/whoami", headers=bearer(secret)).status_code == 401


def test_tokens_are_stored_hashed_and_admin_file_is_private(workspace: Workspace) -> None:
    secret = workspace.admin_token()
    mode = stat.S_IMODE(os.stat(workspace.settings.admin_token_file).st_mode)
    assert mode == 0o600
    with workspace.engine.connect() as connection:
        dump = str(connection.exec_driver_sql("SELECT * FROM tokens").all())
    assert secret not in dump and secret.removeprefix("sdk_") not in dump


def test_cli_prints_only_the_token(sqlite_workspace: Workspace) -> None:
    data_dir = str(sqlite_workspace.settings.data_dir)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "backend.cli",
            "tokens",
            "create",
            "--role",
            "client",
            "--name",
            "pos-terminal",
            "--models",
            "toy",
            "--constraint",
            "country=DE,FR",
            "--data-dir",
            data_dir,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    token = result.stdout.strip()
    assert token.startswith("sdk_") and "\n" not in token
    principal = sqlite_workspace.tokens.authenticate(f"Bearer {token}")
    assert principal.role == "client" and principal.models == frozenset({"toy"})
    assert principal.constraints == {"country": frozenset({"DE", "FR"})}


def test_a_cached_token_refreshes_behind_and_expires_within_the_ttl(workspace: Workspace) -> None:
    tokens = TokenService(workspace.sessions, cache_ttl_s=0.5)
    secret = workspace.tokens.create("kiosk", "support")
    header = f"Bearer {secret}"
    assert tokens.authenticate_cached(header) is None  # never seen: only the database knows
    assert tokens.authenticate(header).name == "kiosk"
    assert tokens.authenticate_cached(header) is not None  # fresh: the cache answers alone
    # Unused past the TTL: only the database may answer again.
    cached_until = time.monotonic() + 0.5
    while time.monotonic() < cached_until:
        time.sleep(0.05)
    assert tokens.authenticate_cached(header) is None
    assert tokens.authenticate(header).name == "kiosk"
    # Revoked by another process (straight in the database): the tokens table is checked
    # behind the requests once half the TTL has passed, and the token refused within the TTL.
    with workspace.engine.begin() as connection:
        connection.exec_driver_sql(
            "UPDATE tokens SET revoked_at = CURRENT_TIMESTAMP WHERE name = 'kiosk'"
        )
    revoked = time.monotonic()
    answered_after_ttl = []
    while time.monotonic() - revoked < 1.0:
        try:
            principal = tokens.authenticate_cached(header)
        except Unauthorized:
            break
        if principal is not None and time.monotonic() - revoked >= 0.5:
            answered_after_ttl.append(principal)
        time.sleep(0.01)
    assert not answered_after_ttl, "a revoked token was answered from the cache past the TTL"
    with pytest.raises(Unauthorized):
        tokens.authenticate(header)


class _Statements(list[str]):
    """Every SQL statement on the tokens table from now on (appended as they run)."""

    def record(self, _conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        if "tokens" in statement:
            self.append(statement)


def _statements_on_tokens(workspace: Workspace) -> _Statements:
    seen = _Statements()
    event.listen(workspace.engine, "before_cursor_execute", seen.record)
    return seen


def test_tokens_in_use_are_checked_with_one_read_whatever_their_number(
    workspace: Workspace,
) -> None:
    """Thirty tokens in use cost one read of the table per check, not one read each."""
    tokens = TokenService(workspace.sessions, cache_ttl_s=2.0)
    headers = [f"Bearer {workspace.tokens.create(f'kiosk-{n}', 'support')}" for n in range(30)]
    for header in headers:
        tokens.authenticate(header)
    time.sleep(1.1)  # past half the TTL: the next answers from the cache ask for a check
    statements = _statements_on_tokens(workspace)
    for header in headers:
        assert tokens.authenticate_cached(header) is not None
    tokens._refresher.submit(lambda: None).result(timeout=5)  # after the check behind them
    event.remove(workspace.engine, "before_cursor_execute", statements.record)
    assert len(statements) == 1, statements
    assert "count" in statements[0].lower()


def test_a_token_read_before_a_revocation_is_not_kept_after_a_check_saw_it(
    workspace: Workspace,
) -> None:
    """The race a table-wide check opens: a request reads a token, the token is revoked and a
    check empties the cache, then the request stores what it read. It must not be kept."""
    tokens = TokenService(workspace.sessions, cache_ttl_s=60.0)
    header = f"Bearer {workspace.tokens.create('kiosk', 'support')}"
    fired: list[bool] = []

    def revoke_and_check_meanwhile(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        if "secret_sha256" in statement and not fired:
            fired.append(True)
            with workspace.engine.begin() as connection:
                connection.exec_driver_sql(
                    "UPDATE tokens SET revoked_at = CURRENT_TIMESTAMP WHERE name = 'kiosk'"
                )
            tokens._check_table()

    event.listen(workspace.engine, "after_cursor_execute", revoke_and_check_meanwhile)
    try:
        assert tokens.authenticate(header).name == "kiosk"  # read before the revocation
    finally:
        event.remove(workspace.engine, "after_cursor_execute", revoke_and_check_meanwhile)
    assert fired
    assert tokens.authenticate_cached(header) is None  # not kept: only the database answers
    with pytest.raises(Unauthorized):
        tokens.authenticate(header)


def test_a_refused_token_created_elsewhere_is_accepted_within_the_ttl(
    workspace: Workspace,
) -> None:
    """A refusal is cached like an answer, for at most the TTL: a token created meanwhile by
    another process (here straight in the database) is accepted within it."""
    tokens = TokenService(workspace.sessions, cache_ttl_s=1.0)
    tokens.authenticate(f"Bearer {workspace.tokens.create('kiosk', 'support')}")
    secret = "sdk_created-by-another-process"
    header = f"Bearer {secret}"
    with pytest.raises(Unauthorized):
        tokens.authenticate(header)
    with pytest.raises(Unauthorized):
        tokens.authenticate_cached(header)  # the refusal is cached
    with workspace.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO tokens (name, role, secret_sha256, constraints, created_at) "
                "VALUES ('later', 'support', :digest, '{}', CURRENT_TIMESTAMP)"
            ),
            {"digest": hashlib.sha256(secret.encode()).hexdigest()},
        )
    created = time.monotonic()
    while True:
        asked = time.monotonic()
        try:
            if tokens.authenticate_cached(header) is None:
                break  # the cache gave up its refusal: the database answers next
        except Unauthorized:
            assert asked - created < 1.0, "a refusal outlived the TTL"
            time.sleep(0.02)
    assert tokens.authenticate(header).name == "later"
    assert tokens.authenticate_cached(header) is not None
