"""A confirmation that says exactly what will happen and asks why (kept in the audit trail)."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)


class ReasonDialog(QDialog):
    def __init__(
        self,
        title: str,
        question: str,
        action: str,
        parent: QWidget | None = None,
        reason_required: bool = True,
    ):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.question = QLabel(question)
        self.question.setObjectName("heading")
        self.question.setWordWrap(True)
        self.reason = QLineEdit()
        self.reason.setPlaceholderText(
            "Why? (kept in the audit trail)" if reason_required else "Why? (optional)"
        )
        self.reason.setToolTip("Your reason is recorded with your name in the audit trail.")
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText(action)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.reason_required = reason_required
        self.reason.textChanged.connect(self._update)
        layout = QVBoxLayout(self)
        layout.addWidget(self.question)
        layout.addWidget(self.reason)
        layout.addWidget(self.buttons)
        self.reason.setFocus()
        self._update()

    def _update(self) -> None:
        self.ok_button.setEnabled(bool(self.reason.text().strip()) or not self.reason_required)

    @property
    def reason_text(self) -> str:
        return self.reason.text().strip()
