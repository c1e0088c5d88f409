"""The Performance page's charts: the quality metric per window, realized from labels and
estimated before them, against the acceptable band; beneath, how many predictions have labels.

Windows are drawn at their middle on a time axis; a window without a value leaves a gap, never
a zero. Curves are named in the title in their own colours (no legend covers the points).
"""

from __future__ import annotations

import textwrap
import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QVBoxLayout, QWidget

from backend.schemas import PerformanceReport, PerformanceWindow
from console.resources import colour
from console.widgets.live_charts import keyed_title, time_plot, use_palette_colours


def metric_name(metric: str) -> str:
    return {
        "accuracy": "accuracy",
        "balanced_accuracy": "balanced accuracy",
        "precision": "precision",
        "recall": "recall",
        "f1": "F1",
        "roc_auc": "ROC AUC",
        "log_loss": "log loss",
        "mae": "mean absolute error",
        "rmse": "root mean squared error",
        "r2": "R²",
    }.get(metric, metric.replace("_", " "))


def metric_value(values: list, metric: str) -> float | None:
    """The value of ``metric`` among a window's MetricValue entries (None: not computed)."""
    return next((v.value for v in values if v.metric == metric), None)


def window_middles(windows: list[PerformanceWindow]) -> np.ndarray:
    return np.array(
        [(w.start.timestamp() + w.end.timestamp()) / 2 for w in windows], dtype=np.float64
    )


def _translucent(name: str, alpha: int) -> QColor:
    result = QColor(colour(name))
    result.setAlpha(alpha)
    return result


