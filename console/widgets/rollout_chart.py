"""The running rollout's checks over time: one chart, cleared when its rollout changes.

Empty (no rollout, or no measurement yet), it shows a fixed, readable range and says why it
is empty, instead of pyqtgraph's automatic range around nothing (−400 to 400, scaled ×0.001,
with 1970 on the time axis).
"""

from __future__ import annotations

import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QVBoxLayout, QWidget

from backend.schemas import RolloutState, RolloutStatus
from console.resources import colour
from console.series_buffer import RingSeries
from console.widgets.live_charts import time_plot

CHART_POINTS = 1_800  # an hour of polls
# What an empty chart shows: the last ten minutes, ratios and shares from 0 to 2.
EMPTY_SPAN_S = 600.0
EMPTY_Y_RANGE = (0.0, 2.0)
NO_ROLLOUT = "No rollout running"
NO_MEASUREMENT = "No measurements yet: they appear as the candidate answers requests"
# Chart line -> the check it follows.
LINES = {
    "p99_ratio": ("p99_latency", "accent", "p99 ratio"),
    "agreement": ("agreement", "ok", "agreement"),
    "error_rate": ("error_rate", "bad", "error rate"),
    "live_metric": ("live_metric", "warn", "candidate quality (labelled)"),
}


class RolloutChart(QWidget):
    def __init__(self) -> None:
        super().__init__()
        self.plot = time_plot(
            "Candidate against the current version",
            "How the candidate compares over time: latency ratio (1 = as fast), agreement, "
            "error rate and its quality metric on labelled answers (where labels arrived). "
            "Cleared when a new rollout starts.",
            "ratio / share",
        )
        # Ratios and shares read as they are: never "×0.001".
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.plot.addLegend(offset=(8, 8))
        self.curves = {
            name: self.plot.plot(pen=pg.mkPen(colour(tone), width=1), name=label)
            for name, (_check, tone, label) in LINES.items()
        }
        self.history = RingSeries(CHART_POINTS, {name: 1 for name in self.curves})
        self.message = pg.TextItem(NO_ROLLOUT, color=colour("muted"), anchor=(0.5, 0.5))
        self.message.setZValue(10)
        self.plot.addItem(self.message, ignoreBounds=True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot)
        # The rollout the points belong to: (candidate, started_at).
        self.rollout_key: tuple[str, float] | None = None
        self.redraw()

    def follow_rollout(self, rollout: RolloutState | None) -> None:
        """The rollout the chart is about: a different one (or none) starts it empty."""
        key = None if rollout is None else (rollout.candidate, rollout.started_at.timestamp())
        if key != self.rollout_key:
            self.rollout_key = key
            self.history.clear()
            self.redraw()

    def follow(self, status: RolloutStatus) -> None:
        """Add the status's checks as a point; a different rollout starts an empty chart."""
        rollout = status.rollout
        self.follow_rollout(rollout)
        if rollout is None:
            return
        values = {c.name: c.value for c in status.checks}
        point = {name: values.get(check) for name, (check, _tone, _label) in LINES.items()}
        self.history.extend(
            np.array([time.time()]),
            {k: np.array([np.nan if v is None else v]) for k, v in point.items()},
        )

    def is_empty(self) -> bool:
        _times, columns = self.history.view()
        return not any(np.isfinite(column).any() for column in columns.values())

    def message_text(self) -> str:
        return self.message.textItem.toPlainText() if self.message.isVisible() else ""

    def redraw(self) -> None:
        times, columns = self.history.view()
        for name, curve in self.curves.items():
            curve.setData(times, columns[name], connect="finite")
        item = self.plot.getPlotItem()
        if not self.is_empty():
            self.message.hide()
            item.enableAutoRange()
            return
        end = float(times[-1]) if len(times) else time.time()
        low, high = EMPTY_Y_RANGE
        item.disableAutoRange()
        self.plot.setXRange(end - EMPTY_SPAN_S, end, padding=0)
        self.plot.setYRange(low, high, padding=0)
        self.message.setText(NO_ROLLOUT if self.rollout_key is None else NO_MEASUREMENT)
        self.message.setPos(end - EMPTY_SPAN_S / 2, (low + high) / 2)
        self.message.show()
