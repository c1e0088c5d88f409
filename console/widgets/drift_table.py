"""The Drift page's features table: test, score, threshold, coloured status, and a sparkline.

Rows are handed over whole (``FeatureRow``), built from a report's ``FeatureDrift`` entries; the
last column paints each feature's score over the last windows (a small delegate: a polyline
and a red dot for every window where the feature drifted). Words for people are made here,
next to the numbers they explain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QPainter, QPen, QPolygonF
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QWidget,
)

from backend.schemas.drift import FeatureDrift
from console.resources import colour
from console.widgets.tables import Cell, CellTableModel

Index = QModelIndex | QPersistentModelIndex
TREND_ROLE = Qt.ItemDataRole.UserRole + 20
# Fewer current values than this and nothing drifted: too few to say the feature is fine.
MIN_VALUES = 30

DRIFTED, OK, TOO_FEW = "drifted", "ok", "not enough data"
STATUS_TONE = {DRIFTED: "bad", OK: "ok", TOO_FEW: "warn"}
STATUS_HELP = {
    DRIFTED: "The values of this feature changed against the training data: the model now "
    "works on data unlike what it learned from. Look at the overlay below for how; check the "
    "data source; retrain if the change is real and lasting.",
    OK: "The values look like the training data. Nothing to do.",
    TOO_FEW: "Too few values in this window to tell whether anything changed. Wait for more "
    "traffic, or choose a longer window above.",
}
TEST_NAMES = {
    "ks": "Kolmogorov-Smirnov",
    "wasserstein": "Wasserstein distance",
    "chi_square": "Chi-square",
    "jensen_shannon": "Jensen-Shannon distance",
}
TEST_HELP = {
    "ks": "The largest gap between the share of values below any number, now against in "
    "training: 0.05 means that somewhere 5% of the values moved from one side to the other.",
    "wasserstein": "How far, on average, values had to move to look like the training data, in "
    "units of the training data's spread (standard deviations).",
    "chi_square": "Whether the mix of categories differs from training by more than chance "
    "explains; large numbers mean a clearer difference.",
    "jensen_shannon": "How different the mix of categories is from training: 0 means the same "
    "mix, 1 means nothing in common.",
}
DECIDED_HELP = {
    "p_value": "p-value: with few values, small differences happen by chance, so the feature "
    "counts as drifted only when chance is very unlikely to explain the difference (the "
    "p-value is below the level in the threshold column, already corrected for testing many "
    "features at once).",
    "effect_size": "effect size: with many values even a tiny, harmless difference is "
    "'significant', so the feature counts as drifted only when the difference is also large "
    "enough to matter (the score reaches the threshold) and unlikely to be chance.",
}
DECIDED_NAMES = {"p_value": "p-value (few values)", "effect_size": "effect size (many values)"}

COLUMNS = (
    ("Feature", "The model's input (or output) compared with the training data."),
    ("Test", "The statistical test used for this feature; hover a cell for what it measures."),
    ("Score", "How different the values are now from the training data (0: the same)."),
    (
        "Threshold",
        "The limit the decision used: the score (many values) or the p-value (few values) "
        "against it.",
    ),
    (
        "Status",
        "drifted: changed against training · ok: looks like training · not enough "
        "data: too few values to tell.",
    ),
    ("Decided by", "Whether chance (p-value) or the size of the change (effect size) decided."),
    (
        "Trend",
        "The score over the last windows, oldest left; a red dot marks a window where the "
        "feature drifted.",
    ),
)
TREND_COLUMN = len(COLUMNS) - 1


def feature_status(feature: FeatureDrift) -> str:
    if feature.drifted:
        return DRIFTED
    if feature.n_current < MIN_VALUES or feature.n_reference == 0:
        return TOO_FEW
    return OK


def score_text(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


def threshold_text(feature: FeatureDrift) -> str:
    if feature.decided_by == "p_value":
        return f"p < {score_text(feature.alpha)}"
    return f"≥ {score_text(feature.threshold)}"


@dataclass
class FeatureRow:
    """One table row: the feature and its score over the last windows (None: no data)."""

    feature: FeatureDrift
    trend: list[float | None] = field(default_factory=list)
    trend_drifted: list[bool] = field(default_factory=list)

    @property
    def status(self) -> str:
        return feature_status(self.feature)

    def cells(self) -> tuple[Cell, ...]:
        f = self.feature
        status = self.status
        p_value = f"p = {score_text(f.p_value)}" if f.p_value is not None else "no p-value"
        values = f"{f.n_current:,} values now against {f.n_reference:,} in training" + (
            f"; {f.missing_current:,} missing now" if f.missing_current else ""
        )
        return (
            Cell(f.name, f"{f.name} ({f.kind}): {values}.", bold=f.drifted),
            Cell(TEST_NAMES.get(f.test, f.test), TEST_HELP.get(f.test, "")),
            Cell(
                score_text(f.statistic),
                f"{TEST_NAMES.get(f.test, f.test)} = {score_text(f.statistic)} ({p_value}). "
                + TEST_HELP.get(f.test, ""),
                right=True,
            ),
            Cell(threshold_text(f), DECIDED_HELP[f.decided_by], right=True),
            Cell(status, f"{STATUS_HELP[status]}\n\n{f.explanation}", tone=STATUS_TONE[status]),
            Cell(DECIDED_NAMES[f.decided_by], DECIDED_HELP[f.decided_by]),
            Cell("", self.trend_tip()),
        )

    def trend_tip(self) -> str:
        known = [v for v in self.trend if v is not None]
        if not known:
            return "No earlier windows with data yet: the line appears as windows pass."
        drifted = sum(self.trend_drifted)
        if len(known) == 1:
            state = "drifted" if drifted else "not drifted"
            return (
                f"Only one window of the last {len(self.trend)} has enough data so far "
                f"(score {score_text(known[0])}, {state}): the line grows as windows pass."
            )
        return (
            f"Score over the last {len(self.trend)} windows, oldest left: from "
            f"{score_text(known[0])} to {score_text(known[-1])}; drifted in {drifted} of them. "
            "A rising line means the change is growing; one red dot alone may be a blip."
        )


class FeatureDriftModel(CellTableModel):
    """The table's cells, and each row's trend under ``TREND_ROLE`` for the delegate."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(COLUMNS, parent)
        # The features behind the cells (the base's ``rows``): the delegate draws their trends.
        self.feature_rows: list[FeatureRow] = []

    def set_feature_rows(self, rows: Sequence[FeatureRow]) -> None:
        self.feature_rows = list(rows)
        self.set_rows(
            [row.cells() for row in self.feature_rows],
            [row.feature.name for row in self.feature_rows],
        )

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == TREND_ROLE and index.isValid():
            row = self.feature_rows[index.row()]
            return row.trend, row.trend_drifted
        return super().data(index, role)


