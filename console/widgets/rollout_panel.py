"""Rollout controls: start one (candidate, mode, steps, checks), watch its checks, steer it.

The panel makes no call: it asks (``start_requested``, ``action_requested``, and
``status_wanted`` every few seconds while a rollout runs and the panel is seen), and the page
hands back what the backend said.
"""

from __future__ import annotations

import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QHideEvent, QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QMessageBox,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from backend.schemas import (
    DEFAULT_ROLLOUT_STEPS,
    ModelInfo,
    RolloutCheck,
    RolloutChecks,
    RolloutRequest,
    RolloutState,
    RolloutStatus,
)
from console.dialogs.messages import input_problem, show_error
from console.dialogs.reason import ReasonDialog
from console.resources import colour
from console.series_buffer import RingSeries
from console.widgets.common import make_button, make_label
from console.widgets.live_charts import time_plot
from console.widgets.tables import Cell, ReadOnlyTable

STATUS_POLL_MS = 2_000
CHART_POINTS = 1_800  # an hour of polls
CHECK_WORDS = {
    "samples": "Requests seen",
    "dwell": "Time at this step",
    "error_rate": "Candidate errors",
    "p99_latency": "Slowest answers (p99)",
    "agreement": "Same answer as now",
    "live_metric": "Quality on labelled answers",
}
# What went wrong, by the action asked for: the title of the message that says why.
ACTION_FAILURES = {
    "start": "Rollout not started",
    "pause": "Could not pause",
    "resume": "Could not resume",
    "promote": "Promote failed",
    "abort": "Abort rollout failed",
}
CHECK_COLUMNS = (
    ("Check", "What the current step must show before the rollout moves on."),
    ("State", "ok, FAILED (the rollout stops by itself), or waiting (not measurable yet)."),
    ("Details", "What was measured so far."),
)


