"""Feedback loops: whether a model's own answers shape the data it is judged and trained on.

The backend compares served traffic with held-out traffic (a sticky share the model does not
answer) and reports six indicators, each with a status, its numbers with 95% ranges and what
to do. This page shows them as cards, their served and held-out values over time, the
prediction bias per slice of a chosen feature, the held-out share and policy (with the control
to change it, for the roles that may), and the lineage graph with its loops. Refreshed every
30 s while shown, through keyed tasks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QTabWidget, QVBoxLayout, QWidget

from backend.schemas import HeldOutRequest, HeldOutStatus, LineageGraph
from backend.schemas.feedback_loops import MAX_REPORT_SPAN_S, FeedbackLoopReport
from console.client import ApiClient
from console.context import ConsoleContext
from console.dialogs.errors import describe_error
from console.dialogs.messages import show_error
from console.pages.base import ENGINEERING_ROLES
from console.pages.refreshing import ModelPage
from console.widgets.common import make_splitter
from console.widgets.held_out_panel import HeldOutPanel
from console.widgets.lineage_graph import LineageView
from console.widgets.loop_cards import LoopCards
from console.widgets.loop_charts import LoopTrendChart, SliceBiasChart
from console.widgets.version_choice import VersionChoice, serving_label
from console.widgets.window_span import WindowSpan

# label, seconds
WINDOW_SIZES: tuple[tuple[str, int], ...] = (
    ("5-minute windows", 300),
    ("15-minute windows", 900),
    ("Hourly windows", 3_600),
    ("Daily windows", 86_400),
)
DEFAULT_SIZE = 2  # hourly: a day of windows, enough labels in each at modest traffic
REFRESH_MS = 30_000
TREND_CHOICES: tuple[tuple[str, str], ...] = (
    ("Outcome rate", "outcome_rate_gap"),
    ("Measured performance", "performance_gap"),
    ("Label mix", "label_drift"),
    ("Labels decided by the model", "selective_labels"),
    ("Prediction bias", "prediction_bias"),
)
TREND_HELP = (
    "The chosen indicator per window, on served traffic (the model's answers were obeyed) and "
    "on held-out traffic (they were not). Lines that part over time mean the model is shaping "
    "its own data: what it is judged and retrained on no longer shows the world."
)
EXPOSURE_HELP = (
    "How much of the traffic ends in the most common answer, per window, served against held "
    "out. A served share that keeps growing while the held-out one stays is a model narrowing "
    "what it sees (it only learns about what it lets through)."
)


def _clock(moment: datetime) -> str:
    return moment.astimezone().strftime("%d %b %H:%M")


class FeedbackLoopsPage(ModelPage):
    key = "feedback_loops"
    title = "Feedback loops"
    icon = "feedback_loops"
    tooltip = (
        "Whether a model's own answers shape the data it is judged and retrained on: served "
        "traffic against held-out traffic, the held-out share, and the lineage loops."
    )
    roles = ENGINEERING_ROLES
    refresh_ms = REFRESH_MS
    shown_as = "the indicators"
    model_tip = "The model whose feedback loops are measured."

    def __init__(self, context: ConsoleContext):
        super().__init__(context)
        self.report: FeedbackLoopReport | None = None
        self.graph: LineageGraph | None = None
        self.loaded_at: float | None = None
        self.error_dialog: QWidget | None = None
        settings = context.settings

        self.version_choice = VersionChoice(
            "The version whose traffic is compared (default: the one serving).",
            serving_label,
            mark_serving=False,
        )
        self.span = WindowSpan(
            WINDOW_SIZES,
            "How long each window (each point on the charts) is.",
            "How many windows back the page looks; the headline numbers cover them all.",
            default_size=DEFAULT_SIZE,
            max_span_s=MAX_REPORT_SPAN_S,
        )
        self.span.restore(settings, "feedback_loops")
        self.outcome_choice = QComboBox()
        self.outcome_choice.setToolTip(
            "The class whose rate is compared (e.g. fraud, or a chargeback): default the "
            "model's last class."
        )
        self.outcome_choice.setMinimumContentsLength(8)
        self.outcome_choice.setEnabled(False)  # the classes come with the first report
        self.refresh_button = self.make_refresh_button(
            "Measure again now (F5); the page also refreshes every 30 s."
        )

        self.cards = LoopCards()
        self.trend = LoopTrendChart(TREND_CHOICES, TREND_HELP)
        self.exposure = LoopTrendChart(
            (("Exposure concentration", "exposure_concentration"),), EXPOSURE_HELP
        )
        over_time = make_splitter(Qt.Orientation.Vertical, (self.trend, 3), (self.exposure, 2))
        self.slices = SliceBiasChart()
        self.held_out = HeldOutPanel()
        self.lineage = LineageView()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.cards, "Indicators")
        self.tabs.addTab(over_time, "Served vs held out over time")
        self.tabs.addTab(self.slices, "Bias by slice")
        self.tabs.addTab(self.held_out, "Held-out share")
        self.tabs.addTab(self.lineage, "Lineage")
        for index, tip in enumerate(
            (
                "One card per indicator: its status, served against held-out numbers with "
                "their 95% ranges, and what to do.",
                "Each indicator per window on served and held-out traffic, and how much of the "
                "traffic ends in one answer.",
                "Whether the model over- or under-predicts the outcome in slices of a feature, "
                "served against held out.",
                "The share of entities held out of the model's influence, what answers them, "
                "and the control to change it.",
                "Which models' outputs feed which models' inputs, with the loops in red.",
            )
        ):
            self.tabs.setTabToolTip(index, tip)
        self.tabs.setCurrentIndex(
            min(int(settings.value("feedback_loops/tab", 0) or 0), self.tabs.count() - 1)
        )

        layout = QVBoxLayout(self)
        layout.addLayout(
            self.make_selector_row(
                (
                    ("Model", self.model_choice),
                    ("Version", self.version_choice),
                    ("Windows", self.span),
                ),
                with_status=False,
            )
        )
        # Two rows: all the choices in one would not fit a 1024-pixel screen.
        layout.addLayout(
            self.make_selector_row((("Outcome", self.outcome_choice),), self.refresh_button)
        )
        layout.addWidget(self.tabs, 1)

        self.version_choice.currentIndexChanged.connect(self._on_choice_changed)
        self.span.changed.connect(lambda: self._on_choice_changed(0))
        self.outcome_choice.currentIndexChanged.connect(lambda _i: self.refresh())
        self.slices.feature_chosen.connect(lambda _feature: self.refresh())
        self.held_out.set_requested.connect(self.set_held_out)
        self.held_out.stop_requested.connect(self.stop_held_out)

    # ---------------------------------------------------------------- lifecycle

    def has_data(self) -> bool:
        return self.report is not None

    def connection_changed(self, connected: bool) -> None:
        role = self.context.identity.role if self.context.identity else ""
        self.held_out.set_may_edit(role in ENGINEERING_ROLES)
        super().connection_changed(connected)

    def shutdown(self) -> None:
        super().shutdown()
        settings = self.context.settings
        self.span.save(settings, "feedback_loops")
        settings.setValue("feedback_loops/tab", self.tabs.currentIndex())

    # ---------------------------------------------------------------- choices

    def show_no_models(self) -> None:
        self.cards.show_message(
            "No models yet",
            "Feedback loops are measured once a model is registered, serves, and holds part "
            "of its traffic out.",
        )

    def model_changed(self) -> None:
        self.outcome_choice.blockSignals(True)
        self.outcome_choice.clear()
        self.outcome_choice.blockSignals(False)
        self._on_choice_changed(0)

    def _on_choice_changed(self, _value: int) -> None:
        # Another question: what is shown no longer answers it.
        self.report = None
        self.trend.show_note("Measuring…")
        self.exposure.show_note("Measuring…")
        self.slices.show_note("Measuring…")
        self.refresh()

    # ---------------------------------------------------------------- loading

    def refresh(self, replace: bool = True) -> None:
        model = self.current_model()
        if not model:
            return
        version = self.current_version() or None
        window_s = self.span.window_s()
        windows = self.span.windows()
        outcome = str(self.outcome_choice.currentData() or "") or None
        feature = self.slices.chosen_feature() or None
        self.set_status("Measuring…")
        self.call_backend(
            "report",
            lambda client: client.feedback_loops(
                model, version, window_s, windows, outcome, feature
            ),
            self._on_report,
            self._on_report_failed,
            replace=replace,
        )
        self.call_backend(
            "lineage",
            lambda client: client.lineage(),
            self._on_graph,
            self._on_graph_failed,
            replace=replace,
        )

    def _on_report(self, report: FeedbackLoopReport) -> None:
        if report.model != self.current_model():
            return  # the answer to a model no longer chosen
        self.report = report
        self.loaded_at = time.time()
        self._fill_outcomes(report)
        self.cards.show_report(report, self._window_text(report))
        self.trend.show_report(report)
        self.exposure.show_report(report)
        self.slices.show_bias(report.prediction_bias)
        self._show_held_out(report.held_out)
        self.set_status(self.updated_text())

    def _on_report_failed(self, error: Exception) -> None:
        reason = describe_error(error)
        if self.report is None:
            self.cards.show_message(
                "No feedback-loop report", f"The backend gave none: {reason}", "bad"
            )
            note = f"Nothing to draw: the backend gave no report ({reason})."
            self.trend.show_note(note)
            self.exposure.show_note(note)
            self.slices.show_note(note)
            self.held_out.show_message(f"Not known: {reason}", "bad")
        self.set_status(f"Could not load the feedback-loop report: {reason}", "bad")

    def _on_graph(self, graph: LineageGraph) -> None:
        self.graph = graph
        self.lineage.show_graph(graph)

    def _on_graph_failed(self, error: Exception) -> None:
        if self.graph is None:
            self.lineage.show_message(
                "No lineage", f"The backend gave none: {describe_error(error)}"
            )

    def _fill_outcomes(self, report: FeedbackLoopReport) -> None:
        box = self.outcome_choice
        box.blockSignals(True)
        try:
            box.clear()
            names = {str(label): name for label, name in self._serving_classes()}
            for label in report.classes:
                name = names.get(label, label)
                box.addItem(label if name == label else f"{name} ({label})", label)
            box.setCurrentIndex(max(box.findData(report.outcome or ""), 0))
            box.setEnabled(bool(report.classes))
            if not report.classes:
                box.addItem("— (regression)", "")
        finally:
            box.blockSignals(False)

    def _serving_classes(self) -> list[tuple[Any, str]]:
        """The serving version's classes: (label, name), the label as the wire carries it."""
        model = self.current_model_info()
        serving = [
            version
            for version in (model.versions if model else [])
            if model is not None and version.version == model.active_version
        ]
        labels = list(serving[0].class_labels or []) if serving else []
        names = (serving[0].class_names if serving else None) or [str(v) for v in labels]
        return list(zip(labels, names, strict=False))

    def _show_held_out(self, status: HeldOutStatus) -> None:
        """The status, with the serving version's classes as the answers a policy may declare."""
        self.held_out.show_status(status, self._serving_classes())

    # ---------------------------------------------------------------- the held-out share

    def set_held_out(self, request: HeldOutRequest) -> None:
        model = self.current_model()
        self._change_held_out(
            lambda client: client.set_held_out(model, request),
            f"Now holding out {request.share_percent:g}% of {model}'s entities.",
        )

    def stop_held_out(self, reason: str) -> None:
        model = self.current_model()
        self._change_held_out(
            lambda client: client.clear_held_out(model, reason),
            f"{model} holds nothing out any more.",
        )

    def _change_held_out(self, call: Callable[[ApiClient], HeldOutStatus], done_text: str) -> None:
        if not self.current_model():
            return

        def done(status: HeldOutStatus) -> None:
            self.held_out.action_done()
            self._show_held_out(status)
            self.set_status(done_text, "ok")
            self.refresh()  # the indicators rest on the new share from now on

        def failed(error: Exception) -> None:
            self.set_status(f"The held-out share was not changed: {describe_error(error)}", "bad")
            self.error_dialog = show_error(
                self, "The held-out share was not changed", describe_error(error)
            )

        self.call_backend("held-out", call, done, failed)

    # ---------------------------------------------------------------- words

    def _window_text(self, report: FeedbackLoopReport) -> str:
        size = {300: "5-minute", 900: "15-minute", 3_600: "hourly", 86_400: "daily"}.get(
            report.window_s
        )
        windows = f"{report.windows} {size} windows" if size else (
            f"{report.windows} windows of {report.window_s // 60} min"
        )  # fmt: skip
        return (
            f"version {report.version}, {_clock(report.start)} to {_clock(report.end)} ({windows})"
        )
