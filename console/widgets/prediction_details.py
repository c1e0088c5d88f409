"""Everything about one prediction, or about the predictions a request-id search found.

Feature names are never cut (the name column is as wide as the longest name) and values read
as people read them: classes by name, probabilities per class, numbers to a sensible precision.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHeaderView, QTreeWidget, QTreeWidgetItem

from backend.schemas import PredictionEvent, PredictionRecord
from console.widgets.values import ClassNames, percent, readable

NamesOf = Callable[[str, str], ClassNames]
MATCH_ROLE = Qt.ItemDataRole.UserRole
NOTHING_SELECTED = "Select a prediction in the table, or find one by its request id."


def _day(created_at: float) -> str:
    return time.strftime("%Y-%m-%d", time.localtime(created_at))


def _time(created_at: float) -> str:
    """The time of day to the millisecond (the day is a row of its own: short values fit)."""
    return time.strftime("%H:%M:%S", time.localtime(created_at)) + (
        f".{int(created_at % 1 * 1000):03d}"
    )


class PredictionDetails(QTreeWidget):
    # A search result was chosen: the label panel shows and records its label.
    match_chosen = Signal(object)  # PredictionRecord

    def __init__(self) -> None:
        super().__init__()
        self.setHeaderLabels(["Field", "Value"])
        self.setToolTip("Everything about the selected prediction.")
        header = self.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        # Long values wrap onto more lines instead of being cut.
        self.setWordWrap(True)
        self.setTextElideMode(Qt.TextElideMode.ElideNone)
        # Search results nest three deep: a small indent leaves the room to the values.
        self.setIndentation(10)
        self.matches: list[PredictionRecord] = []
        self.currentItemChanged.connect(self._on_current)
        self.show_nothing(NOTHING_SELECTED)

    def show_nothing(self, why: str) -> None:
        """No prediction to show, and why (nothing selected, or filtered out)."""
        self._reset()
        item = QTreeWidgetItem([why])
        item.setToolTip(0, why)
        self.addTopLevelItem(item)
        item.setFirstColumnSpanned(True)

    def show_event(self, event: PredictionEvent, names: ClassNames) -> None:
        self._reset()
        general = self._group("Prediction")
        for name, value in (
            ("request id", event.request_id),
            ("row", str(event.row)),
            ("day", _day(event.created_at)),
            ("time", _time(event.created_at)),
            ("model", f"{event.model} version {event.version}"),
            ("route", event.route),
            ("decision", event.decision.replace("_", " ")),
            ("output", names.described(event.top_output)),
            ("confidence", "" if event.confidence is None else percent(event.confidence)),
            ("latency", f"{event.latency_ms:,.2f} ms"),
            ("entity", event.entity_id or "—"),
        ):
            self._field(general, name, value)
        self._features_and_outputs(event, names)

    def show_matches(self, request_id: str, found: list[PredictionRecord], names_of: NamesOf):
        """The predictions logged under ``request_id``: a request id is unique only within a
        model, so several models' predictions may share it."""
        self._reset()
        self.matches = found
        if not found:
            self.show_nothing(
                f"No prediction with request id {request_id!r} is in the log. Check the id "
                "(it is case-sensitive); a prediction is in the log about a second after it "
                "was answered."
            )
            return
        models = sorted({record.model for record in found})
        choose = ": select one to see or record its label" if len(found) > 1 else ""
        heading = QTreeWidgetItem(
            [
                f"{len(found)} prediction{'s' if len(found) > 1 else ''} with request id "
                f"{request_id} ({', '.join(models)}){choose}"
            ]
        )
        heading.setToolTip(0, heading.text(0))
        self.addTopLevelItem(heading)
        heading.setFirstColumnSpanned(True)
        for index, record in enumerate(found):
            names = names_of(record.model, record.version)
            predicted = record.outputs.get("predict")
            item = self._group(
                f"{record.model} v{record.version}, row {record.row}: {names.name(predicted)}"
            )
            item.setData(0, MATCH_ROLE, index)
            for name, value in (
                ("day", _day(record.created_at)),
                ("time", _time(record.created_at)),
                ("route", record.route),
                (
                    "label",
                    "no label yet" if record.label is None else names.described(record.label),
                ),
                ("latency", f"{record.latency_ms:,.2f} ms"),
                ("entity", record.entity_id or "—"),
                ("token", record.token_name),
            ):
                self._field(item, name, value)
            self._features_and_outputs(record, names, parent=item)
            item.setExpanded(len(found) == 1)

    # ---------------------------------------------------------------- building

    def _reset(self) -> None:
        self.matches = []
        self.blockSignals(True)  # clearing moves the current item: that is no choice
        try:
            self.clear()
        finally:
            self.blockSignals(False)

    def _group(self, title: str, parent: QTreeWidgetItem | None = None) -> QTreeWidgetItem:
        item = QTreeWidgetItem([title])
        item.setToolTip(0, title)
        if parent is None:
            self.addTopLevelItem(item)
        else:
            parent.addChild(item)
        item.setFirstColumnSpanned(True)
        item.setExpanded(True)
        return item

    @staticmethod
    def _field(parent: QTreeWidgetItem, name: str, value: str) -> None:
        item = QTreeWidgetItem([name, value])
        item.setToolTip(0, name)
        item.setToolTip(1, value)
        parent.addChild(item)

    def _features_and_outputs(
        self,
        prediction: PredictionEvent | PredictionRecord,
        names: ClassNames,
        parent: QTreeWidgetItem | None = None,
    ) -> None:
        features = self._group("Features", parent)
        for name, value in prediction.features.items():
            self._field(features, name, readable(value))
        outputs = self._group("Outputs", parent)
        for name, value in prediction.outputs.items():
            self._field(outputs, _OUTPUT_NAMES.get(name, name), names.output(name, value))

    def _on_current(self, current: QTreeWidgetItem | None, _previous: object) -> None:
        while current is not None and current.data(0, MATCH_ROLE) is None:
            current = current.parent()
        if current is not None:
            self.match_chosen.emit(self.matches[int(current.data(0, MATCH_ROLE))])


_OUTPUT_NAMES = {"predict": "answer", "predict_proba": "probability per class"}
