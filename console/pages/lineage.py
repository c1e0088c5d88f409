"""Lineage: which models' outputs feed which models' inputs, with feedback loops in red.

Versions declare their feature sources at registration; the backend joins them into a graph
(each model's serving version, else its newest) and names every loop. This page reads it
through a keyed task when shown, on F5 and every minute while shown, and hands it to the
graph widget.
"""

from __future__ import annotations

import time

from PySide6.QtWidgets import QHBoxLayout, QVBoxLayout

from backend.schemas import LineageGraph
from console.context import ConsoleContext
from console.dialogs.errors import describe_error
from console.pages.base import ENGINEERING_ROLES
from console.pages.refreshing import RefreshingPage
from console.resources import colour
from console.widgets.common import make_label
from console.widgets.lineage_graph import LineageView

# Lineage changes only when versions are registered or deployed: a minute is fresh enough.
REFRESH_MS = 60_000


class LineagePage(RefreshingPage):
    key = "lineage"
    title = "Lineage"
    icon = "lineage"
    tooltip = (
        "Which models' outputs feed other models' inputs, and the feedback loops among them "
        "(a model that learns from data its own answers shaped)."
    )
    roles = ENGINEERING_ROLES
    refresh_ms = REFRESH_MS
    shown_as = "the lineage"

    def __init__(self, context: ConsoleContext):
        super().__init__(context)
        self.graph: LineageGraph | None = None
        self.view = LineageView()
        self.refresh_button = self.make_refresh_button(
            "Read the lineage again now (F5); it also refreshes every minute."
        )
        self.summary = make_label(name="heading")
        top = QHBoxLayout()
        top.addWidget(self.summary)
        top.addWidget(self.refresh_button)
        top.addWidget(self.status, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.view, 1)

    def has_data(self) -> bool:
        return self.graph is not None

    # ---------------------------------------------------------------- loading

    def refresh(self, replace: bool = True) -> None:
        self.set_status("Reading…")
        self.call_backend(
            "lineage",
            lambda client: client.lineage(),
            self._on_graph,
            self._on_failed,
            replace=replace,
        )

    def _on_graph(self, graph: LineageGraph) -> None:
        self.graph = graph
        self.view.show_graph(graph)
        loops = len(graph.cycles)
        if not graph.edges:
            self.summary.setText("")
        elif loops:
            self.summary.setText(
                f"<span style='color:{colour('bad')}'>{loops} feedback "
                f"loop{'s' if loops != 1 else ''}</span>"
            )
        else:
            self.summary.setText(f"<span style='color:{colour('ok')}'>No feedback loop</span>")
        self.set_status(
            f"{len(graph.edges)} declared input{'s' if len(graph.edges) != 1 else ''} across "
            f"{len(graph.nodes)} models; updated {time.strftime('%H:%M:%S')}."
        )

    def _on_failed(self, error: Exception) -> None:
        reason = describe_error(error)
        if self.graph is None:
            self.view.show_message("No lineage", f"The backend gave none: {reason}")
        self.set_status(f"Could not read the lineage: {reason}", "bad")
