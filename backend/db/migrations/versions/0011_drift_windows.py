"""drift: reference summaries per version, current-window counts kept by the log writer

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 16:00:00

``drift_window_deltas`` gets one row per writer commit and minute (inserted with the rows it
counts, so counts are exactly once); writers fold them into ``drift_window_buckets`` (minute
and hour rows) once their minute has closed.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "drift_references",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("labelled_outputs", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("model", "version"),
    )
    op.create_table(
        "drift_settings",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.Column("updated_by", sa.String(length=128), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model"),
    )
    op.create_table(
        "drift_window_deltas",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("route", sa.String(length=16), nullable=False),
        sa.Column("bucket_start", sa.BigInteger(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_drift_window_deltas_bucket", "drift_window_deltas", ["model", "bucket_start"]
    )
    op.create_table(
        "drift_window_buckets",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("route", sa.String(length=16), nullable=False),
        sa.Column("resolution_s", sa.Integer(), nullable=False),
        sa.Column("bucket_start", sa.BigInteger(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("model", "version", "route", "resolution_s", "bucket_start"),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Stored uncompressed: a day's window reads ~8 MB of bucket text, and decompressing
        # it (pglz or lz4) cost twice the rest of the read; JSON of counts compresses ~3x,
        # a cost in disk the retention bounds.
        op.execute("ALTER TABLE drift_window_buckets ALTER COLUMN counts SET STORAGE EXTERNAL")
    op.create_index(
        "ix_drift_window_buckets_time",
        "drift_window_buckets",
        ["model", "resolution_s", "bucket_start"],
    )
    op.create_index(
        "ix_drift_window_buckets_age", "drift_window_buckets", ["resolution_s", "bucket_start"]
    )


def downgrade() -> None:
    op.drop_index("ix_drift_window_buckets_age", table_name="drift_window_buckets")
    op.drop_index("ix_drift_window_buckets_time", table_name="drift_window_buckets")
    op.drop_table("drift_window_buckets")
    op.drop_index("ix_drift_window_deltas_bucket", table_name="drift_window_deltas")
    op.drop_table("drift_window_deltas")
    op.drop_table("drift_settings")
    op.drop_table("drift_references")
