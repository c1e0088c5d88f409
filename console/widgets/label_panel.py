"""The ground truth of one prediction: shows the label if one arrived, and records one.

Support staff who learn the real outcome (a customer confirmed the fraud, the ride cost what
it cost) record it here; it joins the labels that feed live performance and retraining.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QVBoxLayout,
    QWidget,
)

from backend.schemas import ModelInfo, PredictionEvent, PredictionRecord
from console.widgets.common import make_button, make_label
from console.widgets.label_value import LabelError, parse_label
from console.widgets.report_dialog import ReportErrorDialog
from console.widgets.values import ClassNames


class LabelDialog(QDialog):
    """Asks for the true outcome: the model's classes to pick from, or a value to type."""

    def __init__(
        self, event: PredictionEvent, model: ModelInfo | None, parent: QWidget | None = None
    ):
        super().__init__(parent)
        self.setWindowTitle("Record the true outcome")
        self.setMinimumWidth(420)
        self.task = model.task if model else None
        self.classes = ClassNames.of(model, event.version)
        self.value = QComboBox()
        self.value.setEditable(True)
        self.value.setToolTip(
            "What really happened for this prediction. Pick a class, or type a value."
        )
        for name in self.classes.names:
            self.value.addItem(name)
        self.value.setCurrentText("")
        self.error = make_label(name="error", wrap=True)
        self.error.hide()
        self.buttons = buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Record label")
        buttons.accepted.connect(self._check_and_accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout()
        answer = self.classes.described(event.top_output)
        form.addRow("Prediction", QLabel(f"{event.model} v{event.version}: {answer}"))
        form.addRow("True outcome", self.value)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self.label: Any = None

    def _check_and_accept(self) -> None:
        try:
            self.label = parse_label(self.value.currentText(), self.task, self.classes)
        except LabelError as exc:
            self.error.setText(str(exc))
            self.error.show()
            self.adjustSize()  # laid out before the message existed: grow to show all of it
            self.value.setFocus()
            return
        self.accept()


class LabelPanel(QWidget):
    """Shows the ground truth of the selected prediction and asks for one to record.

    It makes no call: ``label_chosen`` says the user wants a label recorded, and the page
    hands back what the lookup or the recording found.
    """

    label_chosen = Signal(object, object)  # PredictionEvent, the label as the model's type
    # PredictionEvent, the ReportCreate to file: "Report an error" was filled in.
    report_requested = Signal(object, object)

    def __init__(self) -> None:
        super().__init__()
        self.shown: PredictionEvent | None = None
        self.model: ModelInfo | None = None
        self.dialog: LabelDialog | None = None
        self.report_dialog: ReportErrorDialog | None = None
        self.error_box: QMessageBox | None = None
        self.status = make_label("Select a prediction to see its details.", wrap=True)
        self.status.setToolTip(
            "The ground truth: what really happened, once someone or some system reported it."
        )
        self.record_button = make_button(
            "Record label…",
            "Record what really happened for this prediction (for example a confirmed fraud)."
            " Labels measure the model's live accuracy and become training data.",
            self.open_dialog,
        )
        self.record_button.setEnabled(False)
        self.report_button = make_button(
            "Report an error…",
            "File an error report about this prediction for an end user (a wrong, offensive "
            "or private answer). It joins the Reports inbox, where support staff triage it.",
            self.open_report_dialog,
        )
        self.report_button.setEnabled(False)
        self.report_note = make_label(wrap=True)
        self.report_note.setToolTip("The last error report filed from here, and what became of it.")
        self.report_note.hide()
        text = QVBoxLayout()
        text.setContentsMargins(0, 0, 0, 0)
        text.addWidget(self.status)
        text.addWidget(self.report_note)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(text, 1)
        layout.addWidget(self.record_button, 0, Qt.AlignmentFlag.AlignTop)
        layout.addWidget(self.report_button, 0, Qt.AlignmentFlag.AlignTop)

    # ---------------------------------------------------------------- the label shown

    def show_prediction(self, event: PredictionEvent, model: ModelInfo | None) -> None:
        """A prediction was selected; its label is being looked up."""
        self.shown, self.model = event, model
        self.record_button.setEnabled(True)
        self.report_button.setEnabled(True)
        self.status.setText("Looking up the ground-truth label…")

    def set_model(self, model: ModelInfo) -> None:
        """The model of the prediction shown: its classes are offered in the dialog."""
        self.model = model

    def clear(self, why: str) -> None:
        """No prediction is shown any more (filtered out, or none selected)."""
        self.shown = None
        self.record_button.setEnabled(False)
        self.report_button.setEnabled(False)
        self.status.setText(why)

    def _classes(self) -> ClassNames:
        return ClassNames.of(self.model, self.shown.version) if self.shown else ClassNames()

    def show_record(self, record: PredictionRecord | None) -> None:
        """The logged row of the prediction shown; None while the log has not written it."""
        if record is None:
            self.status.setText("Not in the prediction log yet (written within a second).")
        elif record.label is None:
            self.status.setText("No label yet: ground truth usually arrives later.")
        else:
            label = self._classes().described(record.label)
            self.status.setText(f"Label (ground truth): {label}")

    def show_lookup_failed(self, reason: str) -> None:
        self.status.setText(f"Could not look up the label: {reason}")

    # ---------------------------------------------------------------- recording one

    def open_dialog(self) -> None:
        event = self.shown
        if event is None:
            return
        self.dialog = LabelDialog(event, self.model, self)
        self.dialog.accepted.connect(
            lambda: self._chosen(event, self.dialog.label if self.dialog else None)
        )
        # open(), not exec(): the console keeps streaming while the dialog is up.
        self.dialog.open()

    def _chosen(self, event: PredictionEvent, label: Any) -> None:
        self.record_button.setEnabled(False)
        self.status.setText("Recording the label…")
        self.label_chosen.emit(event, label)

    def show_recorded(self, event: PredictionEvent, label: Any, unmatched: bool) -> None:
        self.record_button.setEnabled(True)
        if self.shown is not event:
            return  # another prediction is shown now: its own label stays on screen
        text = f"Label (ground truth): {self._classes().described(label)}, recorded by you."
        if unmatched:
            text += " It joins the prediction once the log has written it."
        self.status.setText(text)

    def show_not_recorded(self, event: PredictionEvent, reason: str) -> None:
        self.record_button.setEnabled(True)
        if self.shown is event:
            self.status.setText("The label was not recorded.")
        # open(), not a static warning(): a modal loop would stall the live stream.
        box = QMessageBox(
            QMessageBox.Icon.Warning,
            "Label not recorded",
            f"The label was not recorded: {reason}",
            QMessageBox.StandardButton.Ok,
            self,
        )
        box.open()
        self.error_box = box

    # ---------------------------------------------------------------- reporting an error

    def open_report_dialog(self) -> None:
        event = self.shown
        if event is None:
            return
        dialog = self.report_dialog = ReportErrorDialog(event, self.model, self)
        dialog.accepted.connect(lambda: self._report_chosen(event, dialog))
        dialog.open()

    def _report_chosen(self, event: PredictionEvent, dialog: ReportErrorDialog) -> None:
        if dialog.report is None:
            return
        self.report_button.setEnabled(False)
        self._show_report_note(f"Filing the report on request {event.request_id}…")
        self.report_requested.emit(event, dialog.report)

    def show_report_filed(self, event: PredictionEvent, report_id: int, headline: str) -> None:
        self.report_button.setEnabled(self.shown is not None)
        self._show_report_note(
            f"Report #{report_id} filed on request {event.request_id}: {headline} "
            "Support staff see it in the Reports inbox."
        )

    def show_report_not_filed(self, event: PredictionEvent, reason: str) -> None:
        self.report_button.setEnabled(self.shown is not None)
        self._show_report_note(f"The report on request {event.request_id} was not filed.")
        box = QMessageBox(
            QMessageBox.Icon.Warning,
            "Report not filed",
            f"The error report was not filed: {reason}. Try again when the backend answers.",
            QMessageBox.StandardButton.Ok,
            self,
        )
        box.open()
        self.error_box = box

    def _show_report_note(self, text: str) -> None:
        self.report_note.setText(text)
        self.report_note.show()
