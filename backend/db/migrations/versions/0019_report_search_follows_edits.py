"""report search follows edits: SQLite's full-text row of a report is rewritten when its
description changes or a note is changed or removed

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03 10:30:00

0017's triggers kept ``error_reports_fts`` right for reports filed, notes added and reports
removed only: a description rewritten (a privacy redaction) or a note removed stayed
searchable by its old words. PostgreSQL's indexes are over the rows themselves and need
nothing.
"""

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def _rewrite(report_id: str) -> str:
    """The report's searchable text again: its description followed by its notes."""
    return (
        "UPDATE error_reports_fts SET body = "
        f"(SELECT description FROM error_reports WHERE id = {report_id}) || coalesce("
        "(SELECT char(10) || group_concat(text, char(10)) FROM error_report_notes "
        f"WHERE report_id = {report_id}), '') "
        f"WHERE rowid = {report_id};"
    )


_TRIGGERS = {
    "error_reports_fts_described": "AFTER UPDATE OF description ON error_reports BEGIN "
    + _rewrite("new.id")
    + " END",
    "error_reports_fts_note_changed": "AFTER UPDATE OF text ON error_report_notes BEGIN "
    + _rewrite("new.report_id")
    + " END",
    "error_reports_fts_note_gone": "AFTER DELETE ON error_report_notes BEGIN "
    + _rewrite("old.report_id")
    + " END",
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name, body in _TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {body}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name in _TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
