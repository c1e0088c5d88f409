"""Live charts: requests/s, latency percentiles, confidence histogram, decision shares.

Fed from ring buffers (``RingSeries``) that the live page fills from the backend's live
statistics; redrawn by a QTimer, and only when something changed and the charts are shown.
"""

from __future__ import annotations

import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtGui import QGuiApplication, QPalette
from PySide6.QtWidgets import QComboBox, QGridLayout, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from backend.schemas import DECISIONS, LiveSeries
from console.resources import colour
from console.series_buffer import RingSeries

CONFIDENCE_BINS = 20
# label, seconds shown, bucket resolution in seconds
WINDOWS: tuple[tuple[str, int, int], ...] = (
    ("Last 5 minutes", 300, 1),
    ("Last hour", 3_600, 1),
    ("Last day", 86_400, 60),
)
REDRAW_INTERVAL_MS = 100


def series_columns() -> dict[str, int]:
    return {
        "requests": 1,
        "p50": 1,
        "p95": 1,
        "p99": 1,
        "confidence": CONFIDENCE_BINS,
        **{f"decision:{name}": 1 for name in DECISIONS},
    }


def buffer_values(series: LiveSeries) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A LiveSeries as arrays for ``RingSeries.extend``."""

    def floats(values: list[float | None]) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

    values = {
        "requests": np.asarray(series.requests, dtype=np.float64),
        "p50": floats(series.latency_p50_ms),
        "p95": floats(series.latency_p95_ms),
        "p99": floats(series.latency_p99_ms),
        "confidence": np.asarray(series.confidence, dtype=np.float64).reshape(
            -1, series.confidence_bins
        ),
    }
    for name in DECISIONS:
        values[f"decision:{name}"] = np.asarray(series.decisions.get(name, []), dtype=np.float64)
    return np.asarray(series.starts, dtype=np.float64), values


def use_palette_colours() -> None:
    """Charts on the window's own background and text colours (light or dark)."""
    palette = QGuiApplication.palette()
    pg.setConfigOptions(
        background=palette.color(QPalette.ColorRole.Base),
        foreground=palette.color(QPalette.ColorRole.Text),
        antialias=False,
    )


def time_plot(title: str, tooltip: str, left: str) -> pg.PlotWidget:
    """A chart over wall-clock time, as every live chart in the console draws it."""
    plot = pg.PlotWidget(axisItems={"bottom": pg.DateAxisItem()})
    plot.setTitle(title)
    plot.setToolTip(tooltip)
    plot.setLabel("left", left)
    plot.showGrid(x=True, y=True, alpha=0.2)
    plot.setMenuEnabled(False)
    plot.setMouseEnabled(x=False, y=False)
    item = plot.getPlotItem()
    item.setDownsampling(auto=True, mode="peak")
    item.setClipToView(True)
    return plot


