"""The Deployments page: deploy with its checks, a refused version's report, one-click
rollback with its confirmation, and the rollout controls."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from backend.workspace import Workspace
from console.dialogs.errors import GateReportDialog
from console.dialogs.reason import ReasonDialog
from console.pages.deployments import DeploymentsPage
from tests.console.conftest import Backend, _served
from tests.deploy_helpers import ENGINEER, register_toy, retrained_toy, validity_with
from tests.helpers import TOY_ROW, ToyDataDir, make_settings


@pytest.fixture(scope="module")
def three_toy_versions(
    tmp_path_factory: pytest.TempPathFactory, toy_data_dir: ToyDataDir
) -> ToyDataDir:
    """The toy data directory with a version 2 (retrained) and a version 3 (a range too strict
    for its quality check) registered: made once for the module and copied per test, as
    registering runs the version's checks, seconds of CPU each."""
    template = tmp_path_factory.mktemp("three-toy-versions")
    token = toy_data_dir(template)
    workspace = Workspace.open(make_settings(template))
    try:
        register_toy(workspace, description="retrained with more data")
        strict = retrained_toy(regularisation=0.1)
        register_toy(
            workspace, strict, validity=validity_with(strict, acceptable_range=(0.99, 1.0))
        )
    finally:
        workspace.close()

    def copy(data_dir: Path) -> str:
        shutil.copytree(template, data_dir, dirs_exist_ok=True)
        return token

    return copy


@pytest.fixture
def backend(tmp_path: Path, three_toy_versions: ToyDataDir) -> Iterator[Backend]:
    """The conftest's backend (one per test: the tests deploy and roll back), on a copy of
    the three versions."""
    yield from _served(tmp_path / "data", three_toy_versions)


@pytest.fixture
def page(qtbot: QtBot, make_context, backend: Backend) -> Iterator[DeploymentsPage]:  # type: ignore[no-untyped-def]
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
    qtbot: QtBot, page: DeploymentsPage, backend: Backend
) -> None:
    assert page.serving.text() == "toy serves version 1"
    assert not page.rollback_button.isEnabled()  # nothing served before version 1
    # Why, in the backend's words, on screen and not only in a tooltip.
    assert page.rollback_note.isVisible()
    assert "version 1 is the first version toy served" in page.rollback_note.text()
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

    # Someone else deploys 2 again: the line about the rollback no longer holds, and goes.
    assert page.outcome.isVisible()
    workspace = Workspace.open(make_settings(backend.data_dir))
    workspace.deploy.deploy("toy", "2", "elsewhere", ENGINEER)
    workspace.close()
    page.reload()
    qtbot.waitUntil(lambda: page.serving.text() == "toy serves version 2", timeout=10_000)
    assert not page.outcome.isVisible()


def test_an_unavailable_rollback_says_why_and_never_offers_the_version_just_left(
    qtbot: QtBot, page: DeploymentsPage, backend: Backend
) -> None:
    workspace = Workspace.open(make_settings(backend.data_dir))
    # Version 1 raises a quality alert while serving (as the demo's does), then 2 replaces it.
    workspace.deploy.record_alert("toy", "1", "live accuracy 0.61 is below [0.8, 1]", {})
    workspace.deploy.deploy("toy", "2", "replaces 1", ENGINEER)
    page.reload()
    qtbot.waitUntil(lambda: page.serving.text() == "toy serves version 2", timeout=10_000)
    assert not page.rollback_button.isEnabled()
    assert page.rollback_button.text() == "No rollback available (why: below)"
    note = page.rollback_note.text()
    assert "raised a quality alert while serving" in note and "0.61" in note
    assert "deploy it again on purpose" in note
    assert page.rollback_button.toolTip() in note  # the same words on the button

    workspace.deploy.deploy("toy", "1", "its labels were late", ENGINEER)
    workspace.close()
    page.reload()
    qtbot.waitUntil(
        lambda: page.rollback_button.text() == "Roll back to version 2…", timeout=10_000
    )
    qtbot.mouseClick(page.rollback_button, Qt.MouseButton.LeftButton)
    _accept(qtbot, page.dialog, "1 misbehaves after all")  # type: ignore[arg-type]
    qtbot.waitUntil(lambda: page.serving.text() == "toy serves version 2", timeout=15_000)
    # Back on 2, the version just left (1) is not offered as a way back; the page says so.
    qtbot.waitUntil(lambda: "rolled back from" in page.rollback_note.text(), timeout=10_000)
    assert not page.rollback_button.isEnabled()
    assert "version 1" in page.rollback_note.text()


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