class SparklineDelegate(QStyledItemDelegate):
    """Paints a row's trend as a line scaled to its own range, red dots where it drifted."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        super().paint(painter, option, index)  # the selection and alternating background
        trend, drifted = index.data(TREND_ROLE) or ([], [])
        points = [(i, v) for i, v in enumerate(trend) if v is not None]
        if not points:
            return
        rect = QRectF(option.rect).adjusted(6, 4, -6, -4)
        values = [v for _, v in points]
        low, high = min(0.0, min(values)), max(values)
        span = (high - low) or 1.0
        step = rect.width() / max(len(trend) - 1, 1)

        def at(i: int, v: float) -> QPointF:
            return QPointF(rect.left() + i * step, rect.bottom() - (v - low) / span * rect.height())

        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        line = option.palette.highlightedText().color() if selected else QColor(colour("accent"))
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setPen(QPen(line, 1.2))
        painter.drawPolyline(QPolygonF([at(i, v) for i, v in points]))
        painter.setPen(Qt.PenStyle.NoPen)
        for i, v in points:
            if i < len(drifted) and drifted[i]:
                painter.setBrush(QBrush(QColor(colour("bad"))))
            elif len(points) == 1 or i == points[-1][0]:
                # A lone score (the first window with data) is a dot, not an invisible line;
                # the newest score is marked too, where the eye starts reading.
                painter.setBrush(QBrush(line))
            else:
                continue
            painter.drawEllipse(at(i, v), 2.5, 2.5)
        painter.restore()


class FeatureDriftTable(QTableView):
    """The features of one report; select a row to see its distributions."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.features = FeatureDriftModel(self)
        self.setModel(self.features)
        self.setItemDelegateForColumn(TREND_COLUMN, SparklineDelegate(self))
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(26)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setAlternatingRowColors(True)
        self.setWordWrap(False)
        self.setTabKeyNavigation(False)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(TREND_COLUMN, QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(40)
        self.setToolTip(
            "Each input of the model, compared with the training data. Select a feature to see "
            "its values now against training below."
        )

    def show_rows(self, rows: Sequence[FeatureRow]) -> None:
        """New rows; the feature selected before stays selected (else the first row)."""
        chosen = self.selected_feature()
        self.features.set_feature_rows(rows)
        if rows:
            self.selectRow(max(self.features.row_of(chosen), 0))

    def selected_feature(self) -> str | None:
        rows = self.selectionModel().selectedRows()
        key = self.features.key(rows[0].row()) if rows else None
        return str(key) if key is not None else None

    def select_feature(self, name: str) -> bool:
        row = self.features.row_of(name)
        if row < 0:
            return False
        self.selectRow(row)
        return True

    def row_count(self) -> int:
        return self.features.rowCount()

    def text(self, row: int, column: int) -> str:
        return self.features.cell(row, column).text

    def row(self, name: str) -> FeatureRow | None:
        index = self.features.row_of(name)
        return self.features.feature_rows[index] if index >= 0 else None