class RolloutPanel(QWidget):
    start_requested = Signal(str, object)  # model, RolloutRequest
    action_requested = Signal(str, str, str)  # model, pause/resume/promote/abort, reason
    status_wanted = Signal(str)  # model: time to poll the running rollout's checks

    def __init__(self) -> None:
        super().__init__()
        self.model: ModelInfo | None = None
        self.status: RolloutStatus | None = None
        self.dialog: ReasonDialog | None = None
        self.error_dialog: QMessageBox | None = None

        # ---------------------------------------------- start form
        self.candidate = QComboBox()
        self.candidate.setToolTip("The registered version to roll out.")
        self.mode = QComboBox()
        self.mode.addItem("Shadow first, then canary steps", "shadow")
        self.mode.addItem("Canary steps right away", "canary")
        self.mode.setToolTip(
            "Shadow: the candidate answers every request in parallel, unseen, so its answers "
            "can be compared first. Canary: a share of users gets the candidate's answers."
        )
        self.steps = QLineEdit(", ".join(f"{s:g}" for s in DEFAULT_ROLLOUT_STEPS))
        self.steps.setToolTip(
            "The shares of traffic (in %) the candidate answers, step by step. The same user "
            "always gets the same version."
        )
        self.dwell = QSpinBox()
        self.dwell.setRange(0, 7 * 86_400)
        self.dwell.setValue(60)
        self.dwell.setSuffix(" s")
        self.dwell.setToolTip("How long each step runs at least before it may move on.")
        self.samples = QSpinBox()
        self.samples.setRange(0, 10_000_000)
        self.samples.setValue(100)
        self.samples.setToolTip("How many requests each step must see before it may move on.")
        defaults = RolloutChecks()
        self.max_errors = _percent_box(
            defaults.max_error_rate, "Stop if more than this share of the candidate's answers fail."
        )
        self.max_p99 = QDoubleSpinBox()
        self.max_p99.setRange(0.1, 100)
        self.max_p99.setValue(defaults.max_p99_ratio)
        self.max_p99.setSuffix(" ×")
        self.max_p99.setToolTip(
            "Stop if the candidate's slowest answers (99th percentile) take more than this "
            "many times as long as the current version's."
        )
        self.min_agreement = _percent_box(
            defaults.min_agreement,
            "Shadow phase: stop if the candidate gives the same answer as the current version "
            "less often than this.",
        )
        self.reason = QLineEdit()
        self.reason.setPlaceholderText("Why roll it out? (kept in the audit trail)")
        self.start_button = make_button(
            "Check and start rollout",
            "Run the candidate's checks (gates) and start the rollout if they all pass.",
            self.start_rollout,
        )
        form = QFormLayout()
        for label, widget in (
            ("Candidate version", self.candidate),
            ("Mode", self.mode),
            ("Steps (% of traffic)", self.steps),
            ("Minimum time per step", self.dwell),
            ("Minimum requests per step", self.samples),
            ("Maximum error rate", self.max_errors),
            ("Maximum p99 latency", self.max_p99),
            ("Minimum agreement", self.min_agreement),
            ("Reason", self.reason),
        ):
            form.addRow(label, widget)
        start_page = QWidget()
        start_layout = QVBoxLayout(start_page)
        form_box = QWidget()
        form_box.setLayout(form)
        form_box.setMaximumWidth(620)  # a form stretched across a wide window reads badly
        start_layout.addWidget(form_box)
        start_layout.addWidget(self.start_button, 0, Qt.AlignmentFlag.AlignLeft)
        start_layout.addStretch(1)

        # ---------------------------------------------- running view
        self.stage = make_label("", name="heading")
        self.stage.setToolTip("Where the rollout stands: the candidate and its share of traffic.")
        self.verdict = make_label("", name="muted", wrap=True)
        self.checks = ReadOnlyTable(CHECK_COLUMNS)
        self.pause_button = make_button(
            "Pause", "Hold the rollout at this step; its share of traffic stays.", self.pause
        )
        self.promote_button = make_button(
            "Promote…", "Serve the candidate to all traffic now and end the rollout.", self.promote
        )
        self.abort_button = make_button(
            "Abort…",
            "Send all traffic back to the current version and end the rollout.",
            self.abort,
        )
        self.abort_button.setObjectName("danger")
        buttons = QHBoxLayout()
        for button in (self.pause_button, self.promote_button, self.abort_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        self.chart = time_plot(
            "Candidate against the current version",
            "How the candidate compares over time: latency ratio (1 = as fast), agreement, "
            "error rate and its quality metric on labelled answers (where labels arrived).",
            "ratio / share",
        )
        self.chart.addLegend(offset=(8, 8))
        pen = {"width": 1}
        self.curves = {
            "p99_ratio": self.chart.plot(pen=pg.mkPen(colour("accent"), **pen), name="p99 ratio"),
            "agreement": self.chart.plot(pen=pg.mkPen(colour("ok"), **pen), name="agreement"),
            "error_rate": self.chart.plot(pen=pg.mkPen(colour("bad"), **pen), name="error rate"),
            "live_metric": self.chart.plot(
                pen=pg.mkPen(colour("warn"), **pen), name="candidate quality (labelled)"
            ),
        }
        self.history = RingSeries(CHART_POINTS, {name: 1 for name in self.curves})
        running_page = QWidget()
        running_layout = QVBoxLayout(running_page)
        running_layout.addWidget(self.stage)
        running_layout.addWidget(self.verdict)
        running_layout.addLayout(buttons)
        running_layout.addWidget(self.checks, 1)
        running_layout.addWidget(self.chart, 1)

        self.pages = QStackedWidget()
        self.pages.addWidget(start_page)
        self.pages.addWidget(running_page)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.pages)

        self.poll_timer = QTimer(self)
        self.poll_timer.setInterval(STATUS_POLL_MS)
        self.poll_timer.timeout.connect(self.poll)
        self.redraw_timer = QTimer(self)
        self.redraw_timer.setInterval(1_000)
        self.redraw_timer.timeout.connect(self.redraw)

    # ------------------------------------------------------------------ model

    def set_model(self, model: ModelInfo) -> None:
        if self.model is None or self.model.name != model.name:
            self.history.clear()
        self.model = model
        current = self.candidate.currentData()
        self.candidate.clear()
        for version in reversed(model.versions):
            if version.version != model.active_version:
                self.candidate.addItem(f"version {version.version}", version.version)
        index = self.candidate.findData(current)
        self.candidate.setCurrentIndex(max(index, 0))
        self.start_button.setEnabled(self.candidate.count() > 0)
        self.pages.setCurrentIndex(1 if model.rollout is not None else 0)
        self._follow()

    def _follow(self) -> None:
        """Poll the rollout's checks only while one runs and someone can see them."""
        if self.model is not None and self.model.rollout is not None and self.isVisible():
            if not self.poll_timer.isActive():
                self.poll_timer.start()
                self.redraw_timer.start()
                self.poll()
        else:
            self.stop()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._follow()

    def hideEvent(self, event: QHideEvent) -> None:
        super().hideEvent(event)
        self.stop()

    def stop(self) -> None:
        self.poll_timer.stop()
        self.redraw_timer.stop()

    # ------------------------------------------------------------------ status

    def poll(self) -> None:
        if self.model is not None:
            self.status_wanted.emit(self.model.name)

    def show_status_failed(self, reason: str) -> None:
        self.verdict.setText(f"Could not read the rollout: {reason}")

    def show_status(self, status: RolloutStatus) -> None:
        self.status = status
        rollout = status.rollout
        if rollout is None:
            return
        stage = (
            "shadow (answers compared, none shown)"
            if rollout.phase == "shadow"
            else (
                f"canary: {rollout.percent:g}% of traffic, step {rollout.step_index + 1} of "
                f"{len(rollout.steps)}"
            )
        )
        paused = " — paused" if rollout.paused else ""
        self.stage.setText(
            f"Version {rollout.candidate} against {status.active_version}: {stage}{paused}"
        )
        words = {
            "wait": "Waiting",
            "advance": "Moving on",
            "promote": "Promoting",
            "abort": "Stopping",
            "none": "",
        }
        self.verdict.setText(f"{words[status.verdict]}: {status.detail}")
        self.pause_button.setText("Resume" if rollout.paused else "Pause")
        self.checks.set_rows([_check_row(check) for check in status.checks])
        values = {c.name: c.value for c in status.checks}
        point = {
            "p99_ratio": values.get("p99_latency"),
            "agreement": values.get("agreement"),
            "error_rate": values.get("error_rate"),
            "live_metric": values.get("live_metric"),
        }
        self.history.extend(
            np.array([time.time()]),
            {k: np.array([np.nan if v is None else v]) for k, v in point.items()},
        )

    def redraw(self) -> None:
        times, columns = self.history.view()
        for name, curve in self.curves.items():
            curve.setData(times, columns[name], connect="finite")

    # ------------------------------------------------------------------ actions

    def start_rollout(self) -> None:
        model = self.model
        if model is None or self.candidate.currentData() is None:
            return
        try:
            steps = [float(p) for p in self.steps.text().replace(";", ",").split(",") if p.strip()]
            request = RolloutRequest(
                candidate=self.candidate.currentData(),
                mode=self.mode.currentData(),
                steps=steps,
                min_dwell_s=self.dwell.value(),
                min_samples=self.samples.value(),
                checks=RolloutChecks(
                    max_error_rate=self.max_errors.value() / 100,
                    max_p99_ratio=self.max_p99.value(),
                    min_agreement=self.min_agreement.value() / 100,
                ),
                reason=self.reason.text().strip(),
            )
        except ValueError as exc:
            self.error_dialog = show_error(self, "Rollout not started", input_problem(exc))
            return
        self._acting("Checking the candidate and starting the rollout…")
        self.start_requested.emit(model.name, request)

    def _rollout(self) -> RolloutState | None:
        """The rollout as last polled, or as last loaded with the model."""
        if self.status is not None and self.status.rollout is not None:
            return self.status.rollout
        return self.model.rollout if self.model is not None else None

    def pause(self) -> None:
        model, rollout = self.model, self._rollout()
        if model is None or rollout is None:
            return
        action = "resume" if rollout.paused else "pause"
        self._acting(f"{action.title()}…")
        self.action_requested.emit(model.name, action, "")

    def promote(self) -> None:
        self._confirm(
            "promote",
            "Promote",
            "Serve version {candidate} to all traffic, instead of version {active}?",
        )

    def abort(self) -> None:
        self._confirm(
            "abort",
            "Abort rollout",
            "Stop the rollout of version {candidate} and "
            "send all traffic back to version {active}?",
        )

    def _confirm(self, action: str, title: str, question: str) -> None:
        model, rollout = self.model, self._rollout()
        if model is None or rollout is None:
            return
        text = question.format(candidate=rollout.candidate, active=model.active_version)
        dialog = ReasonDialog(title, text, title, self)

        def accepted() -> None:
            self._acting(f"{title}…")
            self.action_requested.emit(model.name, action, dialog.reason_text)

        dialog.accepted.connect(accepted)
        self.dialog = dialog
        dialog.open()

    def _acting(self, progress: str) -> None:
        """An action was asked for: say so, and hold the start button until it is answered."""
        self.verdict.setText(progress)
        self.start_button.setEnabled(False)

    def show_action_done(self) -> None:
        self.start_button.setEnabled(True)

    def show_action_failed(self, text: str) -> None:
        self.start_button.setEnabled(True)
        self.verdict.setText(text)


def _check_row(check: RolloutCheck) -> tuple[Cell, ...]:
    """A failed check is red all along; a passed one says ok in green."""
    state = {True: "ok", False: "FAILED", None: "waiting"}[check.passed]
    tone = "bad" if check.passed is False else ""
    return (
        Cell(CHECK_WORDS[check.name], tone=tone),
        Cell(state, tone=tone or ("ok" if check.passed else "")),
        Cell(check.detail, check.detail, tone=tone),
    )


def _percent_box(share: float, tooltip: str) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(0, 100)
    box.setDecimals(1)
    box.setSuffix(" %")
    box.setValue(share * 100)
    box.setToolTip(tooltip)
    return box
