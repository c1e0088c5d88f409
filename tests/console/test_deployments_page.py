"""The Deployments page: deploy with its checks, a refused version's report, one-click
rollback with its confirmation, and the rollout controls."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from backend.workspace import Workspace
from console.dialogs.errors import GateReportDialog
from console.dialogs.reason import ReasonDialog
from console.pages.deployments import DeploymentsPage
from tests.console.conftest import Backend
from tests.deploy_helpers import register_toy, retrained_toy, validity_with
from tests.helpers import make_settings


@pytest.fixture
def page(qtbot: QtBot, make_context, backend: Backend) -> Iterator[DeploymentsPage]:  # type: ignore[no-untyped-def]
    workspace = Workspace.open(make_settings(backend.data_dir))
    register_toy(workspace, description="retrained with more data")
    strict = retrained_toy(regularisation=0.1)
    register_toy(workspace, strict, validity=validity_with(strict, acceptable_range=(0.99, 1.0)))
    workspace.close()
    shown = DeploymentsPage(make_context(backend.url, backend.admin_token))
    qtbot.addWidget(shown)
    shown.resize(1200, 800)
    shown.show()
    shown.page_shown()
    qtbot.waitUntil(lambda: shown.model is not None and shown.model.name == "price", timeout=10_000)
    shown.model_box.setCurrentText("toy")
    shown.load("toy")
    qtbot.waitUntil(lambda: shown.model is not None and shown.model.name == "toy", timeout=10_000)
    yield shown
    shown.shutdown()


def _version_row(page: DeploymentsPage, version: str) -> int:
    rows = [page.versions.text(row, 0) for row in range(page.versions.row_count())]
    return rows.index(version)


def _accept(qtbot: QtBot, dialog: ReasonDialog, reason: str) -> None:
    assert not dialog.ok_button.isEnabled()  # a reason is required
    dialog.reason.setText(reason)
    assert dialog.ok_button.isEnabled()
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)


def test_deploy_runs_the_checks_and_rollback_returns_in_one_click(
    qtbot: QtBot, page: DeploymentsPage
) -> None:
    assert page.serving.text() == "toy serves version 1"
    assert not page.rollback_button.isEnabled()  # nothing served before version 1
    page.versions.selectRow(_version_row(page, "2"))
    assert page.deploy_button.text() == "Deploy version 2…"
    qtbot.mouseClick(page.deploy_button, Qt.MouseButton.LeftButton)
    assert page.dialog is not None and "version 2 of toy" in page.dialog.question.text()
    _accept(qtbot, page.dialog, "retrained")
    qtbot.waitUntil(lambda: page.serving.text() == "toy serves version 2", timeout=15_000)
    assert "deployed from version 1 to 2" in page.outcome.text()

    assert page.rollback_button.isEnabled()
    assert page.rollback_button.text() == "Roll back to version 1…"
    qtbot.mouseClick(page.rollback_button, Qt.MouseButton.LeftButton)
    assert page.dialog.question.text() == "Roll toy back from version 2 to version 1?"
    _accept(qtbot, page.dialog, "v2 misbehaves")
    qtbot.waitUntil(lambda: page.serving.text() == "toy serves version 1", timeout=15_000)
    assert "rolled back from version 2 to 1 in" in page.outcome.text()
    history = [page.history.text(row, 2) for row in range(page.history.row_count())]
    assert history[:2] == ["rolled back", "deployed"]
    assert page.history.text(0, 4) == "v2 misbehaves"


def test_a_refused_version_shows_its_report_with_the_failed_check_first(
    qtbot: QtBot, page: DeploymentsPage
) -> None:
    page.versions.selectRow(_version_row(page, "3"))
    qtbot.mouseClick(page.deploy_button, Qt.MouseButton.LeftButton)
    _accept(qtbot, page.dialog, "try the strict one")  # type: ignore[arg-type]
    qtbot.waitUntil(lambda: isinstance(page.error_dialog, GateReportDialog), timeout=15_000)
    dialog = page.error_dialog
    assert isinstance(dialog, GateReportDialog)
    assert dialog.view.failed_rows() == ["Quality metric"]
    assert dialog.view.gates.text(0, 0) == "Quality metric"  # red rows first
    dialog.close()
    assert page.serving.text() == "toy serves version 1"
    qtbot.waitUntil(lambda: page.versions.text(_version_row(page, "3"), 2) == "refused")


def test_the_rollout_controls_start_pause_and_abort(qtbot: QtBot, page: DeploymentsPage) -> None:
    panel = page.rollout
    page.tabs.setCurrentWidget(panel)
    panel.candidate.setCurrentIndex(panel.candidate.findData("2"))
    panel.mode.setCurrentIndex(panel.mode.findData("canary"))
    panel.steps.setText("10, 50")
    panel.dwell.setValue(3600)  # stays at its first step during the test
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "canary: 10% of traffic" in panel.stage.text(), timeout=15_000)
    assert panel.checks.row_count() >= 5
    assert not page.rollback_button.isEnabled()  # a running rollout is stopped with Abort

    qtbot.mouseClick(panel.pause_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "paused" in panel.stage.text(), timeout=15_000)
    assert panel.pause_button.text() == "Resume"

    qtbot.mouseClick(panel.abort_button, Qt.MouseButton.LeftButton)
    assert panel.dialog is not None
    assert "send all traffic back to version 1" in panel.dialog.question.text()
    _accept(qtbot, panel.dialog, "enough")
    qtbot.waitUntil(lambda: page.model is not None and page.model.rollout is None, timeout=15_000)
    qtbot.waitUntil(lambda: panel.pages.currentIndex() == 0, timeout=5_000)


def test_a_bad_step_list_is_refused_in_a_dialog(qtbot: QtBot, page: DeploymentsPage) -> None:
    panel = page.rollout
    panel.candidate.setCurrentIndex(panel.candidate.findData("2"))
    panel.steps.setText("10, 500")
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    # The backend refuses it (the form cannot know every rule); the page shows why.
    qtbot.waitUntil(lambda: page.error_dialog is not None and page.error_dialog.isVisible())
    assert "steps[1]" in page.error_dialog.text()  # type: ignore[union-attr]
    assert "steps[1]" in panel.verdict.text() and panel.start_button.isEnabled()


def test_a_quality_alert_on_the_serving_version_is_shown_until_a_deployment(
    qtbot: QtBot, page: DeploymentsPage, backend: Backend
) -> None:
    assert not page.alert.isVisible()
    workspace = Workspace.open(make_settings(backend.data_dir))
    workspace.deploy.record_alert(
        "toy", "1", "live accuracy 0.52 on the newest 200 labelled predictions", {}
    )
    workspace.close()
    page.reload()
    qtbot.waitUntil(lambda: page.alert.isVisible(), timeout=10_000)
    assert "live accuracy 0.52" in page.alert.text()
    history = [page.history.text(row, 2) for row in range(page.history.row_count())]
    assert history[0] == "quality alert"
