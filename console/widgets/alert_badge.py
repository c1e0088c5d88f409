"""The status bar's alert badge: how many alerts wait for someone, coloured by the worst."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPushButton

from backend.schemas import Alert
from console.resources import colour


class AlertBadge(QPushButton):
    """A flat button: the count of open alerts; clicking it opens the Alerts page."""

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("alert-badge")
        self.setFlat(True)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the Alerts page has its own shortcut
        self.open_count = 0
        self.critical_count = 0
        self.acknowledged_count = 0
        self.stream_state = "waiting"
        self.show_alerts([])

    def show_alerts(self, active: list[Alert]) -> None:
        """``active``: the alerts open or acknowledged now."""
        unowned = [alert for alert in active if alert.status == "open"]
        self.open_count = len(unowned)
        self.critical_count = sum(alert.severity == "critical" for alert in unowned)
        self.acknowledged_count = len(active) - len(unowned)
        self._render()

    def set_stream_state(self, state: str) -> None:
        self.stream_state = state
        self._render()

    def _render(self) -> None:
        if self.open_count:
            tone = "bad" if self.critical_count else "warn"
            text = f"▲ {self.open_count} open alert{'s' if self.open_count != 1 else ''}"
            if self.critical_count:
                text += f" ({self.critical_count} critical)"
        else:
            tone = "ok"
            text = "✓ No open alerts"
        if self.stream_state != "streaming":
            tone = "muted" if not self.open_count else tone
            text += " · not up to date"
        self.setText(text)
        self.setStyleSheet(
            f"QPushButton#alert-badge {{ color: {colour(tone)}; font-weight: "
            f"{'bold' if self.open_count else 'normal'}; padding: 0 8px; border: none; }}"
        )
        owned = (
            f" {self.acknowledged_count} more acknowledged (someone owns them)."
            if self.acknowledged_count
            else ""
        )
        state = {
            "streaming": "",
            "refused": " This token may not read alerts.",
        }.get(
            self.stream_state,
            " The console is reconnecting to the alert stream: the count may be out of date.",
        )
        self.setToolTip(
            "Alerts nobody has acknowledged yet, over every model you may see; red when one is "
            f"critical.{owned}{state} Click to open the Alerts page (read them, acknowledge "
            "the ones you take on)."
        )
