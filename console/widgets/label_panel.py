"""The ground truth of one prediction: shows the label if one arrived, and records one.

Support staff who learn the real outcome (a customer confirmed the fraud, the ride cost what
it cost) record it here; it joins the labels that feed live performance and retraining.
"""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import Qt, QTimer
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

from backend.schemas import FeedbackResponse, ModelInfo, PredictionEvent, PredictionRecord
from console.client import describe_error
from console.context import ConsoleContext
from console.widgets.common import make_button, make_label, plain_text

# The log writes within about a second: look again a few times before giving up.
LOOKUP_RETRIES = 5
LOOKUP_RETRY_MS = 700


class LabelError(ValueError):
    """The typed label cannot be a label of this model; the message says what would be."""


def parse_label(text: str, task: str | None, class_labels: list[Any] | None) -> Any:
    """The label value a person typed, as the model's own type (class 1, not the text "1")."""
    typed = text.strip()
    if not typed:
        raise LabelError("type the true outcome first")
    if class_labels:
        for label in class_labels:
            if plain_text(label) == typed:
                return label
        choices = ", ".join(plain_text(label) for label in class_labels)
        raise LabelError(f"'{typed}' is not one of this model's classes: {choices}")
    try:
        number = float(typed)
    except ValueError:
        if task == "regression":
            raise LabelError(f"'{typed}' is not a number; this model predicts numbers") from None
        return typed
    if not math.isfinite(number):
        raise LabelError("the label must be a finite number")
    return int(number) if task != "regression" and number.is_integer() else number


class LabelDialog(QDialog):
    """Asks for the true outcome: the model's classes to pick from, or a value to type."""

    def __init__(
        self, event: PredictionEvent, model: ModelInfo | None, parent: QWidget | None = None
    ):
        super().__init__(parent)
        self.setWindowTitle("Record the true outcome")
        self.setMinimumWidth(420)
        self.task = model.task if model else None
        version = (
            next((v for v in model.versions if v.version == event.version), None) if model else None
        )
        self.class_labels = version.class_labels if version else None
        self.value = QComboBox()
        self.value.setEditable(True)
        self.value.setToolTip(
            "What really happened for this prediction. Pick a class, or type a value."
        )
        for label in self.class_labels or []:
            self.value.addItem(plain_text(label))
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
        form.addRow("Prediction", QLabel(f"{event.model} v{event.version}: {event.top_output}"))
        form.addRow("True outcome", self.value)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self.label: Any = None

    def _check_and_accept(self) -> None:
        try:
            self.label = parse_label(self.value.currentText(), self.task, self.class_labels)
        except LabelError as exc:
            self.error.setText(str(exc))
            self.error.show()
            self.adjustSize()  # laid out before the message existed: grow to show all of it
            self.value.setFocus()
            return
        self.accept()


class LabelPanel(QWidget):
    def __init__(self, context: ConsoleContext):
        super().__init__()
        self.context = context
        self.shown: PredictionEvent | None = None
        self.dialog: LabelDialog | None = None
        self.error_box: QMessageBox | None = None
        self._models: dict[str, ModelInfo] = {}
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
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.status, 1)
        layout.addWidget(self.record_button, 0, Qt.AlignmentFlag.AlignTop)

    def show_for(self, event: PredictionEvent, attempt: int = 0) -> None:
        """Show the label of ``event``; a row the log has not written yet is looked up again."""
        if attempt == 0:
            self.shown = event
            self.record_button.setEnabled(True)
            self.status.setText("Looking up the ground-truth label…")
        known = event.model in self._models

        def lookup() -> tuple[list[PredictionRecord], list[ModelInfo] | None]:
            records = self.context.client.logged_predictions(event.request_id)
            return records, None if known else self.context.client.models()

        def done(result: tuple[list[PredictionRecord], list[ModelInfo] | None]) -> None:
            records, models = result
            for model in models or []:
                self._models[model.name] = model
            if self.shown is not event:
                return
            # A shadow copy of the prediction shares its request id: match version and route.
            record = next(
                (
                    r
                    for r in records
                    if (r.row, r.version, r.route) == (event.row, event.version, event.route)
                ),
                None,
            )
            self._show_record(record)
            if record is None and attempt < LOOKUP_RETRIES:
                QTimer.singleShot(LOOKUP_RETRY_MS, lambda: self._retry(event, attempt + 1))

        def failed(error: Exception) -> None:
            if self.shown is event:
                self.status.setText(f"Could not look up the label: {describe_error(error)}")

        self.context.tasks.run(lookup, done, failed)

    def _retry(self, event: PredictionEvent, attempt: int) -> None:
        if self.shown is event:
            self.show_for(event, attempt)

    def _show_record(self, record: PredictionRecord | None) -> None:
        if record is None:
            self.status.setText("Not in the prediction log yet (written within a second).")
        elif record.label is None:
            self.status.setText("No label yet: ground truth usually arrives later.")
        else:
            self.status.setText(f"Label (ground truth): {plain_text(record.label)}")

    def open_dialog(self) -> None:
        event = self.shown
        if event is None:
            return
        self.dialog = LabelDialog(event, self._models.get(event.model), self)
        self.dialog.accepted.connect(
            lambda: self._post(event, self.dialog.label if self.dialog else None)
        )
        # open(), not exec(): the console keeps streaming while the dialog is up.
        self.dialog.open()

    def _post(self, event: PredictionEvent, label: Any) -> None:
        self.record_button.setEnabled(False)
        self.status.setText("Recording the label…")

        def done(response: FeedbackResponse) -> None:
            self.record_button.setEnabled(True)
            if self.shown is not event:
                return
            text = f"Label (ground truth): {plain_text(label)}, recorded by you."
            if response.unmatched:
                text += " It joins the prediction once the log has written it."
            self.status.setText(text)

        def failed(error: Exception) -> None:
            self.record_button.setEnabled(True)
            if self.shown is event:
                self.status.setText("The label was not recorded.")
            # open(), not a static warning(): a modal loop would stall the live stream.
            box = QMessageBox(
                QMessageBox.Icon.Warning,
                "Label not recorded",
                f"The label was not recorded: {describe_error(error)}",
                QMessageBox.StandardButton.Ok,
                self,
            )
            box.open()
            self.error_box = box

        self.context.tasks.run(
            lambda: self.context.client.post_label(event.request_id, event.row, label),
            done,
            failed,
        )
