"""Shared fixtures: real SQLite and PostgreSQL stores, a toy workspace, servers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

# Qt tests run offscreen; set here so nobody has to remember it.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from fastapi.testclient import TestClient

from backend.api import create_app
from backend.workspace import Workspace
from tests.helpers import (
    make_settings,
    register_toy_models,
    services_required,
)

POSTGRES_ADMIN_URL = os.environ.get(
    "SERVEDECK_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _postgres_or_skip() -> str:
    import psycopg

    plain = POSTGRES_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    try:
        psycopg.connect(plain, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL not reachable at {plain}: {exc}"
        if services_required():
            pytest.fail(message + " (SERVEDECK_REQUIRE_SERVICES=1)")
        pytest.skip(message)
    return plain


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import psycopg

    admin = _postgres_or_skip()
    name = f"servedeck_t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    base = admin.rsplit("/", 1)[0]
    yield f"postgresql+psycopg://{base.removeprefix('postgresql://')}/{name}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'servedeck.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def workspace(tmp_path, database_url: str) -> Iterator[Workspace]:  # type: ignore[no-untyped-def]
    ws = Workspace.open(make_settings(tmp_path, database_url))
    register_toy_models(ws)
    yield ws
    ws.close()


@pytest.fixture
def store(tmp_path, database_url: str) -> Iterator[Workspace]:  # type: ignore[no-untyped-def]
    """An empty store (no models), SQLite and PostgreSQL."""
    ws = Workspace.open(make_settings(tmp_path, database_url))
    yield ws
    ws.close()


@pytest.fixture
def sqlite_workspace(tmp_path) -> Iterator[Workspace]:  # type: ignore[no-untyped-def]
    ws = Workspace.open(make_settings(tmp_path))
    register_toy_models(ws)
    yield ws
    ws.close()


@pytest.fixture
def client(workspace: Workspace) -> Iterator[TestClient]:
    with TestClient(create_app(workspace=workspace)) as test_client:
        yield test_client


@pytest.fixture
def admin_headers(workspace: Workspace) -> dict[str, str]:
    return {"Authorization": f"Bearer {workspace.admin_token()}"}
