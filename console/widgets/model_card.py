"""One model at a glance: a card of indicator rows, each coloured by its status and opening the
page that explains it.

A card is a list of ``Indicator`` rows (name, value, status, explanation, target page):
adding an indicator is one more entry in that list, never a change of layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from console.resources import colour
from console.widgets.common import make_label

Status = Literal["ok", "warning", "critical", "unknown"]
STATUS_TONE: dict[str, str] = {"ok": "ok", "warning": "warn", "critical": "bad", "unknown": "muted"}
STATUS_WORDS: dict[str, str] = {
    "ok": "fine",
    "warning": "needs a look",
    "critical": "act now",
    "unknown": "not measured",
}
# The worst first: a card's frame takes the colour of its worst indicator.
SEVERITY_ORDER: tuple[str, ...] = ("critical", "warning", "ok", "unknown")


@dataclass(frozen=True)
class Indicator:
    name: str  # "Traffic"
    value: str  # "12 requests/s"
    status: Status
    # What it means and what to do, in plain words (the row's tooltip).
    explanation: str
    # The key of the page that explains it ("live", "alerts", "deploy"; "" for none).
    target: str = ""


def worst(statuses: list[str]) -> str:
    present = [status for status in SEVERITY_ORDER if status in statuses]
    return present[0] if present else "unknown"


class IndicatorRow(QPushButton):
    """One indicator: a coloured dot, its name and its value; a click opens its page."""

    def __init__(self) -> None:
        super().__init__()
        self.setFlat(True)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.indicator: Indicator | None = None
        self.dot = QLabel("●")
        self.name = QLabel()
        self.value = QLabel()
        self.value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        for label in (self.dot, self.name, self.value):
            label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 2, 6, 2)
        layout.addWidget(self.dot)
        layout.addWidget(self.name)
        layout.addStretch(1)
        layout.addWidget(self.value)
        self.setMinimumHeight(28)

    def show_indicator(self, indicator: Indicator) -> None:
        self.indicator = indicator
        tone = colour(STATUS_TONE.get(indicator.status, "muted"))
        self.dot.setStyleSheet(f"color: {tone};")
        self.name.setText(indicator.name)
        self.value.setText(indicator.value)
        self.value.setStyleSheet(
            f"color: {tone}; font-weight: {'bold' if indicator.status != 'unknown' else 'normal'};"
        )
        where = {
            "alerts": "the Alerts page",
            "live": "the Live predictions page",
            "deploy": "the Deployments page",
        }.get(indicator.target, "")
        click = f"\n\nClick to open {where}." if where else ""
        self.setToolTip(
            f"{indicator.name}: {indicator.value} ({STATUS_WORDS.get(indicator.status, '')})."
            f"\n{indicator.explanation}{click}"
        )
        self.setAccessibleName(f"{indicator.name}: {indicator.value}")


class ModelCard(QFrame):
    """A model's indicators, with one plain-words line that sums them up."""

    open_requested = Signal(str, str)  # page key, model

    def __init__(self, model: str) -> None:
        super().__init__()
        self.model = model
        self.setObjectName("model-card")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.heading = make_label(model, name="heading")
        self.summary = make_label(wrap=True)
        self.summary.setToolTip("The model's state in one sentence; hover a row for more.")
        self.rows: list[IndicatorRow] = []
        self._rows_box = QVBoxLayout()
        self._rows_box.setSpacing(0)
        layout = QVBoxLayout(self)
        layout.addWidget(self.heading)
        layout.addWidget(self.summary)
        layout.addLayout(self._rows_box)
        self.status = "unknown"
        self._paint("unknown")

    def set_indicators(self, indicators: list[Indicator], summary: str) -> None:
        """Show these rows (in order) and the summary; rows are reused, never rebuilt."""
        while len(self.rows) < len(indicators):
            row = IndicatorRow()
            row.clicked.connect(lambda _=False, r=row: self._open(r))
            self.rows.append(row)
            self._rows_box.addWidget(row)
        for row, indicator in zip(self.rows, indicators, strict=False):
            row.show_indicator(indicator)
            row.show()
        for row in self.rows[len(indicators) :]:
            row.hide()
        self.summary.setText(summary)
        self._paint(worst([indicator.status for indicator in indicators]))

    def indicator(self, name: str) -> IndicatorRow | None:
        return next(
            (r for r in self.rows if r.indicator is not None and r.indicator.name == name), None
        )

    def _open(self, row: IndicatorRow) -> None:
        if row.indicator is not None and row.indicator.target:
            self.open_requested.emit(row.indicator.target, self.model)

    def _paint(self, status: str) -> None:
        self.status = status
        tone = colour(STATUS_TONE.get(status, "muted"))
        self.setStyleSheet(
            f"QFrame#model-card {{ border: 1px solid {colour('border')}; "
            f"border-left: 5px solid {tone}; border-radius: 4px; background: {colour('panel')}; }}"
        )


class StatusLegend(QWidget):
    """What the colours mean, once for the page."""

    def __init__(self) -> None:
        super().__init__()
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for status in ("ok", "warning", "critical", "unknown"):
            label = QLabel(
                f"<span style='color:{colour(STATUS_TONE[status])}'>●</span> {STATUS_WORDS[status]}"
            )
            layout.addWidget(label)
        layout.addStretch(1)
        self.setToolTip(
            "Each value's colour says how it stands: green is fine, amber needs a look, red "
            "needs action now, grey is not measured yet (no traffic, no labels). Click a row to "
            "open the page that explains it."
        )
