"""Deployments: versions with their gate reports, deploy, rollouts, one-click rollback, history."""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QTimer
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QHBoxLayout,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from backend.schemas import (
    AuditEvent,
    DeploymentState,
    GateReport,
    ModelInfo,
    RolloutRequest,
    RolloutStatus,
)
from console.client import ApiClient
from console.context import ConsoleContext
from console.dialogs.errors import describe_error, show_failure
from console.dialogs.reason import ReasonDialog
from console.pages.base import ENGINEERING_ROLES, Page
from console.widgets.common import make_button, make_label
from console.widgets.gate_report import GateReportView
from console.widgets.rollout_panel import ACTION_FAILURES, RolloutPanel
from console.widgets.tables import Cell, ReadOnlyTable

MODEL_POLL_MS = 10_000
ROLLBACK_HELP = (
    "Return this model to the last good version it served before, through the same checks "
    "as a deployment. Takes effect for every request within a second."
)
VERSION_COLUMNS = (
    ("Version", "The version number."),
    ("State", "serving: answers requests now; candidate: being rolled out."),
    ("Checks", "The result of the latest checks (gates) this version went through."),
    ("Registered", "When it was registered (your local time)."),
    ("Description", "What changed in this version, in the registrant's words."),
)
HISTORY_COLUMNS = (
    ("When", "Your local time."),
    ("Who", "The token that acted, and its role; “servedeck” is the backend itself."),
    ("What", "The action."),
    ("Versions", "From which version to which."),
    ("Why", "The reason given."),
)
ACTION_WORDS = {
    "deploy": "deployed",
    "deploy_refused": "deployment refused",
    "rollback": "rolled back",
    "rollback_refused": "rollback refused",
    "rollout_start": "rollout started",
    "rollout_refused": "rollout refused",
    "rollout_step": "rollout moved on",
    "rollout_pause": "rollout paused",
    "rollout_resume": "rollout resumed",
    "promote": "promoted",
    "abort": "rollout aborted",
    "policy": "policy changed",
    "held_out": "held-out share changed",
    "metric_alert": "quality alert",
    "trust_pickle": "pickle trusted to run code",
    "lineage_cycle_forced": "feedback loop registered anyway",
}


# Audit actions after which an earlier outcome line no longer describes what serves.
STATE_CHANGES = frozenset(
    {"deploy", "rollback", "promote", "abort", "rollout_start", "rollout_step"}
)


def _local(moment: object) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")  # type: ignore[attr-defined]


def _open_alert(events: list[AuditEvent], serving: str | None) -> AuditEvent | None:
    """The quality alert on the serving version, unless a deployment came after it."""
    for event in events:  # newest first
        if event.action in ("deploy", "rollback", "promote"):
            return None
        if event.action == "metric_alert" and event.to_version == serving:
            return event
    return None


