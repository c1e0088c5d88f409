"""Drift: whether each model still sees the data it was trained on.

On top the dataset verdict and the model's output drift; below, every input feature with its
test, score, threshold, coloured status and a sparkline of its score over the last windows;
the selected feature's values now against training beneath. Refreshed every 30 s while shown,
through keyed tasks (a newer question replaces an older one; a poll keeps one on its way).
"""

from __future__ import annotations

import time
from datetime import datetime

from PySide6.QtCore import QItemSelection, Qt
from PySide6.QtWidgets import QComboBox, QVBoxLayout, QWidget

from backend.schemas import DriftSeries, WindowDrift
from console.context import ConsoleContext
from console.dialogs.errors import describe_error
from console.pages.base import ENGINEERING_ROLES
from console.pages.refreshing import ModelPage
from console.widgets.common import make_label, make_splitter
from console.widgets.drift_distribution import NOTHING, DistributionOverlay
from console.widgets.drift_table import FeatureDriftTable, FeatureRow
from console.widgets.drift_verdict import DriftVerdict
from console.widgets.version_choice import VersionChoice

# label, seconds
WINDOWS: tuple[tuple[str, int], ...] = (
    ("Last 15 minutes", 900),
    ("Last hour", 3_600),
    ("Last 6 hours", 21_600),
    ("Last day", 86_400),
)
SERIES_WINDOWS = 24
REFRESH_MS = 30_000


def trends(series: DriftSeries | None) -> dict[str, tuple[list[float | None], list[bool]]]:
    """Each feature's (and output's) score per window, oldest first, and where it drifted
    (None: no score in that window, too few rows or no traffic)."""
    if series is None:
        return {}
    names = {name for w in series.windows for name in (*w.features, *w.predictions)}
    result: dict[str, tuple[list[float | None], list[bool]]] = {}
    for name in names:
        points = [w.features.get(name) or w.predictions.get(name) for w in series.windows]
        result[name] = (
            [p.statistic if p is not None else None for p in points],
            [p is not None and p.drifted for p in points],
        )
    return result


def _clock(moment: datetime) -> str:
    return moment.astimezone().strftime("%d %b %H:%M")


