"""Live charts: requests/s, error rate, latency percentiles, confidence, decision shares.

Fed from ring buffers (``RingSeries``) that the live page fills from the backend's live
statistics of the model and version chosen in its filters; redrawn by a QTimer, and only when
something changed and the charts are shown. Curves are named in the chart titles in their own
colours, not in legends, so nothing covers the curves on a small screen. Before the backend's
statistics began there is no data, and nothing is drawn there (not zeros).
"""

from __future__ import annotations

import html
import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QGuiApplication, QPalette
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

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
        "refused": 1,
        "failed": 1,
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

    def counts(values: list[int]) -> np.ndarray:
        # A backend from before refusals were counted sends none: unknown, not zero.
        if len(values) != len(series.starts):
            return np.full(len(series.starts), np.nan)
        return np.asarray(values, dtype=np.float64)

    values = {
        "requests": np.asarray(series.requests, dtype=np.float64),
        "refused": counts(series.refused),
        "failed": counts(series.failed),
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


def keyed_title(title: str, keys: list[tuple[str, str]]) -> str:
    """A chart title that names its curves in their colours: the legend that covers nothing."""
    named = " ".join(
        f"<span style='color:{col}'>&#9632;&nbsp;{html.escape(name)}</span>" for name, col in keys
    )
    return f"{html.escape(title)}&nbsp;&nbsp;{named}" if keys else html.escape(title)


def time_plot(title: str, tooltip: str, left: str) -> pg.PlotWidget:
    """A chart over wall-clock time, as every live chart in the console draws it."""
    plot = pg.PlotWidget(axisItems={"bottom": pg.DateAxisItem()})
    plot.setTitle(title, size="9pt")
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
        self.scope = QLabel("All models")
        self.scope.setToolTip(
            "Which predictions the charts count: they follow the model and version filters "
            "below, so two versions can be compared during a canary."
        )
        self.summary = QLabel()
        self.summary.setToolTip("Totals over the window shown.")
        # Never wider than the window: the text is cut on a small screen, never the charts.
        self.summary.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

        self.requests_plot = time_plot(
            keyed_title(
                "Requests/s",
                [("answered", colour("accent")), ("refused", colour("bad"))],
            ),
            "How many prediction requests the backend answered each second, and how many it "
            "refused (bad input, unknown model or version, no permission, too large). Many "
            "refusals usually mean a client sends requests the model cannot take: see the error "
            "messages the client gets. Refusals that named no version count for no version.",
            "req/s",
        )
        self.error_plot = time_plot(
            keyed_title("Errors (%)", [("refused or failed", colour("bad"))]),
            "The share of prediction requests the backend refused (4xx) or failed on (5xx). "
            "Near 0 is normal; a rise after a deployment or a client release points at what "
            "changed. No line: no requests in that second.",
            "% of requests",
        )
        self.latency_plot = time_plot(
            keyed_title(
                "Latency",
                [("p50", colour("ok")), ("p95", colour("warn")), ("p99", colour("bad"))],
            ),
            "How long answers took. p50: half of the requests were faster than this line; "
            "p95 and p99: all but the slowest 5 % and 1 % were faster.",
            "ms",
        )
        self.confidence_plot = pg.PlotWidget()
        self.confidence_plot.setTitle("Confidence over the window", size="9pt")
        self.confidence_plot.setToolTip(
            "How sure the model was of its answers over the window: the share of answers per "
            "probability of the predicted class. Many answers near 50 % mean the model is "
            "often unsure."
        )
        self.confidence_plot.setLabel("bottom", "probability of the predicted class")
        self.confidence_plot.setLabel("left", "share")
        self.confidence_plot.setMenuEnabled(False)
        self.confidence_plot.setMouseEnabled(x=False, y=False)
        decision_colours = (colour("ok"), colour("warn"), colour("bad"), colour("muted"))
        self.decision_plot = time_plot(
            keyed_title(
                "Decisions (share)",
                [
                    (name.replace("_", " "), col)
                    for name, col in zip(DECISIONS, decision_colours, strict=True)
                ],
            ),
            "Which share of predictions was answered, abstained from, answered by a fallback "
            "or held out, over time.",
            "share",
        )
        self.decision_plot.setYRange(0, 1.05)

        pen = {"width": 1}
        self.requests_curve = self.requests_plot.plot(
            pen=pg.mkPen(colour("accent"), **pen), connect="finite"
        )
        self.refused_curve = self.requests_plot.plot(
            pen=pg.mkPen(colour("bad"), **pen), connect="finite"
        )
        self.error_curve = self.error_plot.plot(
            pen=pg.mkPen(colour("bad"), **pen), connect="finite"
        )
        self.started_line = pg.InfiniteLine(
            angle=90,
            pen=pg.mkPen(colour("muted"), style=Qt.PenStyle.DashLine),
            label="statistics begin",
            labelOpts={"position": 0.85, "color": colour("muted")},
        )
        self.started_line.setToolTip(
            "The backend started here: nothing was measured before, so nothing is drawn."
        )
        self.started_line.hide()
        self.requests_plot.addItem(self.started_line)
        self.started_at: float | None = None
        self.latency_curves = {
            name: self.latency_plot.plot(pen=pg.mkPen(col, **pen), name=name, connect="finite")
            for name, col in (
                ("p50", colour("ok")),
                ("p95", colour("warn")),
                ("p99", colour("bad")),
            )
        }
        edges = np.linspace(0, 1, CONFIDENCE_BINS + 1)
        self.confidence_bars = pg.BarGraphItem(
            x0=edges[:-1], x1=edges[1:], height=np.zeros(CONFIDENCE_BINS), brush=colour("accent")
        )
        self.confidence_plot.addItem(self.confidence_bars)
        self.decision_curves = {
            name: self.decision_plot.plot(
                pen=pg.mkPen(col, **pen), name=name.replace("_", " "), connect="finite"
            )
            for name, col in zip(DECISIONS, decision_colours, strict=True)
        }

        header = QHBoxLayout()
        header.addWidget(self.window_choice)
        header.addWidget(self.scope)
        header.addWidget(self.summary, 1)
        grid = QGridLayout()
        grid.addWidget(self.requests_plot, 0, 0)
        grid.addWidget(self.error_plot, 0, 1)
        grid.addWidget(self.latency_plot, 0, 2)
        grid.addWidget(self.confidence_plot, 1, 0)
        grid.addWidget(self.decision_plot, 1, 1, 1, 2)
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

    def set_scope(self, model: str, version: str) -> None:
        """The model and version the charts count (empty: all); the page refills the buffers."""
        self.scope.setText(
            "All models"
            if not model
            else f"{model}, all versions"
            if not version
            else f"{model} version {version}"
        )
        for buffer in self.buffers.values():
            buffer.clear()
        self._dirty = True

    def add_series(self, series: LiveSeries) -> None:
        if series.started_at is not None:
            self.started_at = series.started_at
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
        self.refused_curve.setData(centres, values["refused"] / resolution)
        asked = values["requests"] + values["refused"] + values["failed"]
        with np.errstate(invalid="ignore", divide="ignore"):
            errors = np.where(asked > 0, (values["refused"] + values["failed"]) / asked, np.nan)
        self.error_curve.setData(centres, errors * 100)
        # From 0, and at least to 5 %: a flat 0 % line reads as "no errors", not as noise.
        worst = float(np.nanmax(errors)) * 100 if np.isfinite(errors).any() else 0.0
        self.error_plot.setYRange(0, max(5.0, worst * 1.1), padding=0)
        starts_inside = self.started_at is not None and self.started_at > now - window_s
        self.started_line.setVisible(starts_inside)
        if starts_inside:
            self.started_line.setValue(self.started_at)
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
        for plot in (self.requests_plot, self.error_plot, self.latency_plot, self.decision_plot):
            plot.setXRange(now - window_s, now, padding=0)
        requests = int(np.nansum(values["requests"]))
        refused = int(np.nansum(values["refused"]) + np.nansum(values["failed"]))
        asked_total = requests + refused
        p99 = values["p99"][np.isfinite(values["p99"])]
        self.summary.setText(
            f"{requests:,} answered"
            + (
                f" · {refused:,} refused or failed ({refused / asked_total:.1%})"
                if asked_total
                else ""
            )
            + (f" · worst p99 {p99.max():,.1f} ms" if len(p99) else "")
            + (f" · {total_confidence:,.0f} scored rows" if total_confidence else "")
        )
