"""What a backend call's error means, in words for people, and the dialogs that show it.

Dialogs are opened, never exec'd: a modal loop would stall the live stream.
"""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QVBoxLayout, QWidget

from backend.schemas import GateReport
from console.client import ApiError, BackendUnreachable
from console.dialogs.messages import show_error
from console.widgets.gate_report import GateReportView


def describe_error(error: Exception) -> str:
    """One sentence for people, for any error a client call raises."""
    if isinstance(error, BackendUnreachable):
        return error.message
    if isinstance(error, ApiError):
        return f"the backend answered {error.status}: {error.message}"
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
