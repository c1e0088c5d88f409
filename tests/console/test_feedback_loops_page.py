"""The Feedback loops page against a real backend: the report's indicators as cards in their
status colours and words, the charts fed from it, the held-out share changed through the API
(and refused with the backend's reason in a dialog), and no control for a role without rights."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import requests
from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from backend.schemas.feedback_loops import INDICATOR_NAMES
from backend.workspace import Workspace
from console.context import ConsoleContext
from console.loop_words import comparison_text, status_text
from console.pages import pages_for
from console.pages.feedback_loops import FeedbackLoopsPage
from tests.console.conftest import Backend
from tests.helpers import make_settings
from tests.review_helpers import add_held_out_rows

TIMEOUT_MS = 20_000
SERVED = 40
HELD_OUT = 12


def _held_out_share(backend: Backend) -> float | None:
    answer = requests.get(
        f"{backend.url}/api/v1/models/toy/held-out",
        headers={"Authorization": f"Bearer {backend.admin_token}"},
        timeout=10,
    )
    answer.raise_for_status()
    settings = answer.json()["settings"]
    return None if settings is None else float(settings["share_percent"])


@pytest.fixture
def open_page(
    qtbot: QtBot, make_context: Callable[[str, str], ConsoleContext]
) -> Iterator[Callable[..., FeedbackLoopsPage]]:
    pages: list[FeedbackLoopsPage] = []

    def open_(backend: Backend, token: str, role: str) -> FeedbackLoopsPage:
        context = make_context(backend.url, token)
        # What the main window learns from whoami: the role the page offers controls to (one
        # the console last saw, which the backend may no longer grant).
        context.identity = context.client.whoami().model_copy(update={"role": role})
        page = FeedbackLoopsPage(context)
        qtbot.addWidget(page)
        page.resize(1400, 900)
        page.show()
        page.connection_changed(True)
        qtbot.waitUntil(lambda: page.model_choice.findData("toy") >= 0, timeout=TIMEOUT_MS)
        page.model_choice.setCurrentIndex(page.model_choice.findData("toy"))
        qtbot.waitUntil(
            lambda: page.report is not None and page.report.model == "toy", timeout=TIMEOUT_MS
        )
        pages.append(page)
        return page

    yield open_
    for page in pages:
        page.shutdown()


def _with_traffic(backend: Backend) -> Backend:
    """Served and held-out rows of the toy classifier in the log."""
    backend.predict(SERVED)
    workspace = Workspace.open(make_settings(backend.data_dir))
    try:
        add_held_out_rows(workspace, HELD_OUT, policy={"policy": "default", "answer": 0})
    finally:
        workspace.close()
    return backend


@pytest.fixture
def traffic(backend: Backend) -> Backend:
    """A backend of the test's own with the traffic: for a test that changes what is held out."""
    return _with_traffic(backend)


@pytest.fixture(scope="module")
def read_traffic(module_backend: Backend) -> Backend:
    """One backend with the traffic for the tests that change nothing (a refused change
    included): a start costs seconds of CPU."""
    return _with_traffic(module_backend)


def test_engineers_and_admins_get_the_page_support_staff_do_not() -> None:
    assert all(FeedbackLoopsPage in pages_for(role) for role in ("admin", "engineer"))
    assert FeedbackLoopsPage not in pages_for("support")
    assert FeedbackLoopsPage not in pages_for("client")


def test_the_cards_and_charts_show_the_report(
    qtbot: QtBot, read_traffic: Backend, open_page: Callable[..., FeedbackLoopsPage]
) -> None:
    page = open_page(read_traffic, read_traffic.admin_token, "admin")
    report = page.report
    assert report is not None
    # One card per indicator, in the status colour and the words of its report entry.
    for name in INDICATOR_NAMES:
        indicator = getattr(report, name)
        card = page.cards.cards[name]
        assert card.isVisibleTo(page.cards)
        assert card.tone == status_text(indicator)[1]
        assert card.comparison.text() == comparison_text(indicator)
        assert card.explanation.text() == indicator.explanation
        assert f"{indicator.data.served_predictions:,} served" in card.basis.text()
    assert f"version {report.version}" in page.cards.headline.text()
    # The charts keep one point per window of the report.
    assert len(page.trend.middles) == len(report.outcome_rate_gap.trend)
    assert len(page.exposure.middles) == len(report.exposure_concentration.trend)
    # The outcome classes of the model to choose from, the report's own chosen.
    classes = [page.outcome_choice.itemData(i) for i in range(page.outcome_choice.count())]
    assert classes == report.classes and page.outcome_choice.currentData() == report.outcome
    # The held-out share and policy from the same answer.
    assert page.held_out.status == report.held_out


def test_changing_the_share_calls_the_api_and_shows_the_new_share(
    qtbot: QtBot, traffic: Backend, open_page: Callable[..., FeedbackLoopsPage]
) -> None:
    page = open_page(traffic, traffic.admin_token, "admin")
    panel = page.held_out
    page.tabs.setCurrentWidget(panel)
    assert panel.may_edit and panel.editor.isVisible()
    panel.share.setValue(5.0)
    panel.reason.setText("more held-out labels for the fraud model")
    panel.apply_button.click()
    qtbot.waitUntil(lambda: _held_out_share(traffic) == 5.0, timeout=TIMEOUT_MS)
    qtbot.waitUntil(
        lambda: "5% of the entities are held out" in panel.policy.text(), timeout=TIMEOUT_MS
    )
    qtbot.waitUntil(
        lambda: (
            page.report is not None
            and page.report.held_out.settings is not None
            and page.report.held_out.settings.share_percent == 5.0
        ),
        timeout=TIMEOUT_MS,
    )
    assert panel.reason.text() == ""  # done: the next change asks for its own reason
    # Off again: nothing held out.
    panel.reason.setText("the experiment is over")
    panel.stop_button.click()
    qtbot.waitUntil(lambda: _held_out_share(traffic) is None, timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: "Nothing is held out" in panel.policy.text(), timeout=TIMEOUT_MS)


def test_a_token_without_rights_sees_no_control_and_a_refusal_says_why(
    qtbot: QtBot, read_traffic: Backend, open_page: Callable[..., FeedbackLoopsPage]
) -> None:
    token = read_traffic.create_token("helpdesk", "support")
    page = open_page(read_traffic, token, "support")
    page.tabs.setCurrentWidget(page.held_out)
    assert not page.held_out.may_edit
    assert not page.held_out.editor.isVisible()
    assert page.held_out.not_allowed.isVisible()
    # The indicators themselves are there to read.
    assert page.cards.cards["outcome_rate_gap"].isVisibleTo(page.cards)
    page.shutdown()
    page.hide()

    # The console believes it may (the role it last saw), the backend knows better: a support
    # token may read the indicators but not change what is held out.
    page = open_page(read_traffic, token, "engineer")
    panel = page.held_out
    page.tabs.setCurrentWidget(panel)
    assert panel.may_edit and panel.editor.isVisible()
    panel.share.setValue(7.0)
    panel.reason.setText("trying")
    panel.apply_button.click()
    qtbot.waitUntil(lambda: isinstance(page.error_dialog, QMessageBox), timeout=TIMEOUT_MS)
    dialog = page.error_dialog
    assert isinstance(dialog, QMessageBox) and dialog.isVisible()
    assert "403" in dialog.text()
    assert "not changed" in page.status.text()
    assert _held_out_share(read_traffic) != 7.0
    dialog.close()
