"""user signals: undo and complaint per prediction row, and their counts per prediction minute

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 09:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "user_signals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("row_index", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("route", sa.String(length=16), nullable=False),
        sa.Column("minute", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "model", "request_id", "row_index", "kind", name="uq_user_signals_prediction_kind"
        ),
    )
    op.create_index("ix_user_signals_minute", "user_signals", ["minute"])
    op.create_table(
        "user_signal_counts",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("route", sa.String(length=16), nullable=False),
        sa.Column("minute", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("signals", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("model", "version", "route", "minute", "kind"),
    )


def downgrade() -> None:
    op.drop_table("user_signal_counts")
    op.drop_index("ix_user_signals_minute", table_name="user_signals")
    op.drop_table("user_signals")
