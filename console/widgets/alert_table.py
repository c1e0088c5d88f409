"""The alert list: alerts on a QAbstractTableModel (newest first), and its filters.

Alerts arrive whole (a snapshot, one from the stream, one an acknowledgement returned) and
replace the row of the same id, or are inserted at their place: rows are inserted and changed
with their own notifications, never by a reset, so the selection stays on the alert the user
reads while others arrive.
"""

from __future__ import annotations

import bisect
from datetime import datetime
from typing import Any

from PySide6.QtCore import (
    QAbstractItemModel,
    QModelIndex,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QBrush, QColor, QFont, QResizeEvent
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QLabel, QTableView

from backend.schemas import Alert
from console.resources import colour
from console.widgets.tables import Columns, ColumnTableModel, Index

ALERT_ROLE = int(Qt.ItemDataRole.UserRole) + 1

# What matters most first: on a small screen the columns on the right scroll out of view.
COLUMNS: Columns = (
    ("Severity", "Critical: act now (answers are likely wrong). Warning: look when you can."),
    ("Model", "The model the alert is about."),
    ("Version", "The version the alert is about (blank: the model as a whole)."),
    ("Alert", "What happened, in one line; select the alert for what it means and what to do."),
    (
        "Status",
        "Open: nobody has taken it on yet. Acknowledged: someone owns it. Resolved: it no "
        "longer applies.",
    ),
    ("Raised", "When the alert was raised (your local time)."),
    ("Acknowledged", "Who took it on, and when."),
)
SEVERITY_TONE = {"critical": "bad", "warning": "warn"}
STATUS_TONE = {"open": "bad", "acknowledged": "warn", "resolved": "muted"}
STATUS_FILTERS = {
    "active": ("open", "acknowledged"),
    "open": ("open",),
    "resolved": ("resolved",),
    "all": ("open", "acknowledged", "resolved"),
}


def when(moment: datetime | None) -> str:
    """A time as people read it: local, to the second."""
    return "" if moment is None else moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def short_when(moment: datetime | None) -> str:
    """For the list: today's times without the date (the tooltip has the whole)."""
    if moment is None:
        return ""
    local = moment.astimezone()
    today = datetime.now(local.tzinfo).date() == local.date()
    return local.strftime("%H:%M:%S" if today else "%b %d, %H:%M")


class AlertTableModel(ColumnTableModel):
    def __init__(self) -> None:
        super().__init__(COLUMNS)
        self.rows: list[Alert] = []  # newest (highest id) first
        self._ids: list[int] = []  # the negated ids, ascending: for bisect
        self._bold = QFont()
        self._bold.setBold(True)

    # ---------------------------------------------------------------- data

    def upsert(self, alerts: list[Alert]) -> None:
        """Add new alerts at their place and replace the known ones."""
        for alert in alerts:
            position = bisect.bisect_left(self._ids, -alert.id)
            if position < len(self._ids) and self._ids[position] == -alert.id:
                self.rows[position] = alert
                self.dataChanged.emit(
                    self.index(position, 0), self.index(position, len(COLUMNS) - 1)
                )
                continue
            self.beginInsertRows(QModelIndex(), position, position)
            self.rows.insert(position, alert)
            self._ids.insert(position, -alert.id)
            self.endInsertRows()

    def alert_at(self, row: int) -> Alert | None:
        return self.rows[row] if 0 <= row < len(self.rows) else None

    def row_of(self, alert_id: int) -> int:
        position = bisect.bisect_left(self._ids, -alert_id)
        found = position < len(self._ids) and self._ids[position] == -alert_id
        return position if found else -1

    def alert(self, alert_id: int) -> Alert | None:
        return self.alert_at(self.row_of(alert_id))

    def models(self) -> list[str]:
        return sorted({alert.model for alert in self.rows})

    # ---------------------------------------------------------------- Qt model

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        alert = self.alert_at(index.row()) if index.isValid() else None
        if alert is None:
            return None
        column = index.column()
        if role == ALERT_ROLE:
            return alert
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            text = _cell_text(alert, column)
            if role == Qt.ItemDataRole.ToolTipRole:
                return _cell_tip(alert, column, text)
            return text
        if role == Qt.ItemDataRole.ForegroundRole:
            tone = (
                SEVERITY_TONE.get(alert.severity)
                if column == 0
                else STATUS_TONE.get(alert.status)
                if column == 4
                else "muted"
                if alert.status == "resolved"
                else None
            )
            return QBrush(QColor(colour(tone))) if tone else None
        if role == Qt.ItemDataRole.FontRole and alert.status == "open" and column in (0, 3):
            return self._bold
        return None


def _cell_text(alert: Alert, column: int) -> str:
    if column == 0:
        return alert.severity.capitalize()
    if column == 1:
        return alert.model
    if column == 2:
        return alert.version or ""
    if column == 3:
        return alert.title
    if column == 4:
        return alert.status.capitalize()
    if column == 5:
        return short_when(alert.raised_at)
    if alert.acknowledged_by:
        return f"{alert.acknowledged_by}, {short_when(alert.acknowledged_at)}"
    return ""


def _cell_tip(alert: Alert, column: int, text: str) -> str:
    if column == 0:
        return COLUMNS[0][1]
    if column == 4:
        return COLUMNS[4][1]
    if column == 5:
        return f"Raised {when(alert.raised_at)}"
    if column == 6 and alert.acknowledged_by:
        return f"Acknowledged by {alert.acknowledged_by} at {when(alert.acknowledged_at)}"
    return text or COLUMNS[column][1]


class AlertFilter(QSortFilterProxyModel):
    """Alerts of the statuses, model and severity chosen ("" for any)."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: tuple[str, ...] = STATUS_FILTERS["active"]
        self.model_name = ""
        self.severity = ""

    def set_filters(self, status: str, model: str, severity: str) -> None:
        # Qt 6.9 replaced invalidateRowsFilter with the begin/end pair; 6.8 is still allowed.
        if hasattr(self, "beginFilterChange"):
            self.beginFilterChange()
            self.statuses, self.model_name, self.severity = STATUS_FILTERS[status], model, severity
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            self.statuses, self.model_name, self.severity = STATUS_FILTERS[status], model, severity
            self.invalidateRowsFilter()

    def filterAcceptsRow(self, source_row: int, source_parent: Index) -> bool:
        source = self.sourceModel()
        assert isinstance(source, AlertTableModel)
        alert = source.alert_at(source_row)
        return (
            alert is not None
            and alert.status in self.statuses
            and (not self.model_name or alert.model == self.model_name)
            and (not self.severity or alert.severity == self.severity)
        )


# Column widths in pixels, in COLUMNS order; the title takes the rest (at least TITLE_MIN).
COLUMN_WIDTHS = (70, 90, 66, 0, 104, 78, 130)
TITLE_COLUMN = 3
TITLE_MIN = 220


class AlertView(QTableView):
    """The alert list's view: one alert selected at a time, and a note on the table itself
    saying what it means when it is empty."""

    def __init__(self, model: QAbstractItemModel):
        super().__init__()
        self.setModel(model)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.verticalHeader().setVisible(False)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(False)
        for column, width in enumerate(COLUMN_WIDTHS):
            if width:
                self.setColumnWidth(column, width)
        # The title reads best with the room the others leave; the tooltip has all of it.
        header.setSectionResizeMode(TITLE_COLUMN, QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(40)
        self.setAlternatingRowColors(True)
        self.setWordWrap(False)
        self.setToolTip(
            "Alerts, newest on top. Select one to read what it means; press A (or Ctrl+Enter) "
            "to acknowledge it."
        )
        self.empty_note = QLabel(self.viewport())
        self.empty_note.setObjectName("muted")
        self.empty_note.setWordWrap(True)
        self.empty_note.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_note.hide()

    def show_empty_note(self, text: str | None) -> None:
        """What the empty list means; None when it has rows."""
        if text is None:
            self.empty_note.hide()
            return
        self.empty_note.setText(text)
        self.empty_note.setGeometry(self.viewport().rect().adjusted(20, 20, -20, -20))
        self.empty_note.show()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.empty_note.setGeometry(self.viewport().rect().adjusted(20, 20, -20, -20))
