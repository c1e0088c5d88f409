"""The feedback-loop indicators as cards: one per indicator, framed in its status colour.

Each card says the status in words, the served and held-out numbers with their 95% ranges,
the gap against its thresholds, how much data it rests on, and the backend's explanation of
what it means and what to do. The cards flow into as many columns as the width holds.
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QFrame, QGridLayout, QScrollArea, QVBoxLayout, QWidget

from backend.schemas.feedback_loops import INDICATOR_NAMES, FeedbackLoopReport, Indicator
from console.loop_words import (
    RANGE_HELP,
    basis_text,
    comparison_text,
    details_text,
    gap_text,
    status_text,
)
from console.resources import colour
from console.widgets.common import make_label

CARD_WIDTH = 360  # the narrowest a card reads well at


def indicators_of(report: FeedbackLoopReport) -> list[Indicator]:
    return [getattr(report, name) for name in INDICATOR_NAMES]


class LoopIndicatorCard(QFrame):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.setObjectName(f"loop-card-{name}")
        self.status_name = "ok"
        self.title = make_label(scale=1.1, wrap=True)
        self.status = make_label(wrap=True)
        self.comparison = make_label(tip=RANGE_HELP, wrap=True)
        self.gap = make_label(tip=RANGE_HELP, wrap=True)
        self.basis = make_label(name="muted", wrap=True)
        self.explanation = make_label(wrap=True)
        self.details = make_label(wrap=True)
        for label in (
            self.title,
            self.comparison,
            self.gap,
            self.basis,
            self.details,
            self.explanation,
        ):
            label.setTextFormat(Qt.TextFormat.PlainText)  # the backend's words, shown as is
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.setSpacing(4)
        for label in (
            self.title,
            self.status,
            self.comparison,
            self.gap,
            self.details,
            self.explanation,
            self.basis,
        ):
            layout.addWidget(label)
        layout.addStretch(1)

    def show_indicator(self, indicator: Indicator) -> None:
        words, tone = status_text(indicator)
        self.status_name = indicator.status
        self.tone = tone
        self.title.setText(indicator.title)
        self.status.setText(
            f"<span style='color:{colour(tone)}'>● {html.escape(words.capitalize())}</span>"
        )
        self.comparison.setText(comparison_text(indicator))
        self.gap.setText(gap_text(indicator))
        # A gap that cannot be judged would only repeat "not measured".
        self.gap.setVisible(indicator.applicable and indicator.enough_data)
        self.basis.setText(basis_text(indicator))
        details = details_text(indicator)
        self.details.setText(details)
        self.details.setVisible(bool(details))
        self.explanation.setText(indicator.explanation)
        self.setStyleSheet(
            f"QFrame#{self.objectName()} {{ background: {colour('panel')}; "
            f"border: 2px solid {colour(tone)}; border-radius: 6px; }}"
        )


class LoopCards(QScrollArea):
    """The report's headline above one card per indicator; or why there is nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        host = QWidget()
        self.headline = make_label("Not loaded yet.", scale=1.2, wrap=True)
        self.summary = make_label(wrap=True)
        self.summary.setTextFormat(Qt.TextFormat.PlainText)
        self.grid = QGridLayout()
        self.grid.setSpacing(10)
        layout = QVBoxLayout(host)
        layout.addWidget(self.headline)
        layout.addWidget(self.summary)
        layout.addLayout(self.grid)
        layout.addStretch(1)
        self.setWidget(host)
        self.setToolTip(RANGE_HELP)
        self.cards = {name: LoopIndicatorCard(name) for name in INDICATOR_NAMES}
        self.order: list[str] = list(INDICATOR_NAMES)
        self._columns = 0
        for card in self.cards.values():
            card.hide()

    def show_message(self, headline: str, text: str, tone: str = "muted") -> None:
        self.headline.setText(f"<span style='color:{colour(tone)}'>{html.escape(headline)}</span>")
        self.summary.setText(text)
        for card in self.cards.values():
            card.hide()

    def show_report(self, report: FeedbackLoopReport, window_text: str) -> None:
        words = {"ok": "No sign of a feedback loop", "warn": "A feedback loop may be forming",
                 "alert": "A feedback loop is shaping this model's data"}  # fmt: skip
        tone = {"ok": "ok", "warn": "warn", "alert": "bad"}[report.status]
        self.headline.setText(
            f"<span style='color:{colour(tone)}'>{html.escape(words[report.status])}</span>"
            f" <span style='color:{colour('muted')}'>· {html.escape(window_text)}</span>"
        )
        self.summary.setText(report.explanation)
        self.summary.setToolTip(report.thresholds.explanation)
        for indicator in indicators_of(report):
            card = self.cards[indicator.name]
            card.show_indicator(indicator)
            card.show()
        # What needs attention first (a small screen shows two cards at a time).
        severity = {"bad": 0, "warn": 1, "ok": 2, "muted": 3}
        self.order = sorted(INDICATOR_NAMES, key=lambda name: severity[self.cards[name].tone])
        self._lay_out(force=True)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._lay_out()

    def _lay_out(self, force: bool = False) -> None:
        columns = max(1, min(3, self.viewport().width() // CARD_WIDTH))
        if columns == self._columns and not force:
            return
        self._columns = columns
        for card in self.cards.values():
            self.grid.removeWidget(card)
        for position, name in enumerate(self.order):
            self.grid.addWidget(self.cards[name], position // columns, position % columns)
        for column in range(self.grid.columnCount()):
            self.grid.setColumnStretch(column, 1 if column < columns else 0)
