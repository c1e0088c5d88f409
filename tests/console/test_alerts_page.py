"""The Alerts page, the badge on every page and the tray decision, against a real backend.

Alerts are raised the way the backend raises them (``AlertService.raise_once`` on the same
store, from this process) and reach the console through the server's alert stream: nothing in
the console polls, so an alert on screen came by the stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QApplication, QMessageBox
from pytestqt.qtbot import QtBot

from backend.schemas import Alert, AlertSeverity
from backend.workspace import Workspace
from console.alert_notices import CriticalNotifier
from console.main_window import MainWindow
from console.pages.alerts import AlertsPage
from tests.console.conftest import Backend
from tests.helpers import make_settings

TIMEOUT_MS = 20_000


def raise_alert(
    backend: Backend, model: str = "toy", version: str = "1", severity: AlertSeverity = "critical"
) -> Alert:
    workspace = Workspace.open(make_settings(backend.data_dir))
    try:
        alert, raised = workspace.alerts.raise_once(
            model,
            version,
            "live_metric",
            severity=severity,
            title=f"{model} version {version}: live accuracy 0.41 is below its range [0.8, 1]",
            explanation=(
                "Of the newest 200 labelled predictions the accuracy is 0.41. What to do: "
                "compare with the previous version; roll back if it does not recover."
            ),
            details={"metric": "accuracy", "value": 0.41, "acceptable_range": [0.8, 1.0]},
        )
        assert raised
        return alert
    finally:
        workspace.close()


def _window(qtbot: QtBot, make_context, backend: Backend, token: str) -> MainWindow:  # type: ignore[no-untyped-def]
    window = MainWindow(make_context(backend.url, token))
    qtbot.addWidget(window)
    window.resize(1400, 900)
    window.show()
    window.start()
    qtbot.waitUntil(lambda: window.page("alerts") is not None, timeout=TIMEOUT_MS)
    qtbot.waitUntil(
        lambda: window.alert_notices.badge.stream_state == "streaming", timeout=TIMEOUT_MS
    )
    return window


@pytest.fixture
def window(qtbot: QtBot, make_context, backend: Backend) -> Iterator[MainWindow]:  # type: ignore[no-untyped-def]
    shown = _window(qtbot, make_context, backend, backend.admin_token)
    yield shown
    shown.shutdown()


@pytest.fixture
def unchanging_window(qtbot: QtBot, make_context, module_backend: Backend) -> Iterator[MainWindow]:  # type: ignore[no-untyped-def]
    """A window on the module's backend, for a test that changes nothing in the store."""
    shown = _window(qtbot, make_context, module_backend, module_backend.admin_token)
    yield shown
    shown.shutdown()


def _alerts_page(window: MainWindow) -> AlertsPage:
    page = window.page("alerts")
    assert isinstance(page, AlertsPage)
    return page


def _row_of(page: AlertsPage, alert_id: int) -> int:
    for row in range(page.filtered.rowCount()):
        source = page.filtered.mapToSource(page.filtered.index(row, 0))
        alert = page.table.alert_at(source.row())
        if alert is not None and alert.id == alert_id:
            return row
    return -1


def test_a_raised_alert_shows_on_the_badge_and_the_page_and_is_acknowledged_by_keyboard(
    qtbot: QtBot, window: MainWindow, backend: Backend
) -> None:
    badge = window.alert_notices.badge
    assert badge.isVisible() and "No open alerts" in badge.text()
    # The badge is on every page: on another page first, and its click opens the Alerts page.
    window.open_page("live")
    page = _alerts_page(window)
    assert page.filtered.rowCount() == 0 and "No active alerts" in page.view.empty_note.text()

    alert = raise_alert(backend)
    qtbot.waitUntil(lambda: badge.open_count == 1, timeout=TIMEOUT_MS)
    assert "1 open alert (1 critical)" in badge.text()
    assert window.stack.currentWidget() is window.page("live")
    qtbot.mouseClick(badge, Qt.MouseButton.LeftButton)
    assert window.stack.currentWidget() is page
    row = _row_of(page, alert.id)
    assert row >= 0
    assert page.filtered.index(row, 0).data() == "Critical"
    assert page.filtered.index(row, 1).data() == "toy"
    assert page.filtered.index(row, 3).data() == alert.title
    assert page.filtered.index(row, 4).data() == "Open"
    # A critical alert raised while the console watched is notified (once).
    assert window.alert_notices.last_notice == ("Critical alert: toy", alert.title)

    # The keyboard way: focus the list, move to the alert, press A, type a note, Enter.
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5_000)
    page.view.setFocus()
    qtbot.keyClick(page.view, Qt.Key.Key_Home)
    page.view.selectRow(row)
    assert page.details.heading.text() == alert.title
    assert "accuracy is 0.41" in page.details.explanation.text()
    assert "Acceptable range: <b>[0.8, 1]</b>" in page.details.details.text()
    assert "Raised" in page.details.history.text()
    qtbot.keyClick(page.view, Qt.Key.Key_A)
    dialog = page.dialog
    assert dialog is not None and dialog.isVisible()
    assert alert.title in dialog.question.text()
    qtbot.keyClicks(dialog.note, "rolling back to v0")
    qtbot.keyClick(dialog.note, Qt.Key.Key_Return)

    def acknowledged() -> bool:
        shown = page.table.alert(alert.id)
        return shown is not None and shown.status == "acknowledged"

    qtbot.waitUntil(acknowledged, timeout=TIMEOUT_MS)
    shown = page.table.alert(alert.id)
    assert shown is not None and shown.acknowledged_by == "admin"
    row = _row_of(page, alert.id)
    assert page.filtered.index(row, 4).data() == "Acknowledged"
    assert page.filtered.index(row, 6).data().startswith("admin, ")
    history = page.details.history.text()
    assert "Acknowledged</b> by admin at" in history and "rolling back to v0" in history
    assert not page.details.acknowledge_button.isEnabled()
    # Nobody's alert any more: the badge says so on every page.
    assert badge.open_count == 0 and badge.acknowledged_count == 1
    assert "No open alerts" in badge.text()
    # The backend agrees.
    answer = requests.get(
        f"{backend.url}/api/v1/alerts/{alert.id}",
        headers={"Authorization": f"Bearer {backend.admin_token}"},
        timeout=10,
    ).json()
    assert (answer["status"], answer["acknowledged_by"], answer["acknowledgement"]) == (
        "acknowledged",
        "admin",
        "rolling back to v0",
    )


