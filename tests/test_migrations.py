"""Alembic migrations produce exactly the schema the code declares, and reopen in place."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from backend.db import create_db_engine, upgrade_database
from backend.db.engine import alembic_config
from backend.db.report_tables import managed_outside_metadata
from backend.db.tables import Base
from backend.errors import ServeDeckError
from backend.settings import Settings
from backend.workspace import Workspace


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    engine = create_db_engine(database_url)
    upgrade_database(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                # The full-text machinery of migration 0017 is not declared in the metadata.
                "include_name": lambda name, type_, _parents: (
                    not managed_outside_metadata(name, type_)
                ),
            },
        )
        assert compare_metadata(context, Base.metadata) == []
        head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
        assert context.get_current_revision() == head
    engine.dispose()


def test_an_existing_data_directory_reopens_in_place(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings.load(data_dir=tmp_path)
    first = Workspace.open(settings)
    token = first.admin_token()
    first.tokens.create("kept", "support")
    first.close()
    again = Workspace.open(settings)
    assert again.admin_token() == token
    assert {t.name for t in again.tokens.list()} == {"admin", "kept"}
    assert "predictions" in inspect(again.engine).get_table_names()
    again.close()


def test_sqlite_runs_in_wal_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    workspace = Workspace.open(Settings.load(data_dir=tmp_path))
    with workspace.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert workspace.settings.database_url.endswith(str(tmp_path / "servedeck.db"))
    workspace.close()


def test_unsupported_database_is_named_clearly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from backend.errors import ServeDeckError

    with pytest.raises(ServeDeckError, match="unsupported database URL 'mysql'"):
        Workspace.open(Settings.load(data_dir=tmp_path, database_url="mysql://root@localhost/x"))


def test_an_active_quality_alert_of_the_audit_trail_becomes_an_alert(database_url: str) -> None:
    """Before 0006 an alert was only an audit event: the serving version keeps its alert."""
    from alembic import command
    from sqlalchemy import text

    engine = create_db_engine(database_url)
    command.upgrade(alembic_config(engine), "0005")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO models (name, task, description, active_version, state_generation,"
                " created_at) VALUES ('fraud', 'classification', '', '2', 3, CURRENT_TIMESTAMP)"
            )
        )
        for action, version, reason in (
            ("deploy", "1", "first"),
            ("metric_alert", "1", "old, before a deployment"),
            ("deploy", "2", "second"),
            ("metric_alert", "2", "live accuracy 0.6 is outside [0.8, 1]"),
        ):
            connection.execute(
                text(
                    "INSERT INTO audit_events (at, actor, role, model, action, to_version, "
                    "reason, details) VALUES (CURRENT_TIMESTAMP, 'servedeck', 'system', "
                    "'fraud', :action, :version, :reason, '{\"labelled\": 50}')"
                ),
                {"action": action, "version": version, "reason": reason},
            )
    upgrade_database(engine)
    with engine.connect() as connection:
        alerts = connection.execute(
            text("SELECT model, version, kind, status, title FROM alerts")
        ).all()
    engine.dispose()
    assert [tuple(a[:4]) for a in alerts] == [("fraud", "2", "live_metric", "open")]
    assert "live accuracy 0.6" in alerts[0][4]


def test_0014_keeps_labels_with_their_influence_unknown_and_adds_the_review_queue(
    database_url: str,
) -> None:
    """Labels stored before 0014 say nothing of the model's influence: NULL, not False."""
    from alembic import command
    from sqlalchemy import text

    engine = create_db_engine(database_url)
    command.upgrade(alembic_config(engine), "0011")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO labels (model, request_id, row_index, label, received_at, source) "
                "VALUES ('fraud', 'r1', 0, '1', 1.0, 'bank')"
            )
        )
    upgrade_database(engine)
    with engine.connect() as connection:
        influenced = connection.execute(
            text("SELECT source, influenced FROM labels WHERE request_id = 'r1'")
        ).one()
        tables = set(inspect(connection).get_table_names())
        indexes = {index["name"] for index in inspect(connection).get_indexes("predictions")}
    engine.dispose()
    assert tuple(influenced) == ("bank", None)
    assert {"review_items", "review_assignments"} <= tables
    assert "ix_predictions_held_out" in indexes


