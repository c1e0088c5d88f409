"""Alerts: the list with its filters, the selected alert in plain words, acknowledge by keyboard.

The page shows the window's ``AlertBook`` (fed by the one alert reader thread, see
``console.alert_stream``): new and changed alerts arrive as signals, nothing polls. Resolved
alerts are history, not news: they are read when the user asks for them (the Resolved or All
filter). Acknowledging is a client call through the task helper; the answer updates the book,
so the badge and the list change together.
"""

from __future__ import annotations

from PySide6.QtCore import QItemSelection, Qt
from PySide6.QtGui import QKeySequence, QResizeEvent, QShortcut
from PySide6.QtWidgets import QComboBox, QDialog, QHBoxLayout, QSizePolicy, QVBoxLayout, QWidget

from backend.schemas import Alert
from console.alert_stream import AlertBook
from console.client import ApiError
from console.context import ConsoleContext
from console.dialogs.errors import describe_error
from console.dialogs.messages import show_error
from console.pages.base import ENGINEERING_ROLES, Page
from console.widgets.alert_acknowledge import AcknowledgeDialog
from console.widgets.alert_details import AlertDetails
from console.widgets.alert_table import AlertFilter, AlertTableModel, AlertView
from console.widgets.common import make_label, make_splitter

# Resolved alerts read for the history filters (newest first).
HISTORY_LIMIT = 500
STATUS_CHOICES = (
    ("active", "Active (open and acknowledged)"),
    ("open", "Open only"),
    ("resolved", "Resolved"),
    ("all", "All"),
)
ACKNOWLEDGING_ROLES = frozenset({"admin", "engineer"})
# Narrower than this, the details go below the list: beside it, the titles were cut to a word.
SIDE_BY_SIDE_MIN_WIDTH = 1100


