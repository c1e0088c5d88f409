"""Widgets only show: they make no network call, they ask their page by a signal.

The import contract keeps the client, the task helper and the context out of every widget;
the widgets below are driven as a user would with every socket connection refused, and each
asks for its call by a signal instead.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox
from pytestqt.qtbot import QtBot

from backend.schemas import ModelInfo, ModelVersionInfo, PredictionEvent, RolloutRequest
from console.widgets.label_panel import LabelPanel
from console.widgets.rollout_panel import RolloutPanel
from console.widgets.try_it import TryItPanel
from tests.helpers import TOY_ROW, TOY_SIGNATURE

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a widget tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _version(number: str) -> ModelVersionInfo:
    # Only what the widgets read; the validity assets do not matter here.
    return ModelVersionInfo.model_construct(
        version=number,
        task="classification",
        class_labels=[0, 1],
        signature=TOY_SIGNATURE,
        example_input=TOY_ROW,
        description="",
    )


def _model(active: str, versions: list[str]) -> ModelInfo:
    return ModelInfo.model_construct(
        name="toy",
        task="classification",
        active_version=active,
        versions=[_version(number) for number in versions],
        rollout=None,
    )


def test_the_import_contract_keeps_the_network_out_of_the_widgets() -> None:
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint_imports is None:
        pytest.skip("import-linter is not installed")
    checked = subprocess.run(
        [lint_imports, "--contract", "console-widgets-only-show"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "KEPT" in checked.stdout


def test_try_it_asks_for_the_request_and_shows_the_objection_it_is_given(
    qtbot: QtBot, no_network: None
) -> None:
    panel = TryItPanel()
    qtbot.addWidget(panel)
    panel.set_version("toy", _version("1"))
    with qtbot.waitSignal(panel.send_requested, timeout=1_000) as asked:
        qtbot.mouseClick(panel.send_button, Qt.MouseButton.LeftButton)
    model, version, inputs = asked.args
    assert (model, version) == ("toy", "1")
    assert {tensor["name"]: tensor["data"] for tensor in inputs} == {
        name: [value] for name, value in TOY_ROW.items()
    }
    assert not panel.send_button.isEnabled()  # until the page hands back the answer

    panel.show_refused(422, "value -5 is below the allowed minimum 0", "inputs.rows[0].amount")
    assert panel.send_button.isEnabled() and panel.highlighted_feature == "amount"
    assert "below the allowed minimum" in (panel.last_error or "")

    with qtbot.waitSignal(panel.copy_requested, timeout=1_000) as copy:
        qtbot.mouseClick(panel.copy_button, Qt.MouseButton.LeftButton)
    assert copy.args[:2] == ["toy", "1"]


def test_the_rollout_panel_asks_to_start_and_to_pause(qtbot: QtBot, no_network: None) -> None:
    panel = RolloutPanel()
    qtbot.addWidget(panel)
    panel.set_model(_model("1", ["1", "2"]))
    panel.steps.setText("10, 50")
    panel.reason.setText("better recall")
    with qtbot.waitSignal(panel.start_requested, timeout=1_000) as asked:
        qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    model, request = asked.args
    assert model == "toy" and isinstance(request, RolloutRequest)
    assert (request.candidate, request.steps, request.reason) == (
        "2",
        [10.0, 50.0],
        "better recall",
    )
    assert not panel.start_button.isEnabled() and "starting" in panel.verdict.text()
    panel.show_action_failed("Rollout not started: the backend answered 409: busy")
    assert panel.start_button.isEnabled() and "409" in panel.verdict.text()


def test_the_label_panel_asks_to_record_what_the_user_chose(qtbot: QtBot, no_network: None) -> None:
    panel = LabelPanel()
    qtbot.addWidget(panel)
    event = PredictionEvent.model_construct(
        request_id="r-1", row=0, model="toy", version="1", route="active", top_output=0
    )
    panel.show_prediction(event, _model("1", ["1"]))
    qtbot.mouseClick(panel.record_button, Qt.MouseButton.LeftButton)
    assert panel.dialog is not None
    panel.dialog.value.setCurrentText("1")
    ok = panel.dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    with qtbot.waitSignal(panel.label_chosen, timeout=1_000) as chosen:
        qtbot.mouseClick(ok, Qt.MouseButton.LeftButton)
    assert chosen.args == [event, 1]
    assert panel.status.text() == "Recording the label…"
    panel.show_recorded(event, 1, unmatched=False)
    assert "recorded by you" in panel.status.text() and panel.record_button.isEnabled()


def test_report_an_error_asks_to_file_what_the_user_wrote(qtbot: QtBot, no_network: None) -> None:
    panel = LabelPanel()
    qtbot.addWidget(panel)
    event = PredictionEvent.model_construct(
        request_id="r-2", row=1, model="toy", version="1", route="active", top_output=0
    )
    regressor = ModelInfo.model_construct(name="toy", task="regression", versions=[])
    panel.show_prediction(event, regressor)
    qtbot.mouseClick(panel.report_button, Qt.MouseButton.LeftButton)
    dialog = panel.report_dialog
    assert dialog is not None
    ok = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    # A regressor's right answer is a number: words are refused in the dialog itself.
    dialog.expected.setCurrentText("cheaper")
    qtbot.mouseClick(ok, Qt.MouseButton.LeftButton)
    assert dialog.isVisible() and "not a number" in dialog.error.text()
    dialog.expected.setCurrentText("12.5")
    dialog.description.setPlainText("  far too expensive  ")
    with qtbot.waitSignal(panel.report_requested, timeout=1_000) as asked:
        qtbot.mouseClick(ok, Qt.MouseButton.LeftButton)
    filed_for, report = asked.args
    assert filed_for is event
    assert (report.request_id, report.row, report.model) == ("r-2", 1, "toy")
    assert (report.category, report.description, report.expected) == (
        "wrong_answer",
        "far too expensive",
        12.5,
    )
    assert not panel.report_button.isEnabled()  # until the page says how the filing went
    panel.show_report_filed(event, 7, "We received your report.")
    assert "Report #7 filed" in panel.report_note.text() and panel.report_button.isEnabled()


def test_a_step_list_that_is_not_numbers_is_refused_by_the_form_itself(
    qtbot: QtBot, no_network: None
) -> None:
    panel = RolloutPanel()
    qtbot.addWidget(panel)
    panel.set_model(_model("1", ["1", "2"]))
    panel.steps.setText("ten, fifty")
    with qtbot.assertNotEmitted(panel.start_requested):
        qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    assert panel.error_dialog is not None and panel.error_dialog.isVisible()
    assert "ten" in panel.error_dialog.text()
    panel.error_dialog.close()
