"""alerts as their own table (monitoring), one active alert per cause

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 09:45:00
"""

import json
import time

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("explanation", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("raised_at", sa.Float(), nullable=False),
        sa.Column("acknowledged_by", sa.String(length=128), nullable=True),
        sa.Column("acknowledged_at", sa.Float(), nullable=True),
        sa.Column("acknowledgement", sa.Text(), nullable=False),
        sa.Column("resolved_at", sa.Float(), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_alerts_model", "alerts", ["model", "id"])
    active = sa.text("status != 'resolved'")
    op.create_index(
        "uq_alerts_active_cause",
        "alerts",
        ["model", "version", "kind"],
        unique=True,
        sqlite_where=active,
        postgresql_where=active,
    )

    _carry_over_active_quality_alerts()


def _carry_over_active_quality_alerts() -> None:
    """A serving version whose quality alert was an audit event (before alerts had a table)
    keeps it as an open alert: it must not be raised, and recorded, a second time."""
    bind = op.get_bind()
    models = bind.execute(
        sa.text("SELECT name, active_version FROM models WHERE active_version IS NOT NULL")
    ).all()
    for name, active in models:
        events = bind.execute(
            sa.text(
                "SELECT action, to_version, reason, details FROM audit_events "
                "WHERE model = :model ORDER BY id DESC LIMIT 500"
            ),
            {"model": name},
        ).all()
        for action, to_version, reason, details in events:
            if action in ("deploy", "rollback", "promote"):
                break  # alerts before the version last became serving do not count
            if action == "metric_alert" and to_version == active:
                bind.execute(
                    sa.text(
                        "INSERT INTO alerts (model, version, kind, severity, status, title, "
                        "explanation, details, raised_at, acknowledgement, resolution) VALUES "
                        "(:model, :version, 'live_metric', 'critical', 'open', :title, "
                        ":explanation, :details, :raised_at, '', '')"
                    ),
                    {
                        "model": name,
                        "version": active,
                        "title": f"{name} version {active}: {reason}",
                        "explanation": (
                            "The live quality of this version left the range its checks "
                            "allowed (recorded before this upgrade). Compare it with the "
                            "previous version and roll back if it does not recover."
                        ),
                        "details": details if isinstance(details, str) else json.dumps(details),
                        "raised_at": time.time(),
                    },
                )
                break


def downgrade() -> None:
    op.drop_table("alerts")
