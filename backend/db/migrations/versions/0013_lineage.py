"""lineage: the input features of a version that other models' outputs produce

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 10:00:00

One row per declared feature of a version; the upstream model is a name, not a foreign key,
since lineage may be declared before that model is registered.
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feature_sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("feature", sa.String(length=128), nullable=False),
        sa.Column("source_model", sa.String(length=128), nullable=False),
        sa.Column("source_output", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(["version_id"], ["model_versions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("version_id", "feature", name="uq_feature_sources_version_feature"),
    )


def downgrade() -> None:
    op.drop_table("feature_sources")