class DriftPage(ModelPage):
    key = "drift"
    title = "Drift"
    icon = "drift"
    tooltip = (
        "Whether each model still sees data like its training data: every input compared "
        "with training, and what to do when it changed."
    )
    roles = ENGINEERING_ROLES
    refresh_ms = REFRESH_MS
    shown_as = "the report"
    model_tip = "The model whose inputs are compared with its training data."

    def __init__(self, context: ConsoleContext):
        super().__init__(context)
        self.drift: WindowDrift | None = None
        self.series: DriftSeries | None = None
        self.loaded_at: float | None = None
        self.series_error: str | None = None

        self.version_choice = VersionChoice(
            "All versions together, or one version's traffic only (each version is compared "
            "with its own training data).",
            lambda _model: "All versions",
            mark_serving=True,
        )
        self.window_choice = QComboBox()
        self.window_choice.setToolTip(
            "How much recent traffic is compared with the training data. Short windows react "
            "fast but have fewer values; long ones are surer but slower to show a change."
        )
        for label, seconds in WINDOWS:
            self.window_choice.addItem(label, seconds)
        self.window_choice.setCurrentIndex(
            min(int(context.settings.value("drift/window", 0) or 0), len(WINDOWS) - 1)
        )
        self.refresh_button = self.make_refresh_button(
            "Compare again now (F5); the page also refreshes every 30 s."
        )

        self.verdict = DriftVerdict()
        self.table = FeatureDriftTable()
        self.table.selectionModel().selectionChanged.connect(self._on_feature_selected)
        self.overlay = DistributionOverlay()
        self.table_note = make_label(
            "Input features (select one to see its values now against training):",
            self.table.toolTip(),
        )
        table_box = QWidget()
        table_layout = QVBoxLayout(table_box)
        table_layout.setContentsMargins(0, 0, 0, 0)
        table_layout.addWidget(self.table_note)
        table_layout.addWidget(self.table, 1)
        self.splitter = make_splitter(Qt.Orientation.Vertical, (table_box, 2), (self.overlay, 3))
        self.splitter.setSizes([280, 420])
        state = context.settings.value("drift/splitter")
        if state is not None:
            self.splitter.restoreState(state)

        layout = QVBoxLayout(self)
        layout.addLayout(
            self.make_selector_row(
                (
                    ("Model", self.model_choice),
                    ("Version", self.version_choice),
                    ("Window", self.window_choice),
                ),
                self.refresh_button,
            )
        )
        layout.addWidget(self.verdict)
        layout.addWidget(self.splitter, 1)

        self.version_choice.currentIndexChanged.connect(self._on_choice_changed)
        self.window_choice.currentIndexChanged.connect(self._on_choice_changed)

    # ---------------------------------------------------------------- lifecycle

    def has_data(self) -> bool:
        return self.drift is not None

    def shutdown(self) -> None:
        super().shutdown()
        settings = self.context.settings
        settings.setValue("drift/window", self.window_choice.currentIndex())
        settings.setValue("drift/splitter", self.splitter.saveState())

    # ---------------------------------------------------------------- choices

    def window_s(self) -> int:
        return int(self.window_choice.currentData())

    def show_no_models(self) -> None:
        self.verdict.show_message(
            "No models yet",
            "Drift appears here once a model is registered and answers requests.",
        )

    def model_changed(self) -> None:
        self._on_choice_changed(0)

    def _on_choice_changed(self, _index: int) -> None:
        # Another question: what is shown no longer answers it.
        self.drift, self.series = None, None
        self.table.show_rows([])
        self.overlay.show_nothing(NOTHING)
        self.refresh()

    # ---------------------------------------------------------------- loading

    def refresh(self, replace: bool = True) -> None:
        """Ask for the report and the series of the current choice (``replace=False``: a poll
        that keeps an answer already on its way)."""
        model = self.current_model()
        if not model:
            return
        version = self.current_version() or None
        window_s = self.window_s()
        self.set_status("Comparing with the training data…")
        self.call_backend(
            "report",
            lambda client: client.window_drift(model, version, window_s, histograms=True),
            self._on_report,
            self._on_report_failed,
            replace=replace,
        )
        self.call_backend(
            "series",
            lambda client: client.drift_series(model, version, window_s, SERIES_WINDOWS),
            self._on_series,
            self._on_series_failed,
            replace=replace,
        )

    def _on_report(self, window: WindowDrift) -> None:
        self.drift = window
        self.loaded_at = time.time()
        if window.report is None:
            # Nothing to compare yet (no traffic, no reference): the backend says why.
            self.verdict.show_message(
                "Nothing to compare yet", f"{window.note} ({self._window_text(window)})"
            )
            self.table.show_rows([])
            self.overlay.show_nothing("No feature to show: there is no drift report yet.")
        else:
            self.verdict.show_report(window.report, self._window_text(window))
            self._show_rows()
        self.set_status(self._loaded_text(), "warn" if self.series_error else "muted")

    def _on_report_failed(self, error: Exception) -> None:
        reason = describe_error(error)
        if self.drift is None:
            self.verdict.show_message("No drift report", f"The backend gave none: {reason}", "bad")
        self.set_status(f"Could not load the drift report: {reason}", "bad")

    def _on_series(self, series: DriftSeries) -> None:
        self.series = series
        self.series_error = None
        self._show_rows()

    def _on_series_failed(self, error: Exception) -> None:
        # The table still shows the report; only the sparklines are missing, and the status
        # line says why (after the report's own news, never over a report that failed).
        self.series_error = describe_error(error)
        if self.drift is not None:
            self.set_status(self._loaded_text(), "warn")

    def _loaded_text(self) -> str:
        text = self.updated_text()
        if self.series_error:
            text += f" No trend over earlier windows: {self.series_error}"
        return text

    def _show_rows(self) -> None:
        if self.drift is None or self.drift.report is None:
            return
        lines = trends(self.series)
        rows = []
        for feature in self.drift.report.features:
            scores, drifted = lines.get(feature.name, ([], []))
            rows.append(FeatureRow(feature, scores, drifted))
        # What needs attention first: drifted, then too few values, then fine.
        order = {"drifted": 0, "not enough data": 1, "ok": 2}
        rows.sort(key=lambda row: order[row.status])
        self.table.show_rows(rows)
        if not rows:
            self.overlay.show_nothing("No input feature was compared in this window.")
        self._on_feature_selected()

    def _on_feature_selected(
        self, _selected: QItemSelection | None = None, _deselected: QItemSelection | None = None
    ) -> None:
        name = self.table.selected_feature()
        row = self.table.row(name) if name else None
        if row is None:
            if self.table.row_count():
                self.overlay.show_nothing(NOTHING)
            return
        self.overlay.show_feature(row.feature)

    # ---------------------------------------------------------------- words

    def _window_text(self, window: WindowDrift) -> str:
        label = self.window_choice.currentText().lower()
        version = f"version {window.version}" if window.version else "all versions"
        reference = f", compared with {window.reference_source}" if window.reference_source else ""
        return (
            f"{label} ({_clock(window.start)} to {_clock(window.end)}), {version}, "
            f"{window.rows:,} predictions{reference}"
        )
