"""Errors shown as dialogs that never block the event loop (opened, not exec'd)."""

from __future__ import annotations

from pydantic import ValidationError
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QMessageBox, QVBoxLayout, QWidget

from backend.schemas import GateReport
from console.client import ApiError, describe_error
from console.widgets.gate_report import GateReportView


def show_error(parent: QWidget, title: str, message: str) -> QMessageBox:
    box = QMessageBox(
        QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, parent
    )
    box.open()
    return box


def input_problem(error: Exception) -> str:
    """A form value the wire types refused, in one sentence naming the field."""
    if isinstance(error, ValidationError) and error.errors():
        first = error.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        return f"{where}: {first.get('msg', 'invalid value')}" if where else str(first.get("msg"))
    return str(error)


class GateReportDialog(QDialog):
    """Why a version was refused: every gate, failures first, and the answers that differed."""

    def __init__(self, title: str, report: GateReport, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.resize(820, 520)
        self.view = GateReportView()
        self.view.show_report(report)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.view)
        layout.addWidget(buttons)


def show_failure(parent: QWidget, title: str, error: Exception) -> QDialog:
    """A refused deployment shows its gate report; anything else a plain message."""
    report = error.gate_report if isinstance(error, ApiError) else None
    if report is not None:
        dialog = GateReportDialog(f"{title}: version {report.version} was refused", report, parent)
        dialog.open()
        return dialog
    return show_error(parent, title, describe_error(error))
