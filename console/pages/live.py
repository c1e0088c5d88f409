"""Live predictions: a streaming table with filters and details, and live charts.

The charts follow the model and version filters; the table shows classes by name and the
ground-truth label once it arrives; a prediction can be found by the request id an end user
quotes (a request id is unique only within a model, so every model's match is shown).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from PySide6.QtCore import QItemSelection, Qt, QTimer
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QSplitter,
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
from backend.schemas.reports import ReportCreate
from console.client import ApiClient
from console.context import ConsoleContext
from console.dialogs.errors import describe_error
from console.event_stream import PredictionStream
from console.pages.base import ALL_ROLES, Page
from console.tasks import TaskState
from console.widgets.label_panel import LabelPanel
from console.widgets.live_charts import LiveCharts
from console.widgets.prediction_details import NOTHING_SELECTED, PredictionDetails
from console.widgets.prediction_table import PredictionFilter, PredictionTableModel
from console.widgets.prediction_view import PredictionView
from console.widgets.values import ClassNames

SERIES_POLL_MS = {1: 1_000, 60: 30_000}
ALL = ""
# The log writes within about a second: a label lookup looks again a few times before giving up.
LOOKUP_RETRIES = 5
LOOKUP_RETRY_S = 0.7
# Labels arrive later than predictions: the newest logged predictions are read this often for
# the labels of the rows on screen.
LABELS_POLL_MS = 10_000
LABELS_POLL_ROWS = 500
MAX_REQUEST_ID_LENGTH = 64


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
        # The (model, version) the charts show; None before the filters are first applied.
        self._filtered_model: tuple[str, str] | None = None

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
        # Never wider than the window: on a small screen the status is cut, not the page.
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

        self.view = PredictionView(self.filtered)
        self.view.selectionModel().selectionChanged.connect(self._on_selection)
        self.empty_note = self.view.empty_note
        for signal in (
            self.table.rowsInserted,  # the count of rows filtered out, in the note
            self.filtered.rowsInserted,
            self.filtered.rowsRemoved,
            self.filtered.modelReset,
            self.filtered.layoutChanged,
        ):
            signal.connect(self._show_empty_note)

        self.search = QLineEdit()
        self.search.setPlaceholderText("Find a request id…")
        self.search.setClearButtonEnabled(True)
        self.search.setMaxLength(MAX_REQUEST_ID_LENGTH)
        self.search.setToolTip(
            "Find a prediction by the request id an end user quotes (press Enter). Every "
            "model's prediction with that id is shown, from the whole log, not only this table."
        )
        self.search.returnPressed.connect(self.find_request)

        self.details = PredictionDetails()
        self.details.match_chosen.connect(self._on_match_chosen)
        self.label_panel = LabelPanel()
        self.label_panel.label_chosen.connect(self.record_label)
        self.label_panel.report_requested.connect(self.file_report)
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
        filters.addWidget(self.search)
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
        lower.setSizes([600, 400])
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
        self.labels_timer = QTimer(self)
        self.labels_timer.setInterval(LABELS_POLL_MS)
        self.labels_timer.timeout.connect(self.poll_labels)
        self._show_empty_note()

    # ---------------------------------------------------------------- lifecycle

    def connection_changed(self, connected: bool) -> None:
        if connected:
            self.stream.start()
            self.fetch_models()
            self.labels_timer.start()
            for resolution, timer in self.series_timers.items():
                timer.start()
                self.poll_series(resolution)

    def focus_model(self, model: str) -> None:
        self._remember_choice(self.model_filter, model)
        self.model_filter.setCurrentIndex(self.model_filter.findData(model))

    def backend_stopped(self) -> None:
        # The stream would otherwise say "reconnecting" under a banner saying nothing comes
        # back by itself: one message, and it tells the truth.
        self.stream.stop()
        self.stream_state = "stopped"
        self._show_status()

    def shutdown(self) -> None:
        super().shutdown()
        self.stream.stop()
        for timer in (*self.series_timers.values(), self.labels_timer):
            timer.stop()
        self.charts.timer.stop()
        self._save_settings()

    # ---------------------------------------------------------------- stream

    def _on_events(self, events: list[PredictionEvent], missed: int) -> None:
        self.received_total += len(events)
        self.missed_total += missed
        new_versions = False
        for event in events:
            key = (event.model, event.version)
            if key not in self._seen:
                self._seen.add(key)
                new_versions = True
                self._remember_choice(self.model_filter, event.model)
        if new_versions:
            self._fill_versions()
            if any(key[0] not in self.models for key in self._seen) or any(
                not any(v.version == version for v in self.models[model].versions)
                for model, version in self._seen
                if model in self.models
            ):
                self.fetch_models()  # a version registered since: its class names
        if self.paused:
            self._held.extend(events)
        else:
            self.table.add_events(events)
        self._show_status()

    def _on_stream_state(self, state: str) -> None:
        if self.stream_state == "stopped":
            return  # a last word of the stream's thread, queued before it was stopped
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
                {
                    "refused": "stream refused: this token may not read predictions",
                    "stopped": "the backend stopped: nothing new arrives until it is restarted",
                }.get(state, "stream interrupted, reconnecting…")
            )
        self.status.setText(" · ".join(parts))
        self.status.setToolTip(self.status.text())

    # ---------------------------------------------------------------- charts

    def poll_series(self, resolution: int, replace: bool = False) -> None:
        """Fetch the statistics after the newest bucket shown.

        A poll keeps one still on its way (it brings the same news); ``replace`` drops it,
        for when the question changed (another model or version chosen).
        """
        since = self.charts.last_time(resolution)
        model = self.model_filter.currentData() or None
        version = (self.version_filter.currentData() or None) if model else None
        self.call_backend(
            f"series/{resolution}",
            lambda client: client.live_series(
                resolution, since=since, model=model, version=version
            ),
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

    def _fill_versions(self) -> None:
        """The version filter offers the versions seen of the model chosen (of all models when
        none is chosen)."""
        model = self.model_filter.currentData() or ""
        wanted = self.version_filter.currentData() or ""
        versions = sorted(
            {v for m, v in self._seen if not model or m == model}, key=lambda v: (len(v), v)
        )
        if wanted:
            versions = sorted({*versions, wanted}, key=lambda v: (len(v), v))
        box = self.version_filter
        box.blockSignals(True)
        try:
            while box.count() > 1:
                box.removeItem(1)
            for version in versions:
                box.addItem(version, version)
            box.setCurrentIndex(max(box.findData(wanted), 0))
        finally:
            box.blockSignals(False)

    def _apply_filters(self) -> None:
        if self.sender() is self.model_filter:
            self._fill_versions()
        model = self.model_filter.currentData() or ""
        version = self.version_filter.currentData() or ""
        self.filtered.set_filters(model, version, self.decision_filter.currentData() or "")
        # The charts follow the model and version filters (a version only within a model).
        scope = (model, version if model else "")
        if scope != self._filtered_model:
            self.charts.set_scope(*scope)
            if self._filtered_model is not None:
                for resolution in self.series_timers:
                    self.poll_series(resolution, replace=True)
        self._filtered_model = scope
        if not self.view.selectionModel().hasSelection():
            self._clear_details()
        self._show_empty_note()

    def _clear_details(self) -> None:
        """The prediction shown is no longer in the table as filtered: show nothing stale."""
        if self.shown_event is None:
            return
        self.shown_event = None
        self.cancel_task("label")
        self.details.show_nothing(NOTHING_SELECTED)
        self.label_panel.clear("Select a prediction to see its details.")

    def _show_empty_note(self) -> None:
        """Say what an empty table means: nothing arrived yet, or the filters hide everything."""
        if self.filtered.rowCount() > 0:
            self.view.show_empty_note(None)
            return
        if self.table.rowCount() == 0:
            text = (
                "No predictions yet. They appear here as the models answer requests; if none "
                "arrive, check that clients are sending (the status on the right says whether "
                "the live stream is connected)."
            )
        else:
            chosen = [
                f"{what} {box.currentText()}"
                for what, box in (
                    ("model", self.model_filter),
                    ("version", self.version_filter),
                    ("outcome", self.decision_filter),
                )
                if box.currentData()
            ]
            text = (
                f"None of the {self.table.rowCount():,} predictions in the table match the "
                f"filters ({', '.join(chosen)}). Matching predictions appear as they arrive; "
                "choose “All …” in a filter to see the others."
            )
        self.view.show_empty_note(text)

    def _on_selection(self, selected: QItemSelection, _deselected: QItemSelection) -> None:
        indexes = selected.indexes()
        if not indexes:
            if not self.view.selectionModel().hasSelection():
                self._clear_details()
            return
        source = self.filtered.mapToSource(indexes[0])
        event = self.table.event_at(source.row())
        if event is not None:
            self.show_details(event)

    def show_details(self, event: PredictionEvent) -> None:
        self.details.show_event(event, self.table.class_names(event.model, event.version))
        self.shown_event = event
        self.look_up_label(event)

    # ---------------------------------------------------------------- models and labels

    def fetch_models(self) -> None:
        """The models' versions, for their class names (once, and when a new version shows)."""
        self.call_backend("models", lambda client: client.models(), self._on_models)

    def _on_models(self, models: list[ModelInfo]) -> None:
        self.models.update((model.name, model) for model in models)
        self.table.set_models(models)
        shown = self.label_panel.shown
        if shown is not None and shown.model in self.models:
            self.label_panel.set_model(self.models[shown.model])
        if self.shown_event is not None:
            self.show_details(self.shown_event)

    def poll_labels(self) -> None:
        """Labels that arrived for the newest predictions (they come later than predictions)."""
        if self.table.rowCount() == 0:
            return
        model = self.model_filter.currentData() or None
        self.call_backend(
            "labels",
            lambda client: client.recent_predictions(model, LABELS_POLL_ROWS),
            self._on_recent,
        )

    def _on_recent(self, records: list[PredictionRecord]) -> None:
        self.table.set_labels(
            {(r.request_id, r.row): r.label for r in records if r.label is not None}
        )

    # ---------------------------------------------------------------- finding a request

    def find_request(self) -> None:
        request_id = self.search.text().strip()
        if not request_id:
            self.details.show_nothing("Type a request id to find, then press Enter.")
            return
        self.shown_event = None
        self.view.clearSelection()
        self.cancel_task("label")
        self.label_panel.clear(f"Looking for request id {request_id}…")
        self.details.show_nothing(f"Looking for request id {request_id}…")

        def load(client: ApiClient) -> tuple[list[PredictionRecord], list[ModelInfo]]:
            found = client.logged_predictions(request_id)
            known = all(record.model in self.models for record in found)
            return found, ([] if known else client.models())

        self.call_backend(
            "find",
            load,
            lambda result: self._show_found(request_id, *result),
            lambda error: self._find_failed(request_id, error),
        )

    def _show_found(
        self, request_id: str, found: list[PredictionRecord], models: list[ModelInfo]
    ) -> None:
        if models:
            self._on_models(models)
        self.details.show_matches(
            request_id, found, lambda model, version: ClassNames.of(self.models.get(model), version)
        )
        self.label_panel.clear(
            f"{len(found)} found: select one in the details to see or record its label."
            if len(found) > 1
            else "Not found."
            if not found
            else ""
        )
        if len(found) == 1:
            self._on_match_chosen(found[0])

    def _find_failed(self, request_id: str, error: Exception) -> None:
        self.details.show_nothing(
            f"Could not look for request id {request_id}: {describe_error(error)}"
        )
        self.label_panel.clear("")

    def _on_match_chosen(self, record: PredictionRecord) -> None:
        """A search result was chosen: its label is shown and can be recorded."""
        self.label_panel.show_prediction(_event_of(record), self.models.get(record.model))
        self.label_panel.show_record(record)

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
        if models:
            self._on_models(models)
        if record is not None and record.label is not None:
            self.table.set_labels({(record.request_id, record.row): record.label})
        self.label_panel.show_record(record)

    def record_label(self, event: PredictionEvent, label: Any) -> None:
        def done(response: FeedbackResponse) -> None:
            self.table.set_labels({(event.request_id, event.row): label})
            self.label_panel.show_recorded(event, label, bool(response.unmatched))

        self.call_backend(
            "record-label",
            lambda client: client.post_label(event.model, event.request_id, event.row, label),
            done,
            lambda error: self.label_panel.show_not_recorded(event, describe_error(error)),
        )

    def file_report(self, event: PredictionEvent, report: ReportCreate) -> None:
        """File an error report on ``event`` (one at a time per prediction)."""
        self.call_backend(
            f"report/{event.model}/{event.request_id}/{event.row}",
            lambda client: client.file_report(report),
            lambda status: self.label_panel.show_report_filed(event, status.id, status.headline),
            lambda error: self.label_panel.show_report_not_filed(event, describe_error(error)),
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


def _event_of(record: PredictionRecord) -> PredictionEvent:
    """A logged prediction as the label panel takes one (the log keeps answered ones only)."""
    probabilities = record.outputs.get("predict_proba")
    return PredictionEvent(
        **record.model_dump(exclude={"token_name", "label"}),
        seq=-1,
        decision="answered",
        top_output=record.outputs.get("predict"),
        confidence=max(probabilities)
        if isinstance(probabilities, list) and probabilities
        else None,
    )


def _logged_row(event: PredictionEvent, client: ApiClient) -> PredictionRecord | None:
    """The logged row of ``event``; a shadow copy shares its request id, so match version and
    route too."""
    for record in client.logged_predictions(event.request_id):
        if (record.row, record.version, record.route) == (event.row, event.version, event.route):
            return record
    return None
