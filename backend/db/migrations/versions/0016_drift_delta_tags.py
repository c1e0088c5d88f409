"""drift window deltas: a tag per delta, so a writer folding its own deltas knows them

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 07:00:00

``drift_window_deltas.tag`` is a random 63-bit number the committing writer gives each delta.
Its fold takes the deltas it committed itself from memory, as it counted them, instead of
reading and parsing their text back; ids cannot say which ones those are, since SQLite may give
a deleted row's id to a new row (another writer's). Deltas stored before have no tag and are
read from the store, as are other writers'.
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("drift_window_deltas") as batch:
        batch.add_column(sa.Column("tag", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("drift_window_deltas") as batch:
        batch.drop_column("tag")
