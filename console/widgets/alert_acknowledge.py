"""The small dialog that acknowledges an alert: what it is, and an optional note (Enter sends)."""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QLineEdit, QVBoxLayout, QWidget

from backend.schemas import Alert

MAX_NOTE_LENGTH = 2000  # AcknowledgeRequest.note's limit


class AcknowledgeDialog(QDialog):
    def __init__(self, alert: Alert, parent: QWidget | None = None):
        super().__init__(parent)
        self.alert = alert
        self.setWindowTitle("Acknowledge the alert")
        self.setMinimumWidth(460)
        self.question = QLabel(
            f"Take on this alert? Your name is recorded with it, and the others see that "
            f"someone owns it.<br><br><b>{alert.title}</b>"
        )
        self.question.setWordWrap(True)
        self.note = QLineEdit()
        self.note.setMaxLength(MAX_NOTE_LENGTH)
        self.note.setPlaceholderText("What are you doing about it? (optional)")
        self.note.setToolTip("Kept with the alert's history, with your name and the time.")
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText("Acknowledge")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.question)
        layout.addWidget(self.note)
        layout.addWidget(self.buttons)
        self.note.setFocus()

    @property
    def note_text(self) -> str:
        return self.note.text().strip()