class DeploymentsPage(Page):
    key = "deploy"
    title = "Deployments"
    icon = "deploy"
    tooltip = (
        "Which version serves each model: deploy a version after its checks, roll a new one "
        "out step by step, or roll back in one click."
    )
    roles = ENGINEERING_ROLES

    def __init__(self, context: ConsoleContext):
        super().__init__(context)
        self.model: ModelInfo | None = None
        self.reports: list[GateReport] = []
        self.dialog: ReasonDialog | None = None
        self.error_dialog: QDialog | None = None
        self.selected = str(context.settings.value("deploy/model", "") or "")

        self.model_box = QComboBox()
        self.model_box.setToolTip("The model to look at and steer.")
        self.model_box.setMinimumWidth(180)
        self.model_box.activated.connect(lambda _i: self.load(self.model_box.currentText()))
        self.refresh_button = make_button(
            "Refresh", "Load again from the backend (F5).", self.refresh
        )
        self.refresh_button.setShortcut(QKeySequence("F5"))
        self.serving = make_label("", name="heading")
        self.serving.setToolTip("The version that answers requests now.")
        self.summary = make_label("Not loaded yet.", name="muted", wrap=True)
        self.alert = make_label("", name="error", wrap=True)
        self.alert.setToolTip(
            "The serving version's quality on labelled answers left the range its checks used."
        )
        self.alert.hide()
        # What the last action did (or why it failed), with its time: shown until anything
        # newer happens to the model (the header and history then say what holds).
        self.outcome = make_label("", wrap=True)
        self.outcome.setToolTip(
            "The result of your last deployment action; it goes once the model changes again."
        )
        self.outcome.hide()
        # The newest audit event when the outcome was written.
        self.outcome_after: int | None = None
        self.newest_event: int | None = None
        self.rollback_button = make_button("Roll back…", ROLLBACK_HELP, self.confirm_rollback)
        self.rollback_button.setObjectName("danger")
        self.rollback_button.setMinimumHeight(36)
        # Where a rollback would go and what it passes over, or why there is none.
        self.rollback_note = make_label("", name="muted", wrap=True)
        self.rollback_note.setToolTip(
            "A rollback returns to the last good version served before: versions that raised "
            "a quality alert while serving, or were rolled back from, are passed over until "
            "they are deployed again on purpose."
        )

        top = QHBoxLayout()
        top.addWidget(make_label("Model"))
        top.addWidget(self.model_box)
        top.addWidget(self.refresh_button)
        top.addStretch(1)
        top.addWidget(self.rollback_button)

        self.versions = ReadOnlyTable(VERSION_COLUMNS)
        self.versions.setToolTip("The registered versions. Select one to see its latest checks.")
        self.versions.selectionModel().selectionChanged.connect(self._show_selected_report)
        self.deploy_button = make_button(
            "Deploy selected version…",
            "Run the selected version's checks (gates) and, if all pass, serve it to all traffic.",
            self.confirm_deploy,
        )
        self.report = GateReportView()
        versions_tab = QWidget()
        versions_layout = QVBoxLayout(versions_tab)
        versions_layout.addWidget(self.versions, 1)
        versions_layout.addWidget(self.deploy_button)
        versions_layout.addWidget(self.report, 2)

        self.rollout = RolloutPanel()
        self.rollout.status_wanted.connect(self.poll_rollout)
        self.rollout.start_requested.connect(self.start_rollout)
        self.rollout.action_requested.connect(self.steer_rollout)
        self.history = ReadOnlyTable(HISTORY_COLUMNS)
        self.history.setToolTip("Every deployment action on this model, newest first.")

        self.tabs = QTabWidget()
        self.tabs.addTab(versions_tab, "Versions")
        self.tabs.addTab(self.rollout, "Rollout")
        self.tabs.addTab(self.history, "History")
        self.tabs.setTabToolTip(0, "Versions and the checks they went through.")
        self.tabs.setTabToolTip(1, "Roll a new version out gradually, with checks at each step.")
        self.tabs.setTabToolTip(2, "The audit trail: who did what, when and why.")

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.serving)
        layout.addWidget(self.summary)
        layout.addWidget(self.rollback_note)
        layout.addWidget(self.alert)
        layout.addWidget(self.outcome)
        layout.addWidget(self.tabs, 1)

        self.poll_timer = QTimer(self)
        self.poll_timer.setInterval(MODEL_POLL_MS)
        self.poll_timer.timeout.connect(lambda: self.reload(replace=False))

    # ------------------------------------------------------------------ page contract

    def page_shown(self) -> None:
        self.refresh()
        self.poll_timer.start()

    def connection_changed(self, connected: bool) -> None:
        if connected and self.isVisible():
            self.refresh()

    def focus_model(self, model: str) -> None:
        self.selected = model  # the refresh of page_shown loads it

    def shutdown(self) -> None:
        super().shutdown()
        self.poll_timer.stop()
        self.rollout.stop()

    # ------------------------------------------------------------------ loading

    def refresh(self) -> None:
        """Reload the list of models, then the selected one."""

        def done(names: list[str]) -> None:
            self.model_box.clear()
            self.model_box.addItems(names)
            if not names:
                self.summary.setText("No models registered yet.")
                return
            chosen = self.selected if self.selected in names else names[0]
            self.model_box.setCurrentText(chosen)
            self.load(chosen)

        self.call_backend(
            "models", lambda client: [m.name for m in client.models()], done, self._load_failed
        )

    def reload(self, replace: bool = True) -> None:
        """Load the model shown again; ``replace=False`` (the poll) keeps a load under way."""
        if self.model is not None:
            self.load(self.model.name, replace=replace)

    def load(self, name: str, replace: bool = True) -> None:
        """Load ``name`` with its gate reports and history; a load under way is replaced, so
        what shows is the model asked for last, as it was after the last action."""
        if not name:
            return
        self.selected = name
        self.context.settings.setValue("deploy/model", name)

        def fetch(client: ApiClient) -> tuple[ModelInfo, list[GateReport], list[AuditEvent]]:
            return client.model(name), client.gate_reports(name), client.audit(name)

        self.call_backend(
            "model",
            fetch,
            lambda found: self.show_model(*found),
            self._load_failed,
            replace=replace,
        )

    def _load_failed(self, error: Exception) -> None:
        self.summary.setText(f"Could not load: {describe_error(error)}")

    def show_model(
        self, model: ModelInfo, reports: list[GateReport], events: list[AuditEvent]
    ) -> None:
        if self.model is None or self.model.name != model.name:
            self.cancel_task("rollout-status")  # a poll on its way is for the model left
        self.model, self.reports = model, reports
        serving = model.active_version
        self.serving.setText(
            f"{model.name} serves version {serving}"
            if serving
            else f"{model.name} serves nothing yet"
        )
        rollout = model.rollout
        parts = []
        if rollout is not None:
            stage = "shadow" if rollout.phase == "shadow" else f"canary {rollout.percent:g}%"
            parts.append(f"Rollout of version {rollout.candidate}: {stage}.")
        policy = model.policy
        parts.append(
            "Rolls back by itself if its live quality leaves the acceptable range."
            if policy.auto_rollback
            else "Live quality is watched; a drop raises an alert (no automatic rollback)."
        )
        if rollout is None and policy.unjudged_quality == "proceed":
            parts.append("Rollout steps move on even when their quality cannot be judged yet.")
        self.summary.setText(" ".join(parts))
        self._show_rollback(model)
        self._age_outcome(events)
        alert = _open_alert(events, serving)
        self.alert.setVisible(alert is not None)
        if alert is not None:
            self.alert.setText(f"Quality alert since {_local(alert.at)}: {alert.reason}.")
        self._fill_versions(model)
        self._fill_history(events)
        last_end = next((e for e in events if e.action in ("promote", "abort")), None)
        self.rollout.set_model(model, last_end)

    def _show_rollback(self, model: ModelInfo) -> None:
        """The button names where a rollback goes; the note says what it passes over, or
        why there is no rollback now and what would make one possible (the backend's words,
        the same the command line prints)."""
        option = model.rollback
        target = option.target if option is not None else None
        self.rollback_button.setEnabled(target is not None)
        skipped = option.skipped if option is not None else []
        passed_over = " ".join(f"It passes over version {s.version}: {s.why}." for s in skipped)
        if target is not None:
            self.rollback_button.setText(f"Roll back to version {target}…")
            self.rollback_button.setToolTip(ROLLBACK_HELP)
            self.rollback_note.setText(passed_over)
        else:
            self.rollback_button.setText(
                "Rollout running: abort it to go back"
                if model.rollout is not None
                else "No rollback available (why: below)"
            )
            reason = option.unavailable_reason if option is not None else None
            self.rollback_note.setText(f"No rollback: {reason}" if reason else "")
            self.rollback_button.setToolTip(reason or ROLLBACK_HELP)
        self.rollback_note.setVisible(bool(self.rollback_note.text()))

    def _age_outcome(self, events: list[AuditEvent]) -> None:
        """The outcome line describes the model as it was after that action: once what
        serves changed since (a promotion, an abort, another person's rollback), it goes."""
        self.newest_event = next((e.id for e in events if e.action in STATE_CHANGES), None)
        if self.outcome_after is not None and self.newest_event != self.outcome_after:
            self.outcome.hide()
            self.outcome_after = None

    def _say_outcome(self, text: str, event_id: int | None) -> None:
        """Show ``text`` (stamped with the time) until an event newer than ``event_id``."""
        self.outcome.setText(f"{time.strftime('%H:%M:%S')}: {text}")
        self.outcome.show()
        self.outcome_after = event_id

    def _latest_report(self, version: str) -> GateReport | None:
        return next((r for r in self.reports if r.version == version), None)

    def _fill_versions(self, model: ModelInfo) -> None:
        selected = self.selected_version()
        candidate = model.rollout.candidate if model.rollout else None
        versions = list(reversed(model.versions))
        rows = []
        for version in versions:
            report = self._latest_report(version.version)
            state = (
                "serving"
                if version.version == model.active_version
                else "candidate"
                if version.version == candidate
                else ""
            )
            checks = "never checked" if report is None else "passed" if report.passed else "refused"
            tone = "" if report is None else "ok" if report.passed else "bad"
            rows.append(
                (
                    Cell(version.version),
                    Cell(state),
                    Cell(checks, tone=tone),
                    Cell(_local(version.registered_at)),
                    Cell(version.description),
                )
            )
        self.versions.set_rows(rows, keys=[v.version for v in versions])
        self.versions.select_key(selected)
        self._show_selected_report()

    def _fill_history(self, events: list[AuditEvent]) -> None:
        self.history.set_rows(
            [
                (
                    Cell(_local(event.at)),
                    Cell(f"{event.actor} ({event.role})"),
                    Cell(ACTION_WORDS.get(event.action, event.action)),
                    Cell(f"{event.from_version or '—'} → {event.to_version or '—'}"),
                    Cell(event.reason, event.reason),
                )
                for event in events
            ]
        )

    def selected_version(self) -> str | None:
        version = self.versions.current_key()
        return str(version) if version is not None else None

    def _show_selected_report(self) -> None:
        version = self.selected_version()
        self.report.show_report(self._latest_report(version) if version else None)
        model = self.model
        can_deploy = (
            model is not None
            and version is not None
            and version != model.active_version
            and model.rollout is None
        )
        self.deploy_button.setEnabled(can_deploy)
        self.deploy_button.setText(
            f"Deploy version {version}…" if can_deploy else "Deploy selected version…"
        )

    # ------------------------------------------------------------------ actions

    def confirm_deploy(self) -> None:
        model, version = self.model, self.selected_version()
        if model is None or version is None:
            return
        instead = f", instead of version {model.active_version}" if model.active_version else ""
        self._confirm(
            "Deploy",
            f"Check version {version} of {model.name} and, if every check passes, serve it to "
            f"all traffic{instead}?",
            "Check and deploy",
            lambda client, reason: client.deploy(model.name, version, reason),
            "Deployment refused",
        )

    def confirm_rollback(self) -> None:
        model = self.model
        option = model.rollback if model is not None else None
        if model is None or option is None or option.target is None:
            return
        passed_over = "".join(
            f" Version {s.version} is passed over: {s.why}." for s in option.skipped
        )
        self._confirm(
            "Roll back",
            f"Roll {model.name} back from version {model.active_version} to version "
            f"{option.target}?{passed_over}",
            "Roll back",
            lambda client, reason: client.rollback(
                model.name, reason, from_version=model.active_version
            ),
            "Rollback failed",
        )

    def _confirm(
        self,
        title: str,
        question: str,
        action: str,
        call: Callable[[ApiClient, str], DeploymentState],
        failure_title: str,
    ) -> None:
        """Ask for a reason, then run ``call(client, reason)``."""
        dialog = ReasonDialog(title, question, action, self)
        dialog.accepted.connect(lambda: self._run(call, dialog.reason_text, failure_title))
        self.dialog = dialog
        dialog.open()

    def _run(
        self, call: Callable[[ApiClient, str], DeploymentState], reason: str, failure_title: str
    ) -> None:
        started = time.monotonic()
        self._say_outcome("Running the checks…", self.newest_event)
        self.rollback_button.setEnabled(False)
        self.deploy_button.setEnabled(False)

        def done(state: DeploymentState) -> None:
            event = state.event
            took = time.monotonic() - started
            self._say_outcome(
                f"{state.model}: {ACTION_WORDS.get(event.action, event.action)} from version "
                f"{event.from_version or '—'} to {event.to_version} in {took:.1f} s; version "
                f"{state.active_version} answered every request after it.",
                event.id,
            )
            self.reload()

        def failed(error: Exception) -> None:
            self._say_outcome(f"{failure_title}: {describe_error(error)}", self.newest_event)
            self.error_dialog = show_failure(self, failure_title, error)
            self.reload()

        self.call_backend("deployment", lambda client: call(client, reason), done, failed)

    # ------------------------------------------------------------------ rollouts

    def poll_rollout(self, model: str) -> None:
        """The rollout panel wants fresh checks; a poll on its way already brings them."""

        def done(status: RolloutStatus) -> None:
            self.rollout.show_status(status)
            shown = self.model
            # Started or ended (promoted or aborted by its checks, or from elsewhere).
            started_or_ended = shown is not None and (status.rollout is None) != (
                shown.rollout is None
            )
            if shown is not None and shown.name == model and started_or_ended:
                self.reload()

        self.call_backend(
            "rollout-status",
            lambda client: client.rollout_status(model),
            done,
            lambda error: self.rollout.show_status_failed(describe_error(error)),
            replace=False,
        )

    def start_rollout(self, model: str, request: RolloutRequest) -> None:
        self._steer("start", lambda client: client.start_rollout(model, request))

    def steer_rollout(self, model: str, action: str, reason: str) -> None:
        """Pause, resume, promote or abort the running rollout."""
        self._steer(action, lambda client: client.rollout_action(model, action, reason))

    def _steer(self, action: str, call: Callable[[ApiClient], DeploymentState]) -> None:
        title = ACTION_FAILURES[action]

        def done(state: DeploymentState) -> None:
            self.rollout.show_action_done()
            event = state.event
            rollout = state.rollout
            now = (
                f"version {state.active_version} serves, version {rollout.candidate} is rolled out"
                if rollout is not None
                else f"version {state.active_version} answers every request"
            )
            self._say_outcome(
                f"{state.model}: {ACTION_WORDS.get(event.action, event.action)}; {now}.",
                event.id if event.action in STATE_CHANGES else self.newest_event,
            )
            self.reload()

        def failed(error: Exception) -> None:
            self.rollout.show_action_failed(f"{title}: {describe_error(error)}")
            self.error_dialog = show_failure(self, title, error)

        self.call_backend("rollout-action", call, done, failed)
