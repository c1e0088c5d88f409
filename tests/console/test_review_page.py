"""The Review page against a real backend, driven by the keys a reviewer uses for an hour."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot
from sqlalchemy import select

from backend.db.tables import LabelRow
from backend.feedback.review import wants_second_opinion
from backend.workspace import Workspace
from console.main_window import MainWindow
from console.pages import pages_for
from console.pages.review import BATCH, EMPTY_TITLE, ReviewPage
from tests.console.conftest import Backend
from tests.helpers import make_settings
from tests.review_helpers import add_held_out_rows

TIMEOUT_MS = 20_000
EXAMPLES = 14  # more than one batch: the second comes by prefetch


def _add_rows(backend: Backend, count: int) -> list[str]:
    workspace = Workspace.open(make_settings(backend.data_dir))
    try:
        return add_held_out_rows(workspace, count, policy={"policy": "rule", "answer": 1})
    finally:
        workspace.close()


def _labels(backend: Backend) -> dict[str, tuple[object, str, bool | None]]:
    workspace = Workspace.open(make_settings(backend.data_dir))
    try:
        with workspace.sessions() as session:
            rows = session.scalars(select(LabelRow).where(LabelRow.model == "toy")).all()
            return {row.request_id: (row.label, row.source, row.influenced) for row in rows}
    finally:
        workspace.close()


@pytest.fixture
def review_page(qtbot: QtBot, make_context, backend: Backend) -> Iterator[ReviewPage]:  # type: ignore[no-untyped-def]
    token = backend.create_token("helpdesk", "support")
    window = MainWindow(make_context(backend.url, token))
    qtbot.addWidget(window)
    window.resize(1400, 900)
    window.show()
    window.start()
    qtbot.waitUntil(lambda: window.page("review") is not None, timeout=TIMEOUT_MS)
    page = window.page("review")
    assert isinstance(page, ReviewPage)
    window.open_page("review", "toy")
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5_000)
    yield page
    window.shutdown()


def test_a_reviewer_answers_skips_moves_and_undoes_by_keyboard(
    qtbot: QtBot, backend: Backend, review_page: ReviewPage
) -> None:
    page = review_page
    # The page's first look at the queue, before there is anything in it.
    qtbot.waitUntil(lambda: "No held-out traffic" in page.empty.text(), timeout=TIMEOUT_MS)
    request_ids = _add_rows(backend, EXAMPLES)
    # Agreement samples (10 % by default) stay in the queue for a second reviewer.
    doubles = sum(wants_second_opinion("toy", r, 0, 0.1) for r in request_ids)
    page.fetch_batch()
    qtbot.waitUntil(lambda: page.current() is not None, timeout=TIMEOUT_MS)
    first = page.current()
    assert first is not None and first.request_id == request_ids[0]
    view = page.example
    assert [button.text() for button in view.class_buttons] == ["1 · legit", "2 · fraud"]
    assert view.policy_answer.text() == "rule answered fraud (class 1)"
    assert view.model_answer.text().startswith("legit (class 0) — legit 30.0% · fraud 70.0%")
    assert view.features.row_count() == 5 and view.features.text(0, 0) == "amount"
    assert "Example 1 of" in view.heading.text()

    qtbot.keyClick(page, Qt.Key.Key_2)  # fraud
    second = page.current()
    assert second is not None and second.request_id == request_ids[1]  # moved on at once
    qtbot.keyClick(page, Qt.Key.Key_S)
    third = page.current()
    assert third is not None and third.request_id == request_ids[2]
    qtbot.keyClick(page, Qt.Key.Key_Right)
    assert page.position == 1
    qtbot.keyClick(page, Qt.Key.Key_Left)
    qtbot.keyClick(page, Qt.Key.Key_Left)  # stops at the first
    assert page.position == 0
    qtbot.keyClick(page, Qt.Key.Key_7)  # no such class: said, nothing sent
    assert "7 is no class of this model: use 1 to 2" in page.status.text()

    qtbot.keyClick(page, Qt.Key.Key_U)  # the skip comes back to be decided again
    qtbot.waitUntil(
        lambda: (shown := page.current()) is not None and shown.item == second.item,
        timeout=TIMEOUT_MS,
    )
    assert "Took back your skip" in page.status.text()
    qtbot.waitUntil(lambda: not page.pending and not page.deciding, timeout=TIMEOUT_MS)
    labels = _labels(backend)
    assert labels == {request_ids[0]: (1, "review", False)}

    # The rest by the keys alone; the second batch arrives before the first runs out.
    for _ in range(EXAMPLES - 1):
        qtbot.waitUntil(lambda: page.current() is not None, timeout=TIMEOUT_MS)
        qtbot.keyClick(page, Qt.Key.Key_1)
    qtbot.waitUntil(lambda: not page.pending and not page.deciding, timeout=TIMEOUT_MS)
    assert len(page.decided) == EXAMPLES > BATCH
    labels = _labels(backend)
    assert len(labels) == EXAMPLES
    assert all(
        source == "review" and influenced is False for _, source, influenced in labels.values()
    )

    qtbot.waitUntil(lambda: page.stack.currentWidget() is page.empty, timeout=TIMEOUT_MS)
    assert EMPTY_TITLE in page.empty.text()
    qtbot.waitUntil(
        lambda: page.stats is not None and page.stats.done == EXAMPLES - doubles,
        timeout=TIMEOUT_MS,
    )
    counts = page.progress.counts.text()
    assert f"Done {EXAMPLES - doubles} · skipped 0 · in queue {doubles}" in counts
    assert "you: " in counts and "per minute" in counts
    assert page.progress.bar.value() == EXAMPLES - doubles
    assert page.progress.bar.maximum() == EXAMPLES
    assert "kappa — (n=0)" in page.progress.counts.text()


def test_an_empty_queue_says_why_and_clients_have_no_review_page(
    qtbot: QtBot, review_page: ReviewPage
) -> None:
    page = review_page
    qtbot.waitUntil(lambda: EMPTY_TITLE in page.empty.text(), timeout=TIMEOUT_MS)
    assert page.model_choice.currentData() == "toy"
    assert page.stack.currentWidget() is page.empty
    assert "No held-out traffic of model" in page.empty.text()
    assert "held-out share" in page.empty.text()
    qtbot.keyClick(page, Qt.Key.Key_1)  # nothing to answer: nothing happens
    assert not page.pending and not page.decided
    assert all(ReviewPage in pages_for(role) for role in ("admin", "engineer", "support"))
    assert ReviewPage not in pages_for("client")
