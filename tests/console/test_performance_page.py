"""The Performance page against a real backend: predictions and labels posted over HTTP, the
chart's realized and estimated points and the acceptable band, the label delay, and a
regression model's missing estimate said in words."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import requests
from pytestqt.qtbot import QtBot

from console.context import ConsoleContext
from console.pages import pages_for
from console.pages.performance import PerformancePage
from tests.console.conftest import Backend
from tests.helpers import plain_records, toy_frame

TIMEOUT_MS = 20_000
PREDICTED = 80
LABELLED = 60  # over the report's default of 50 labels before a window is measured
UNDONE = 8  # answers their users undid


def _post(backend: Backend, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(
        f"{backend.url}{path}",
        headers={"Authorization": f"Bearer {backend.admin_token}"},
        json=body,
        timeout=10,
    )
    assert response.ok, response.text
    return dict(response.json())


def _logged(backend: Backend, request_id: str) -> int:
    response = requests.get(
        f"{backend.url}/api/v1/predictions",
        headers={"Authorization": f"Bearer {backend.admin_token}"},
        params={"request_id": request_id, "limit": 1000},
        timeout=10,
    )
    response.raise_for_status()
    return len(response.json()["predictions"])


@pytest.fixture
def labelled_backend(backend: Backend, qtbot: QtBot) -> Backend:
    """The toy classifier answered PREDICTED varied rows, LABELLED of them labelled; the price
    regressor answered a few rows, all labelled."""
    frame, truth = toy_frame()
    rows = plain_records(frame.head(PREDICTED))
    _post(backend, "/v1/models/toy:predict", {"instances": rows, "id": "perf-page"})
    _post(backend, "/v1/models/price:predict", {"instances": [{"x1": 0.5, "x2": 1.0}] * 5,
                                                  "id": "perf-price"})  # fmt: skip
    qtbot.waitUntil(
        lambda: _logged(backend, "perf-page") == PREDICTED and _logged(backend, "perf-price") == 5,
        timeout=TIMEOUT_MS,
    )
    labels = (
        [
            {"request_id": "perf-page", "row": i, "label": int(truth.iloc[i]), "model": "toy"}
            for i in range(LABELLED)
        ]
        + [
            {"request_id": "perf-price", "row": i, "label": 2.0 + i / 10, "model": "price"}
            for i in range(5)
        ]
        + [
            {"request_id": "perf-page", "row": i, "kind": "undo", "model": "toy"}
            for i in range(UNDONE)
        ]
    )
    assert _post(backend, "/api/v1/feedback", {"labels": labels})["unmatched"] == 0
    return backend


@pytest.fixture
def open_page(
    qtbot: QtBot, make_context: Callable[[str, str], ConsoleContext]
) -> Iterator[Callable[[Backend], PerformancePage]]:
    pages: list[PerformancePage] = []

    def open_(backend: Backend) -> PerformancePage:
        page = PerformancePage(make_context(backend.url, backend.admin_token))
        qtbot.addWidget(page)
        page.resize(1400, 900)
        page.show()
        page.page_shown()
        pages.append(page)
        return page

    yield open_
    for page in pages:
        page.shutdown()


def _choose_model(qtbot: QtBot, page: PerformancePage, name: str) -> None:
    qtbot.waitUntil(lambda: page.model_choice.findData(name) >= 0, timeout=TIMEOUT_MS)
    page.model_choice.setCurrentIndex(page.model_choice.findData(name))
    qtbot.waitUntil(
        lambda: page.report is not None and page.report.model == name, timeout=TIMEOUT_MS
    )


def test_engineers_and_admins_get_the_page_support_staff_do_not() -> None:
    assert all(PerformancePage in pages_for(role) for role in ("admin", "engineer"))
    assert PerformancePage not in pages_for("support")
    assert PerformancePage not in pages_for("client")


def test_the_chart_shows_realized_and_estimated_quality_against_the_band(
    qtbot: QtBot, labelled_backend: Backend, open_page: Callable[[Backend], PerformancePage]
) -> None:
    page = open_page(labelled_backend)
    _choose_model(qtbot, page, "toy")
    assert {page.model_choice.itemData(i) for i in range(page.model_choice.count())} == {
        "toy",
        "price",
    }
    report = page.report
    assert report is not None and report.metric == "accuracy"
    assert page.chart.band_range == pytest.approx((0.7, 1.0))
    # One point per window; the newest window holds every prediction made above.
    assert len(page.chart.middles) == len(report.windows) == page.windows.row_count()
    newest = report.windows[-1]
    assert newest.predictions == PREDICTED
    realized = next(v.value for v in newest.realized if v.metric == "accuracy")
    estimated = next(v.value for v in newest.estimated.metrics if v.metric == "accuracy")
    assert realized is not None and estimated is not None
    assert page.chart.realized[-1] == pytest.approx(realized)
    assert page.chart.estimated[-1] == pytest.approx(estimated)
    # Older windows have no predictions: gaps, never zeros.
    assert np.isnan(page.chart.realized[:-1]).all()
    _x, y = page.chart.realized_curve.getData()
    assert y is not None and y[-1] == pytest.approx(realized)
    # Hovering the point says what it is, in words.
    hovered = page.chart.realized_curve.scatter.points()[-1]
    tip = page.chart.tip_at(hovered.pos().x(), hovered.pos().y()).replace("\n", " ")
    assert newest.verdict.explanation.split(":")[0] in tip
    assert "labelled predictions" in tip
    # The label delay beneath: the share labelled, in the chart and in words.
    assert page.chart.labelled[-1] == pytest.approx(LABELLED / PREDICTED)
    assert f"{LABELLED / PREDICTED:.0%} of the predictions have one" in page.notes.delay.text()
    assert page.windows.text(0, 2) == f"{LABELLED} ({LABELLED / PREDICTED:.0%})"
    # What users did with the answers: undone and complained about, per window.
    assert page.windows.text(0, 7) == f"{UNDONE} ({UNDONE / PREDICTED:.1%})"
    assert page.windows.text(0, 8) == "0 (0.0%)"
    # The verdict, the calibration and the estimate's warnings in words.
    assert "Version 1" in page.notes.headline.text()
    assert "acceptable 0.7 to 1" in page.notes.headline.text()
    assert "Calibration:" in page.notes.calibration.text()
    assert "Estimate before labels" in page.notes.estimate.text()
    assert "predictions" in page.notes.warnings.text()  # too few rows for a trusted estimate


def test_a_regression_model_says_why_there_is_no_estimate(
    qtbot: QtBot, labelled_backend: Backend, open_page: Callable[[Backend], PerformancePage]
) -> None:
    page = open_page(labelled_backend)
    _choose_model(qtbot, page, "price")
    report = page.report
    assert report is not None and report.task == "regression" and report.metric == "mae"
    assert page.chart.band_range == pytest.approx((0.0, 0.5))
    assert np.isnan(page.chart.estimated).all()
    # Five labels, fewer than the 50 a window needs: no realized value, and the words say so.
    assert np.isnan(page.chart.realized).all()
    assert "5 labelled predictions of the 50 needed" in page.notes.delay.text()
    assert "not judged" in page.windows.text(0, 6)
    text = page.notes.estimate.text()
    assert text.startswith("No estimate before labels:")
    assert report.windows[-1].estimated.explanation in text


def test_the_windows_follow_the_size_and_count_chosen(
    qtbot: QtBot, labelled_backend: Backend, open_page: Callable[[Backend], PerformancePage]
) -> None:
    page = open_page(labelled_backend)
    _choose_model(qtbot, page, "toy")
    page.size_choice.setCurrentIndex(page.size_choice.findData(86_400))
    page.count_choice.setValue(3)
    qtbot.waitUntil(
        lambda: (
            page.report is not None
            and (page.report.window_s, len(page.report.windows)) == (86_400, 3)
        ),
        timeout=TIMEOUT_MS,
    )
    assert len(page.chart.middles) == 3 and page.windows.row_count() == 3


def test_a_refused_question_shows_the_backends_reason(
    qtbot: QtBot, backend: Backend, open_page: Callable[[Backend], PerformancePage]
) -> None:
    page = open_page(backend)
    qtbot.waitUntil(lambda: page.model_choice.count() > 0, timeout=TIMEOUT_MS)
    # A version the backend does not know: the answer is a 404 whose reason is shown.
    page.version_choice.addItem("Version 99", "99")
    page.version_choice.setCurrentIndex(page.version_choice.count() - 1)
    qtbot.waitUntil(lambda: "Could not load" in page.status.text(), timeout=TIMEOUT_MS)
    assert "404" in page.status.text() and "99" in page.status.text()
    assert "No performance report" in page.notes.headline.text()
