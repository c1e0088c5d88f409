"""The Feedback loops page's charts: served against held-out traffic over time, and the
prediction bias per slice of one feature.

Each chart redraws from the report it was last handed (the page keeps it and asks nothing
new when the reader picks another indicator). Curves are named in the title in their colours
(no legend covers them); a window without a value is a gap, never a zero; a chart with nothing
to draw says why instead.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QStackedWidget, QVBoxLayout, QWidget

from backend.schemas.feedback_loops import FeedbackLoopReport, Indicator, PredictionBias
from console.loop_words import in_percent
from console.resources import colour
from console.widgets.common import make_label
from console.widgets.live_charts import keyed_title, time_plot, use_palette_colours

SERVED, HELD_OUT = "accent", "warn"


def _or_nan(value: float | None) -> float:
    return np.nan if value is None else float(value)


class _ChartOrNote(QStackedWidget):
    """A chart, or centred words saying why there is nothing to draw."""

    def __init__(self, chart: QWidget) -> None:
        super().__init__()
        self.note = make_label(wrap=True, name="muted")
        self.note.setTextFormat(Qt.TextFormat.PlainText)
        self.note.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.addWidget(self.note)
        self.addWidget(chart)
        self.chart = chart

    def show_note(self, text: str) -> None:
        self.note.setText(text)
        self.setCurrentWidget(self.note)

    def show_chart(self) -> None:
        self.setCurrentWidget(self.chart)

    @property
    def showing_chart(self) -> bool:
        return self.currentWidget() is self.chart


class LoopTrendChart(QWidget):
    """One indicator's served and held-out values per window (``choices``: which indicators
    the reader may pick; one choice shows no selector)."""

    def __init__(self, choices: tuple[tuple[str, str], ...], tooltip: str) -> None:
        super().__init__()
        use_palette_colours()
        self.report: FeedbackLoopReport | None = None
        self.choice = QComboBox()
        self.choice.setToolTip("The indicator drawn over time.")
        for label, name in choices:
            self.choice.addItem(label, name)
        self.plot = time_plot(
            keyed_title("", [("served", colour(SERVED)), ("held out", colour(HELD_OUT))]),
            tooltip,
            "",
        )
        self.served_curve = self.plot.plot(
            pen=pg.mkPen(colour(SERVED), width=2),
            symbol="o",
            symbolSize=6,
            symbolBrush=colour(SERVED),
            symbolPen=None,
            connect="finite",
        )
        self.held_out_curve = self.plot.plot(
            pen=pg.mkPen(colour(HELD_OUT), width=2, style=Qt.PenStyle.DashLine),
            symbol="t",
            symbolSize=6,
            symbolBrush=colour(HELD_OUT),
            symbolPen=None,
            connect="finite",
        )
        self.plot.setLabel("bottom", "time (middle of each window)")
        self.area = _ChartOrNote(self.plot)
        self.area.show_note("Not loaded yet.")
        self.hint = make_label(name="muted", wrap=True)
        # What the curves measure, in the backend's words (too long for a title or an axis).
        self.measure = make_label(wrap=True)
        self.measure.setTextFormat(Qt.TextFormat.PlainText)
        top = QHBoxLayout()
        if len(choices) > 1:
            top.addWidget(make_label("Indicator", self.choice.toolTip()))
            top.addWidget(self.choice)
        top.addWidget(self.hint, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.measure)
        layout.addWidget(self.area, 1)
        self.middles = np.array([], dtype=np.float64)
        self.served = np.array([], dtype=np.float64)
        self.held_out = np.array([], dtype=np.float64)
        self.choice.currentIndexChanged.connect(lambda _i: self.redraw())

    def indicator(self) -> Indicator | None:
        if self.report is None:
            return None
        return getattr(self.report, str(self.choice.currentData()))  # type: ignore[no-any-return]

    def show_report(self, report: FeedbackLoopReport) -> None:
        self.report = report
        self.redraw()

    def show_note(self, text: str) -> None:
        self.report = None
        self.hint.setText("")
        self.area.show_note(text)

    def redraw(self) -> None:
        indicator = self.indicator()
        if indicator is None:
            return
        self.hint.setText("")
        self.measure.setText("")
        trend = indicator.trend
        self.middles = np.array(
            [(p.start.timestamp() + p.end.timestamp()) / 2 for p in trend], dtype=np.float64
        )
        scale = 100.0 if in_percent(indicator) else 1.0
        distance = indicator.name == "label_drift"
        if distance:
            # One number per window: how far apart the two label mixes are.
            self.served = np.array([_or_nan(p.gap) for p in trend], dtype=np.float64)
            self.held_out = np.full(len(trend), np.nan)
        else:
            self.served = np.array([_or_nan(p.served) * scale for p in trend], dtype=np.float64)
            self.held_out = np.array([_or_nan(p.held_out) * scale for p in trend], dtype=np.float64)
        if not indicator.applicable:
            self.area.show_note(f"{indicator.title}: {indicator.explanation}")
            return
        if not (np.isfinite(self.served).any() or np.isfinite(self.held_out).any()):
            self.area.show_note(
                f"Nothing to draw for {indicator.title.lower()} yet: no window "
                "holds enough labelled served or held-out predictions. Held-out traffic and "
                "labels accumulate with time; choose longer windows to see more."
            )
            return
        keys = (
            [("distance between served and held out", colour(SERVED))]
            if distance
            else [("served", colour(SERVED)), ("held out", colour(HELD_OUT))]
        )
        self.plot.setTitle(keyed_title(indicator.title, keys), size="9pt")
        self.measure.setText(f"Plotted: {indicator.measure}." if indicator.measure else "")
        if distance:
            self.plot.setLabel("left", "distance (0 same, 1 disjoint)")
        elif indicator.name == "prediction_bias":
            self.plot.setLabel("left", "bias (percentage points)")
        else:
            self.plot.setLabel("left", "percent" if scale == 100.0 else "value")
        for curve, values in (
            (self.served_curve, self.served),
            (self.held_out_curve, self.held_out),
        ):
            if np.isfinite(values).any():
                curve.setData(self.middles, values)
            else:
                curve.setData([], [])  # pyqtgraph warns on the bounds of only NaN
        if len(self.middles):
            half = self.report.window_s / 2 if self.report else 0
            self.plot.setXRange(self.middles[0] - half, self.middles[-1] + half, padding=0.02)
        shown = np.concatenate([self.served, self.held_out])
        finite = shown[np.isfinite(shown)]
        # Never a magnifying glass on noise: at least a few points (or 0.05) of height.
        pad = max(float(finite.max() - finite.min()) * 0.15, 1.0 if scale == 100.0 else 0.02)
        self.plot.setYRange(float(finite.min()) - pad, float(finite.max()) + pad, padding=0)
        windows_with_values = int((np.isfinite(self.served) | np.isfinite(self.held_out)).sum())
        self.hint.setText(
            "Only one window has values yet: choose shorter windows to see a trend."
            if windows_with_values == 1
            else ""
        )
        self.area.show_chart()


class SliceBiasChart(QWidget):
    """Mean prediction minus observed rate per slice of one feature, served beside held out,
    each bar with its 95% range; the reader picks the feature (the page asks the backend)."""

    feature_chosen = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        use_palette_colours()
        self.feature_choice = QComboBox()
        self.feature_choice.setToolTip(
            "The input feature whose values split the traffic into slices (numbers into ranges)."
        )
        self.feature_choice.setMinimumContentsLength(12)
        self.plot = pg.PlotWidget()
        self.plot.setTitle(
            keyed_title(
                "Prediction bias per slice",
                [("served", colour(SERVED)), ("held out", colour(HELD_OUT))],
            ),
            size="9pt",
        )
        self.plot.setToolTip(
            "Per slice: the mean predicted probability of the outcome minus the share that "
            "turned out to have it. Above 0 the model over-predicts the outcome there, below 0 "
            "it under-predicts. A slice where served traffic is biased but held-out traffic is "
            "not is where the model's own answers shaped the labels."
        )
        self.plot.setLabel("left", "bias (percentage points)")
        self.plot.showGrid(y=True, alpha=0.2)
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.addItem(pg.InfiniteLine(pos=0, angle=0, pen=pg.mkPen(colour("muted"))))
        self.served_bars = pg.BarGraphItem(x=[], height=[], width=0.38, brush=colour(SERVED))
        self.held_out_bars = pg.BarGraphItem(x=[], height=[], width=0.38, brush=colour(HELD_OUT))
        self.served_ranges = pg.ErrorBarItem(beam=0.12, pen=pg.mkPen(colour("muted")))
        self.held_out_ranges = pg.ErrorBarItem(beam=0.12, pen=pg.mkPen(colour("muted")))
        for item in (
            self.served_bars,
            self.held_out_bars,
            self.served_ranges,
            self.held_out_ranges,
        ):
            self.plot.addItem(item)
        self.area = _ChartOrNote(self.plot)
        self.area.show_note("Not loaded yet.")
        self.words = make_label(wrap=True)
        self.words.setTextFormat(Qt.TextFormat.PlainText)
        top = QHBoxLayout()
        top.addWidget(make_label("Slice by", self.feature_choice.toolTip()))
        top.addWidget(self.feature_choice)
        top.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.words)
        layout.addWidget(self.area, 1)
        self.slices: list[str] = []
        self.served = np.array([], dtype=np.float64)
        self.held_out = np.array([], dtype=np.float64)
        self.feature_choice.currentIndexChanged.connect(self._on_feature)

    def chosen_feature(self) -> str:
        return str(self.feature_choice.currentData() or "")

    def show_note(self, text: str) -> None:
        self.words.setText("")
        self.area.show_note(text)

    def show_bias(self, bias: PredictionBias) -> None:
        box = self.feature_choice
        box.blockSignals(True)
        try:
            box.clear()
            for feature in bias.features:
                box.addItem(feature, feature)
            box.setCurrentIndex(max(box.findData(bias.feature or ""), 0))
        finally:
            box.blockSignals(False)
        self.words.setText(bias.explanation)
        self.slices = [entry.slice for entry in bias.slices]
        self.served = np.array(
            [_or_nan(entry.served.bias.value) * 100 for entry in bias.slices], dtype=np.float64
        )
        self.held_out = np.array(
            [_or_nan(entry.held_out.bias.value) * 100 for entry in bias.slices], dtype=np.float64
        )
        if not bias.applicable:
            self.area.show_note("Prediction bias applies to classifiers only.")
            return
        if not (np.isfinite(self.served).any() or np.isfinite(self.held_out).any()):
            self.area.show_note(
                f"No slice of {bias.feature or 'the feature'} has labelled predictions yet: "
                "the bias shows once labels arrive for served and held-out traffic."
            )
            return
        positions = np.arange(len(self.slices), dtype=np.float64)
        sides = (
            (self.served_bars, self.served_ranges, self.served, -0.2, "served"),
            (self.held_out_bars, self.held_out_ranges, self.held_out, 0.2, "held_out"),
        )
        for bars, ranges, values, shift, side in sides:
            shown = np.isfinite(values)
            x = positions[shown] + shift
            bars.setOpts(x=x, height=values[shown])
            lows = np.array(
                [_or_nan(getattr(e, side).bias.low) * 100 for e in bias.slices], dtype=np.float64
            )[shown]
            highs = np.array(
                [_or_nan(getattr(e, side).bias.high) * 100 for e in bias.slices], dtype=np.float64
            )[shown]
            known = np.isfinite(lows) & np.isfinite(highs)
            ranges.setData(
                x=x[known],
                y=values[shown][known],
                top=highs[known] - values[shown][known],
                bottom=values[shown][known] - lows[known],
            )
        axis = self.plot.getAxis("bottom")
        axis.setTicks([[(float(i), name) for i, name in enumerate(self.slices)]])
        self.plot.setLabel("bottom", f"slices of {bias.feature}")
        self.plot.setXRange(-0.7, len(self.slices) - 0.3, padding=0)
        self.area.show_chart()

    def _on_feature(self, _index: int) -> None:
        self.feature_chosen.emit(self.chosen_feature())
