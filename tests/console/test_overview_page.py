"""The Overview page against a real backend: a card per model with its values coloured by
status, a plain-words line, and each row opening the page that explains it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from console.main_window import MainWindow
from console.pages.overview import OverviewPage
from console.widgets.model_card import ModelCard
from tests.console.conftest import Backend
from tests.console.test_alerts_page import raise_alert

TIMEOUT_MS = 30_000


@pytest.fixture
def window(qtbot: QtBot, make_context, backend: Backend) -> Iterator[MainWindow]:  # type: ignore[no-untyped-def]
    shown = MainWindow(make_context(backend.url, backend.admin_token))
    qtbot.addWidget(shown)
    shown.resize(1400, 900)
    shown.show()
    shown.start()
    qtbot.waitUntil(lambda: bool(shown.pages), timeout=TIMEOUT_MS)
    yield shown
    shown.shutdown()


def _overview(window: MainWindow) -> OverviewPage:
    page = window.page("overview")
    assert isinstance(page, OverviewPage)
    return page


def _card(page: OverviewPage, model: str) -> ModelCard:
    return page.cards[model]


def _value(card: ModelCard, name: str) -> str:
    row = card.indicator(name)
    assert row is not None, f"no {name} row"
    return row.value.text()


def test_the_overview_is_first_and_shows_each_model_with_its_values(
    qtbot: QtBot, window: MainWindow, backend: Backend
) -> None:
    assert [page.key for page in window.pages][:2] == ["overview", "alerts"]
    page = _overview(window)
    assert window.stack.currentWidget() is page  # the first page an operator sees
    qtbot.waitUntil(lambda: {"toy", "price"} <= set(page.cards), timeout=TIMEOUT_MS)
    toy = _card(page, "toy")
    assert _value(toy, "Version serving") == "v1"
    assert toy.summary.text().startswith("Serving v1 to all traffic;")
    assert toy.summary.text().endswith("no open alerts.")
    assert _value(toy, "Open alerts") == "none"
    assert _value(toy, "Quality (accuracy)").startswith("range ")
    # No traffic yet: drift is not judged, and the row says why in words.
    assert _value(toy, "Drift") == "not judged"
    drift_row = toy.indicator("Drift")
    assert drift_row is not None and "predictions in this window" in drift_row.toolTip()
    # At a glance: no tables on this page.
    from PySide6.QtWidgets import QAbstractItemView

    assert not page.findChildren(QAbstractItemView)

    backend.predict(30)
    # The page refreshes by itself (its timer): traffic and latency of the last minute.
    qtbot.waitUntil(lambda: "requests/s" in _value(toy, "Traffic"), timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: _value(toy, "Latency p99").endswith(" ms"), timeout=TIMEOUT_MS)
    assert _value(toy, "Error rate") == "0%"
    traffic = toy.indicator("Traffic")
    assert traffic is not None and traffic.indicator is not None
    assert traffic.indicator.status == "ok"
    assert "no errors" in toy.summary.text() and "p99 " in toy.summary.text()
    assert "Click to open the Live predictions page" in traffic.toolTip()

    alert = raise_alert(backend, model="toy")
    qtbot.waitUntil(lambda: _value(toy, "Open alerts") == "1 open", timeout=TIMEOUT_MS)
    alerts_row = toy.indicator("Open alerts")
    assert alerts_row is not None and alerts_row.indicator is not None
    assert alerts_row.indicator.status == "critical" and toy.status == "critical"
    assert alert.title in alerts_row.toolTip()
    assert toy.summary.text().endswith("1 open alert.")
    price = _card(page, "price")
    assert _value(price, "Open alerts") == "none"


def test_a_card_row_opens_the_page_that_explains_it(
    qtbot: QtBot, window: MainWindow, backend: Backend
) -> None:
    page = _overview(window)
    qtbot.waitUntil(lambda: "price" in page.cards, timeout=TIMEOUT_MS)
    raise_alert(backend, model="price", severity="warning")
    price = _card(page, "price")
    qtbot.waitUntil(lambda: _value(price, "Open alerts") == "1 open", timeout=TIMEOUT_MS)

    alerts_row = price.indicator("Open alerts")
    assert alerts_row is not None
    qtbot.mouseClick(alerts_row, Qt.MouseButton.LeftButton)
    alerts = window.page("alerts")
    assert window.stack.currentWidget() is alerts
    assert alerts is not None and alerts.model_filter.currentData() == "price"  # type: ignore[attr-defined]

    window.open_page("overview")
    traffic = price.indicator("Traffic")
    assert traffic is not None
    qtbot.mouseClick(traffic, Qt.MouseButton.LeftButton)
    live = window.page("live")
    assert window.stack.currentWidget() is live
    assert live is not None and live.model_filter.currentData() == "price"  # type: ignore[attr-defined]

    window.open_page("overview")
    serving = price.indicator("Version serving")
    assert serving is not None
    qtbot.mouseClick(serving, Qt.MouseButton.LeftButton)
    deploy = window.page("deploy")
    assert window.stack.currentWidget() is deploy
    qtbot.waitUntil(
        lambda: deploy.model is not None and deploy.model.name == "price",  # type: ignore[attr-defined]
        timeout=TIMEOUT_MS,
    )