class LiveCharts(QWidget):
    def __init__(self, capacity: dict[int, int] | None = None):
        super().__init__()
        use_palette_colours()
        capacity = capacity or {1: 3_600, 60: 1_440}
        self.buffers = {res: RingSeries(size, series_columns()) for res, size in capacity.items()}
        self.window_index = 0
        self._dirty = True
        self.redraws = 0

        self.window_choice = QComboBox()
        self.window_choice.setToolTip("How far back the charts look.")
        for label, _, _ in WINDOWS:
            self.window_choice.addItem(label)
        self.window_choice.currentIndexChanged.connect(self.set_window)
        self.summary = QLabel()
        self.summary.setToolTip("Totals over the window shown.")

        self.requests_plot = time_plot(
            "Requests per second",
            "How many prediction requests the backend answered each second.",
            "req/s",
        )
        self.latency_plot = time_plot(
            "Latency (ms)",
            "How long answers took. p50: half of the requests were faster than this line; "
            "p95 and p99: all but the slowest 5 % and 1 % were faster.",
            "ms",
        )
        self.confidence_plot = pg.PlotWidget()
        self.confidence_plot.setTitle("Confidence")
        self.confidence_plot.setToolTip(
            "How sure the model was of its answers over the window: many answers near 50 % "
            "mean the model is often unsure."
        )
        self.confidence_plot.setLabel("bottom", "probability of the predicted class")
        self.confidence_plot.setMenuEnabled(False)
        self.confidence_plot.setMouseEnabled(x=False, y=False)
        self.decision_plot = time_plot(
            "Decisions (share)",
            "Which share of predictions was answered, abstained from, answered by a fallback "
            "or held out, over time.",
            "share",
        )
        self.decision_plot.setYRange(0, 1.05)

        pen = {"width": 1}
        self.requests_curve = self.requests_plot.plot(pen=pg.mkPen(colour("accent"), **pen))
        self.requests_curve.setSkipFiniteCheck(True)  # counts are never NaN
        self.latency_curves = {
            name: self.latency_plot.plot(pen=pg.mkPen(col, **pen), name=name, connect="finite")
            for name, col in (
                ("p50", colour("ok")),
                ("p95", colour("warn")),
                ("p99", colour("bad")),
            )
        }
        self.latency_plot.addLegend(offset=(5, 5))
        for name, curve in self.latency_curves.items():
            self.latency_plot.getPlotItem().legend.addItem(curve, name)
        edges = np.linspace(0, 1, CONFIDENCE_BINS + 1)
        self.confidence_bars = pg.BarGraphItem(
            x0=edges[:-1], x1=edges[1:], height=np.zeros(CONFIDENCE_BINS), brush=colour("accent")
        )
        self.confidence_plot.addItem(self.confidence_bars)
        decision_colours = (colour("ok"), colour("warn"), colour("bad"), colour("muted"))
        self.decision_plot.addLegend(offset=(5, 5))
        self.decision_curves = {
            name: self.decision_plot.plot(
                pen=pg.mkPen(col, **pen), name=name.replace("_", " "), connect="finite"
            )
            for name, col in zip(DECISIONS, decision_colours, strict=True)
        }

        header = QHBoxLayout()
        header.addWidget(self.window_choice)
        header.addWidget(self.summary, 1)
        grid = QGridLayout()
        grid.addWidget(self.requests_plot, 0, 0)
        grid.addWidget(self.latency_plot, 0, 1)
        grid.addWidget(self.confidence_plot, 1, 0)
        grid.addWidget(self.decision_plot, 1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(header)
        layout.addLayout(grid, 1)

        self.timer = QTimer(self)
        self.timer.setInterval(REDRAW_INTERVAL_MS)
        self.timer.timeout.connect(self._redraw_if_needed)
        self.timer.start()

    # ---------------------------------------------------------------- data

    @property
    def resolution(self) -> int:
        return WINDOWS[self.window_index][2]

    def last_time(self, resolution: int) -> float | None:
        return self.buffers[resolution].last_time

    def add_series(self, series: LiveSeries) -> None:
        times, values = buffer_values(series)
        buffer = self.buffers[series.resolution_s]
        last = buffer.last_time
        if last is not None:
            keep = times > last  # never the same bucket twice
            times = times[keep]
            values = {name: column[keep] for name, column in values.items()}
        buffer.extend(times, values)
        self._dirty = True

    def set_window(self, index: int) -> None:
        self.window_index = index
        self._dirty = True

    # ---------------------------------------------------------------- drawing

    def _redraw_if_needed(self) -> None:
        if self._dirty and self.isVisible():
            self.redraw()

    def redraw(self, now: float | None = None) -> None:
        self._dirty = False
        self.redraws += 1
        _, window_s, resolution = WINDOWS[self.window_index]
        now = time.time() if now is None else now
        times, values = self.buffers[resolution].view(since=now - window_s)
        centres = times + resolution / 2
        self.requests_curve.setData(centres, values["requests"] / resolution)
        for name, curve in self.latency_curves.items():
            curve.setData(centres, values[name])
        histogram = values["confidence"].sum(axis=0) if len(times) else np.zeros(CONFIDENCE_BINS)
        total_confidence = float(histogram.sum())
        shares = histogram / total_confidence if total_confidence else histogram
        self.confidence_bars.setOpts(height=shares)
        answered_total = sum(values[f"decision:{name}"] for name in DECISIONS)
        with np.errstate(invalid="ignore", divide="ignore"):
            for name, curve in self.decision_curves.items():
                share = np.where(
                    answered_total > 0, values[f"decision:{name}"] / answered_total, np.nan
                )
                curve.setData(centres, share)
        for plot in (self.requests_plot, self.latency_plot, self.decision_plot):
            plot.setXRange(now - window_s, now, padding=0)
        requests = int(np.nansum(values["requests"]))
        p99 = values["p99"][np.isfinite(values["p99"])]
        self.summary.setText(
            f"{requests:,} requests"
            + (f" · worst p99 {p99.max():.1f} ms" if len(p99) else "")
            + (f" · {total_confidence:,.0f} scored rows" if total_confidence else "")
        )
