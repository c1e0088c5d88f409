"""One alert in full: what it means in plain words, its details, its history, and the way to
acknowledge it (asked of the page by a signal)."""

from __future__ import annotations

import html
import json
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QPushButton, QScrollArea, QVBoxLayout, QWidget

from backend.schemas import Alert
from console.resources import colour
from console.widgets.alert_table import SEVERITY_TONE, STATUS_TONE, when
from console.widgets.common import make_label, number_text

NOTHING_SELECTED = (
    "Select an alert to read what it means and what to do about it. Press A (or Ctrl+Enter) "
    "on a selected alert to acknowledge it: that tells the others you take it on."
)
MEANING = {
    "open": "Nobody has taken it on yet.",
    "acknowledged": "Someone owns it: see the history below.",
    "resolved": "It no longer applies.",
}


class AlertDetails(QScrollArea):
    acknowledge_requested = Signal(object)  # Alert

    def __init__(self) -> None:
        super().__init__()
        self.setWidgetResizable(True)
        self.setFrameShape(QScrollArea.Shape.NoFrame)
        self.setToolTip("The selected alert: what it means, what to do, and its history.")
        self.shown: Alert | None = None
        self.may_acknowledge = True

        self.heading = make_label(name="heading", wrap=True)
        self.state = make_label(wrap=True)
        self.state.setTextFormat(Qt.TextFormat.RichText)
        self.explanation = make_label(
            tip="What the alert means and what to do, in the words of the check that raised it.",
            wrap=True,
        )
        self.details_title = make_label("<b>Details</b>")
        self.details = make_label(
            tip="The figures the check measured when it raised the alert.", wrap=True
        )
        self.details.setTextFormat(Qt.TextFormat.RichText)
        self.history_title = make_label("<b>History</b>")
        self.history = make_label(
            tip="Raised, acknowledged (by whom, when, with their note) and resolved.", wrap=True
        )
        self.history.setTextFormat(Qt.TextFormat.RichText)
        self.acknowledge_button = QPushButton("Acknowledge… (A)")
        self.acknowledge_button.clicked.connect(self._ask_acknowledge)
        self.acknowledge_note = make_label(name="muted", wrap=True)

        actions = QHBoxLayout()
        actions.addWidget(self.acknowledge_button)
        actions.addWidget(self.acknowledge_note, 1)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.addWidget(self.heading)
        layout.addWidget(self.state)
        layout.addLayout(actions)
        layout.addWidget(self.explanation)
        layout.addSpacing(6)
        layout.addWidget(self.details_title)
        layout.addWidget(self.details)
        layout.addSpacing(6)
        layout.addWidget(self.history_title)
        layout.addWidget(self.history)
        layout.addStretch(1)
        self.setWidget(body)
        self.show_nothing()

    def set_may_acknowledge(self, allowed: bool) -> None:
        """Whether the signed-in role may acknowledge (admin and engineer tokens)."""
        self.may_acknowledge = allowed
        self._show_action()

    def show_nothing(self, text: str = NOTHING_SELECTED) -> None:
        self.shown = None
        self.heading.setText("")
        self.state.setText("")
        self.explanation.setText(text)
        for widget in (self.details_title, self.details, self.history_title, self.history):
            widget.hide()
        self._show_action()

    def show_alert(self, alert: Alert) -> None:
        self.shown = alert
        self.heading.setText(alert.title)
        tone = colour(SEVERITY_TONE.get(alert.severity, "muted"))
        status_tone = colour(STATUS_TONE.get(alert.status, "muted"))
        version = f", version {html.escape(alert.version)}" if alert.version else ""
        self.state.setText(
            f"<span style='color:{tone}'><b>{alert.severity.capitalize()}</b></span> · "
            f"{html.escape(alert.model)}{version} · "
            f"<span style='color:{status_tone}'><b>{alert.status.capitalize()}</b></span>: "
            f"{MEANING.get(alert.status, '')}"
        )
        self.explanation.setText(alert.explanation)
        self.details.setText(details_html(alert.details))
        self.history.setText(history_html(alert))
        for widget in (self.details_title, self.details, self.history_title, self.history):
            widget.show()
        self.details_title.setVisible(bool(alert.details))
        self.details.setVisible(bool(alert.details))
        self._show_action()

    def _show_action(self) -> None:
        alert = self.shown
        open_alert = alert is not None and alert.status == "open"
        self.acknowledge_button.setEnabled(open_alert and self.may_acknowledge)
        self.acknowledge_button.setVisible(alert is not None)
        if alert is None:
            note = ""
        elif not self.may_acknowledge:
            note = "Acknowledging needs an admin or engineer token; this one may only read."
        elif alert.status == "acknowledged":
            note = f"Already acknowledged by {alert.acknowledged_by}."
        elif alert.status == "resolved":
            note = "Resolved: nothing to acknowledge."
        else:
            note = "Acknowledge to tell the others you take it on (your name is recorded)."
        self.acknowledge_note.setText(note)
        self.acknowledge_button.setToolTip(note)

    def _ask_acknowledge(self) -> None:
        if self.shown is not None:
            self.acknowledge_requested.emit(self.shown)


def details_html(details: dict[str, Any]) -> str:
    """The check's figures as a list people read: names in words, numbers without noise."""
    lines = [
        f"{html.escape(name.replace('_', ' ').capitalize())}: <b>{html.escape(_value(value))}</b>"
        for name, value in details.items()
    ]
    return "<br>".join(lines)


def _value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return number_text(value)
    if isinstance(value, list) and all(isinstance(v, int | float) for v in value):
        return "[" + ", ".join(number_text(v) for v in value) + "]"
    return value if isinstance(value, str) else json.dumps(value)


def history_html(alert: Alert) -> str:
    """Raised, acknowledged (who, when, note), resolved (when, why): oldest first."""
    lines = [f"<b>Raised</b> {when(alert.raised_at)}"]
    if alert.acknowledged_at is not None or alert.acknowledged_by:
        by = html.escape(alert.acknowledged_by or "someone")
        note = (
            f": “{html.escape(alert.acknowledgement)}”" if alert.acknowledgement else " (no note)"
        )
        lines.append(f"<b>Acknowledged</b> by {by} at {when(alert.acknowledged_at)}{note}")
    if alert.resolved_at is not None:
        why = f": {html.escape(alert.resolution)}" if alert.resolution else ""
        lines.append(f"<b>Resolved</b> at {when(alert.resolved_at)}{why}")
    return "<br>".join(lines)