def test_the_rollout_controls_start_pause_and_abort(
    qtbot: QtBot, page: DeploymentsPage, backend: Backend
) -> None:
    panel = page.rollout
    # Empty, the chart says why and shows a plain fixed range (not −400..400 scaled ×0.001).
    assert panel.chart.message_text() == "No rollout running"
    low, high = panel.chart.plot.viewRange()[1]
    assert (low, high) == (0.0, 2.0)
    assert not panel.chart.plot.getAxis("left").autoSIPrefix
    # 30 requests in the last minute: 0.5 requests/s, so 100 requests at 10% take 2,000 s.
    headers = {"Authorization": f"Bearer {backend.admin_token}"}
    for i in range(30):
        answer = requests.post(
            f"{backend.url}/v1/models/toy:predict",
            json={"instances": [TOY_ROW], "entity_id": f"card-{i}"},
            headers=headers,
            timeout=10,
        )
        assert answer.status_code == 200
    page.tabs.setCurrentWidget(panel)
    panel.candidate.setCurrentIndex(panel.candidate.findData("2"))
    panel.mode.setCurrentIndex(panel.mode.findData("canary"))
    panel.steps.setText("10, 50")
    qtbot.waitUntil(lambda: "10% 33 min, 50% 7 min" in panel.plan.text(), timeout=15_000)
    assert "labelled answers" in panel.plan.text()  # the policy waits for quality by default
    panel.dwell.setValue(3600)  # stays at its first step during the test
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "canary: 10% of traffic" in panel.stage.text(), timeout=15_000)
    qtbot.waitUntil(lambda: panel.checks.row_count() >= 5, timeout=10_000)  # polled
    assert not page.rollback_button.isEnabled()  # a running rollout is stopped with Abort
    assert "abort it" in page.rollback_note.text()
    # The hour's dwell time outlasts the 2,000 s its requests take: it sets the step's time.
    qtbot.waitUntil(lambda: "▶ canary 10%: 60 min left" in panel.step_times.text(), timeout=10_000)
    assert "canary 50%: about 60 min" in panel.step_times.text()
    assert "100 requests at 50% of the traffic" in panel.step_times.toolTip()

    qtbot.mouseClick(panel.pause_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "paused" in panel.stage.text(), timeout=15_000)
    assert panel.pause_button.text() == "Resume"

    qtbot.mouseClick(panel.abort_button, Qt.MouseButton.LeftButton)
    assert panel.dialog is not None
    assert "send all traffic back to version 1" in panel.dialog.question.text()
    _accept(qtbot, panel.dialog, "enough")
    qtbot.waitUntil(lambda: page.model is not None and page.model.rollout is None, timeout=15_000)
    qtbot.waitUntil(lambda: panel.pages.currentIndex() == 0, timeout=5_000)
    # It ended: the start page says how, and the chart keeps none of its lines.
    assert panel.last_rollout.isVisible()
    assert "the rollout of version 2 was aborted" in panel.last_rollout.text()
    assert "enough" in panel.last_rollout.text()
    assert panel.chart.is_empty() and panel.chart.message_text() == "No rollout running"
    assert "rollout aborted; version 1 answers every request" in page.outcome.text()


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


def test_the_rollout_chart_starts_empty_with_each_rollout_and_says_why(qtbot: QtBot) -> None:
    from datetime import UTC, datetime, timedelta

    from backend.schemas import (
        ModelInfo,
        RolloutCheck,
        RolloutChecks,
        RolloutState,
        RolloutStatus,
        StepEstimate,
    )
    from console.widgets.rollout_chart import NO_MEASUREMENT, NO_ROLLOUT
    from console.widgets.rollout_panel import RolloutPanel

    def rollout(started: datetime) -> RolloutState:
        return RolloutState(
            candidate="2", mode="canary", phase="canary", steps=[1.0, 100.0], step_index=0,
            percent=1.0, paused=False, min_dwell_s=60, min_samples=100,
            checks=RolloutChecks(), started_by="t", started_at=started, step_started_at=started,
        )  # fmt: skip

    def model(running: RolloutState | None) -> ModelInfo:
        return ModelInfo(
            name="toy", task="classification", description="", active_version="1",
            latest_version="2", created_at=datetime.now(UTC), rollout=running,
        )  # fmt: skip

    def status(running: RolloutState | None) -> RolloutStatus:
        check = RolloutCheck(name="p99_latency", passed=True, value=1.2, limit=2, detail="")
        return RolloutStatus(
            model="toy", active_version="1", rollout=running, checks=[check], request_rate=5.0
        )

    panel = RolloutPanel()
    qtbot.addWidget(panel)
    panel.set_model(model(None))
    assert panel.chart.message_text() == NO_ROLLOUT
    first = rollout(datetime.now(UTC) - timedelta(minutes=5))
    panel.set_model(model(first))
    # Not polled yet: where it stands comes from the model, and the chart says it waits.
    assert panel.stage.text() == "Version 2 against 1: canary: 1% of traffic, step 1 of 2"
    assert panel.chart.message_text() == NO_MEASUREMENT
    polled = status(first)
    polled.estimates = [
        StepEstimate(stage="canary 1%", percent=1, expected_s=2000, remaining_s=0, current=True,
                     detail="about 0 s left"),
        StepEstimate(stage="canary 100%", percent=100, expected_s=60, detail="about 60 s"),
    ]  # fmt: skip
    panel.show_status(polled)
    panel.redraw()
    assert not panel.chart.is_empty() and panel.chart.message_text() == ""
    # Requests and time are in, a check holds it: no "0 s left" beside a step that waits.
    assert "▶ canary 1%: its requests and time are in · canary 100%: about 60 s" in (
        panel.step_times.text()
    )
    # Another rollout of the same candidate: none of the first one's lines stay.
    second = rollout(datetime.now(UTC))
    panel.set_model(model(second))
    assert panel.chart.is_empty() and panel.chart.message_text() == NO_MEASUREMENT
    low, high = panel.chart.plot.viewRange()[1]
    assert (low, high) == (0.0, 2.0)
    panel.set_model(model(None))
    assert panel.chart.is_empty() and panel.chart.message_text() == NO_ROLLOUT


def test_every_audit_action_reads_in_words() -> None:
    """A new audit action must not reach the audit table as its raw identifier."""
    from typing import get_args

    from backend.schemas.deploy import AuditAction
    from console.pages.deployments import ACTION_WORDS

    assert set(get_args(AuditAction)) == set(ACTION_WORDS)
