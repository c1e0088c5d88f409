"""Alembic environment: runs against the engine ServeDeck hands over, never a config file URL."""

from alembic import context

from backend.db.report_tables import managed_outside_metadata
from backend.db.tables import Base

config = context.config
engine = config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        # The full-text tables and indexes are made by migration 0017, not declared.
        include_name=lambda name, type_, _parents: not managed_outside_metadata(name, type_),
    )
    with context.begin_transaction():
        context.run_migrations()
