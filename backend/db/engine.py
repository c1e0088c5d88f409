"""Engine creation (SQLite in WAL mode, or PostgreSQL through psycopg) and in-place upgrades."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

from backend.errors import ServeDeckError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the prediction-log writer append while requests read; NORMAL sync is durable
    # across application crashes (the case we promise), not across power loss mid-commit.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _owner_only_sqlite_file(database_url: str) -> None:
    """Create the SQLite file readable by its owner only (SQLite gives its -wal and -shm
    files the database file's mode), and tighten one made before this rule."""
    path = make_url(database_url).database or ""
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return  # SQLite itself says what is wrong with the path, in its own words
    try:
        if os.fstat(fd).st_uid == os.getuid():
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(OSError):
            os.chmod(path + suffix, 0o600)


def create_db_engine(database_url: str) -> Engine:
    if database_url.startswith("sqlite"):
        _owner_only_sqlite_file(database_url)
        engine = create_engine(
            database_url,
            connect_args={"check_same_thread": False, "timeout": 10},
            pool_pre_ping=False,
        )
        event.listen(engine, "connect", _tune_sqlite)
        return engine
    if database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url.removeprefix("postgresql://")
    if not database_url.startswith("postgresql+psycopg://"):
        # The prediction log writes through each driver's bulk path (sqlite3, psycopg COPY).
        raise ServeDeckError(
            f"unsupported database URL {database_url.split(':', 1)[0]!r}: use sqlite:///PATH "
            "or postgresql+psycopg://USER@HOST/DB",
            "database_url",
        )
    return create_engine(database_url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def upgrade_database(engine: Engine) -> None:
    """Bring any data directory, new or old, to the current schema in place."""
    command.upgrade(alembic_config(engine), "head")


def require_current_schema(engine: Engine) -> None:
    """Refuse a store at another schema than this code's, in words: a process that joins a
    served workspace does not upgrade it (its server does), and on an older or newer store it
    would otherwise fail later, on the first table or column that differs."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    if current != head:
        raise ServeDeckError(
            f"the store is at schema revision {current or 'none (empty)'} and this ServeDeck "
            f"needs {head}: start `servedeck-server serve` on it with this version (the server "
            "upgrades its store), or use the version that serves it",
            "database_url",
        )
