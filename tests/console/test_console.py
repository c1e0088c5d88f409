"""The console against a real backend: start-up, connection loss, roles, the live page."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

import numpy as np
from PySide6.QtWidgets import QApplication

from console.app import Console
from console.local_backend import LocalBackend
from console.main_window import MainWindow
from console.pages.live import LivePage
from tests.console.conftest import Backend

# An admin's pages, in navigation order.
ALL_PAGES = [
    "overview",
    "alerts",
    "live",
    "drift",
    "performance",
    "feedback_loops",
    "lineage",
    "models",
    "deploy",
    "reports",
    "review",
]


def _window(qtbot, make_context, backend: Backend, token: str) -> MainWindow:  # type: ignore[no-untyped-def]
    window = MainWindow(make_context(backend.url, token))
    qtbot.addWidget(window)
    window.show()
    window.start()
    return window


def test_connects_and_shows_the_pages_of_the_role(
    qtbot, make_context, module_backend: Backend
) -> None:  # type: ignore[no-untyped-def]
    window = _window(qtbot, make_context, module_backend, module_backend.admin_token)
    qtbot.waitUntil(lambda: window.monitor.state == "connected", timeout=10_000)
    assert "Connected" in window.state_label.text()
    assert "admin" in window.origin_label.text()
    assert [page.key for page in window.pages] == [
        "overview",
        "alerts",
        "live",
        "drift",
        "performance",
        "feedback_loops",
        "lineage",
        "models",
        "deploy",
        "reports",
        "review",
    ]
    assert not window.banner.isVisible()


def test_support_sees_live_reports_and_review(qtbot, make_context, module_backend: Backend) -> None:  # type: ignore[no-untyped-def]
    window = _window(
        qtbot, make_context, module_backend, module_backend.create_token("helpdesk", "support")
    )
    qtbot.waitUntil(lambda: window.role == "support", timeout=10_000)
    # What end users meet; the monitoring and change pages are for engineers.
    assert [page.key for page in window.pages] == ["live", "reports", "review"]


def test_a_client_token_gets_no_pages_and_a_reason(
    qtbot, make_context, module_backend: Backend
) -> None:  # type: ignore[no-untyped-def]
    window = _window(
        qtbot, make_context, module_backend, module_backend.create_token("shop", "client")
    )
    qtbot.waitUntil(lambda: window.role == "client", timeout=10_000)
    assert window.pages == []
    assert "meant for applications" in window.placeholder.text()


def test_a_wrong_token_is_shown_as_refused(qtbot, make_context, module_backend: Backend) -> None:  # type: ignore[no-untyped-def]
    window = _window(qtbot, make_context, module_backend, "sdk_not_a_token")
    qtbot.waitUntil(lambda: window.monitor.state == "refused", timeout=10_000)
    assert window.banner.isVisible() and "refused" in window.banner_text.text()
    # It does not pretend to recover by itself: it offers the one thing that helps.
    assert "recovers by itself" not in window.banner_text.text()


def test_backend_down_and_back(qtbot, make_context, backend: Backend) -> None:  # type: ignore[no-untyped-def]
    window = _window(qtbot, make_context, backend, backend.admin_token)
    qtbot.waitUntil(lambda: window.monitor.state == "connected", timeout=10_000)
    port = int(backend.url.rsplit(":", 1)[1])
    backend.stop()
    qtbot.waitUntil(lambda: window.monitor.state in ("reconnecting", "down"), timeout=15_000)
    assert window.banner.isVisible()
    backend.start(port)
    qtbot.waitUntil(lambda: window.monitor.state == "connected", timeout=30_000)
    assert not window.banner.isVisible()


def test_live_table_fills_from_the_stream_and_stays_bounded(  # type: ignore[no-untyped-def]
    qtbot, make_context, backend: Backend
) -> None:
    page = LivePage(make_context(backend.url, backend.admin_token), table_capacity=25)
    qtbot.addWidget(page)
    page.show()
    page.connection_changed(True)
    qtbot.waitUntil(lambda: page.stream_state == "streaming", timeout=10_000)
    sender = threading.Thread(target=backend.predict, args=(40,))
    sender.start()
    qtbot.waitUntil(lambda: page.received_total >= 40, timeout=20_000)
    sender.join()
    assert page.table.rowCount() == 25  # bounded: the oldest fell off
    newest = page.table.event_at(0)
    assert newest is not None and newest.entity_id == "card-39" and newest.model == "toy"

    # Filters: an outcome that never happened empties the view; "all" brings the rows back.
    page.decision_filter.setCurrentIndex(page.decision_filter.findData("abstained"))
    assert page.filtered.rowCount() == 0
    page.decision_filter.setCurrentIndex(0)
    assert page.filtered.rowCount() == 25

    # Pause holds new rows back; resume shows them.
    page.pause_button.setChecked(True)
    top_before = page.table.event_at(0)
    backend.predict(3)
    qtbot.waitUntil(lambda: page.received_total >= 43, timeout=20_000)
    assert page.table.event_at(0) is top_before and "3 new waiting" in page.status.text()
    page.pause_button.setChecked(False)
    assert page.table.event_at(0) is not top_before

    # Details of the selected prediction, with its label looked up in the background.
    page.view.selectRow(0)
    qtbot.waitUntil(lambda: "label" in page.label_panel.status.text().lower(), timeout=10_000)
    features = page.details.topLevelItem(1)
    assert features.text(0) == "Features" and features.childCount() > 0

    # The charts get the live statistics once the current second is complete.
    qtbot.waitUntil(
        lambda: (
            page.charts.buffers[1].size > 0
            and page.charts.buffers[1].view()[1]["requests"].sum() >= 43
        ),
        timeout=20_000,
    )
    page.charts.redraw()
    assert "43 answered" in page.charts.summary.text()
    page.shutdown()


def test_embedded_backend_starts_and_stops_cleanly(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    local = LocalBackend(tmp_path / "embedded")
    try:
        with qtbot.waitSignal(local.ready, timeout=60_000) as ready:
            local.start()
        url = ready.args[0]
        assert url.startswith("http://127.0.0.1:")
        assert local.admin_token().startswith("sdk_")
    finally:
        code = local.stop()
    assert code in (0, -15)
    assert not (tmp_path / "embedded" / "server.json").exists()


def test_servedeck_without_arguments_opens_on_the_embedded_backend(  # type: ignore[no-untyped-def]
    qtbot, tmp_path: Path
) -> None:
    args = argparse.Namespace(demo=False, rate=20.0, connect=None, data_dir=tmp_path / "d")
    console = Console(QApplication.instance(), args)  # type: ignore[arg-type]
    try:
        console.start()
        qtbot.waitUntil(lambda: console.window is not None, timeout=60_000)
        assert console.window is not None
        qtbot.addWidget(console.window)
        qtbot.waitUntil(lambda: console.window.monitor.state == "connected", timeout=10_000)
        assert console.local is not None and console.local.is_running()
    finally:
        console.shutdown()
    assert console.local is not None and not console.local.is_running()


def test_the_live_page_is_usable_from_the_keyboard(  # type: ignore[no-untyped-def]
    qtbot, make_context, module_backend: Backend
) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    page = LivePage(make_context(module_backend.url, module_backend.admin_token))
    qtbot.addWidget(page)
    page.show()
    page.activateWindow()
    qtbot.waitUntil(lambda: page.isActiveWindow(), timeout=5_000)
    page.model_filter.setFocus()
    order = [QApplication.focusWidget()]
    for _ in range(5):
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Tab)
        order.append(QApplication.focusWidget())
    # Filters left to right, then pause, the request-id search, then the table: the order
    # they are read in.
    assert order == [
        page.model_filter,
        page.version_filter,
        page.decision_filter,
        page.pause_button,
        page.search,
        page.view,
    ]
    # And on round the page: the details, the label action and the chart window are reachable.
    reached = set()
    for _ in range(12):
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Tab)
        reached.add(QApplication.focusWidget())
    assert {page.details, page.charts.window_choice} <= reached
    # Every control says what it does.
    for widget in (
        page.model_filter,
        page.version_filter,
        page.decision_filter,
        page.pause_button,
        page.search,
        page.view,
    ):
        assert widget.toolTip(), f"{widget} has no tooltip"
    page.shutdown()


def test_every_page_can_be_walked_with_tab_and_explains_its_controls(  # type: ignore[no-untyped-def]
    qtbot, make_context, backend: Backend
) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication, QTabBar, QWidget

    from backend.workspace import Workspace
    from tests.helpers import make_settings
    from tests.review_helpers import add_held_out_rows

    workspace = Workspace.open(make_settings(backend.data_dir))
    try:  # the first model's (price, a regression model: the value field)
        add_held_out_rows(workspace, 2, model="price")
    finally:
        workspace.close()
    window = _window(qtbot, make_context, backend, backend.admin_token)
    qtbot.waitUntil(lambda: [p.key for p in window.pages] == ALL_PAGES, timeout=10_000)
    window.activateWindow()
    qtbot.waitUntil(lambda: window.isActiveWindow(), timeout=5_000)

    def explained(widget: QWidget) -> bool:
        # A control, or the container it sits in (a table's viewport, a combo's line edit);
        # a tab bar explains itself tab by tab.
        if isinstance(widget, QTabBar):
            return all(widget.tabToolTip(i) for i in range(widget.count()))
        if isinstance(widget.parentWidget(), QTabBar):
            # Qt's own arrows for scrolling tabs that do not fit (a small screen): the tabs
            # they scroll to explain themselves.
            return explained(widget.parentWidget())
        while widget is not None and widget is not window:
            if widget.toolTip():
                return True
            widget = widget.parentWidget()
        return False

    for row, page in enumerate(window.pages):
        window.navigation.setCurrentRow(row)
        qtbot.waitUntil(lambda page=page: page.isVisible(), timeout=5_000)
        # Walked once it shows what it loads (a model selected, its details and forms).
        loaded = {
            "overview": lambda page=page: (
                bool(page.cards)
                and all(row.isVisible() for card in page.cards.values() for row in card.rows)
            ),
            "alerts": lambda: True,
            "live": lambda: True,
            "models": lambda page=page: page.selected_version is not None,
            "deploy": lambda page=page: page.model is not None,
            "drift": lambda page=page: page.drift is not None,
            "performance": lambda page=page: page.report is not None,
            "feedback_loops": lambda page=page: page.report is not None,
            "lineage": lambda page=page: page.graph is not None,
            "reports": lambda page=page: page.loaded,
            # An example shown (the held-out rows added above): its answer controls.
            "review": lambda page=page: page.current() is not None,
        }[page.key]
        qtbot.waitUntil(loaded, timeout=10_000)
        page.focusNextChild()
        seen: list[QWidget] = []
        for _ in range(30):
            focused = QApplication.focusWidget()
            if focused is not None and page.isAncestorOf(focused) and focused not in seen:
                seen.append(focused)
            qtbot.keyClick(focused or window, Qt.Key.Key_Tab)
        # The Lineage page has one control (Refresh): its graph and words are read, not used.
        least = 1 if page.key == "lineage" else 4
        assert len(seen) >= least, f"{page.key}: Tab reaches only {seen}"
        unexplained = [w for w in seen if not explained(w)]
        assert not unexplained, f"{page.key}: no tooltip on {unexplained}"


def test_the_live_page_reads_in_names_finds_requests_and_explains_empty_filters(  # type: ignore[no-untyped-def]
    qtbot, make_context, backend: Backend
) -> None:
    import requests
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QFontMetrics

    from console.widgets.prediction_details import NOTHING_SELECTED
    from console.widgets.prediction_table import COLUMNS, LABEL_COLUMN, OUTPUT_COLUMN
    from tests.helpers import TOY_ROW

    headers = {"Authorization": f"Bearer {backend.admin_token}"}

    def post(model: str, row: dict, request_id: str | None = None) -> requests.Response:
        body: dict = {"instances": [row], **({"id": request_id} if request_id else {})}
        return requests.post(
            f"{backend.url}/v1/models/{model}:predict", headers=headers, json=body, timeout=10
        )

    page = LivePage(make_context(backend.url, backend.admin_token))
    qtbot.addWidget(page)
    page.resize(1024, 700)
    page.show()
    page.connection_changed(True)
    qtbot.waitUntil(lambda: page.stream_state == "streaming", timeout=10_000)
    # A request id is unique only within a model: two models answer the same one.
    assert post("toy", TOY_ROW, "order-42").ok and post("price", {"x1": 1, "x2": 2}, "order-42").ok
    backend.predict(3)
    qtbot.waitUntil(lambda: page.received_total >= 5, timeout=20_000)
    qtbot.waitUntil(lambda: {"toy", "price"} <= set(page.models), timeout=10_000)

    # Classes by name, a label column, numbers to a sensible precision.
    assert "Label" in [name for name, _ in COLUMNS]
    toy_rows = [
        row
        for row in range(page.filtered.rowCount())
        if page.filtered.index(row, 1).data() == "toy"
    ]
    assert {page.filtered.index(row, OUTPUT_COLUMN).data() for row in toy_rows} <= {
        "legit",
        "fraud",
    }
    page.view.selectRow(toy_rows[0])
    features = page.details.topLevelItem(1)
    values = {
        features.child(i).text(0): features.child(i).text(1) for i in range(features.childCount())
    }
    assert values["amount"] == "120.50"
    outputs = page.details.topLevelItem(2)
    answers = {
        outputs.child(i).text(0): outputs.child(i).text(1) for i in range(outputs.childCount())
    }
    assert answers["answer"] in ("legit (class 0)", "fraud (class 1)")
    assert (
        answers["probability per class"].startswith("legit ")
        and "· fraud " in answers["probability per class"]
    )
    # Feature names are never cut: the name column is as wide as the longest name.
    longest = max(QFontMetrics(page.details.font()).horizontalAdvance(n) for n in values)
    assert page.details.columnWidth(0) >= longest

    # A label that arrives later (as chargebacks do) shows in the table's label column.
    labelled = page.filtered.index(toy_rows[-1], 0)
    event = page.table.event_at(page.filtered.mapToSource(labelled).row())
    assert event is not None
    # The id is shared with the price model, so the label names its model.
    feedback = {
        "labels": [
            {"request_id": event.request_id, "row": event.row, "label": 1, "model": event.model}
        ]
    }
    assert requests.post(
        f"{backend.url}/api/v1/feedback", headers=headers, json=feedback, timeout=10
    ).ok
    label_cell = labelled.siblingAtColumn(LABEL_COLUMN)

    def label_shown() -> bool:
        page.poll_labels()  # what the page's timer does every 10 s
        return label_cell.data() == "fraud"

    qtbot.waitUntil(label_shown, timeout=10_000)

    # Filters that hide every row: the table says why, and the old details are gone.
    page.decision_filter.setCurrentIndex(page.decision_filter.findData("abstained"))
    assert page.filtered.rowCount() == 0
    assert page.empty_note.isVisible() and "match the filters (outcome abstained)" in (
        page.empty_note.text()
    )
    assert page.details.topLevelItem(0).text(0) == NOTHING_SELECTED
    assert page.label_panel.shown is None and not page.label_panel.record_button.isEnabled()
    page.decision_filter.setCurrentIndex(0)
    assert not page.empty_note.isVisible()

    # Find a request by the id an end user quotes: every model's prediction with it.
    page.search.setText("order-42")
    qtbot.keyClick(page.search, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: len(page.details.matches) == 2, timeout=10_000)
    assert {m.model for m in page.details.matches} == {"toy", "price"}
    assert "2 predictions with request id order-42 (price, toy)" in page.details.topLevelItem(
        0
    ).text(0)
    page.details.setCurrentItem(page.details.topLevelItem(2))
    assert page.label_panel.shown is not None and page.label_panel.record_button.isEnabled()
    page.search.setText("no-such-request")
    qtbot.keyClick(page.search, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: "is in the log" in page.details.topLevelItem(0).text(0), timeout=10_000)

    # Refused requests are counted for the model's charts; the charts follow the filters.
    assert post("toy", {"amount": "lots"}).status_code == 422
    page.model_filter.setCurrentIndex(page.model_filter.findData("toy"))
    assert [page.version_filter.itemData(i) for i in range(page.version_filter.count())] == [
        "",
        "1",
    ]
    assert page.charts.scope.text() == "toy, all versions"

    def charted(column: str) -> float:
        return float(np.nansum(page.charts.buffers[1].view()[1][column]))

    qtbot.waitUntil(lambda: charted("refused") >= 1 and charted("requests") >= 4, timeout=20_000)
    assert charted("requests") == 4  # toy's own predictions, not price's
    page.version_filter.setCurrentIndex(1)
    assert page.charts.scope.text() == "toy version 1"
    qtbot.waitUntil(lambda: charted("requests") == 4, timeout=20_000)
    assert charted("refused") == 0  # the refusal named no version
    page.charts.redraw()
    assert page.charts.started_line.isVisible()  # the backend started within the window
    page.shutdown()


def test_the_window_fits_the_screen_whatever_size_was_saved(  # type: ignore[no-untyped-def]
    qtbot, make_context, module_backend: Backend
) -> None:
    """The 1400x900 first-start size, or a size saved on a larger screen, must not put the
    charts and details beyond the edge of a small screen (offscreen: 800x600)."""
    context = make_context(module_backend.url, module_backend.admin_token)
    first = _window(qtbot, lambda *args: context, module_backend, module_backend.admin_token)
    available = first.screen().availableGeometry()
    assert available.width() < 1400  # the case under test: a screen smaller than the default
    assert first.width() <= available.width() and first.height() <= available.height()

    first.resize(4000, 3000)
    first.move(2000, 1500)
    context.settings.setValue("window/geometry", first.saveGeometry())
    again = _window(qtbot, lambda *args: context, module_backend, module_backend.admin_token)
    assert again.width() <= available.width() and again.height() <= available.height()
    assert available.contains(again.geometry().topLeft())
