"""The live prediction table: a ring buffer in a QAbstractTableModel, newest first.

It holds at most ``capacity`` predictions: each batch is inserted at the top and the oldest
rows fall off the bottom, with row insert/remove notifications (never a full reset), so
views and the filter proxy stay cheap at hundreds of predictions per second.

Classes read by their names (``set_models``), and the ground-truth label of a row shows once
the page learns it (``set_labels``): labels arrive later than predictions, and are matched to
rows by request id and row.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from PySide6.QtCore import (
    QModelIndex,
    QSortFilterProxyModel,
    Qt,
)

from backend.schemas import ModelInfo, PredictionEvent
from console.widgets.tables import Columns, ColumnTableModel, Index
from console.widgets.values import ClassNames, percent

DEFAULT_CAPACITY = 5_000

# What matters most first: on a small screen the columns on the right scroll out of view.
COLUMNS: Columns = (
    ("Time", "When the prediction was made (your local time)."),
    ("Model", "Which model answered."),
    ("Version", "Which version of the model answered."),
    ("Output", "The model's answer: the predicted class, or the predicted value."),
    (
        "Confidence",
        "How sure the model was of its answer (probability of the predicted class). "
        "Low values mean the model was unsure.",
    ),
    (
        "Label",
        "The ground truth, once someone or some system reported it (chargebacks arrive days "
        "later). Empty: no label yet.",
    ),
    ("Decision", "What the service did: answered, abstained, used a fallback or held out."),
    ("Route", "How the request was routed: the active version, or an explicitly chosen one."),
    ("Latency", "How long the backend took to answer, in milliseconds."),
    ("Entity", "The customer, card or other entity the request was about, if given."),
)


(
    TIME_COLUMN,
    MODEL_COLUMN,
    VERSION_COLUMN,
    OUTPUT_COLUMN,
    CONFIDENCE_COLUMN,
    LABEL_COLUMN,
    DECISION_COLUMN,
    ROUTE_COLUMN,
    LATENCY_COLUMN,
    ENTITY_COLUMN,
) = range(len(COLUMNS))
LabelKey = tuple[str, int]  # (request id, row)


class PredictionTableModel(ColumnTableModel):
    def __init__(self, capacity: int = DEFAULT_CAPACITY):
        super().__init__(COLUMNS)
        self.capacity = capacity
        # Newest first: index 0 is the top row.
        self.rows: deque[PredictionEvent] = deque()
        self._names: dict[tuple[str, str], ClassNames] = {}
        # Labels known for rows (kept for as many rows as the table holds, newest learnt last).
        self._labels: dict[LabelKey, Any] = {}

    def class_names(self, model: str, version: str) -> ClassNames:
        return self._names.get((model, version)) or ClassNames()

    def set_models(self, models: list[ModelInfo]) -> None:
        """The models' versions, for their class names."""
        for model in models:
            for version in model.versions:
                self._names[(model.name, version.version)] = ClassNames.of_version(version)
        self._columns_changed(OUTPUT_COLUMN, LABEL_COLUMN)

    def label_of(self, event: PredictionEvent) -> tuple[bool, Any]:
        key = (event.request_id, event.row)
        return key in self._labels, self._labels.get(key)

    def set_labels(self, labels: dict[LabelKey, Any]) -> None:
        """Labels learnt for (request id, row); rows showing one of them are redrawn."""
        if not labels:
            return
        self._labels.update(labels)
        while len(self._labels) > self.capacity:
            del self._labels[next(iter(self._labels))]
        changed = [
            row for row, event in enumerate(self.rows) if (event.request_id, event.row) in labels
        ]
        if changed:
            self.dataChanged.emit(
                self.index(min(changed), LABEL_COLUMN), self.index(max(changed), LABEL_COLUMN)
            )

    def _columns_changed(self, first: int, last: int) -> None:
        if self.rows:
            self.dataChanged.emit(self.index(0, first), self.index(len(self.rows) - 1, last))

    # ---------------------------------------------------------------- updates

    def add_events(self, events: list[PredictionEvent]) -> None:
        if not events:
            return
        events = events[-self.capacity :]
        overflow = len(self.rows) + len(events) - self.capacity
        if overflow > 0:
            first_gone = len(self.rows) - overflow
            self.beginRemoveRows(QModelIndex(), first_gone, len(self.rows) - 1)
            for _ in range(overflow):
                self.rows.pop()
            self.endRemoveRows()
        self.beginInsertRows(QModelIndex(), 0, len(events) - 1)
        self.rows.extendleft(events)  # reversed order on purpose: the last is newest, on top
        self.endInsertRows()

    def event_at(self, row: int) -> PredictionEvent | None:
        return self.rows[row] if 0 <= row < len(self.rows) else None

    # ---------------------------------------------------------------- Qt model

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        event = self.rows[index.row()]
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(event, column)
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (
            CONFIDENCE_COLUMN,
            LATENCY_COLUMN,
        ):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(event, column)
        return None

    def _tooltip(self, event: PredictionEvent, column: int) -> str | None:
        names = self.class_names(event.model, event.version)
        if column == CONFIDENCE_COLUMN and event.confidence is not None:
            return f"The model gave its answer a probability of {event.confidence:.1%}."
        if column == OUTPUT_COLUMN:
            return f"The model answered {names.described(event.top_output)}."
        if column == LABEL_COLUMN:
            known, label = self.label_of(event)
            if not known:
                return "No label yet: the ground truth usually arrives later."
            agrees = "agrees" if label == event.top_output else "does not agree"
            return f"The true outcome was {names.described(label)}: it {agrees} with the model."
        return None

    def _display(self, event: PredictionEvent, column: int) -> str:
        if column == TIME_COLUMN:
            return time.strftime("%H:%M:%S", time.localtime(event.created_at)) + (
                f".{int(event.created_at % 1 * 1000):03d}"
            )
        if column == MODEL_COLUMN:
            return event.model
        if column == VERSION_COLUMN:
            return event.version
        if column == ROUTE_COLUMN:
            return event.route
        if column == DECISION_COLUMN:
            return event.decision.replace("_", " ")
        if column == OUTPUT_COLUMN:
            return self.class_names(event.model, event.version).name(event.top_output)
        if column == CONFIDENCE_COLUMN:
            return "" if event.confidence is None else percent(event.confidence)
        if column == LABEL_COLUMN:
            known, label = self.label_of(event)
            return self.class_names(event.model, event.version).name(label) if known else ""
        if column == LATENCY_COLUMN:
            return f"{event.latency_ms:,.1f} ms"
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
