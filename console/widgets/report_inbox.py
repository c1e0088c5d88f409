"""The reports inbox: one row per report, many selectable at once for bulk changes.

The rows come sorted and filtered by the backend (the inbox may hold thousands of reports; the
page reads one page of them), so the model keeps them in the order given.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

from backend.schemas.reports import ReportSummary
from console.report_words import (
    CATEGORY_WORDS,
    SEVERITY_TONE,
    SEVERITY_WORDS,
    STATUS_MEANING,
    age_since,
    status_word,
    when_text,
)
from console.resources import colour
from console.widgets.tables import Columns, ColumnTableModel, Index

COLUMNS: Columns = (
    ("#", "The report's number: quote it to colleagues and in duplicate links."),
    ("Status", "Where the report is in triage."),
    ("Severity", "How bad the error is, as support staff judged it (blank: not judged yet)."),
    ("Category", "What kind of error the reporter saw."),
    ("Model", "The model and version that gave the answer reported."),
    ("Assignee", "Who handles the report (blank: nobody yet)."),
    ("Age", "How long ago the report was filed."),
    ("Notes", "How many internal notes it has."),
    ("Description", "What the reporter wrote."),
)
DESCRIPTION_COLUMN = len(COLUMNS) - 1
STATUS_COLUMN = 1
REPORT_ROLE = Qt.ItemDataRole.UserRole


class ReportInboxModel(ColumnTableModel):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(COLUMNS, parent)
        self.rows: list[ReportSummary] = []
        self.now = datetime.now(UTC)

    def set_reports(self, reports: Sequence[ReportSummary]) -> None:
        self.beginResetModel()
        self.rows = list(reports)
        self.now = datetime.now(UTC)
        self.endResetModel()

    def append_reports(self, reports: Sequence[ReportSummary]) -> None:
        """The next page, below the rows shown (the selection stays where it is)."""
        known = {report.id for report in self.rows}
        new = [report for report in reports if report.id not in known]
        if not new:
            return
        first = len(self.rows)
        self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
        self.rows.extend(new)
        self.endInsertRows()

    def replace(self, report: ReportSummary) -> None:
        """One report changed (a status set here): its row shows the new state in place."""
        row = self.row_of(report.id)
        if row >= 0:
            self.rows[row] = report
            self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))

    def row_of(self, report_id: int) -> int:
        return next((i for i, r in enumerate(self.rows) if r.id == report_id), -1)

    def report(self, row: int) -> ReportSummary | None:
        return self.rows[row] if 0 <= row < len(self.rows) else None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        report = self.rows[index.row()]
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(report, column)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tip(report, column)
        if role == REPORT_ROLE:
            return report.id
        if role == Qt.ItemDataRole.ForegroundRole and column == 2 and report.severity:
            tone = SEVERITY_TONE.get(report.severity, "")
            return QBrush(QColor(colour(tone))) if tone else None
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (0, 7):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def _text(self, report: ReportSummary, column: int) -> str:
        if column == 0:
            return str(report.id)
        if column == 1:
            return status_word(report.status)
        if column == 2:
            return SEVERITY_WORDS.get(report.severity or "", "")
        if column == 3:
            return CATEGORY_WORDS.get(report.category, report.category)
        if column == 4:
            return f"{report.model} v{report.version}" if report.version else report.model
        if column == 5:
            return report.assignee or ""
        if column == 6:
            return age_since(report.filed_at, self.now)
        if column == 7:
            return str(report.notes) if report.notes else ""
        # One line in the table: the whole text is in the tooltip and the detail pane.
        return " ".join(report.description.split())

    def _tip(self, report: ReportSummary, column: int) -> str:
        if column == 1:
            return f"{status_word(report.status)}: {STATUS_MEANING.get(report.status, '')}"
        if column == 6:
            filed, changed = when_text(report.filed_at), when_text(report.updated_at)
            return f"Filed {filed}; last change {changed}."
        if column == DESCRIPTION_COLUMN:
            return report.description or "The reporter wrote nothing."
        return self._text(report, column)


class ReportInbox(QTableView):
    """The inbox table: arrows and J/K move, Shift or Ctrl add to the selection."""

    # The report under the keyboard changed (0: none).
    current_report_changed = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.reports = ReportInboxModel(self)
        self.setModel(self.reports)
        self.setObjectName("report-inbox")
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(24)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setAlternatingRowColors(True)
        self.setWordWrap(False)
        self.setTabKeyNavigation(False)
        self.setToolTip(
            "Reports matching the filters. Select several (Shift or Ctrl) to change them at "
            "once; J and K move down and up."
        )
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(DESCRIPTION_COLUMN, QHeaderView.ResizeMode.Stretch)
        self.selectionModel().currentRowChanged.connect(self._on_current)

    def set_reports(self, reports: Sequence[ReportSummary]) -> None:
        """New rows; the report under the keyboard stays current if it is still listed."""
        current = self.current_id()
        current_row = self.currentIndex().row()
        chosen = set(self.selected_ids())
        self.reports.set_reports(reports)
        selection = self.selectionModel()
        for report_id in chosen:
            row = self.reports.row_of(report_id)
            if row >= 0:
                selection.select(
                    self.reports.index(row, 0),
                    selection.SelectionFlag.Select | selection.SelectionFlag.Rows,
                )
        row = self.reports.row_of(current)
        if row >= 0:
            selection.setCurrentIndex(self.reports.index(row, 0), selection.SelectionFlag.NoUpdate)
        elif self.reports.rowCount():
            # The report worked on left the inbox (its new status is filtered out): the one
            # that took its place is next, as in a mail client.
            self.selectRow(min(max(current_row, 0), self.reports.rowCount() - 1))
        else:
            self.current_report_changed.emit(0)

    def current_id(self) -> int:
        report = self.reports.report(self.currentIndex().row())
        return report.id if report is not None else 0

    def selected_ids(self) -> list[int]:
        rows = sorted(index.row() for index in self.selectionModel().selectedRows())
        return [self.reports.rows[row].id for row in rows]

    def move_by(self, step: int) -> None:
        """The next or previous report (J and K), as the arrow keys move."""
        if not self.reports.rowCount():
            return
        row = max(0, min(self.currentIndex().row() + step, self.reports.rowCount() - 1))
        self.selectRow(row)

    def select_report(self, report_id: int) -> bool:
        row = self.reports.row_of(report_id)
        if row < 0:
            return False
        self.selectRow(row)
        return True

    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        report = self.reports.report(current.row())
        self.current_report_changed.emit(report.id if report is not None else 0)