def test_an_acknowledgement_refused_by_the_backend_is_shown_with_its_reason(
    qtbot: QtBot, window: MainWindow, backend: Backend
) -> None:
    page = _alerts_page(window)
    window.open_page("alerts")
    alert = raise_alert(backend, model="price", severity="warning")
    qtbot.waitUntil(lambda: _row_of(page, alert.id) >= 0, timeout=TIMEOUT_MS)
    # A warning is not notified in the tray.
    assert window.alert_notices.last_notice is None
    # Someone else takes it on first (another console, over HTTP).
    taken = requests.post(
        f"{backend.url}/api/v1/alerts/{alert.id}/acknowledge",
        headers={"Authorization": f"Bearer {backend.admin_token}"},
        json={"note": "mine"},
        timeout=10,
    )
    assert taken.ok
    page.view.setFocus()
    page.view.selectRow(_row_of(page, alert.id))
    qtbot.keyClick(page.view, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert page.dialog is not None and page.dialog.isVisible()
    qtbot.keyClick(page.dialog.note, Qt.Key.Key_Return)
    qtbot.waitUntil(
        lambda: isinstance(page.error_dialog, QMessageBox) and page.error_dialog.isVisible(),
        timeout=TIMEOUT_MS,
    )
    assert isinstance(page.error_dialog, QMessageBox)
    text = page.error_dialog.text()
    assert "409" in text and f"alert {alert.id} is already acknowledged by admin" in text
    page.error_dialog.close()
    # The page reads the alert again and shows who owns it.
    qtbot.waitUntil(
        lambda: (
            (shown := page.table.alert(alert.id)) is not None and shown.status == "acknowledged"
        ),
        timeout=TIMEOUT_MS,
    )
    assert "Already acknowledged by admin" in page.details.acknowledge_note.text()


def test_the_stream_resumes_after_a_reconnect_without_losing_alerts(
    qtbot: QtBot, window: MainWindow, backend: Backend
) -> None:
    page = _alerts_page(window)
    first = raise_alert(backend, model="toy", version="1")
    qtbot.waitUntil(lambda: page.table.alert(first.id) is not None, timeout=TIMEOUT_MS)
    port = int(backend.url.rsplit(":", 1)[1])
    backend.stop()
    badge = window.alert_notices.badge
    qtbot.waitUntil(lambda: badge.stream_state != "streaming", timeout=TIMEOUT_MS)
    assert "not up to date" in badge.text()
    # While the console is cut off: a new alert, and the first one acknowledged elsewhere.
    missed = raise_alert(backend, model="price", version="1")
    workspace = Workspace.open(make_settings(backend.data_dir))
    try:
        workspace.alerts.acknowledge(first.id, "oncall", "looking")
    finally:
        workspace.close()
    backend.start(port)
    qtbot.waitUntil(lambda: page.table.alert(missed.id) is not None, timeout=60_000)
    qtbot.waitUntil(lambda: badge.stream_state == "streaming", timeout=TIMEOUT_MS)
    seen_first = page.table.alert(first.id)
    assert seen_first is not None and seen_first.acknowledged_by == "oncall"
    assert badge.open_count == 1 and badge.acknowledged_count == 1
    # Raised while the console was away, but raised after what it had seen: notified.
    assert window.alert_notices.last_notice == ("Critical alert: price", missed.title)
    # Each alert once.
    ids = [page.table.alert_at(row).id for row in range(page.table.rowCount())]  # type: ignore[union-attr]
    assert sorted(ids) == sorted({first.id, missed.id})


def test_resolved_alerts_are_history_behind_a_filter(
    qtbot: QtBot, window: MainWindow, backend: Backend
) -> None:
    page = _alerts_page(window)
    window.open_page("alerts")
    alert = raise_alert(backend)
    qtbot.waitUntil(lambda: _row_of(page, alert.id) >= 0, timeout=TIMEOUT_MS)
    workspace = Workspace.open(make_settings(backend.data_dir))
    try:
        assert workspace.alerts.resolve("toy", "1", "live_metric", "version 1 deployed again") == 1
    finally:
        workspace.close()
    page.status_filter.setCurrentIndex(page.status_filter.findData("resolved"))
    qtbot.waitUntil(
        lambda: (shown := page.table.alert(alert.id)) is not None and shown.status == "resolved",
        timeout=TIMEOUT_MS,
    )
    row = _row_of(page, alert.id)
    assert row >= 0
    page.view.selectRow(row)
    assert "Resolved</b> at" in page.details.history.text()
    assert "version 1 deployed again" in page.details.history.text()
    # Filters: another model, another severity hide it and say why.
    page.severity_filter.setCurrentIndex(page.severity_filter.findData("warning"))
    assert page.filtered.rowCount() == 0
    assert "No alert matches the filters" in page.view.empty_note.text()


def test_support_staff_have_no_alerts_page_and_no_badge_promising_one(
    qtbot: QtBot, make_context, module_backend: Backend
) -> None:  # type: ignore[no-untyped-def]
    # A token of its own is the only change, under a name no other test of the module uses.
    support_token = module_backend.create_token("helpdesk", "support")
    window = MainWindow(make_context(module_backend.url, support_token))
    qtbot.addWidget(window)
    window.show()
    window.start()
    try:
        qtbot.waitUntil(lambda: window.role == "support", timeout=TIMEOUT_MS)
        assert window.page("alerts") is None
        # The badge's click opens the Alerts page: without one it would promise nothing.
        assert not window.alert_notices.badge.isVisible()
        assert not window.alert_notices.feed.running
    finally:
        window.shutdown()


def _alert(alert_id: int, severity: AlertSeverity, status: str = "open") -> Alert:
    return Alert(
        id=alert_id,
        model="toy",
        version="1",
        kind="live_metric",
        severity=severity,
        status=status,  # type: ignore[arg-type]
        title=f"alert {alert_id}",
        explanation="what to do",
        raised_at=datetime(2026, 12, 2, 12, 0, tzinfo=UTC),
    )


def test_the_tray_notifies_critical_alerts_once_unless_switched_off(
    qtbot: QtBot, unchanging_window: MainWindow, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    # The alerts here are made up in the console only: the backend's store stays as it was.
    window = unchanging_window
    notifier = CriticalNotifier(QSettings(str(tmp_path / "n.ini"), QSettings.Format.IniFormat))
    assert notifier.enabled  # on by default
    critical, warning = _alert(1, "critical"), _alert(2, "warning")
    owned = _alert(3, "critical", "acknowledged")
    assert notifier.to_notify([critical, warning, owned]) == [critical]
    assert notifier.to_notify([critical]) == []  # once per alert
    notifier.set_enabled(False)
    assert notifier.to_notify([_alert(4, "critical")]) == []
    notifier.set_enabled(True)
    assert notifier.to_notify([_alert(5, "critical")]) == [_alert(5, "critical")]

    # The window's setting is a checkable menu action kept in the console's settings.
    notices = window.alert_notices
    action = notices.tray_action
    assert action.isCheckable() and action.isChecked()
    settings_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Settings")
    assert action in settings_menu.actions()
    action.setChecked(False)
    assert not notices.notifier.enabled
    assert window.context.settings.value("notifications/critical_tray") == "false"
    notices.book.add_raised([_alert(10_001, "critical")])
    assert notices.last_notice is None
    action.setChecked(True)
    notices.book.add_raised([_alert(10_002, "critical")])
    assert notices.last_notice == ("Critical alert: toy", "alert 10002")
    QApplication.processEvents()


def test_an_acknowledgement_made_elsewhere_shows_without_a_reconnect(
    qtbot: QtBot, window: MainWindow, backend: Backend
) -> None:
    page = _alerts_page(window)
    alert = raise_alert(backend, model="toy", version="1")
    qtbot.waitUntil(lambda: page.table.alert(alert.id) is not None, timeout=TIMEOUT_MS)
    workspace = Workspace.open(make_settings(backend.data_dir))
    try:
        workspace.alerts.acknowledge(alert.id, "oncall", "on it")
    finally:
        workspace.close()
    # The event stream carries the change: the same connection, no re-read.
    qtbot.waitUntil(
        lambda: (
            (shown := page.table.alert(alert.id)) is not None and shown.acknowledged_by == "oncall"
        ),
        timeout=TIMEOUT_MS,
    )
    assert window.alert_notices.badge.acknowledged_count == 1
