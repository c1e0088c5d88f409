"""The live prediction table's view: rows newest on top, one selected at a time, and a note on
the table itself saying what it means when it is empty (nothing arrived, or filtered out)."""

from __future__ import annotations

from PySide6.QtCore import QAbstractItemModel, Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QLabel, QTableView

# Column widths in pixels, in prediction_table.COLUMNS order (the last one stretches).
COLUMN_WIDTHS = (90, 70, 62, 60, 88, 55, 75, 60, 80)


class PredictionView(QTableView):
    def __init__(self, model: QAbstractItemModel):
        super().__init__()
        self.setModel(model)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(22)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.horizontalHeader().setStretchLastSection(True)
        for column, width in enumerate(COLUMN_WIDTHS):
            self.setColumnWidth(column, width)
        self.setAlternatingRowColors(True)
        self.setToolTip("The most recent predictions, newest on top.")
        # On the table itself, so the table keeps its place in the Tab order.
        self.empty_note = QLabel(self.viewport())
        self.empty_note.setObjectName("muted")
        self.empty_note.setWordWrap(True)
        self.empty_note.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_note.hide()

    def show_empty_note(self, text: str | None) -> None:
        """What the empty table means; None when it has rows."""
        if text is None:
            self.empty_note.hide()
            return
        self.empty_note.setText(text)
        self._place_note()
        self.empty_note.show()

    def _place_note(self) -> None:
        self.empty_note.setGeometry(self.viewport().rect().adjusted(20, 20, -20, -20))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._place_note()
