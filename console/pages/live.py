"""Live predictions: a streaming table with filters and details, and live charts."""

from __future__ import annotations

from collections import deque
from typing import Any

from PySide6.QtCore import QItemSelection, Qt, QTimer
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableView,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from backend.schemas import (
    DECISIONS,
    FeedbackResponse,
    ModelInfo,
    PredictionEvent,
    PredictionRecord,
)
from console.client import ApiClient
from console.context import ConsoleContext
from console.dialogs.errors import describe_error
from console.event_stream import PredictionStream
from console.pages.base import ALL_ROLES, Page
from console.tasks import TaskState
from console.widgets.common import plain_text
from console.widgets.label_panel import LabelPanel
from console.widgets.live_charts import LiveCharts
from console.widgets.prediction_table import PredictionFilter, PredictionTableModel

SERIES_POLL_MS = {1: 1_000, 60: 30_000}
ALL = ""
# The log writes within about a second: a label lookup looks again a few times before giving up.
LOOKUP_RETRIES = 5
LOOKUP_RETRY_S = 0.7


class LivePage(Page):
    key = "live"
    title = "Live predictions"
    icon = "live"
    tooltip = "Predictions as they happen, with charts of traffic, speed and confidence."
    roles = ALL_ROLES

    def __init__(self, context: ConsoleContext, table_capacity: int = 5_000):
        super().__init__(context)
        self.table = PredictionTableModel(table_capacity)
        self.filtered = PredictionFilter()
        self.filtered.setSourceModel(self.table)
        self.paused = False
        self._held: deque[PredictionEvent] = deque(maxlen=table_capacity)
        self.received_total = 0
        self.missed_total = 0
        self.stream_state = "waiting"
        self.shown_event: PredictionEvent | None = None
        # The models seen so far, for the label dialog's classes: fetched once, not per row.
        self.models: dict[str, ModelInfo] = {}
        # (model, version) pairs already offered in the filters: one set lookup per event.
        self._seen: set[tuple[str, str]] = set()
        self._filtered_model: str | None = None

        self.stream = PredictionStream(context.client)
        self.stream.received.connect(self._on_events)
        self.stream.state_changed.connect(self._on_stream_state)

        self.model_filter = self._filter_box("All models", "Show only this model's predictions.")
        self.version_filter = self._filter_box("All versions", "Show only this version.")
        self.decision_filter = self._filter_box(
            "All outcomes", "Show only predictions with this outcome."
        )
        for decision in DECISIONS:
            self.decision_filter.addItem(decision.replace("_", " "), decision)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.setShortcut("Ctrl+P")
        self.pause_button.setToolTip(
            "Freeze the table to read it (Ctrl+P); new predictions are kept and shown on resume."
        )
        self.pause_button.toggled.connect(self.set_paused)
        self.status = QLabel("Waiting for predictions…")
        self.status.setObjectName("muted")

        self.view = QTableView()
        self.view.setModel(self.filtered)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.verticalHeader().setVisible(False)
        self.view.verticalHeader().setDefaultSectionSize(22)
        self.view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.view.horizontalHeader().setStretchLastSection(True)
        for column, width in enumerate((100, 90, 60, 70, 80, 80, 85, 85)):
            self.view.setColumnWidth(column, width)
        self.view.setAlternatingRowColors(True)
        self.view.setToolTip("The most recent predictions, newest on top.")
        self.view.selectionModel().selectionChanged.connect(self._on_selection)

        self.details = QTreeWidget()
        self.details.setHeaderLabels(["Field", "Value"])
        self.details.setToolTip("Everything about the selected prediction.")
        self.details.setColumnWidth(0, 170)
        self.label_panel = LabelPanel()
        self.label_panel.label_chosen.connect(self.record_label)
        detail_box = QWidget()
        detail_layout = QVBoxLayout(detail_box)
        detail_layout.setContentsMargins(0, 0, 0, 0)
        detail_layout.addWidget(self.label_panel)
        detail_layout.addWidget(self.details, 1)

        self.charts = LiveCharts()
        self.charts.window_choice.currentIndexChanged.connect(self._on_window_changed)

        filters = QHBoxLayout()
        for widget in (self.model_filter, self.version_filter, self.decision_filter):
            filters.addWidget(widget)
        filters.addWidget(self.pause_button)
        filters.addWidget(self.status, 1)

        lower = QSplitter(Qt.Orientation.Horizontal)
        lower.addWidget(self.view)
        lower.addWidget(detail_box)
        lower.setStretchFactor(0, 3)
        lower.setStretchFactor(1, 2)
        table_box = QWidget()
        table_layout = QVBoxLayout(table_box)
        table_layout.setContentsMargins(0, 0, 0, 0)
        table_layout.addLayout(filters)
        table_layout.addWidget(lower, 1)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.charts)
        self.splitter.addWidget(table_box)
        self.splitter.setStretchFactor(0, 2)
        self.splitter.setStretchFactor(1, 3)
        self.splitter.setSizes([420, 480])
        lower.setSizes([760, 440])
        layout = QVBoxLayout(self)
        layout.addWidget(self.splitter)

        self._restore_settings()
        for box in (self.model_filter, self.version_filter, self.decision_filter):
            box.currentIndexChanged.connect(self._apply_filters)
        self._apply_filters()

        self.series_timers: dict[int, QTimer] = {}
        for resolution, interval in SERIES_POLL_MS.items():
            timer = QTimer(self)
            timer.setInterval(interval)
            timer.timeout.connect(lambda r=resolution: self.poll_series(r))
            self.series_timers[resolution] = timer

    # ---------------------------------------------------------------- lifecycle

    def connection_changed(self, connected: bool) -> None:
        if connected:
            self.stream.start()
            for resolution, timer in self.series_timers.items():
                timer.start()
                self.poll_series(resolution)

    def shutdown(self) -> None:
        super().shutdown()
        self.stream.stop()
        for timer in self.series_timers.values():
            timer.stop()
        self.charts.timer.stop()
        self._save_settings()

    # ---------------------------------------------------------------- stream

    def _on_events(self, events: list[PredictionEvent], missed: int) -> None:
        self.received_total += len(events)
        self.missed_total += missed
        for event in events:
            key = (event.model, event.version)
            if key not in self._seen:
                self._seen.add(key)
                self._remember_choice(self.model_filter, event.model)
                self._remember_choice(self.version_filter, event.version)
        if self.paused:
            self._held.extend(events)
        else:
            self.table.add_events(events)
        self._show_status()

    def _on_stream_state(self, state: str) -> None:
        self.stream_state = state
        self._show_status()

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        self.pause_button.setText("Resume" if paused else "Pause")
        if not paused and self._held:
            self.table.add_events(list(self._held))
            self._held.clear()
        self._show_status()

    def _show_status(self) -> None:
        state = self.stream_state
        parts = [f"{self.received_total:,} received"]
        if self.paused:
            parts.append(f"paused, {len(self._held):,} new waiting")
        if self.missed_total:
            parts.append(f"{self.missed_total:,} skipped while disconnected")
        if state != "streaming":
            parts.append(
                "stream refused: this token may not read predictions"
                if state == "refused"
                else "stream interrupted, reconnecting…"
            )
        self.status.setText(" · ".join(parts))

    # ---------------------------------------------------------------- charts

    def poll_series(self, resolution: int, replace: bool = False) -> None:
        """Fetch the statistics after the newest bucket shown.

        A poll keeps one still on its way (it brings the same news); ``replace`` drops it,
        for when the question changed (another model chosen).
        """
        since = self.charts.last_time(resolution)
        model = self.model_filter.currentData() or None
        self.call_backend(
            f"series/{resolution}",
            lambda client: client.live_series(resolution, since=since, model=model),
            self.charts.add_series,
            self._series_failed,
            replace=replace,
        )

    @staticmethod
    def _series_failed(_error: Exception) -> None:
        """The charts stay as they are; the next poll tries again, the banner says why."""

    def _on_window_changed(self, _index: int) -> None:
        self.poll_series(self.charts.resolution)

    # ---------------------------------------------------------------- filters and details

    def _filter_box(self, everything: str, tooltip: str) -> QComboBox:
        box = QComboBox()
        box.addItem(everything, ALL)
        box.setToolTip(tooltip)
        box.setMinimumContentsLength(12)
        return box

    @staticmethod
    def _remember_choice(box: QComboBox, value: str) -> None:
        if box.findData(value) < 0:
            box.addItem(value, value)

    def _apply_filters(self) -> None:
        model = self.model_filter.currentData() or ""
        previous_model = self._filtered_model
        self.filtered.set_filters(
            model, self.version_filter.currentData() or "", self.decision_filter.currentData() or ""
        )
        if previous_model is not None and model != previous_model:
            # The charts follow the model filter: start their buffers over for that model.
            for buffer in self.charts.buffers.values():
                buffer.clear()
            for resolution in self.series_timers:
                self.poll_series(resolution, replace=True)
        self._filtered_model = model

    def _on_selection(self, selected: QItemSelection, _deselected: QItemSelection) -> None:
        indexes = selected.indexes()
        if not indexes:
            return
        source = self.filtered.mapToSource(indexes[0])
        event = self.table.event_at(source.row())
        if event is not None:
            self.show_details(event)

    def show_details(self, event: PredictionEvent) -> None:
        self.details.clear()
        general = QTreeWidgetItem(["Prediction"])
        for name, value in (
            ("request id", event.request_id),
            ("row", event.row),
            ("model", f"{event.model} version {event.version}"),
            ("route", event.route),
            ("decision", event.decision),
            ("output", event.top_output),
            ("confidence", "" if event.confidence is None else f"{event.confidence:.2%}"),
            ("latency", f"{event.latency_ms:.2f} ms"),
            ("entity", event.entity_id or "—"),
        ):
            general.addChild(QTreeWidgetItem([name, str(value)]))
        features = QTreeWidgetItem(["Features"])
        for name, value in event.features.items():
            features.addChild(QTreeWidgetItem([name, plain_text(value)]))
        outputs = QTreeWidgetItem(["Outputs"])
        for name, value in event.outputs.items():
            outputs.addChild(QTreeWidgetItem([name, plain_text(value)]))
        for item in (general, features, outputs):
            self.details.addTopLevelItem(item)
            item.setExpanded(True)
        self.shown_event = event
        self.look_up_label(event)

    # ---------------------------------------------------------------- labels

    def look_up_label(self, event: PredictionEvent) -> None:
        """Look up the label of ``event`` (replacing the lookup of the one selected before)."""
        self.label_panel.show_prediction(event, self.models.get(event.model))
        known = event.model in self.models
        client = self.context.client

        def look_up(state: TaskState) -> tuple[PredictionRecord | None, list[ModelInfo]]:
            models = [] if known else client.models()
            record = _logged_row(event, client)
            for _retry in range(LOOKUP_RETRIES):
                if record is not None:
                    break
                state.set_partial_result((None, models))  # "not in the log yet", for now
                if state.wait(LOOKUP_RETRY_S):
                    break  # another prediction was selected
                record = _logged_row(event, client)
            return record, models

        self.run_task(
            "label",
            look_up,
            self._show_label,
            lambda error: self.label_panel.show_lookup_failed(describe_error(error)),
            on_partial_result=self._show_label,
        )

    def _show_label(self, found: tuple[PredictionRecord | None, list[ModelInfo]]) -> None:
        record, models = found
        self.models.update((model.name, model) for model in models)
        shown = self.label_panel.shown
        if shown is not None and shown.model in self.models:
            self.label_panel.set_model(self.models[shown.model])
        self.label_panel.show_record(record)

    def record_label(self, event: PredictionEvent, label: Any) -> None:
        def done(response: FeedbackResponse) -> None:
            self.label_panel.show_recorded(event, label, bool(response.unmatched))

        self.call_backend(
            "record-label",
            lambda client: client.post_label(event.request_id, event.row, label),
            done,
            lambda error: self.label_panel.show_not_recorded(event, describe_error(error)),
        )

    # ---------------------------------------------------------------- settings

    def _restore_settings(self) -> None:
        settings = self.context.settings
        for key, box in (
            ("live/model", self.model_filter),
            ("live/version", self.version_filter),
            ("live/decision", self.decision_filter),
        ):
            value = str(settings.value(key, "") or "")
            if value:
                self._remember_choice(box, value)
                box.setCurrentIndex(box.findData(value))
        window = int(settings.value("live/window", 0) or 0)
        self.charts.window_choice.setCurrentIndex(window)
        state = settings.value("live/splitter")
        if state is not None:
            self.splitter.restoreState(state)

    def _save_settings(self) -> None:
        settings = self.context.settings
        settings.setValue("live/model", self.model_filter.currentData() or "")
        settings.setValue("live/version", self.version_filter.currentData() or "")
        settings.setValue("live/decision", self.decision_filter.currentData() or "")
        settings.setValue("live/window", self.charts.window_choice.currentIndex())
        settings.setValue("live/splitter", self.splitter.saveState())


def _logged_row(event: PredictionEvent, client: ApiClient) -> PredictionRecord | None:
    """The logged row of ``event``; a shadow copy shares its request id, so match version and
    route too."""
    for record in client.logged_predictions(event.request_id):
        if (record.row, record.version, record.route) == (event.row, event.version, event.route):
            return record
    return None
