"""A workspace: one data directory (or database) opened, migrated and ready to serve."""

from __future__ import annotations

import os
from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from backend.auth import TokenService
from backend.db import (
    create_db_engine,
    require_current_schema,
    session_factory,
    upgrade_database,
)
from backend.db.tables import TokenRow
from backend.deploy.service import DeployService
from backend.monitoring.alerts import AlertService
from backend.monitoring.drift.references import reference_summary_json
from backend.monitoring.drift.windows import DriftWindows
from backend.registry import ArtifactStore, Registry
from backend.settings import Settings


@dataclass
class Workspace:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    registry: Registry
    tokens: TokenService
    deploy: DeployService
    alerts: AlertService
    drift: DriftWindows

    @classmethod
    def open(cls, settings: Settings) -> Workspace:
        """Open and prepare the workspace: the store upgraded, an admin token on first start.

        For the process that owns the data directory (the server, a command, ``create_app``
        alone)."""
        workspace = cls._connect(settings, upgrade=True)
        workspace.ensure_admin_token()
        return workspace

    @classmethod
    def join(cls, settings: Settings) -> Workspace:
        """Open a workspace its serving process already prepared (a worker, the watcher).

        The store is neither upgraded (a store at another schema is refused, in words) nor
        given a first-start token: a joining process that wrote one would put a new admin token
        back after its owner deleted the file on purpose."""
        return cls._connect(settings, upgrade=False)

    @classmethod
    def _connect(cls, settings: Settings, *, upgrade: bool) -> Workspace:
        settings.ensure_dirs()
        engine = create_db_engine(settings.database_url)
        if upgrade:
            upgrade_database(engine)
        else:
            require_current_schema(engine)
        sessions = session_factory(engine)
        registry = Registry(
            sessions,
            ArtifactStore(settings.artifacts_dir),
            summarise_reference=reference_summary_json,
        )
        alerts = AlertService(sessions)
        workspace = cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            registry=registry,
            tokens=TokenService(sessions, settings.token_cache_ttl_s),
            deploy=DeployService(sessions, registry, alerts),
            alerts=alerts,
            drift=DriftWindows(engine, sessions),
        )
        return workspace

    def ensure_admin_token(self) -> str:
        """On first start, write an admin token to a file only its owner can read."""
        path = self.settings.admin_token_file
        if path.exists():
            return path.read_text().strip()
        with self.sessions() as session:
            taken = set(session.scalars(select(TokenRow.name)).all())
        name = "admin"
        counter = 1
        while name in taken:
            counter += 1
            name = f"admin-{counter}"
        secret = self.tokens.create(name, "admin")
        # O_EXCL with mode 0600: the secret is never readable by others, even for an instant.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secret + "\n")
        return secret

    def admin_token(self) -> str:
        return self.settings.admin_token_file.read_text().strip()

    def close(self) -> None:
        self.engine.dispose()