class AlertsPage(Page):
    key = "alerts"
    title = "Alerts"
    icon = "alerts"
    tooltip = "Alerts about your models: what happened, what it means, who takes it on."
    roles = ENGINEERING_ROLES

    def __init__(self, context: ConsoleContext):
        super().__init__(context)
        self.book: AlertBook | None = None
        self.table = AlertTableModel()
        self.filtered = AlertFilter()
        self.filtered.setSourceModel(self.table)
        self.dialog: AcknowledgeDialog | None = None
        self.error_dialog: QDialog | None = None
        self.history_loaded = False

        self.status_filter = QComboBox()
        for value, text in STATUS_CHOICES:
            self.status_filter.addItem(text, value)
        self.status_filter.setToolTip(
            "Active: alerts still in force (open: nobody took them on yet; acknowledged: "
            "someone owns them). Resolved: history."
        )
        self.model_filter = QComboBox()
        self.model_filter.addItem("All models", "")
        self.model_filter.setToolTip("Show only this model's alerts.")
        self.model_filter.setMinimumContentsLength(12)
        self.severity_filter = QComboBox()
        self.severity_filter.addItem("Any severity", "")
        self.severity_filter.addItem("Critical", "critical")
        self.severity_filter.addItem("Warning", "warning")
        self.severity_filter.setToolTip(
            "Critical: act now, answers are likely wrong. Warning: look when you can."
        )
        self.status = make_label(name="muted")
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

        self.view = AlertView(self.filtered)
        self.view.selectionModel().selectionChanged.connect(self._on_selection)
        self.details = AlertDetails()
        self.details.acknowledge_requested.connect(self.ask_acknowledge)
        for signal in (
            self.filtered.rowsInserted,
            self.filtered.rowsRemoved,
            self.filtered.modelReset,
            self.filtered.layoutChanged,
        ):
            signal.connect(self._show_counts)
        self.table.dataChanged.connect(self._on_alerts_changed)

        # The keyboard way: select an alert, press A (or Ctrl+Enter), type a note, Enter.
        for keys, where in (
            ("A", self.view),
            ("Ctrl+Return", self),
            ("Ctrl+Enter", self),
        ):
            shortcut = QShortcut(QKeySequence(keys), where)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(self.acknowledge_selected)

        filters = QHBoxLayout()
        for widget in (self.status_filter, self.model_filter, self.severity_filter):
            filters.addWidget(widget)
        filters.addWidget(self.status, 1)
        table_box = QWidget()
        table_layout = QVBoxLayout(table_box)
        table_layout.setContentsMargins(0, 0, 0, 0)
        table_layout.addLayout(filters)
        table_layout.addWidget(self.view, 1)
        self.splitter = make_splitter(Qt.Orientation.Horizontal, (table_box, 3), (self.details, 2))
        self.splitter.setSizes([700, 450])
        layout = QVBoxLayout(self)
        layout.addWidget(self.splitter)

        for box in (self.status_filter, self.model_filter, self.severity_filter):
            box.currentIndexChanged.connect(self.apply_filters)
        self.apply_filters()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        wanted = (
            Qt.Orientation.Horizontal
            if self.width() >= SIDE_BY_SIDE_MIN_WIDTH
            else Qt.Orientation.Vertical
        )
        if self.splitter.orientation() != wanted:
            self.splitter.setOrientation(wanted)
            total = self.width() if wanted == Qt.Orientation.Horizontal else self.height()
            self.splitter.setSizes([total * 3 // 5, total * 2 // 5])

    # ---------------------------------------------------------------- lifecycle

    def set_book(self, book: AlertBook) -> None:
        """Follow the window's alerts (the one stream's): what it knows now, then its news."""
        self.book = book
        book.changed.connect(self._take)
        self._take(list(book.alerts.values()))

    def connection_changed(self, connected: bool) -> None:
        role = self.context.identity.role if self.context.identity else ""
        self.details.set_may_acknowledge(role in ACKNOWLEDGING_ROLES)
        if connected and self._wants_history():
            self.load_history()

    def focus_model(self, model: str) -> None:
        """Open on one model's active alerts (from the Overview's alerts count)."""
        self._remember_model(model)
        self.status_filter.setCurrentIndex(self.status_filter.findData("active"))
        self.model_filter.setCurrentIndex(self.model_filter.findData(model))

    # ---------------------------------------------------------------- alerts in

    def _take(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            self._remember_model(alert.model)
        self.table.upsert(alerts)
        self._show_counts()

    def _on_alerts_changed(self) -> None:
        """A shown alert changed (acknowledged, resolved): its details follow."""
        shown = self.details.shown
        if shown is not None:
            current = self.table.alert(shown.id)
            if current is not None and current != shown:
                self.details.show_alert(current)

    def load_history(self) -> None:
        """Resolved alerts, for the Resolved and All filters (read on demand: history)."""
        if self.book is None:
            return
        book = self.book
        model = self.model_filter.currentData() or None

        def done(alerts: list[Alert]) -> None:
            self.history_loaded = True
            book.take_snapshot(alerts)

        self.call_backend(
            "history",
            lambda client: client.alerts(model=model, statuses=("resolved",), limit=HISTORY_LIMIT),
            done,
            lambda error: self.status.setText(
                f"Could not read resolved alerts: {describe_error(error)}"
            ),
        )

    # ---------------------------------------------------------------- filters

    def _wants_history(self) -> bool:
        return self.status_filter.currentData() in ("resolved", "all")

    def _remember_model(self, model: str) -> None:
        if self.model_filter.findData(model) < 0:
            self.model_filter.addItem(model, model)

    def apply_filters(self) -> None:
        self.filtered.set_filters(
            self.status_filter.currentData(),
            self.model_filter.currentData() or "",
            self.severity_filter.currentData() or "",
        )
        if self._wants_history():
            self.load_history()
        if not self.view.selectionModel().hasSelection():
            self.details.show_nothing()
        self._show_counts()

    def _show_counts(self) -> None:
        shown = self.filtered.rowCount()
        total = self.table.rowCount()
        if shown:
            self.view.show_empty_note(None)
        elif total == 0:
            self.view.show_empty_note(
                "No active alerts. When a check finds something wrong with a model, its alert "
                "appears here at once (and in the status bar on every page)."
            )
        else:
            self.view.show_empty_note(
                f"No alert matches the filters ({total} known). Choose “All models”, “Any "
                "severity” or another status to see the others."
            )
        self.status.setText(f"{shown} shown")

    # ---------------------------------------------------------------- selection

    def selected_alert(self) -> Alert | None:
        rows = self.view.selectionModel().selectedRows()
        if not rows:
            return None
        return self.table.alert_at(self.filtered.mapToSource(rows[0]).row())

    def _on_selection(self, _selected: QItemSelection, _deselected: QItemSelection) -> None:
        alert = self.selected_alert()
        if alert is None:
            self.details.show_nothing()
        else:
            self.details.show_alert(alert)

    # ---------------------------------------------------------------- acknowledge

    def acknowledge_selected(self) -> None:
        alert = self.selected_alert()
        if alert is None:
            self.error_dialog = show_error(
                self, "Acknowledge", "Select an alert first (arrow keys), then press A."
            )
        else:
            self.ask_acknowledge(alert)

    def ask_acknowledge(self, alert: Alert) -> None:
        if not self.details.may_acknowledge:
            self.error_dialog = show_error(
                self,
                "Acknowledge",
                "Acknowledging needs an admin or engineer token; this one may only read.",
            )
            return
        if alert.status != "open":
            who = f" by {alert.acknowledged_by}" if alert.acknowledged_by else ""
            self.error_dialog = show_error(
                self, "Acknowledge", f"This alert is already {alert.status}{who}."
            )
            return
        self.dialog = AcknowledgeDialog(alert, self)
        self.dialog.accepted.connect(lambda: self._acknowledge(alert, self._dialog_note()))
        self.dialog.open()

    def _dialog_note(self) -> str:
        return self.dialog.note_text if self.dialog is not None else ""

    def _acknowledge(self, alert: Alert, note: str) -> None:
        self.status.setText(f"Acknowledging alert {alert.id}…")
        self.call_backend(
            "acknowledge",
            lambda client: client.acknowledge_alert(alert.id, note),
            self._acknowledged,
            lambda error: self._not_acknowledged(alert, error),
        )

    def _acknowledged(self, alert: Alert) -> None:
        if self.book is not None:
            self.book.update(alert)
        else:
            self.table.upsert([alert])
        self._show_counts()

    def _not_acknowledged(self, alert: Alert, error: Exception) -> None:
        self.error_dialog = show_error(
            self, "The alert was not acknowledged", describe_error(error).capitalize() + "."
        )
        self._show_counts()
        if isinstance(error, ApiError) and error.status == 409:
            # Someone else was quicker: show who owns it now.
            self.call_backend("refresh", lambda client: client.alert(alert.id), self._acknowledged)
