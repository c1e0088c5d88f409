"""held-out review queue: items, reviewers' assignments, labels marked as (not) influenced

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 10:00:00

``labels.influenced`` is None for every label stored before: whether it depended on the
model's answer is unknown. The partial index over held-out prediction rows lets the queue read
them by model and time at the cost of those rows only.
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

HELD_OUT = sa.text("route = 'held_out'")


def upgrade() -> None:
    with op.batch_alter_table("labels") as batch:
        batch.add_column(sa.Column("influenced", sa.Boolean(), nullable=True))
    op.create_index(
        "ix_predictions_held_out",
        "predictions",
        ["model", "created_at"],
        sqlite_where=HELD_OUT,
        postgresql_where=HELD_OUT,
    )
    op.create_table(
        "review_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("row_index", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("reviews_wanted", sa.Integer(), nullable=False),
        sa.Column("reviews_done", sa.Integer(), nullable=False),
        sa.Column("is_open", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("model", "request_id", "row_index", name="uq_review_items_prediction"),
    )
    op.create_index("ix_review_items_open", "review_items", ["model", "is_open", "id"])
    op.create_index("ix_review_items_time", "review_items", ["model", "created_at"])
    op.create_table(
        "review_assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("reviewer", sa.String(length=128), nullable=False),
        sa.Column("leased_at", sa.Float(), nullable=False),
        sa.Column("lease_expires_at", sa.Float(), nullable=True),
        sa.Column("decision", sa.String(length=8), nullable=True),
        sa.Column("label", sa.JSON(), nullable=True),
        sa.Column("decided_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["item_id"], ["review_items.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("item_id", "slot", name="uq_review_assignments_slot"),
        sa.UniqueConstraint("item_id", "reviewer", name="uq_review_assignments_reviewer"),
    )
    op.create_index(
        "ix_review_assignments_reviewer",
        "review_assignments",
        ["model", "reviewer", "decided_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_review_assignments_reviewer", table_name="review_assignments")
    op.drop_table("review_assignments")
    op.drop_index("ix_review_items_time", table_name="review_items")
    op.drop_index("ix_review_items_open", table_name="review_items")
    op.drop_table("review_items")
    op.drop_index("ix_predictions_held_out", table_name="predictions")
    with op.batch_alter_table("labels") as batch:
        batch.drop_column("influenced")