class PerformanceChart(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        use_palette_colours()
        self.metric_plot = time_plot(
            keyed_title(
                "Quality per window",
                [
                    ("realized (from labels)", colour("accent")),
                    ("estimated (before labels)", colour("warn")),
                    ("acceptable range", colour("ok")),
                ],
            ),
            "The model's quality metric in each window. Realized: measured on the predictions "
            "whose true labels arrived. Estimated: what the model's own confidence predicts "
            "before labels arrive (classifiers only). The green band is the range agreed for "
            "this version: a point below it (above, for error metrics) means the model no "
            "longer performs as it should; look at the Drift page for why, and consider "
            "rolling back or retraining.",
            "",
        )
        self.band = pg.LinearRegionItem(
            values=(0, 1),
            orientation="horizontal",
            movable=False,
            brush=_translucent("ok", 45),
            pen=pg.mkPen(_translucent("ok", 160), style=Qt.PenStyle.DashLine),
        )
        self.band.setZValue(-10)
        self.metric_plot.addItem(self.band)
        self.realized_curve = self.metric_plot.plot(
            pen=pg.mkPen(colour("accent"), width=2),
            symbol="o",
            symbolSize=7,
            symbolBrush=colour("accent"),
            symbolPen=None,
            connect="finite",
        )
        self.estimated_curve = self.metric_plot.plot(
            pen=pg.mkPen(colour("warn"), width=2, style=Qt.PenStyle.DashLine),
            symbol="t",
            symbolSize=7,
            symbolBrush=colour("warn"),
            symbolPen=None,
            connect="finite",
        )
        # Hovering a point says what it is, in words (the window's explanation). Looked up by
        # the point's place, not handed over as per-point data: clip-to-view drops points
        # outside the view, and per-point data would no longer line up.
        self.tips: dict[tuple[float, float], str] = {}
        for curve in (self.realized_curve, self.estimated_curve):
            curve.scatter.opts["hoverable"] = True
            curve.scatter.opts["tip"] = self.tip_at
        self.delay_plot = time_plot(
            keyed_title("Share of predictions with labels", [("labelled", colour("muted"))]),
            "How many of each window's predictions have their true label yet. Realized quality "
            "is measured only on labelled predictions: where few have labels, trust the "
            "estimate more, and wait for labels before concluding.",
            "labelled",
        )
        # Room above 100% and below 0 so that pyqtgraph draws those tick labels too.
        self.delay_plot.setYRange(-0.12, 1.12, padding=0)
        self.delay_plot.setXLink(self.metric_plot)
        self.delay_bars = pg.BarGraphItem(
            x=[], height=[], width=1.0, brush=_translucent("muted", 140), pen=pg.mkPen(None)
        )
        self.delay_plot.addItem(self.delay_bars)
        self.delay_plot.setFixedHeight(120)
        self.delay_plot.getAxis("left").setTicks([[(0.0, "0"), (0.5, "50%"), (1.0, "100%")]])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.metric_plot, 3)
        layout.addWidget(self.delay_plot, 1)
        self.middles = np.array([], dtype=np.float64)
        self.realized = np.array([], dtype=np.float64)
        self.estimated = np.array([], dtype=np.float64)
        self.labelled = np.array([], dtype=np.float64)

    def tip_at(self, x: float, y: float, data: object = None) -> str:
        """A hovered point's tooltip: when its window was, and what its value means."""
        when = time.strftime("%d %b %H:%M", time.localtime(x))
        text = self.tips.get((float(x), float(y)), "")
        return textwrap.fill(f"Window around {when}: {text}", 70)

    @property
    def band_range(self) -> tuple[float, float]:
        low, high = self.band.getRegion()
        return float(low), float(high)

    def clear(self) -> None:
        for curve in (self.realized_curve, self.estimated_curve):
            curve.setData([], [])
        self.delay_bars.setOpts(x=[], height=[])
        empty = np.array([], dtype=np.float64)
        self.middles = self.realized = self.estimated = self.labelled = empty

    def show_report(self, report: PerformanceReport) -> None:
        windows = report.windows
        metric = report.metric
        nan = np.nan
        self.middles = window_middles(windows)
        self.realized = np.array(
            [_or_nan(metric_value(w.realized, metric)) for w in windows], dtype=np.float64
        )
        self.estimated = np.array(
            [
                _or_nan(metric_value(w.estimated.metrics, metric)) if w.estimated.supported else nan
                for w in windows
            ],
            dtype=np.float64,
        )
        self.labelled = np.array([_or_nan(w.label_delay.share) for w in windows], dtype=np.float64)
        name = metric_name(metric)
        self.tips = {}
        realized_tips = [
            f"{name} {value:.3f} measured on {w.label_delay.labelled:,} labelled predictions. "
            f"{w.verdict.explanation}"
            for w, value in zip(windows, self.realized, strict=True)
        ]
        estimated_tips = [
            f"{name} estimated {value:.3f} from the model's confidence. {w.estimated.explanation}"
            + (" " + " ".join(w.estimated.warnings) if w.estimated.warnings else "")
            for w, value in zip(windows, self.estimated, strict=True)
        ]
        for curve, values, tips in (
            (self.realized_curve, self.realized, realized_tips),
            (self.estimated_curve, self.estimated, estimated_tips),
        ):
            # Nothing to draw is no curve at all (pyqtgraph warns on bounds of only NaN).
            if np.isfinite(values).any():
                curve.setData(self.middles, values)
                self.tips.update(
                    ((float(x), float(y)), tip)
                    for x, y, tip in zip(self.middles, values, tips, strict=True)
                    if np.isfinite(y)
                )
            else:
                curve.setData([], [])
        self.delay_bars.setOpts(
            x=self.middles, height=np.nan_to_num(self.labelled), width=report.window_s * 0.8
        )
        low, high = report.acceptable_range
        self.band.setRegion((low, high))
        self.metric_plot.setLabel("left", metric_name(metric))
        shown = np.concatenate([self.realized, self.estimated, [low, high]])
        finite = shown[np.isfinite(shown)]
        spread = float(finite.max() - finite.min()) or 0.1
        self.metric_plot.setYRange(finite.min() - 0.1 * spread, finite.max() + 0.1 * spread)
        if len(windows):
            half = report.window_s / 2
            first, last = self.middles[0] - half, self.middles[-1] + half
            self.metric_plot.setXRange(first, last, padding=0.02)


def _or_nan(value: float | None) -> float:
    return np.nan if value is None else float(value)
