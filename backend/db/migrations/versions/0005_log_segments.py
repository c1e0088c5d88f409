"""prediction spool segments and how far each is written; the store's identity

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 09:00:00
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "log_segments",
        sa.Column("segment", sa.String(length=160), nullable=False),
        sa.Column("committed_offset", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("segment"),
    )
    identity = op.create_table(
        "store_identity",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(identity, [{"id": str(uuid.uuid4())}])


def downgrade() -> None:
    op.drop_table("store_identity")
    op.drop_table("log_segments")
