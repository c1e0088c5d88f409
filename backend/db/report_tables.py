"""Error reports from end users and their triage (feedback/reports*): the tables.

The names are read by the retraining export: ``error_reports`` and its columns are fixed.
Full-text search is not in this metadata: SQLite keeps an FTS5 table (``error_reports_fts``,
filled by triggers over descriptions and notes), PostgreSQL GIN indexes over ``to_tsvector``
of the same texts; migration 0017 makes both, and ``managed_outside_metadata`` tells Alembic's
comparison to leave them alone.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from backend.db.tables import Base

REPORTS_FTS_TABLE = "error_reports_fts"
# The PostgreSQL text-search indexes (expression indexes; Alembic does not compare those).
REPORTS_TSV_INDEXES = ("ix_error_reports_description_tsv", "ix_error_report_notes_text_tsv")
# The text-search configuration on PostgreSQL; SQLite's FTS5 uses the porter tokenizer, so
# both stem English words ("refunds" finds "refund").
TEXT_SEARCH_CONFIG = "english"


def managed_outside_metadata(name: str | None, type_: str) -> bool:
    """Whether a table or index is the full-text machinery made by migration 0017 (the FTS5
    table and its shadow tables, the tsvector indexes), which the metadata does not declare."""
    if name is None:
        return False
    if type_ == "table":
        return name == REPORTS_FTS_TABLE or name.startswith(REPORTS_FTS_TABLE + "_")
    if type_ == "index":
        return name in REPORTS_TSV_INDEXES
    return False


class ErrorReportRow(Base):
    """One end user's report on one logged prediction row, with its triage state. Model,
    version, route and decision are copied from the logged row when it is linked."""

    __tablename__ = "error_reports"
    __table_args__ = (
        # Each filter of the inbox walks its own index newest first (keyset pages by id).
        Index("ix_error_reports_filed", "filed_at", "id"),
        Index("ix_error_reports_updated", "updated_at", "id"),
        Index("ix_error_reports_status", "status", "filed_at", "id"),
        Index("ix_error_reports_model", "model", "filed_at", "id"),
        Index("ix_error_reports_model_version", "model", "version", "filed_at", "id"),
        Index("ix_error_reports_category", "category", "filed_at", "id"),
        Index("ix_error_reports_assignee", "assignee", "filed_at", "id"),
        Index("ix_error_reports_severity", "severity_rank", "id"),
        Index("ix_error_reports_status_rank", "status_rank", "id"),
        Index("ix_error_reports_prediction", "model", "request_id", "row_index"),
        Index("ix_error_reports_duplicate_of", "duplicate_of"),
        # Reports still waiting for their prediction to reach the log (see feedback/reports).
        Index("ix_error_reports_unlinked", "linked", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(128))
    version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    request_id: Mapped[str] = mapped_column(String(64))
    row_index: Mapped[int] = mapped_column(Integer, default=0)
    route: Mapped[str | None] = mapped_column(String(16), nullable=True)
    decision: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # Whether model, version, route and decision were copied from the logged row (0: the
    # prediction was answered but still on its way to the log when the report came).
    linked: Mapped[int] = mapped_column(Integer, default=1)
    category: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text, default="")
    expected: Mapped[Any] = mapped_column(JSON, nullable=True)
    correction: Mapped[Any] = mapped_column(JSON, nullable=True)
    reporter: Mapped[str | None] = mapped_column(String(256), nullable=True)
    # The token that filed it: only it (or triage staff) reads the public status.
    filed_by: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="new")
    # The status's place in the workflow, so that sorting by status follows it.
    status_rank: Mapped[int] = mapped_column(Integer, default=0)
    severity: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # 0 without a severity, then low .. critical: sorting by severity is by this.
    severity_rank: Mapped[int] = mapped_column(Integer, default=0)
    assignee: Mapped[str | None] = mapped_column(String(128), nullable=True)
    duplicate_of: Mapped[int | None] = mapped_column(
        ForeignKey("error_reports.id", ondelete="SET NULL"), nullable=True
    )
    fixed_in_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # Unix seconds.
    filed_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class ErrorReportTagRow(Base):
    __tablename__ = "error_report_tags"
    __table_args__ = (Index("ix_error_report_tags_tag", "tag", "report_id"),)

    report_id: Mapped[int] = mapped_column(
        ForeignKey("error_reports.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)


class ErrorReportNoteRow(Base):
    """One note of a report's internal thread (never shown to the reporter)."""

    __tablename__ = "error_report_notes"
    __table_args__ = (Index("ix_error_report_notes_report", "report_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("error_reports.id", ondelete="CASCADE"))
    author: Mapped[str] = mapped_column(String(128))
    at: Mapped[float] = mapped_column(Float)
    text: Mapped[str] = mapped_column(Text)


class ErrorReportChangeRow(Base):
    """One entry of a report's history, written in the transaction of the change it records."""

    __tablename__ = "error_report_history"
    __table_args__ = (Index("ix_error_report_history_report", "report_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("error_reports.id", ondelete="CASCADE"))
    at: Mapped[float] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    before: Mapped[Any] = mapped_column(JSON, nullable=True)
    after: Mapped[Any] = mapped_column(JSON, nullable=True)
