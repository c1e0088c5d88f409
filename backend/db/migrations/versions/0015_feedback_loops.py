"""feedback loops: labelled-outcome counts per prediction minute, each label's contribution

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 06:00:00

Labels stored before this revision are not counted: the feedback-loop indicators start from
the labels stored (or replaced) after the upgrade.
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback_loop_counts",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("route", sa.String(length=16), nullable=False),
        sa.Column("minute", sa.BigInteger(), nullable=False),
        sa.Column("labelled", sa.Integer(), nullable=False),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("model", "version", "route", "minute"),
    )
    op.create_table(
        "feedback_loop_contributions",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("row_index", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("route", sa.String(length=16), nullable=False),
        sa.Column("minute", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("model", "request_id", "row_index"),
    )
    op.create_index(
        "ix_feedback_loop_contributions_minute", "feedback_loop_contributions", ["minute"]
    )


def downgrade() -> None:
    op.drop_table("feedback_loop_contributions")
    op.drop_table("feedback_loop_counts")