def test_0017_adds_error_reports_searchable_by_description_and_notes(database_url: str) -> None:
    """A store from before 0017 gets the report tables and their full-text search in place."""
    from alembic import command
    from sqlalchemy.orm import sessionmaker

    from backend.auth import Principal
    from backend.db.report_tables import ErrorReportNoteRow, ErrorReportRow
    from backend.feedback.report_search import ReportFilters, list_reports

    engine = create_db_engine(database_url)
    command.upgrade(alembic_config(engine), "0016")
    upgrade_database(engine)
    sessions = sessionmaker(engine)
    with sessions.begin() as session:
        report = ErrorReportRow(
            model="fraud", request_id="r1", row_index=0, linked=1, category="wrong_answer",
            description="Refunds were declined", filed_by="app", status="new", status_rank=0,
            severity_rank=0, filed_at=1.0, updated_at=1.0,
        )  # fmt: skip
        session.add(report)
        session.flush()
        session.add(ErrorReportNoteRow(report_id=report.id, author="s", at=2.0, text="Escalated"))
    staff = Principal(name="staff", role="support")
    with sessions() as session:
        by_description = list_reports(session, ReportFilters(q="refund"), staff)
        by_note = list_reports(session, ReportFilters(q="escalated declined"), staff)
        neither = list_reports(session, ReportFilters(q="travel"), staff)
    engine.dispose()
    assert [r.request_id for r in by_description.reports] == ["r1"]
    assert by_note.total == 1 and neither.total == 0


def test_0019_search_forgets_rewritten_descriptions_and_removed_notes(database_url: str) -> None:
    """A description rewritten (a redaction) or a note removed is no longer found by its old
    words, and the new text is."""
    from sqlalchemy import delete, update
    from sqlalchemy.orm import sessionmaker

    from backend.auth import Principal
    from backend.db.report_tables import ErrorReportNoteRow, ErrorReportRow
    from backend.feedback.report_search import ReportFilters, list_reports

    engine = create_db_engine(database_url)
    upgrade_database(engine)
    sessions = sessionmaker(engine)
    with sessions.begin() as session:
        report = ErrorReportRow(
            model="fraud", request_id="r1", row_index=0, linked=1, category="privacy",
            description="My walrus account", filed_by="app", status="new", status_rank=0,
            severity_rank=0, filed_at=1.0, updated_at=1.0,
        )  # fmt: skip
        session.add(report)
        session.flush()
        for text in ("giraffe called", "penguin called"):
            session.add(ErrorReportNoteRow(report_id=report.id, author="s", at=2.0, text=text))
    with sessions.begin() as session:
        session.execute(update(ErrorReportRow).values(description="My redacted account"))
        session.execute(delete(ErrorReportNoteRow).where(ErrorReportNoteRow.text.like("gir%")))
        session.execute(update(ErrorReportNoteRow).values(text="otter called"))
    staff = Principal(name="staff", role="support")
    with sessions() as session:
        totals = {
            word: list_reports(session, ReportFilters(q=word), staff).total
            for word in ("walrus", "giraffe", "penguin", "redacted", "otter")
        }
    engine.dispose()
    assert totals == {"walrus": 0, "giraffe": 0, "penguin": 0, "redacted": 1, "otter": 1}


def test_joining_a_store_at_another_schema_is_refused_in_words(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A worker, the watcher or a command beside a server joins without upgrading: on a store
    # nobody upgraded (or one a newer ServeDeck upgraded) it says so, not "no such table" later.
    settings = Settings.load(data_dir=tmp_path)
    with pytest.raises(ServeDeckError) as refused:
        Workspace.join(settings)
    assert "schema revision none (empty)" in refused.value.message
    assert "servedeck-server serve" in refused.value.message
    Workspace.open(settings).close()
    engine = create_db_engine(settings.database_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(ServeDeckError, match="schema revision 9999"):
        Workspace.join(settings)
