"""Recording the ground truth of a live prediction from its detail panel."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox, QLabel
from pytestqt.qtbot import QtBot

from console.client import ApiClient
from console.pages.live import LivePage
from console.widgets.label_panel import LabelDialog, LabelError, parse_label
from console.widgets.prediction_table import LABEL_COLUMN
from console.widgets.values import ClassNames
from tests.console.conftest import Backend


@pytest.mark.parametrize(
    ("text", "task", "classes", "expected"),
    [
        ("1", "classification", [0, 1], 1),
        # By the name people read, or by the label the model gives.
        ("fraud", "classification", ClassNames([0, 1], ["legit", "fraud"]), 1),
        ("0", "classification", ClassNames([0, 1], ["legit", "fraud"]), 0),
        (" fraud ", "classification", ["fraud", "ok"], "fraud"),
        ("12.5", "regression", None, 12.5),
        ("3", "regression", None, 3.0),
        ("3", None, None, 3),
        ("late", None, None, "late"),
    ],
)
def test_a_typed_label_becomes_the_models_own_type(text, task, classes, expected) -> None:  # type: ignore[no-untyped-def]
    value = parse_label(text, task, classes)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("text", "task", "classes", "message"),
    [
        ("", "classification", [0, 1], "type the true outcome"),
        ("2", "classification", [0, 1], "not one of this model's classes: 0, 1"),
        (
            "2",
            "classification",
            ClassNames([0, 1], ["legit", "fraud"]),
            r"classes: legit \(class 0\), fraud \(class 1\)",
        ),
        ("cheap", "regression", None, "not a number"),
        ("nan", "regression", None, "finite"),
    ],
)
def test_a_label_the_model_cannot_have_says_why(text, task, classes, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(LabelError, match=message):
        parse_label(text, task, classes)


def _live_page_with_a_selected_prediction(
    qtbot: QtBot,
    make_context,
    backend: Backend,
    token: str,  # type: ignore[no-untyped-def]
) -> LivePage:
    page = LivePage(make_context(backend.url, token))
    qtbot.addWidget(page)
    page.show()
    page.connection_changed(True)
    qtbot.waitUntil(lambda: page.stream_state == "streaming", timeout=10_000)
    backend.predict(3)
    qtbot.waitUntil(lambda: page.received_total >= 3, timeout=20_000)
    page.view.selectRow(0)
    status = page.label_panel.status
    qtbot.waitUntil(lambda: "no label yet" in status.text().lower(), timeout=10_000)
    return page


def _submit(qtbot: QtBot, dialog: LabelDialog, text: str) -> None:
    dialog.value.setCurrentText(text)
    ok = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    qtbot.mouseClick(ok, Qt.MouseButton.LeftButton)


def test_recording_a_label_from_the_live_view(qtbot: QtBot, make_context, backend: Backend) -> None:  # type: ignore[no-untyped-def]
    page = _live_page_with_a_selected_prediction(qtbot, make_context, backend, backend.admin_token)
    panel = page.label_panel
    event = panel.shown
    assert event is not None and panel.record_button.isEnabled()

    qtbot.mouseClick(panel.record_button, Qt.MouseButton.LeftButton)
    dialog = panel.dialog
    assert dialog is not None and dialog.isVisible()
    # The toy classifier's classes are offered to pick from, by their names.
    qtbot.waitUntil(lambda: "toy" in page.models, timeout=10_000)
    if dialog.value.count() == 0:  # opened before the models arrived: open it again
        dialog.close()
        qtbot.mouseClick(panel.record_button, Qt.MouseButton.LeftButton)
        dialog = panel.dialog
        assert dialog is not None
    assert [dialog.value.itemText(i) for i in range(dialog.value.count())] == ["legit", "fraud"]
    # The prediction reads by its class's name as well.
    shown = {label.text() for label in dialog.findChildren(QLabel)}
    assert shown & {"toy v1: legit (class 0)", "toy v1: fraud (class 1)"}
    # A class the model does not have is refused in the dialog, which stays open.
    _submit(qtbot, dialog, "7")
    assert dialog.isVisible() and "not one of this model's classes" in dialog.error.text()

    _submit(qtbot, dialog, "fraud")
    assert not dialog.isVisible()
    qtbot.waitUntil(lambda: "recorded by you" in panel.status.text(), timeout=10_000)
    stored = ApiClient(backend.url, backend.admin_token).logged_predictions(event.request_id)
    assert [record.label for record in stored if record.row == event.row] == [1]

    # Selecting it again reads the stored label back.
    page.view.clearSelection()
    page.view.selectRow(0)
    qtbot.waitUntil(
        lambda: panel.status.text() == "Label (ground truth): fraud (class 1)", timeout=10_000
    )
    # The table's label column shows it by name too.
    label_cell = page.filtered.index(0, LABEL_COLUMN)
    assert label_cell.data() == "fraud"
    page.shutdown()


def test_support_staff_record_labels_and_a_failure_is_shown_in_a_dialog(  # type: ignore[no-untyped-def]
    qtbot: QtBot, make_context, backend: Backend
) -> None:
    support = backend.create_token("helpdesk", "support")
    page = _live_page_with_a_selected_prediction(qtbot, make_context, backend, support)
    panel = page.label_panel
    qtbot.mouseClick(panel.record_button, Qt.MouseButton.LeftButton)
    assert panel.dialog is not None
    backend.stop()  # the backend goes away while the dialog is open
    _submit(qtbot, panel.dialog, "0")
    qtbot.waitUntil(lambda: panel.error_box is not None and panel.error_box.isVisible())
    assert panel.error_box is not None
    assert "was not recorded" in panel.error_box.text()
    assert panel.status.text() == "The label was not recorded." and panel.record_button.isEnabled()
    panel.error_box.close()
    page.shutdown()
