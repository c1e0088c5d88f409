"""candidate calls per worker and rollout step (failures leave no prediction row)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 00:15:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "candidate_calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("candidate", sa.String(length=32), nullable=False),
        sa.Column("step_started", sa.Float(), nullable=False),
        sa.Column("worker", sa.String(length=128), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "model", "candidate", "step_started", "worker", name="uq_candidate_calls"
        ),
    )


def downgrade() -> None:
    op.drop_table("candidate_calls")
