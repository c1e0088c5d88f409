"""Shared fixtures: real SQLite and PostgreSQL stores, a toy workspace, servers."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Qt tests run offscreen; set here so nobody has to remember it.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# One OpenMP thread per test process (set before scikit-learn loads its runtime): the suite
# runs two workers on two cores, and OpenMP threads for every core in each would oversubscribe
# the machine (scikit-learn's advice on oversubscription).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
from fastapi.testclient import TestClient

from backend.api import create_app
from backend.workspace import Workspace
from tests.helpers import (
    ToyDataDir,
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


def _create_database(admin: str, template: str | None = None) -> str:
    import psycopg

    name = f"servedeck_t_{uuid.uuid4().hex[:10]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"{copy}')
    return name


def _drop_database(admin: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _url_of(admin: str, name: str) -> str:
    base = admin.rsplit("/", 1)[0]
    return f"postgresql+psycopg://{base.removeprefix('postgresql://')}/{name}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    admin = _postgres_or_skip()
    name = _create_database(admin)
    yield _url_of(admin, name)
    _drop_database(admin, name)


# Migrating a store and registering the toy models cost about 1 s per test on SQLite and 2 s
# on PostgreSQL, for 600 tests: each test process makes every kind of store once and copies
# it per test (PostgreSQL: CREATE DATABASE ... TEMPLATE; SQLite and the data directory: files).
@dataclass
class _Template:
    data_dir: Path
    database: str | None  # PostgreSQL: the template database's name


class _Templates:
    def __init__(self, root: Path):
        self.root = root
        self.made: dict[tuple[str, bool], _Template] = {}

    def get(self, kind: str, with_models: bool) -> _Template:
        key = (kind, with_models)
        if key not in self.made:
            data_dir = self.root / f"{kind}-{'toy' if with_models else 'empty'}"
            data_dir.mkdir()
            database = None
            if kind == "sqlite":
                url = f"sqlite:///{data_dir / 'servedeck.db'}"
            else:
                admin = _postgres_or_skip()
                database = _create_database(admin)
                url = _url_of(admin, database)
            ws = Workspace.open(make_settings(data_dir, url))
            try:
                if with_models:
                    register_toy_models(ws)
            finally:
                ws.close()  # no connection may stay open on a template database
            self.made[key] = _Template(data_dir, database)
        return self.made[key]

    def drop(self) -> None:
        for template in self.made.values():
            if template.database is not None:
                _drop_database(_postgres_or_skip(), template.database)


@pytest.fixture(scope="session")
def _templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Templates]:
    templates = _Templates(tmp_path_factory.mktemp("templates"))
    yield templates
    templates.drop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(database_kind: str, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind (not migrated)."""
    if database_kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'servedeck.db'}"
        return
    admin = _postgres_or_skip()
    name = _create_database(admin)
    yield _url_of(admin, name)
    _drop_database(admin, name)


def _copied_workspace(
    templates: _Templates, kind: str, with_models: bool, tmp_path: Path
) -> Iterator[Workspace]:
    template = templates.get(kind, with_models)
    shutil.copytree(template.data_dir, tmp_path, dirs_exist_ok=True)
    database = None
    if template.database is None:
        url = f"sqlite:///{tmp_path / 'servedeck.db'}"
    else:
        admin = _postgres_or_skip()
        database = _create_database(admin, template=template.database)
        url = _url_of(admin, database)
    ws = Workspace.open(make_settings(tmp_path, url))
    try:
        yield ws
    finally:
        ws.close()
        if database is not None:
            _drop_database(_postgres_or_skip(), database)


@pytest.fixture
def workspace(_templates: _Templates, database_kind: str, tmp_path: Path) -> Iterator[Workspace]:
    """The toy models registered and serving, in SQLite and in PostgreSQL."""
    yield from _copied_workspace(_templates, database_kind, True, tmp_path)


@pytest.fixture
def store(_templates: _Templates, database_kind: str, tmp_path: Path) -> Iterator[Workspace]:
    """An empty store (no models), SQLite and PostgreSQL."""
    yield from _copied_workspace(_templates, database_kind, False, tmp_path)


@pytest.fixture
def sqlite_workspace(_templates: _Templates, tmp_path: Path) -> Iterator[Workspace]:
    yield from _copied_workspace(_templates, "sqlite", True, tmp_path)


@pytest.fixture(scope="session")
def toy_data_dir(_templates: _Templates) -> ToyDataDir:
    """``helpers.prepare_toy_data_dir`` from this process's template (SQLite, toy models
    registered): copies it into a data directory and returns the admin token. Registering
    anew costs a server test about as much as starting the server. Session-scoped (it holds
    nothing of a test's) so that module-scoped servers can use it too."""
    template = _templates.get("sqlite", True)

    def copy(data_dir: Path) -> str:
        shutil.copytree(template.data_dir, data_dir, dirs_exist_ok=True)
        return make_settings(data_dir).admin_token_file.read_text().strip()

    return copy


@pytest.fixture
def client(workspace: Workspace) -> Iterator[TestClient]:
    with TestClient(create_app(workspace=workspace)) as test_client:
        yield test_client


@pytest.fixture
def admin_headers(workspace: Workspace) -> dict[str, str]:
    return {"Authorization": f"Bearer {workspace.admin_token()}"}
