"""Performance: whether a version still performs as agreed, from labels and before them.

A chart of the realized and the estimated quality metric per window against the version's
acceptable band, the share of predictions labelled beneath, the words that say what it means
(calibration, warnings, why a regression model has no estimate), and a table of the windows.
Refreshed every 30 s while shown, through keyed tasks.
"""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QHideEvent, QKeySequence, QShowEvent
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QSizePolicy, QSpinBox, QVBoxLayout

from backend.schemas import ModelInfo, PerformanceReport
from console.context import ConsoleContext
from console.dialogs.errors import describe_error
from console.pages.base import ALL_ROLES, Page
from console.resources import colour
from console.widgets.common import make_button, make_label, make_splitter
from console.widgets.performance_chart import PerformanceChart
from console.widgets.performance_notes import PerformanceNotes, PerformanceWindows

# label, seconds
WINDOW_SIZES: tuple[tuple[str, int], ...] = (("Hourly windows", 3_600), ("Daily windows", 86_400))
MAX_WINDOWS = 48  # the API's bound
DEFAULT_WINDOWS = 24
REFRESH_MS = 30_000
SERVING = ""


class PerformancePage(Page):
    key = "performance"
    title = "Performance"
    icon = "performance"
    tooltip = (
        "Whether each version still performs as agreed: quality measured from labels, and "
        "estimated before labels arrive, against its acceptable range."
    )
    roles = ALL_ROLES

    def __init__(self, context: ConsoleContext):
        super().__init__(context)
        self.models: dict[str, ModelInfo] = {}
        self.report: PerformanceReport | None = None
        self.loaded_at: float | None = None
        settings = context.settings
        self._wanted_model = str(settings.value("performance/model", "") or "")

        self.model_choice = QComboBox()
        self.model_choice.setToolTip("The model whose quality is shown.")
        self.model_choice.setMinimumContentsLength(12)
        self.version_choice = QComboBox()
        self.version_choice.setToolTip(
            "The version whose predictions are measured (each is judged against its own "
            "acceptable range)."
        )
        self.version_choice.setMinimumContentsLength(12)
        self.version_choice.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.size_choice = QComboBox()
        self.size_choice.setToolTip("How long each window (each point on the chart) is.")
        for label, seconds in WINDOW_SIZES:
            self.size_choice.addItem(label, seconds)
        self.size_choice.setCurrentIndex(
            min(int(settings.value("performance/size", 0) or 0), len(WINDOW_SIZES) - 1)
        )
        self.count_choice = QSpinBox()
        self.count_choice.setRange(1, MAX_WINDOWS)
        self.count_choice.setValue(int(settings.value("performance/count", DEFAULT_WINDOWS) or 1))
        self.count_choice.setSuffix(" windows")
        self.count_choice.setToolTip("How many windows back the chart looks, the newest last.")
        self.refresh_button = make_button(
            "Refresh", "Measure again now (F5); the page also refreshes every 30 s.", self.refresh
        )
        self.refresh_button.setShortcut(QKeySequence("F5"))
        self.status = make_label("Not loaded yet.", name="muted")
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

        self.notes = PerformanceNotes()
        self.chart = PerformanceChart()
        self.windows = PerformanceWindows()
        # The words, the charts and the table share the height; on a small screen the reader
        # drags the handles rather than scrolling the page.
        self.splitter = make_splitter(
            Qt.Orientation.Vertical, (self.notes, 0), (self.chart, 3), (self.windows, 2)
        )
        self.splitter.setSizes([170, 420, 200])
        state = settings.value("performance/splitter")
        if state is not None:
            self.splitter.restoreState(state)

        selectors = QHBoxLayout()
        for label, widget in (
            ("Model", self.model_choice),
            ("Version", self.version_choice),
            ("Windows", self.size_choice),
        ):
            selectors.addWidget(make_label(label, widget.toolTip()))
            selectors.addWidget(widget)
        selectors.addWidget(self.count_choice)
        selectors.addWidget(self.refresh_button)
        selectors.addWidget(self.status, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(selectors)
        layout.addWidget(self.splitter, 1)

        self.model_choice.currentIndexChanged.connect(self._on_model_changed)
        self.version_choice.currentIndexChanged.connect(self._on_choice_changed)
        self.size_choice.currentIndexChanged.connect(self._on_choice_changed)
        self.count_choice.valueChanged.connect(self._on_choice_changed)
        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(lambda: self.refresh(replace=False))

    # ---------------------------------------------------------------- lifecycle

    def page_shown(self) -> None:
        self.fetch_models()

    def focus_model(self, model: str) -> None:
        """Another page sent the user here about ``model``."""
        self._wanted_model = model
        index = self.model_choice.findData(model)
        if index >= 0:
            self.model_choice.setCurrentIndex(index)

    def connection_changed(self, connected: bool) -> None:
        if connected and self.isVisible():
            self.fetch_models()
        elif not connected and self.report is not None:
            self._set_status("The backend is unreachable: showing the report as last loaded.")

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.timer.start()

    def hideEvent(self, event: QHideEvent) -> None:
        self.timer.stop()
        super().hideEvent(event)

    def shutdown(self) -> None:
        super().shutdown()
        self.timer.stop()
        settings = self.context.settings
        settings.setValue("performance/model", self.current_model() or self._wanted_model)
        settings.setValue("performance/size", self.size_choice.currentIndex())
        settings.setValue("performance/count", self.count_choice.value())
        settings.setValue("performance/splitter", self.splitter.saveState())

    # ---------------------------------------------------------------- choices

    def current_model(self) -> str:
        return str(self.model_choice.currentData() or "")

    def current_version(self) -> str:
        return str(self.version_choice.currentData() or "")

    def fetch_models(self) -> None:
        self.call_backend(
            "models",
            lambda client: client.models(),
            self._on_models,
            lambda error: self._set_status(
                f"Could not load the models: {describe_error(error)}", "bad"
            ),
        )

    def _on_models(self, models: list[ModelInfo]) -> None:
        self.models = {model.name: model for model in models}
        wanted = self.current_model() or self._wanted_model
        box = self.model_choice
        box.blockSignals(True)
        try:
            box.clear()
            for name in sorted(self.models):
                box.addItem(name, name)
            box.setCurrentIndex(max(box.findData(wanted), 0))
        finally:
            box.blockSignals(False)
        if not self.models:
            self.notes.show_message(
                "No models yet", "Quality appears here once a model is registered and serves."
            )
            self._set_status("")
            return
        self._fill_versions()
        self.refresh()

    def _fill_versions(self) -> None:
        model = self.models.get(self.current_model())
        wanted = self.current_version()
        box = self.version_choice
        box.blockSignals(True)
        try:
            box.clear()
            active = model.active_version if model else None
            box.addItem(f"Serving version ({active})" if active else "Serving version", SERVING)
            for version in reversed(model.versions if model else []):
                box.addItem(f"Version {version.version}", version.version)
            box.setCurrentIndex(max(box.findData(wanted), 0))
        finally:
            box.blockSignals(False)

    def _on_model_changed(self, _index: int) -> None:
        self._wanted_model = self.current_model()
        self._fill_versions()
        self._on_choice_changed(0)

    def _on_choice_changed(self, _value: int) -> None:
        self.report = None
        self.chart.clear()
        self.windows.set_rows([])
        self.refresh()

    # ---------------------------------------------------------------- loading

    def refresh(self, replace: bool = True) -> None:
        model = self.current_model()
        if not model:
            return
        version = self.current_version() or None
        window_s = int(self.size_choice.currentData())
        count = self.count_choice.value()
        self._set_status("Measuring…")
        self.call_backend(
            "report",
            lambda client: client.performance(model, version, window_s, count),
            self._on_report,
            self._on_report_failed,
            replace=replace,
        )

    def _on_report(self, report: PerformanceReport) -> None:
        self.report = report
        self.loaded_at = time.time()
        self.notes.show_report(report)
        self.chart.show_report(report)
        self.windows.show_report(report)
        self._set_status(f"Updated {time.strftime('%H:%M:%S')}; refreshes every 30 s.")

    def _on_report_failed(self, error: Exception) -> None:
        reason = describe_error(error)
        if self.report is None:
            self.notes.show_message(
                "No performance report", f"The backend gave none: {reason}", "bad"
            )
        self._set_status(f"Could not load the performance report: {reason}", "bad")

    def _set_status(self, text: str, tone: str = "muted") -> None:
        self.status.setText(text)
        self.status.setStyleSheet(f"color: {colour(tone)};")
        self.status.setToolTip(text)
