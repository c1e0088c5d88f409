"""The prediction log's writer process: rows survive its death and a store that goes away."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select, text

from backend.db.tables import PredictionRow
from backend.predictions.log import PredictionLog
from backend.workspace import Workspace
from tests.helpers import logged_rows, sample_log_rows


@pytest.fixture
def prediction_log(store: Workspace) -> Iterator[PredictionLog]:
    # A long interval: rows move only when a test flushes.
    log = PredictionLog(store.engine, store.settings.spool_dir, flush_interval_s=3600)
    log.start()
    yield log
    log.stop()


def test_rows_are_written_exactly(prediction_log: PredictionLog, store: Workspace) -> None:
    prediction_log.append(sample_log_rows("r1", 3))
    assert prediction_log.flush() == 3
    with store.sessions() as session:
        row = session.scalars(select(PredictionRow).where(PredictionRow.row_index == 2)).one()
    assert row.features == {"amount": 14.5, "country": "DE", "note": 'tricky "],[" text\n'}
    assert row.outputs == {"predict": 1, "predict_proba": [0.25, 0.75]}
    assert (row.request_id, row.entity_id, row.token_name) == ("r1", "user-2", "test")


def test_rows_survive_the_writer_process_dying(
    prediction_log: PredictionLog, store: Workspace
) -> None:
    prediction_log.append(sample_log_rows("before", 100))
    assert prediction_log.flush() == 100
    first_writer = prediction_log.writer_pid
    assert first_writer is not None
    os.kill(first_writer, signal.SIGKILL)
    prediction_log.append(sample_log_rows("after", 50))
    assert prediction_log.flush() == 50
    assert prediction_log.writer_restarts == 1
    assert prediction_log.writer_pid not in (None, first_writer)
    assert logged_rows(store) == 150


def test_store_down_then_back(prediction_log: PredictionLog, store: Workspace) -> None:
    with store.engine.begin() as connection:
        connection.execute(text("ALTER TABLE predictions RENAME TO predictions_away"))
    prediction_log.append(sample_log_rows("kept", 40))
    # The flush gives up at the first failed write instead of hanging on a store that is down.
    assert prediction_log.flush() == 0
    assert prediction_log.failed_flushes >= 1
    assert not prediction_log.has_room(prediction_log.max_queued_rows - 39)
    with store.engine.begin() as connection:
        connection.execute(text("ALTER TABLE predictions_away RENAME TO predictions"))
    deadline = time.monotonic() + 30
    written = 0
    while written < 40 and time.monotonic() < deadline:
        written += prediction_log.flush(timeout_s=deadline - time.monotonic())
    assert written == 40
    assert logged_rows(store) == 40
    assert prediction_log.has_room(prediction_log.max_queued_rows)


def test_an_in_memory_database_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from backend.db.engine import create_db_engine

    with pytest.raises(ValueError, match="SQLite file"):
        PredictionLog(create_db_engine("sqlite://"), tmp_path)
