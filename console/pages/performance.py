"""Performance: whether a version still performs as agreed, from labels and before them.

A chart of the realized and the estimated quality metric per window against the version's
acceptable band, the share of predictions labelled beneath, the words that say what it means
(calibration, warnings, why a regression model has no estimate), and a table of the windows.
Refreshed every 30 s while shown, through keyed tasks.
"""

from __future__ import annotations

import time

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QVBoxLayout

from backend.schemas import PerformanceReport
from console.context import ConsoleContext
from console.dialogs.errors import describe_error
from console.pages.base import ENGINEERING_ROLES
from console.pages.refreshing import ModelPage
from console.widgets.common import make_splitter
from console.widgets.performance_chart import PerformanceChart
from console.widgets.performance_notes import PerformanceNotes, PerformanceWindows
from console.widgets.version_choice import VersionChoice, serving_label
from console.widgets.window_span import WindowSpan

# label, seconds
WINDOW_SIZES: tuple[tuple[str, int], ...] = (("Hourly windows", 3_600), ("Daily windows", 86_400))
REFRESH_MS = 30_000


class PerformancePage(ModelPage):
    key = "performance"
    title = "Performance"
    icon = "performance"
    tooltip = (
        "Whether each version still performs as agreed: quality measured from labels, and "
        "estimated before labels arrive, against its acceptable range."
    )
    roles = ENGINEERING_ROLES
    refresh_ms = REFRESH_MS
    shown_as = "the report"
    model_tip = "The model whose quality is shown."

    def __init__(self, context: ConsoleContext):
        super().__init__(context)
        self.report: PerformanceReport | None = None
        self.loaded_at: float | None = None
        settings = context.settings

        self.version_choice = VersionChoice(
            "The version whose predictions are measured (each is judged against its own "
            "acceptable range).",
            serving_label,
            mark_serving=False,
        )
        self.version_choice.setMinimumContentsLength(12)
        self.span = WindowSpan(
            WINDOW_SIZES,
            "How long each window (each point on the chart) is.",
            "How many windows back the chart looks, the newest last.",
        )
        self.span.restore(settings, "performance")
        self.size_choice, self.count_choice = self.span.size_choice, self.span.count_choice
        self.refresh_button = self.make_refresh_button(
            "Measure again now (F5); the page also refreshes every 30 s."
        )

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

        layout = QVBoxLayout(self)
        layout.addLayout(
            self.make_selector_row(
                (
                    ("Model", self.model_choice),
                    ("Version", self.version_choice),
                    ("Windows", self.span),
                ),
                self.refresh_button,
            )
        )
        layout.addWidget(self.splitter, 1)

        self.version_choice.currentIndexChanged.connect(self._on_choice_changed)
        self.span.changed.connect(lambda: self._on_choice_changed(0))

    # ---------------------------------------------------------------- lifecycle

    def has_data(self) -> bool:
        return self.report is not None

    def shutdown(self) -> None:
        super().shutdown()
        settings = self.context.settings
        self.span.save(settings, "performance")
        settings.setValue("performance/splitter", self.splitter.saveState())

    # ---------------------------------------------------------------- choices

    def show_no_models(self) -> None:
        self.notes.show_message(
            "No models yet", "Quality appears here once a model is registered and serves."
        )

    def model_changed(self) -> None:
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
        window_s = self.span.window_s()
        count = self.span.windows()
        self.set_status("Measuring…")
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
        self.set_status(self.updated_text())

    def _on_report_failed(self, error: Exception) -> None:
        reason = describe_error(error)
        if self.report is None:
            self.notes.show_message(
                "No performance report", f"The backend gave none: {reason}", "bad"
            )
        self.set_status(f"Could not load the performance report: {reason}", "bad")
