"""Overview: one card per model, every value coloured by its status; a click explains it.

The first page an operator sees. What the cards show is read in one background task (the
models, their active alerts, each model's last minute of live statistics and any rollout)
every few seconds from a QTimer while the page is shown; a refresh still on its way is kept
rather than replaced (it brings the same news).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from PySide6.QtCore import Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QGridLayout, QScrollArea, QVBoxLayout, QWidget

from backend.schemas import ModelInfo, PerformanceReport, WindowDrift
from console.client import ApiClient, ApiError
from console.context import ConsoleContext
from console.dialogs.errors import describe_error
from console.model_health import RECENT_S, ModelSnapshot, indicators, summary
from console.pages.base import ENGINEERING_ROLES
from console.pages.refreshing import RefreshingPage
from console.widgets.common import make_label
from console.widgets.model_card import ModelCard, StatusLegend

T = TypeVar("T")

REFRESH_MS = 5_000
CARD_WIDTH = 380  # the narrowest a card reads well at; the grid has as many columns as fit


# Drift and quality change over minutes and cost the backend more than a minute of counts:
# read every 30 s, not at every refresh.
SLOW_READ_S = 30.0


class SlowReads:
    """The newest drift and quality read per model, and when; used by one task at a time."""

    def __init__(self) -> None:
        self.read_at: dict[str, float] = {}
        self.found: dict[str, tuple[WindowDrift | None, PerformanceReport | None]] = {}

    def get(
        self, client: ApiClient, model: ModelInfo
    ) -> tuple[WindowDrift | None, PerformanceReport | None]:
        now = time.monotonic()
        if now - self.read_at.get(model.name, -SLOW_READ_S) >= SLOW_READ_S:
            self.found[model.name] = (
                _allowed(lambda: client.window_drift(model.name, histograms=False)),
                _allowed(lambda: client.performance(model.name, window_s=3600, windows=1))
                if model.active_version
                else None,
            )
            self.read_at[model.name] = now
        return self.found[model.name]


def _allowed(read: Callable[[], T]) -> T | None:
    """What a read answers, or None when this token may not read it (its role's choice)."""
    try:
        return read()
    except ApiError as exc:
        if exc.status in (403, 404):
            return None
        raise


def read_snapshots(client: ApiClient, slow: SlowReads | None = None) -> list[ModelSnapshot]:
    """Everything the cards show, read in one go (in a worker thread)."""
    models = client.models()
    active = client.alerts(limit=1000)
    since = time.time() - RECENT_S
    slow = slow or SlowReads()
    snapshots = []
    for model in models:
        drift, performance = slow.get(client, model)
        snapshots.append(
            ModelSnapshot(
                model=model,
                series=client.live_series(1, since=since, model=model.name),
                rollout=client.rollout_status(model.name) if model.rollout else None,
                alerts=[alert for alert in active if alert.model == model.name],
                drift=drift,
                performance=performance,
            )
        )
    return snapshots


class OverviewPage(RefreshingPage):
    key = "overview"
    title = "Overview"
    icon = "overview"
    tooltip = "Every model at a glance: what serves, how busy, how fast, any alerts."
    roles = ENGINEERING_ROLES
    refresh_ms = REFRESH_MS

    def __init__(self, context: ConsoleContext):
        super().__init__(context)
        self.cards: dict[str, ModelCard] = {}
        self.slow_reads = SlowReads()
        self.refreshed_at: float | None = None
        self.heading = make_label("Your models at a glance", name="heading")
        self.status.setText("")
        self.status.setWordWrap(True)
        self.legend = StatusLegend()

        self.grid_host = QWidget()
        self.grid = QGridLayout(self.grid_host)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(12)
        self.grid.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.cards_area = QScrollArea()
        self.cards_area.setWidgetResizable(True)
        self.cards_area.setFrameShape(QScrollArea.Shape.NoFrame)
        self.cards_area.setToolTip(
            "One card per model. Hover a row for what it means and what to do; click it (or "
            "Tab to it and press Space) to open the page that explains it."
        )
        self.cards_area.setWidget(self.grid_host)
        self.empty_note = make_label(name="muted", wrap=True)
        self.empty_note.hide()

        layout = QVBoxLayout(self)
        layout.addWidget(self.heading)
        layout.addWidget(self.legend)
        layout.addWidget(self.status)
        layout.addWidget(self.empty_note)
        layout.addWidget(self.cards_area, 1)
        self._columns = 0

    # ---------------------------------------------------------------- data

    def refresh(self, replace: bool = True) -> None:
        self.call_backend(
            "snapshot",
            lambda client: read_snapshots(client, self.slow_reads),
            self.show_snapshots,
            self._failed,
            replace=replace,
        )

    def show_snapshots(self, snapshots: list[ModelSnapshot]) -> None:
        names = [snapshot.model.name for snapshot in snapshots]
        for gone in set(self.cards) - set(names):
            card = self.cards.pop(gone)
            self.grid.removeWidget(card)
            card.deleteLater()
        for snapshot in snapshots:
            if snapshot.model.name not in self.cards:
                card = ModelCard(snapshot.model.name)
                card.open_requested.connect(self.navigate)
                self.cards[snapshot.model.name] = card
            card = self.cards[snapshot.model.name]
            card.set_indicators(indicators(snapshot), summary(snapshot))
        self._lay_out(force=True)
        self.refreshed_at = time.time()
        self.empty_note.setVisible(not snapshots)
        self.empty_note.setText(
            "No models registered yet. Register one (servedeck-server register, or the Models "
            "page) and deploy it: its card appears here."
        )
        self.set_status(
            f"Updated {time.strftime('%H:%M:%S')}, every {REFRESH_MS // 1000} s; figures over "
            f"the last minute. Hover a row for what it means; click it for the page that "
            "explains it."
        )

    def _failed(self, error: Exception) -> None:
        self.set_status(
            f"Could not update the cards: {describe_error(error)}. What you see may be out of "
            "date; the page tries again by itself."
        )

    # ---------------------------------------------------------------- layout

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._lay_out()

    def _lay_out(self, force: bool = False) -> None:
        width = self.cards_area.viewport().width() or self.width()
        columns = max(1, width // CARD_WIDTH)
        if columns == self._columns and not force:
            return
        self._columns = columns
        for card in self.cards.values():
            self.grid.removeWidget(card)
        for position, name in enumerate(sorted(self.cards)):
            self.grid.addWidget(self.cards[name], position // columns, position % columns)
        for column in range(self.grid.columnCount()):
            self.grid.setColumnStretch(column, 1 if column < columns else 0)
        # The rows below the last card take the spare height: cards keep their own.
        rows = -(-len(self.cards) // columns)
        for row in range(self.grid.rowCount()):
            self.grid.setRowStretch(row, 1 if row >= rows else 0)
        self.grid.setRowStretch(rows, 1)
