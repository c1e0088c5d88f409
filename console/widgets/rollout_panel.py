"""Rollout controls: start one (candidate, mode, steps, checks), watch its checks, steer it.

The panel makes no call: it asks (``start_requested``, ``action_requested``, and
``status_wanted`` every few seconds while a rollout runs and the panel is seen), and the page
hands back what the backend said.
"""

from __future__ import annotations

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
    AuditEvent,
    ModelInfo,
    RolloutCheck,
    RolloutChecks,
    RolloutRequest,
    RolloutState,
    RolloutStatus,
    expected_step_seconds,
    plain_duration,
)
from console.dialogs.messages import input_problem, show_error
from console.dialogs.reason import ReasonDialog
from console.widgets.common import make_button, make_label
from console.widgets.rollout_chart import RolloutChart
from console.widgets.tables import Cell, ReadOnlyTable

# The status is polled while the panel is seen: the checks of a running rollout, and the
# model's request rate, which times the steps of one being planned.
STATUS_POLL_MS = 2_000
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
        # How long the steps entered would take at the model's traffic now.
        self.plan = make_label("", name="muted", wrap=True)
        self.plan.setToolTip(
            "Each step runs at least its minimum time and until it has seen its minimum "
            "requests: at a small share of little traffic, that takes long. Fewer requests "
            "per step or larger first steps make a rollout faster."
        )
        # How the last rollout ended (promoted or aborted, by whom, why).
        self.last_rollout = make_label("", wrap=True)
        self.last_rollout.setToolTip(
            "The end of the last rollout of this model, from the audit trail."
        )
        self.request_rate: float | None = None
        for edited in (self.steps.textChanged, self.samples.valueChanged, self.dwell.valueChanged):
            edited.connect(self._show_plan)
        self.mode.currentIndexChanged.connect(self._show_plan)
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
        start_layout.addWidget(self.last_rollout)
        form_box = QWidget()
        form_box.setLayout(form)
        form_box.setMaximumWidth(620)  # a form stretched across a wide window reads badly
        start_layout.addWidget(form_box)
        self.plan.setMaximumWidth(620)
        start_layout.addWidget(self.plan)
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
        self.step_times = make_label("", name="muted", wrap=True)
        self.step_times.setToolTip(
            "How long each step takes at the model's traffic now: the longer of its minimum "
            "time and the time its minimum requests take at its share of the traffic."
        )
        self.chart = RolloutChart()
        running_page = QWidget()
        running_layout = QVBoxLayout(running_page)
        running_layout.addWidget(self.stage)
        running_layout.addWidget(self.verdict)
        running_layout.addWidget(self.step_times)
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

    def set_model(self, model: ModelInfo, last_end: AuditEvent | None = None) -> None:
        """Show ``model``; ``last_end``: the promotion or abort that ended its last rollout."""
        if self.model is None or self.model.name != model.name:
            self.request_rate = None
        self.chart.follow_rollout(model.rollout)  # an ended rollout's lines go with it
        polled = self.status.rollout if self.status is not None else None
        if model.rollout is None:
            self.status = None
        elif polled is None or polled.started_at != model.rollout.started_at:
            # A rollout not polled yet (just started, or started elsewhere): say where it
            # stands from the model, not what the last one said.
            self.status = None
            self._show_stage(model.rollout, model.active_version)
            self.verdict.setText("Reading its checks…")
            self.checks.set_rows([])
            self.step_times.setText("")
        self.model = model
        self._show_last_rollout(last_end)
        self._show_plan()
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
        """Poll only while someone can see the panel."""
        if self.model is not None and self.isVisible():
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
        if self.model is None or status.model != self.model.name:
            return  # an answer about the model left
        self.request_rate = status.request_rate
        self.chart.follow(status)
        rollout = status.rollout
        if rollout is None:
            self.status = None
            self._show_plan()
            return
        self.status = status
        self._show_stage(rollout, status.active_version)
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
        self._show_step_times(status)

    def _show_stage(self, rollout: RolloutState, active: str | None) -> None:
        stage = (
            "shadow (answers compared, none shown)"
            if rollout.phase == "shadow"
            else (
                f"canary: {rollout.percent:g}% of traffic, step {rollout.step_index + 1} of "
                f"{len(rollout.steps)}"
            )
        )
        paused = " — paused" if rollout.paused else ""
        self.stage.setText(f"Version {rollout.candidate} against {active}: {stage}{paused}")

    def redraw(self) -> None:
        self.chart.redraw()

    def _show_step_times(self, status: RolloutStatus) -> None:
        """One line: each step still to come with its expected time; details in the tooltip."""
        rate = f"{status.request_rate:.2g} requests/s" if status.request_rate else "no requests"
        parts = []
        for estimate in status.estimates:
            if estimate.detail == "done":
                continue
            seconds = estimate.remaining_s if estimate.current else estimate.expected_s
            if seconds is None:
                time_left = "cannot finish without traffic"
            elif not estimate.current:
                time_left = f"about {plain_duration(seconds)}"
            elif seconds > 0:
                time_left = f"{plain_duration(seconds)} left"
            else:  # what holds it now is a check, said in the line above
                time_left = "its requests and time are in"
            parts.append(f"{'▶ ' if estimate.current else ''}{estimate.stage}: {time_left}")
        model = self.model
        waits = model is not None and model.policy.unjudged_quality == "wait"
        self.step_times.setText(
            f"Step times at the model's traffic now ({rate} over the last "
            f"{status.rate_window_s:.0f} s): "
            + " · ".join(parts)
            + (
                " — each also waits until enough labelled answers judge its quality."
                if waits
                else ""
            )
        )
        self.step_times.setToolTip(
            "How long each step takes at the model's traffic now: the longer of its minimum "
            "time and the time its minimum requests take at its share of the traffic.\n"
            + "\n".join(f"{e.stage}: {e.detail}" for e in status.estimates)
        )

    def _show_plan(self) -> None:
        """How long the steps in the form would take at the model's traffic now."""
        rate = self.request_rate
        if rate is None:
            self.plan.setText("Step times appear once the model's traffic has been measured.")
            return
        try:
            steps = [float(p) for p in self.steps.text().replace(";", ",").split(",") if p.strip()]
        except ValueError:
            self.plan.setText("")
            return
        samples, dwell = self.samples.value(), float(self.dwell.value())
        stages = [("shadow", 100.0)] if self.mode.currentData() == "shadow" else []
        stages += [(f"{p:g}%", p) for p in steps if 0 < p <= 100]
        times = [(name, expected_step_seconds(rate, p, samples, dwell)) for name, p in stages]
        if any(t is None for _, t in times):
            self.plan.setText(
                "The model gets no requests now: the steps would not finish until traffic "
                "arrives (each needs its minimum requests)."
            )
            return
        total = sum(t for _, t in times if t is not None)
        waits = self.model is not None and self.model.policy.unjudged_quality == "wait"
        labels = (
            ", plus the time enough labelled answers take to arrive: the model's policy holds "
            "each step until its quality can be judged"
            if waits
            else "; the model's policy lets steps move on before their quality can be judged"
        )
        self.plan.setText(
            f"At the model's traffic now ({rate:.2g} requests/s), these steps take at least: "
            + ", ".join(f"{name} {plain_duration(t or 0)}" for name, t in times)
            + f"; {plain_duration(total)} in all{labels}."
        )

    def _show_last_rollout(self, event: AuditEvent | None) -> None:
        self.last_rollout.setVisible(event is not None)
        if event is None:
            return
        when = event.at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        if event.action == "promote":
            what = f"version {event.to_version} was promoted and serves all traffic"
        else:
            what = f"the rollout of version {event.from_version} was aborted"
        self.last_rollout.setText(
            f"Last rollout: {what} ({when}, by {event.actor}): {event.reason or 'no reason given'}"
        )

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
