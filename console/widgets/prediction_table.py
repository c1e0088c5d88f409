"""The live prediction table: a ring buffer in a QAbstractTableModel, newest first.

It holds at most ``capacity`` predictions: each batch is inserted at the top and the oldest
rows fall off the bottom, with row insert/remove notifications (never a full reset), so
views and the filter proxy stay cheap at hundreds of predictions per second.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)

from backend.schemas import PredictionEvent

DEFAULT_CAPACITY = 5_000
Index = QModelIndex | QPersistentModelIndex

COLUMNS: tuple[tuple[str, str], ...] = (
    ("Time", "When the prediction was made (your local time)."),
    ("Model", "Which model answered."),
    ("Version", "Which version of the model answered."),
    ("Route", "How the request was routed: the active version, or an explicitly chosen one."),
    ("Decision", "What the service did: answered, abstained, used a fallback or held out."),
    ("Output", "The model's answer: the predicted class, or the predicted value."),
    (
        "Confidence",
        "How sure the model was of its answer (probability of the predicted class). "
        "Low values mean the model was unsure.",
    ),
    ("Latency", "How long the backend took to answer, in milliseconds."),
    ("Entity", "The customer, card or other entity the request was about, if given."),
)


def _format_output(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class PredictionTableModel(QAbstractTableModel):
    def __init__(self, capacity: int = DEFAULT_CAPACITY):
        super().__init__()
        self.capacity = capacity
        # Newest first: index 0 is the top row.
        self._rows: deque[PredictionEvent] = deque()

    # ---------------------------------------------------------------- updates

    def add_events(self, events: list[PredictionEvent]) -> None:
        if not events:
            return
        events = events[-self.capacity :]
        overflow = len(self._rows) + len(events) - self.capacity
        if overflow > 0:
            first_gone = len(self._rows) - overflow
            self.beginRemoveRows(QModelIndex(), first_gone, len(self._rows) - 1)
            for _ in range(overflow):
                self._rows.pop()
            self.endRemoveRows()
        self.beginInsertRows(QModelIndex(), 0, len(events) - 1)
        self._rows.extendleft(events)  # reversed order on purpose: the last is newest, on top
        self.endInsertRows()

    def event_at(self, row: int) -> PredictionEvent | None:
        return self._rows[row] if 0 <= row < len(self._rows) else None

    # ---------------------------------------------------------------- Qt model

    def rowCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(COLUMNS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section][0]
        if role == Qt.ItemDataRole.ToolTipRole:
            return COLUMNS[section][1]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        event = self._rows[index.row()]
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(event, column)
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (6, 7):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole and column == 6 and event.confidence is not None:
            return f"The model gave its answer a probability of {event.confidence:.1%}."
        return None

    @staticmethod
    def _display(event: PredictionEvent, column: int) -> str:
        if column == 0:
            return time.strftime("%H:%M:%S", time.localtime(event.created_at)) + (
                f".{int(event.created_at % 1 * 1000):03d}"
            )
        if column == 1:
            return event.model
        if column == 2:
            return event.version
        if column == 3:
            return event.route
        if column == 4:
            return event.decision
        if column == 5:
            return _format_output(event.top_output)
        if column == 6:
            return "" if event.confidence is None else f"{event.confidence:.1%}"
        if column == 7:
            return f"{event.latency_ms:.2f} ms"
        return event.entity_id or ""


class PredictionFilter(QSortFilterProxyModel):
    """Filters by model, version and decision; an empty filter lets everything through."""

    def __init__(self) -> None:
        super().__init__()
        self.model_name = ""
        self.version = ""
        self.decision = ""

    def set_filters(self, model_name: str, version: str, decision: str) -> None:
        # Qt 6.9 replaced invalidateRowsFilter with the begin/end pair; 6.8 is still allowed.
        if hasattr(self, "beginFilterChange"):
            self.beginFilterChange()
            self.model_name, self.version, self.decision = model_name, version, decision
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            self.model_name, self.version, self.decision = model_name, version, decision
            self.invalidateRowsFilter()

    def filterAcceptsRow(self, source_row: int, source_parent: Index) -> bool:
        source = self.sourceModel()
        assert isinstance(source, PredictionTableModel)
        event = source.event_at(source_row)
        if event is None:
            return False
        return (
            (not self.model_name or event.model == self.model_name)
            and (not self.version or event.version == self.version)
            and (not self.decision or event.decision == self.decision)
        )
