"""held-out traffic: a model's held-out share and its no-model policy

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 01:45:00

``models.held_out`` holds HeldOutSettings as JSON (None: nothing is held out). Workers read it
with the rest of the serving state they poll.
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("held_out", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.drop_column("held_out")
