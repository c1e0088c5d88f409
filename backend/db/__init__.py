"""Storage: SQLAlchemy tables, engine creation and Alembic migrations."""

from backend.db.engine import (
    create_db_engine,
    require_current_schema,
    session_factory,
    upgrade_database,
)

__all__ = ["create_db_engine", "require_current_schema", "session_factory", "upgrade_database"]
