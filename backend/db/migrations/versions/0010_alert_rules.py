"""alert rules per model, alert history (the alert half of the event stream), grouping per
rule and model

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 16:00:00

An active alert was unique per (model, version, kind); rules that watch a model's whole
traffic have no version, and NULLs never collide in a unique index, so the key becomes
(model, kind, group_key) with a group_key that is never NULL: the version for live_metric
(as before), "" for a model-wide rule. The alerts that exist get their history back from
their own columns (raised, acknowledged, resolved).
"""

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

ACTIVE = sa.text("status != 'resolved'")


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(
            sa.Column("group_key", sa.String(length=64), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("last_seen_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("changed_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("reopened", sa.Integer(), nullable=False, server_default="0"))
    op.execute("UPDATE alerts SET group_key = COALESCE(version, '')")
    op.drop_index("uq_alerts_active_cause", table_name="alerts")
    op.create_index(
        "uq_alerts_active_group",
        "alerts",
        ["model", "kind", "group_key"],
        unique=True,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )
    op.create_table(
        "alert_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("alert", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_alert_events_alert", "alert_events", ["alert_id", "id"])
    op.create_index("ix_alert_events_model", "alert_events", ["model", "id"])
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("rule", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.String(length=128), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("model", "kind", name="uq_alert_rules_model_kind"),
    )
    _history_of_existing_alerts()


def _iso(value: float | None) -> str | None:
    return None if value is None else datetime.fromtimestamp(value, UTC).isoformat()


def _history_of_existing_alerts() -> None:
    """Each existing alert's history from its own columns, oldest event first."""
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT id, model, version, kind, severity, status, title, explanation, details, "
            "raised_at, acknowledged_by, acknowledged_at, acknowledgement, resolved_at, "
            "resolution FROM alerts ORDER BY id"
        )
    ).mappings()
    events: list[dict[str, Any]] = []
    for row in rows:
        details = row["details"]
        alert = {
            "id": row["id"],
            "model": row["model"],
            "version": row["version"],
            "kind": row["kind"],
            "severity": row["severity"],
            "status": row["status"],
            "title": row["title"],
            "explanation": row["explanation"],
            "details": json.loads(details) if isinstance(details, str) else details,
            "raised_at": _iso(row["raised_at"]),
            "acknowledged_by": row["acknowledged_by"],
            "acknowledged_at": _iso(row["acknowledged_at"]),
            "acknowledgement": row["acknowledgement"],
            "resolved_at": _iso(row["resolved_at"]),
            "resolution": row["resolution"],
        }
        steps = [("raised", row["raised_at"], "servedeck", "")]
        if row["acknowledged_at"] is not None:
            steps.append(
                (
                    "acknowledged",
                    row["acknowledged_at"],
                    row["acknowledged_by"] or "",
                    row["acknowledgement"],
                )
            )
        if row["resolved_at"] is not None:
            steps.append(("resolved", row["resolved_at"], "servedeck", row["resolution"]))
        for action, at, actor, note in steps:
            events.append(
                {
                    "alert_id": row["id"],
                    "model": row["model"],
                    "action": action,
                    "at": at,
                    "actor": actor,
                    "note": note,
                    "alert": alert,
                }
            )
    events.sort(key=lambda e: (e["at"], e["alert_id"]))
    insert = sa.text(
        "INSERT INTO alert_events (alert_id, model, action, at, actor, note, alert) "
        "VALUES (:alert_id, :model, :action, :at, :actor, :note, :alert)"
    ).bindparams(sa.bindparam("alert", type_=sa.JSON()))
    for event in events:
        bind.execute(insert, event)


def downgrade() -> None:
    op.drop_table("alert_rules")
    op.drop_table("alert_events")
    op.drop_index("uq_alerts_active_group", table_name="alerts")
    # Alerts of the new kinds did not exist before: they go with their rules.
    op.execute("DELETE FROM alerts WHERE kind != 'live_metric' OR version IS NULL")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("reopened")
        batch.drop_column("changed_at")
        batch.drop_column("last_seen_at")
        batch.drop_column("group_key")
    # After the batch: on SQLite it may copy the table, and the partial index with it.
    op.create_index(
        "uq_alerts_active_cause",
        "alerts",
        ["model", "version", "kind"],
        unique=True,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )
