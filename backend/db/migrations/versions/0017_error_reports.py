"""error reports: end users' reports on logged predictions, their tags, notes, history, search

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 09:00:00

Full-text search over descriptions and notes: on SQLite an FTS5 table ``error_reports_fts``
(one row per report, rowid = report id, its description followed by its notes) kept by
triggers, so that any writer (the service, a bulk import) keeps it right; on PostgreSQL GIN
indexes over ``to_tsvector('english', ...)`` of the description and of each note.
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_SQLITE_FTS = (
    # porter: English stems ("refunds" finds "refund"), like PostgreSQL's english config.
    "CREATE VIRTUAL TABLE error_reports_fts USING fts5(body, tokenize = 'porter unicode61')",
    "CREATE TRIGGER error_reports_fts_filed AFTER INSERT ON error_reports BEGIN "
    "INSERT INTO error_reports_fts (rowid, body) VALUES (new.id, new.description); END",
    "CREATE TRIGGER error_reports_fts_gone AFTER DELETE ON error_reports BEGIN "
    "DELETE FROM error_reports_fts WHERE rowid = old.id; END",
    "CREATE TRIGGER error_reports_fts_note AFTER INSERT ON error_report_notes BEGIN "
    "UPDATE error_reports_fts SET body = body || char(10) || new.text "
    "WHERE rowid = new.report_id; END",
)
_POSTGRES_TSV = (
    "CREATE INDEX ix_error_reports_description_tsv ON error_reports "
    "USING gin (to_tsvector('english', description))",
    "CREATE INDEX ix_error_report_notes_text_tsv ON error_report_notes "
    "USING gin (to_tsvector('english', text))",
)


def upgrade() -> None:
    op.create_table(
        "error_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("row_index", sa.Integer(), nullable=False),
        sa.Column("route", sa.String(length=16), nullable=True),
        sa.Column("decision", sa.String(length=16), nullable=True),
        sa.Column("linked", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("expected", sa.JSON(), nullable=True),
        sa.Column("correction", sa.JSON(), nullable=True),
        sa.Column("reporter", sa.String(length=256), nullable=True),
        sa.Column("filed_by", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_rank", sa.Integer(), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=True),
        sa.Column("severity_rank", sa.Integer(), nullable=False),
        sa.Column("assignee", sa.String(length=128), nullable=True),
        sa.Column("duplicate_of", sa.Integer(), nullable=True),
        sa.Column("fixed_in_version", sa.String(length=32), nullable=True),
        sa.Column("filed_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["duplicate_of"], ["error_reports.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    for name, columns in (
        ("ix_error_reports_filed", ["filed_at", "id"]),
        ("ix_error_reports_updated", ["updated_at", "id"]),
        ("ix_error_reports_status", ["status", "filed_at", "id"]),
        ("ix_error_reports_model", ["model", "filed_at", "id"]),
        ("ix_error_reports_model_version", ["model", "version", "filed_at", "id"]),
        ("ix_error_reports_category", ["category", "filed_at", "id"]),
        ("ix_error_reports_assignee", ["assignee", "filed_at", "id"]),
        ("ix_error_reports_severity", ["severity_rank", "id"]),
        ("ix_error_reports_status_rank", ["status_rank", "id"]),
        ("ix_error_reports_prediction", ["model", "request_id", "row_index"]),
        ("ix_error_reports_duplicate_of", ["duplicate_of"]),
        ("ix_error_reports_unlinked", ["linked", "id"]),
    ):
        op.create_index(name, "error_reports", columns)
    op.create_table(
        "error_report_tags",
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["report_id"], ["error_reports.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("report_id", "tag"),
    )
    op.create_index("ix_error_report_tags_tag", "error_report_tags", ["tag", "report_id"])
    op.create_table(
        "error_report_notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("author", sa.String(length=128), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["report_id"], ["error_reports.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_error_report_notes_report", "error_report_notes", ["report_id", "id"])
    op.create_table(
        "error_report_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["report_id"], ["error_reports.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_error_report_history_report", "error_report_history", ["report_id", "id"])
    dialect = op.get_bind().dialect.name
    for statement in _SQLITE_FTS if dialect == "sqlite" else _POSTGRES_TSV:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS error_reports_fts")
    op.drop_table("error_report_history")
    op.drop_table("error_report_notes")
    op.drop_table("error_report_tags")
    op.drop_table("error_reports")
