"""Report an error on a live prediction: what kind of error, what happened, and what the right
answer would have been (one of the model's classes by name, or a number for a regressor).

Support staff file these for an end user who phoned in; the report joins the Reports inbox.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)

from backend.schemas import ModelInfo, PredictionEvent
from backend.schemas.reports import MAX_DESCRIPTION, REPORT_CATEGORIES, ReportCreate
from console.report_words import CATEGORY_MEANING, CATEGORY_WORDS
from console.widgets.common import make_label
from console.widgets.label_value import LabelError, parse_label
from console.widgets.values import ClassNames

DONT_KNOW = "I don't know"


class ReportErrorDialog(QDialog):
    """Asks what was wrong with one prediction; ``report`` holds the filing once accepted."""

    def __init__(
        self, event: PredictionEvent, model: ModelInfo | None, parent: QWidget | None = None
    ):
        super().__init__(parent)
        self.setWindowTitle("Report an error")
        self.setMinimumWidth(480)
        self.event = event
        self.task = model.task if model else None
        self.classes = ClassNames.of(model, event.version)
        self.category = QComboBox()
        self.category.setToolTip("What kind of error it is.")
        for category in REPORT_CATEGORIES:
            self.category.addItem(CATEGORY_WORDS[category], category)
            index = self.category.count() - 1
            self.category.setItemData(index, CATEGORY_MEANING[category], 3)  # ToolTipRole
        self.description = QPlainTextEdit()
        self.description.setPlaceholderText(
            "What went wrong, in the reporter's words (what they saw, what they expected)…"
        )
        self.description.setToolTip(
            f"Shown to support staff in the Reports inbox; at most {MAX_DESCRIPTION:,} characters."
        )
        self.expected = QComboBox()
        self.expected.setEditable(True)
        if self.classes.labels:
            self.expected.setToolTip(
                "The class that would have been right, if the reporter knows it."
            )
        elif self.task == "regression":
            self.expected.setToolTip("The number that would have been right, if known.")
        else:
            self.expected.setToolTip("The answer that would have been right, if known.")
        self.expected.addItem(DONT_KNOW)
        for name in self.classes.names:
            self.expected.addItem(name)
        self.error = make_label(name="error", wrap=True)
        self.error.hide()
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("File report")
        self.buttons.accepted.connect(self._check_and_accept)
        self.buttons.rejected.connect(self.reject)
        answer = self.classes.described(event.top_output)
        form = QFormLayout()
        form.addRow(
            "Prediction",
            QLabel(f"{event.model} v{event.version}, request {event.request_id}: {answer}"),
        )
        form.addRow("Kind of error", self.category)
        form.addRow("What happened", self.description)
        form.addRow("Right answer", self.expected)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)
        self.report: ReportCreate | None = None

    def expected_value(self) -> Any:
        text = self.expected.currentText().strip()
        if not text or text == DONT_KNOW:
            return None
        return parse_label(text, self.task, self.classes)

    def _refuse(self, message: str) -> None:
        self.error.setText(message)
        self.error.show()
        self.adjustSize()

    def _check_and_accept(self) -> None:
        description = self.description.toPlainText().strip()
        if len(description) > MAX_DESCRIPTION:
            self._refuse(
                f"The description is {len(description):,} characters; at most "
                f"{MAX_DESCRIPTION:,} fit. Shorten it."
            )
            return
        try:
            expected = self.expected_value()
        except LabelError as exc:
            self._refuse(f"The right answer: {exc}.")
            self.expected.setFocus()
            return
        self.report = ReportCreate(
            request_id=self.event.request_id,
            row=self.event.row,
            model=self.event.model,
            category=self.category.currentData(),
            description=description,
            expected=expected,
        )
        self.accept()
