"""Read-only tables on a Qt item model: rows of cells handed over whole, never set cell by cell.

A page or widget turns its data into rows of ``Cell`` (text, tooltip, tone) and gives them to
a ``ReadOnlyTable`` at once; the model tells the view what changed in one notification.

``ColumnTableModel`` is what every table model of the console shares (its rows under fixed
columns whose headers say what they mean); the models that keep their own records (alerts,
reports, live predictions) subclass it too.
"""

from __future__ import annotations

from collections.abc import MutableSequence, Sequence
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

from console.resources import colour

Index = QModelIndex | QPersistentModelIndex
Columns = tuple[tuple[str, str], ...]  # (header, what the column means)
RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)


@dataclass(frozen=True)
class Cell:
    text: str
    tip: str = ""  # the tooltip; the text itself when empty (long values get cut off)
    tone: str = ""  # a colour of the style ("ok", "bad", "warn") for the text
    bold: bool = False
    right: bool = False  # numbers line up when right-aligned


class ColumnTableModel(QAbstractTableModel):
    """A table of ``rows`` (one entry per row, kept by the subclass in its order) under fixed
    ``columns``: the counts and the headers with what each column means as their tooltip. A
    subclass says what a cell shows (``data``)."""

    def __init__(self, columns: Columns, parent: QObject | None = None):
        super().__init__(parent)
        self.columns = columns
        self.rows: MutableSequence[Any] = []

    def rowCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.columns)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(self.columns):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self.columns[section][0]
        if role == Qt.ItemDataRole.ToolTipRole:
            return self.columns[section][1]
        return None


class CellTableModel(ColumnTableModel):
    """Rows of cells, each row with an optional key (a version number) to find it by."""

    def __init__(self, columns: Columns, parent: QWidget | None = None):
        super().__init__(columns, parent)
        self.rows: list[tuple[Cell, ...]] = []
        self._keys: list[Any] = []
        self._bold = QFont()
        self._bold.setBold(True)  # only the weight is set: the view's font gives the rest

    def set_rows(self, rows: Sequence[Sequence[Cell]], keys: Sequence[Any] | None = None) -> None:
        new_rows = [tuple(row) for row in rows]
        new_keys = list(keys) if keys is not None else [None] * len(new_rows)
        if len(new_rows) == len(self.rows) and new_rows:
            # Same shape (a poll of the same rows): update in place, so the reader keeps the
            # selection and scroll position.
            self.rows, self._keys = new_rows, new_keys
            last = self.index(len(new_rows) - 1, len(self.columns) - 1)
            self.dataChanged.emit(self.index(0, 0), last)
            return
        self.beginResetModel()
        self.rows, self._keys = new_rows, new_keys
        self.endResetModel()

    def key(self, row: int) -> Any:
        return self._keys[row] if 0 <= row < len(self._keys) else None

    def row_of(self, key: Any) -> int:
        return self._keys.index(key) if key in self._keys else -1

    def cell(self, row: int, column: int) -> Cell:
        return self.rows[row][column]

    # ---------------------------------------------------------------- Qt model

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        cell = self.rows[index.row()][index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return cell.text
        if role == Qt.ItemDataRole.ToolTipRole:
            return cell.tip or cell.text
        if role == Qt.ItemDataRole.ForegroundRole and cell.tone:
            return QBrush(QColor(colour(cell.tone)))
        if role == Qt.ItemDataRole.FontRole and cell.bold:
            return self._bold
        if role == Qt.ItemDataRole.TextAlignmentRole and cell.right:
            return RIGHT
        return None


class ReadOnlyTable(QTableView):
    """A table to read and select rows in; Tab leaves it, the arrow keys move inside."""

    def __init__(self, columns: Columns, parent: QWidget | None = None):
        super().__init__(parent)
        self.cells = CellTableModel(columns, self)
        self.setModel(self.cells)
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(24)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setAlternatingRowColors(True)
        self.setWordWrap(False)
        self.setTabKeyNavigation(False)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(len(columns) - 1, QHeaderView.ResizeMode.Stretch)

    def set_rows(self, rows: Sequence[Sequence[Cell]], keys: Sequence[Any] | None = None) -> None:
        self.cells.set_rows(rows, keys)

    def row_count(self) -> int:
        return self.cells.rowCount()

    def text(self, row: int, column: int) -> str:
        return self.cells.cell(row, column).text

    def current_key(self) -> Any:
        """The key of the current row (where the keyboard is), None when there is none."""
        return self.cells.key(self.currentIndex().row())

    def selected_key(self) -> Any:
        rows = self.selectionModel().selectedRows()
        return self.cells.key(rows[0].row()) if rows else None

    def select_key(self, key: Any) -> bool:
        """Select the row of ``key`` (the first row if it is not there); False if empty."""
        if not self.row_count():
            return False
        self.selectRow(max(self.cells.row_of(key), 0))
        return True
