"""The Drift page against a real backend: predictions posted over HTTP, one input shifted; the
page lists the models, shows every feature with its test, score and coloured status, the
sparkline over earlier windows, the selected feature's distributions overlaid with its
explanation, and the backend's reason when a question is refused."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from console.context import ConsoleContext
from console.pages import pages_for
from console.pages.drift import SERIES_WINDOWS, DriftPage
from console.resources import colour
from console.widgets.drift_table import COLUMNS, DRIFTED, OK, STATUS_TONE, TREND_ROLE
from tests.console.conftest import Backend
from tests.helpers import plain_records, toy_frame, wait_until

TIMEOUT_MS = 20_000
ROWS = 300
STATUS = [name for name, _ in COLUMNS].index("Status")


def _logged(backend: Backend, request_id: str) -> int:
    response = requests.get(
        f"{backend.url}/api/v1/predictions",
        headers={"Authorization": f"Bearer {backend.admin_token}"},
        params={"request_id": request_id, "limit": 1000},
        timeout=10,
    )
    response.raise_for_status()
    return len(response.json()["predictions"])


@pytest.fixture(scope="module")
def shifted_backend(module_backend: Backend) -> Backend:
    """The toy classifier answered ROWS rows like its training data, except that every amount
    is four times larger. One backend for the module: its tests only read the drift (of the
    last 15 minutes and of hours ending now, so a longer module run changes nothing)."""
    backend = module_backend
    frame, _labels = toy_frame()
    rows: list[dict[str, Any]] = plain_records(frame.head(ROWS))
    for row in rows:
        row["amount"] = min(row["amount"] * 4, 10_000)
    response = requests.post(
        f"{backend.url}/v1/models/toy:predict",
        headers={"Authorization": f"Bearer {backend.admin_token}"},
        json={"instances": rows, "id": "drift-page"},
        timeout=30,
    )
    assert response.ok, response.text
    wait_until(lambda: _logged(backend, "drift-page") == ROWS, TIMEOUT_MS / 1000, "logged")
    return backend


@pytest.fixture
def open_page(
    qtbot: QtBot, make_context: Callable[[str, str], ConsoleContext]
) -> Iterator[Callable[[Backend], DriftPage]]:
    pages: list[DriftPage] = []

    def open_(backend: Backend) -> DriftPage:
        page = DriftPage(make_context(backend.url, backend.admin_token))
        qtbot.addWidget(page)
        page.resize(1400, 900)
        page.show()
        page.page_shown()
        pages.append(page)
        return page

    yield open_
    for page in pages:
        page.shutdown()


def _loaded(qtbot: QtBot, page: DriftPage, model: str = "toy") -> None:
    qtbot.waitUntil(lambda: page.model_choice.findData(model) >= 0, timeout=TIMEOUT_MS)
    page.model_choice.setCurrentIndex(page.model_choice.findData(model))
    qtbot.waitUntil(
        lambda: (
            page.drift is not None
            and page.drift.model == model
            and page.series is not None
            and page.table.row_count() > 0
        ),
        timeout=TIMEOUT_MS,
    )


def _row_of(page: DriftPage, name: str) -> int:
    names = [page.table.text(row, 0) for row in range(page.table.row_count())]
    return names.index(name)


def test_engineers_and_admins_get_the_page_support_staff_do_not() -> None:
    assert all(DriftPage in pages_for(role) for role in ("admin", "engineer"))
    assert DriftPage not in pages_for("support")
    assert DriftPage not in pages_for("client")


def test_the_shifted_feature_is_drifted_the_others_are_not(
    qtbot: QtBot, shifted_backend: Backend, open_page: Callable[[Backend], DriftPage]
) -> None:
    page = open_page(shifted_backend)
    _loaded(qtbot, page)
    assert {page.model_choice.itemData(i) for i in range(page.model_choice.count())} == {
        "toy",
        "price",
    }
    window = page.drift
    assert window is not None and window.window_s == 900
    report = window.report
    assert report is not None
    by_name = {feature.name: feature for feature in report.features}
    assert by_name["amount"].drifted and not by_name["count"].drifted
    # Drifted rows first, each with its test, score, threshold and coloured status.
    amount = _row_of(page, "amount")
    assert amount == 0
    assert page.table.text(amount, STATUS) == DRIFTED
    assert page.table.text(_row_of(page, "count"), STATUS) == OK
    index = page.table.features.index(amount, STATUS)
    tone = page.table.features.data(index, Qt.ItemDataRole.ForegroundRole).color().name()
    assert tone == colour(STATUS_TONE[DRIFTED])
    assert page.table.text(amount, 1) == "Kolmogorov-Smirnov"
    assert float(page.table.text(amount, 2)) == pytest.approx(by_name["amount"].statistic, 1e-2)
    assert page.table.text(amount, 3).startswith("p < ")  # a few hundred values: the p-value
    tip = page.table.features.data(index, Qt.ItemDataRole.ToolTipRole)
    assert by_name["amount"].explanation in tip
    # The verdict on top, in words.
    assert report.summary == page.verdict.summary.text()
    assert "amount" in page.verdict.summary.text()
    assert "Model outputs" in page.verdict.outputs.text()


def test_the_selected_feature_shows_both_distributions_and_its_explanation(
    qtbot: QtBot, shifted_backend: Backend, open_page: Callable[[Backend], DriftPage]
) -> None:
    page = open_page(shifted_backend)
    _loaded(qtbot, page)
    assert page.table.selected_feature() == "amount"  # the first row, selected for the reader
    feature = page.overlay.feature
    assert feature is not None and feature.name == "amount" and feature.histogram
    reference, current = page.overlay.shown_bars
    assert reference == pytest.approx([bar.reference for bar in feature.histogram])
    assert current == pytest.approx([bar.current for bar in feature.histogram])
    assert sum(reference) == pytest.approx(1.0, abs=1e-6)
    assert page.overlay.explanation.text() == feature.explanation

    country = _row_of(page, "country")
    rect = page.table.visualRect(page.table.features.index(country, 0))
    qtbot.mouseClick(page.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    shown = page.overlay.feature
    assert shown is not None and shown.name == "country"
    assert {bar.label for bar in shown.histogram or []} >= {"DE", "FR", "US"}


def test_the_sparkline_follows_the_series_of_earlier_windows(
    qtbot: QtBot, shifted_backend: Backend, open_page: Callable[[Backend], DriftPage]
) -> None:
    page = open_page(shifted_backend)
    _loaded(qtbot, page)
    series = page.series
    assert series is not None and len(series.windows) == SERIES_WINDOWS
    amount = _row_of(page, "amount")
    scores, drifted = page.table.features.data(
        page.table.features.index(amount, len(COLUMNS) - 1), TREND_ROLE
    )
    assert len(scores) == SERIES_WINDOWS
    # The predictions fell in the newest window; the earlier ones had none.
    assert scores[-1] is not None and drifted[-1]
    newest = series.windows[-1]
    assert scores[-1] == pytest.approx(newest.features["amount"].statistic)
    assert all(score is None for score in scores[:-1])
    tip = page.table.features.cell(amount, len(COLUMNS) - 1).tip
    assert "Only one window of the last 24" in tip and "(score" in tip and ", drifted)" in tip


def test_the_version_and_window_choices_ask_again(
    qtbot: QtBot, shifted_backend: Backend, open_page: Callable[[Backend], DriftPage]
) -> None:
    page = open_page(shifted_backend)
    _loaded(qtbot, page)
    page.version_choice.setCurrentIndex(page.version_choice.findData("1"))
    page.window_choice.setCurrentIndex(page.window_choice.findData(3_600))
    qtbot.waitUntil(
        lambda: (
            page.drift is not None and (page.drift.version, page.drift.window_s) == ("1", 3_600)
        ),
        timeout=TIMEOUT_MS,
    )
    assert "version 1" in page.verdict.headline.text()


def test_nothing_to_compare_and_a_refused_question_are_said_in_words(
    qtbot: QtBot, backend: Backend, open_page: Callable[[Backend], DriftPage]
) -> None:
    page = open_page(backend)
    qtbot.waitUntil(lambda: page.model_choice.count() > 0, timeout=TIMEOUT_MS)
    # A version that has not answered yet: no report, and the backend's note says why.
    qtbot.waitUntil(lambda: page.version_choice.findData("1") >= 0, timeout=TIMEOUT_MS)
    page.version_choice.setCurrentIndex(page.version_choice.findData("1"))
    qtbot.waitUntil(
        lambda: page.drift is not None and page.drift.version == "1", timeout=TIMEOUT_MS
    )
    assert page.drift is not None and page.drift.report is None and page.drift.note
    assert "Nothing to compare yet" in page.verdict.headline.text()
    assert page.drift.note in page.verdict.summary.text()
    assert page.table.row_count() == 0
    # A model the backend does not know: refused, and the status line gives its reason.
    page.model_choice.addItem("ghost", "ghost")
    page.model_choice.setCurrentIndex(page.model_choice.count() - 1)
    qtbot.waitUntil(lambda: "Could not load" in page.status.text(), timeout=TIMEOUT_MS)
    assert "404" in page.status.text() and "ghost" in page.status.text()
    assert "No drift report" in page.verdict.headline.text()
    # A version the backend does not know: refused the same way (404 naming the version).
    page.model_choice.setCurrentIndex(page.model_choice.findData("toy"))
    page.version_choice.addItem("Version 99", "99")
    page.version_choice.setCurrentIndex(page.version_choice.count() - 1)
    qtbot.waitUntil(lambda: "version" in page.status.text().lower(), timeout=TIMEOUT_MS)
