"""One feature's values now against training: both distributions overlaid, and what it means.

Bars come from a report's ``DistributionBar`` list (a share of the reference's and of the
current values per bin or category). The training share is a wide pale bar, the current one a
narrow bar in front of it, so a change shows as a narrow bar sticking out of or falling short
of its pale one, without a legend covering anything.
"""

from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QVBoxLayout, QWidget

from backend.schemas.drift import DistributionBar, FeatureDrift
from console.resources import colour
from console.widgets.common import make_label
from console.widgets.drift_table import STATUS_HELP, STATUS_TONE, feature_status
from console.widgets.live_charts import keyed_title, use_palette_colours

# Tick labels on the bottom axis: at most this many, so they never overlap.
MAX_TICKS = 8
NOTHING = "Select a feature in the table to see its values now against training."


def _translucent(name: str, alpha: int) -> QColor:
    result = QColor(colour(name))
    result.setAlpha(alpha)
    return result


def tick_labels(bars: list[DistributionBar]) -> list[tuple[float, str]]:
    """Labels for the bottom axis: every category (thinned), or numbers at bar edges."""
    if not bars:
        return []
    step = max(1, int(np.ceil(len(bars) / MAX_TICKS)))
    ticks = []
    for i in range(0, len(bars), step):
        bar = bars[i]
        if bar.low is None and bar.high is None:
            text = bar.label if len(bar.label) <= 14 else bar.label[:13] + "…"
        elif bar.low is None:
            text = f"< {bar.high:.3g}"
        else:
            text = f"{bar.low:.3g}"
        ticks.append((float(i), text))
    return ticks


class DistributionOverlay(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        use_palette_colours()
        self.feature: FeatureDrift | None = None
        self.title = make_label(NOTHING, name="muted", wrap=True)
        self.plot = pg.PlotWidget()
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.setLabel("left", "% of values")
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.plot.showGrid(y=True, alpha=0.2)
        self.plot.setTitle(
            keyed_title(
                "Values now against training",
                [("training", colour("muted")), ("now", colour("accent"))],
            ),
            size="9pt",
        )
        self.plot.setToolTip(
            "How the values of the selected feature are spread: pale wide bars for the "
            "training data, narrow bars for the window shown. Where a narrow bar sticks out of "
            "its pale one, more values fall there now than in training; where it falls short, "
            "fewer. Matching bars mean nothing changed."
        )
        self.reference_bars = pg.BarGraphItem(
            x=[], height=[], width=0.85, brush=_translucent("muted", 90), pen=pg.mkPen(None)
        )
        self.current_bars = pg.BarGraphItem(
            x=[], height=[], width=0.4, brush=_translucent("accent", 220), pen=pg.mkPen(None)
        )
        self.plot.addItem(self.reference_bars)
        self.plot.addItem(self.current_bars)
        self.explanation = make_label(
            tip="What the change means and what to do, in words.", wrap=True
        )
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.explanation)
        self.show_nothing(NOTHING)

    @property
    def shown_bars(self) -> tuple[list[float], list[float]]:
        """The shares drawn (training, now), as fractions: what a reader sees."""
        reference = self.reference_bars.opts.get("height")
        current = self.current_bars.opts.get("height")
        return [float(v) / 100 for v in reference], [float(v) / 100 for v in current]

    def show_nothing(self, text: str) -> None:
        self.feature = None
        self.title.setText(text)
        self.reference_bars.setOpts(x=[], height=[])
        self.current_bars.setOpts(x=[], height=[])
        self.plot.getAxis("bottom").setTicks([[]])
        self.explanation.setText("")

    def show_feature(self, feature: FeatureDrift) -> None:
        self.feature = feature
        status = feature_status(feature)
        self.title.setText(
            f"<b>{html.escape(feature.name)}</b> "
            f"<span style='color:{colour(STATUS_TONE[status])}'>{html.escape(status)}</span> · "
            f"{feature.n_current:,} values now, {feature.n_reference:,} in training"
        )
        self.title.setToolTip(STATUS_HELP[status])
        self.explanation.setText(feature.explanation)
        bars = feature.histogram or []
        if not bars:
            self.reference_bars.setOpts(x=[], height=[])
            self.current_bars.setOpts(x=[], height=[])
            self.plot.getAxis("bottom").setTicks([[]])
            self.explanation.setText(
                feature.explanation
                + " (No distribution to draw: no values of this feature in the window.)"
            )
            return
        x = np.arange(len(bars), dtype=np.float64)
        # Drawn in percent: "12 %" reads better than "0.12" or pyqtgraph's "(x0.001)".
        self.reference_bars.setOpts(x=x, height=np.array([b.reference for b in bars]) * 100)
        self.current_bars.setOpts(x=x, height=np.array([b.current for b in bars]) * 100)
        self.plot.getAxis("bottom").setTicks([tick_labels(bars)])
        self.plot.setLabel(
            "bottom", "category" if feature.kind == "categorical" else f"{feature.name} (from)"
        )
        top = max(max(b.reference for b in bars), max(b.current for b in bars), 0.01) * 100
        self.plot.setXRange(-0.6, len(bars) - 0.4, padding=0)
        self.plot.setYRange(0, top * 1.1, padding=0)
