"""Messages that never block the event loop (opened, not exec'd), free of the HTTP client.

Widgets show these for what they check themselves (a form value the wire types refuse);
what a backend call answered is worded beside the error dialogs, in ``dialogs.errors``.
"""

from __future__ import annotations

from pydantic import ValidationError
from PySide6.QtWidgets import QMessageBox, QWidget


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
