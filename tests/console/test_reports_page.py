"""The Reports page against a real backend: support staff triage a day's reports by keyboard,
and "Report an error" on the Live page files one."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox
from pytestqt.qtbot import QtBot

from backend.schemas.reports import ReportCreate, ReportDetail
from console.client import ApiClient
from console.main_window import MainWindow
from console.pages.live import LivePage
from console.pages.reports import ReportsPage
from console.report_words import OPEN_STATUSES, ReportFilters
from tests.console.conftest import Backend
from tests.helpers import post_predictions

TIMEOUT_MS = 20_000


def test_filters_become_the_query_and_a_saved_view_survives_what_changed() -> None:
    filters = ReportFilters(statuses=["new"], model="toy", assignee="none", text=" late ")
    assert filters.query() == {
        "status": ["new"],
        "model": "toy",
        "assignee": "none",
        "q": "late",
        "sort": "filed_at",
        "order": "desc",
    }
    # The counts answer under the same filters, without the status (one count per status).
    assert filters.query(with_status=False) == {"model": "toy", "assignee": "none", "q": "late"}
    assert ReportFilters.from_json(filters.to_json()) == filters
    # A view saved by an older console (a status renamed, an unknown key) still opens.
    old = '{"statuses": ["new", "gone"], "sort": "nonsense", "colour": "red"}'
    assert ReportFilters.from_json(old) == ReportFilters(statuses=["new"])
    assert ReportFilters.from_json("not json") == ReportFilters()
    assert ReportFilters().statuses == list(OPEN_STATUSES)


def _logged_request_ids(backend: Backend, count: int) -> list[str]:
    """Predictions already in the log (written within about a second): reports name them."""
    request_ids = post_predictions(backend.url, backend.admin_token, count)
    client = ApiClient(backend.url, backend.admin_token)
    deadline = time.monotonic() + 10
    while not all(client.logged_predictions(r) for r in request_ids):
        assert time.monotonic() < deadline, "the predictions never reached the log"
        time.sleep(0.1)
    return request_ids


def _file(client: ApiClient, request_id: str, description: str, expected: object = 1) -> int:
    report = ReportCreate(
        request_id=request_id,
        model="toy",
        category="wrong_answer",
        description=description,
        expected=expected,
    )
    return client.file_report(report).id


@pytest.fixture
def support_window(qtbot: QtBot, make_context, backend: Backend) -> Iterator[MainWindow]:  # type: ignore[no-untyped-def]
    token = backend.create_token("helpdesk", "support")
    window = MainWindow(make_context(backend.url, token))
    qtbot.addWidget(window)
    window.resize(1400, 900)
    window.show()
    window.start()
    qtbot.waitUntil(lambda: window.page("reports") is not None, timeout=TIMEOUT_MS)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5_000)
    yield window
    window.shutdown()


def _reports_page(window: MainWindow) -> ReportsPage:
    page = window.page("reports")
    assert isinstance(page, ReportsPage)
    return page


def _detail(backend: Backend, report_id: int) -> ReportDetail:
    return ApiClient(backend.url, backend.admin_token).report(report_id)


def _wait_shown(qtbot: QtBot, page: ReportsPage, report_id: int) -> None:
    qtbot.waitUntil(
        lambda: page.detail.report is not None and page.detail.report.id == report_id,
        timeout=TIMEOUT_MS,
    )


def test_support_staff_triage_reports_by_keyboard(  # type: ignore[no-untyped-def]
    qtbot: QtBot, backend: Backend, support_window: MainWindow
) -> None:
    client = ApiClient(backend.url, backend.admin_token)
    first, second, third = _logged_request_ids(backend, 3)
    late = _file(client, first, "The card was flagged as fraud but I paid myself")
    again = _file(client, first, "Flagged as fraud although I paid myself")  # same prediction
    other = _file(client, second, "Marked legit, it was a stolen card", expected=0)
    spare = _file(client, third, "Nothing to do with the model: my bank was down")

    window = support_window
    page = _reports_page(window)
    window.open_page("reports")
    qtbot.waitUntil(lambda: page.inbox.reports.rowCount() == 4, timeout=TIMEOUT_MS)
    assert "4 reports" in page.status.text()
    # The counts per status, with the age of the oldest, on the status toggles.
    assert page.filter_bar.status_buttons["new"].text() == "New 4"
    assert "Oldest waiting" in page.filter_bar.status_buttons["new"].toolTip()
    # Newest first: the last filed is the current one and shows whole.
    _wait_shown(qtbot, page, spare)
    page.inbox.select_report(again)
    _wait_shown(qtbot, page, again)
    detail = page.detail
    assert detail.heading.text() == f"#{again} · Wrong answer · New"
    assert "Flagged as fraud although I paid myself" in detail.reporter_text.text()
    values = {
        detail.prediction.topLevelItem(i).text(0): detail.prediction.topLevelItem(i).text(1)
        for i in range(detail.prediction.topLevelItemCount())
    }
    # In the model's own words: classes by name, probabilities per class.
    assert values["reporter expected"] == "fraud (class 1)"
    assert values["output: predict"] in ("legit (class 0)", "fraud (class 1)")
    assert "legit" in values["output: predict_proba"] and "%" in values["output: predict_proba"]
    assert "feature: amount" in values
    # The other report on the same prediction is offered as the original.
    assert detail.duplicate_box.isVisibleTo(detail)
    assert detail.duplicates.item(0).text().startswith(f"#{late} · New · same prediction")
    # Each status button says what it means and its key.
    assert "Key: C." in detail.status_buttons["confirmed"].toolTip()

    page.inbox.setFocus()
    qtbot.keyClick(page.inbox, Qt.Key.Key_D)
    qtbot.waitUntil(lambda: _detail(backend, again).status == "duplicate", timeout=TIMEOUT_MS)
    assert _detail(backend, again).duplicate_of == late
    # A duplicate is no longer open: it leaves the inbox, and the next one is current.
    qtbot.waitUntil(lambda: page.inbox.reports.rowCount() == 3, timeout=TIMEOUT_MS)

    page.inbox.select_report(other)
    _wait_shown(qtbot, page, other)
    qtbot.keyClick(page.inbox, Qt.Key.Key_R)
    qtbot.waitUntil(lambda: _detail(backend, other).status == "in_review", timeout=TIMEOUT_MS)
    qtbot.keyClick(page.inbox, Qt.Key.Key_A)
    qtbot.waitUntil(lambda: _detail(backend, other).assignee == "helpdesk", timeout=TIMEOUT_MS)
    # Confirming keeps the correct answer chosen by its class name.
    qtbot.waitUntil(lambda: detail.report is not None and detail.report.assignee == "helpdesk")
    detail.correction.setCurrentText("legit")
    qtbot.keyClick(page.inbox, Qt.Key.Key_C)
    qtbot.waitUntil(lambda: _detail(backend, other).status == "confirmed", timeout=TIMEOUT_MS)
    assert _detail(backend, other).correction == 0
    qtbot.waitUntil(lambda: detail.report is not None and detail.report.status == "confirmed")

    # A note: N puts the cursor in the note, Ctrl+Enter adds it; the history lists it.
    qtbot.keyClick(page.inbox, Qt.Key.Key_N)
    assert detail.note_text.hasFocus()
    qtbot.keyClicks(detail.note_text, "Customer called back")
    qtbot.keyClick(detail.note_text, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(
        lambda: [n.text for n in _detail(backend, other).note_thread] == ["Customer called back"],
        timeout=TIMEOUT_MS,
    )
    qtbot.waitUntil(lambda: detail.note_text.toPlainText() == "", timeout=TIMEOUT_MS)
    history = [
        detail.history.topLevelItem(i).text(2) for i in range(detail.history.topLevelItemCount())
    ]
    assert "Note: Customer called back" in history
    assert "changed the status: New → In review" in history

    # Bulk: two reports selected, one key, both change (all or none).
    page.inbox.clearSelection()
    page.inbox.select_report(late)
    spare_row = page.inbox.reports.row_of(spare)
    selection = page.inbox.selectionModel()
    selection.select(
        page.inbox.reports.index(spare_row, 0),
        selection.SelectionFlag.Select | selection.SelectionFlag.Rows,
    )
    qtbot.waitUntil(lambda: detail.selected == 2, timeout=TIMEOUT_MS)
    assert detail.heading.text() == "2 reports selected"
    qtbot.keyClick(page.inbox, Qt.Key.Key_X)
    qtbot.waitUntil(
        lambda: {_detail(backend, r).status for r in (late, spare)} == {"not_model_error"},
        timeout=TIMEOUT_MS,
    )
    qtbot.waitUntil(lambda: "2 reports changed" in detail.message.text(), timeout=TIMEOUT_MS)


def test_views_are_saved_and_filters_ask_the_backend(  # type: ignore[no-untyped-def]
    qtbot: QtBot, backend: Backend, support_window: MainWindow, console_settings
) -> None:
    client = ApiClient(backend.url, backend.admin_token)
    (request_id,) = _logged_request_ids(backend, 1)
    wanted = _file(client, request_id, "totally unexpected refusal")
    _file(client, request_id, "another complaint")
    page = _reports_page(support_window)
    support_window.open_page("reports")
    qtbot.waitUntil(lambda: page.inbox.reports.rowCount() == 2, timeout=TIMEOUT_MS)
    # The retraining export is for engineers and admins.
    assert not page.export.button.isVisibleTo(page)
    # A page at a time: Show more reads the next after those shown, and a poll keeps both.
    page.page_size = 1
    page.filter_bar.order.setCurrentIndex(page.filter_bar.order.findData("asc"))
    qtbot.waitUntil(lambda: page.inbox.reports.rowCount() == 1, timeout=TIMEOUT_MS)
    assert page.more_button.isVisibleTo(page)
    assert "Showing the first 1 of 2 reports" in page.status.text()
    qtbot.mouseClick(page.more_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.inbox.reports.rowCount() == 2, timeout=TIMEOUT_MS)
    assert [r.id for r in page.inbox.reports.rows] == [wanted, wanted + 1]
    assert not page.more_button.isVisibleTo(page)
    page.poll()
    qtbot.waitUntil(lambda: "2 reports." in page.status.text(), timeout=TIMEOUT_MS)
    assert page.inbox.reports.rowCount() == 2
    page.page_size = 200
    page.filter_bar.order.setCurrentIndex(page.filter_bar.order.findData("desc"))
    # "/" goes to the search; typing asks again after a pause.
    page.inbox.setFocus()
    qtbot.keyClick(page.inbox, Qt.Key.Key_Slash)
    assert page.filter_bar.search.hasFocus()
    qtbot.keyClicks(page.filter_bar.search, "unexpected")
    qtbot.waitUntil(lambda: page.inbox.reports.rowCount() == 1, timeout=TIMEOUT_MS)
    assert page.inbox.reports.rows[0].id == wanted
    page.save_view("Unexpected")
    assert "Unexpected" in console_settings.value("reports/views")
    page.choose_view("Everything")
    qtbot.waitUntil(lambda: page.inbox.reports.rowCount() == 2, timeout=TIMEOUT_MS)
    assert page.filter_bar.search.text() == ""
    page.choose_view("Unexpected")
    qtbot.waitUntil(lambda: page.inbox.reports.rowCount() == 1, timeout=TIMEOUT_MS)
    assert page.filter_bar.views.currentText() == "Unexpected"
    assert page.filter_bar.delete_view.isEnabled()
    page.delete_view("Unexpected")
    assert page.filter_bar.views.findText("Unexpected") < 0
    # Nothing matches: the status says what to do.
    page.filter_bar.search.setText("no report says this")
    page.refresh()
    qtbot.waitUntil(lambda: "No reports match" in page.status.text(), timeout=TIMEOUT_MS)
    assert "No report selected" in page.detail.heading.text()


def test_report_an_error_from_the_live_page(  # type: ignore[no-untyped-def]
    qtbot: QtBot, make_context, backend: Backend
) -> None:
    support = backend.create_token("helpdesk", "support")
    page = LivePage(make_context(backend.url, support))
    qtbot.addWidget(page)
    page.show()
    page.connection_changed(True)
    qtbot.waitUntil(lambda: page.stream_state == "streaming", timeout=10_000)
    backend.predict(2)
    qtbot.waitUntil(lambda: page.received_total >= 2, timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: "toy" in page.models, timeout=TIMEOUT_MS)
    page.view.selectRow(0)
    panel = page.label_panel
    event = panel.shown
    assert event is not None and panel.report_button.isEnabled()
    # Beside "Record label", on the same row.
    assert panel.report_button.parent() is panel.record_button.parent()
    qtbot.mouseClick(panel.report_button, Qt.MouseButton.LeftButton)
    dialog = panel.report_dialog
    assert dialog is not None and dialog.isVisible()
    # The right answer is offered among the model's classes, by name.
    offered = [dialog.expected.itemText(i) for i in range(dialog.expected.count())]
    assert offered == ["I don't know", "legit", "fraud"]
    ok = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    dialog.expected.setCurrentText("maybe")
    qtbot.mouseClick(ok, Qt.MouseButton.LeftButton)
    assert dialog.isVisible() and "not one of this model's classes" in dialog.error.text()
    dialog.category.setCurrentIndex(dialog.category.findData("offensive"))
    dialog.description.setPlainText("The answer insulted the customer")
    dialog.expected.setCurrentText("legit")
    qtbot.mouseClick(ok, Qt.MouseButton.LeftButton)
    assert not dialog.isVisible()
    qtbot.waitUntil(lambda: "filed on request" in panel.report_note.text(), timeout=TIMEOUT_MS)
    found = ApiClient(backend.url, backend.admin_token).reports({"status": ["new"]}).reports
    assert [(r.request_id, r.category, r.expected, r.description) for r in found] == [
        (event.request_id, "offensive", 0, "The answer insulted the customer")
    ]
    assert f"Report #{found[0].id} filed" in panel.report_note.text()
    page.shutdown()
