"""The inbox's filter bar: saved views, text search, model, category, assignee, order, and a
toggle per status with how many reports wait in it and for how long.

It makes no call: ``filters_changed`` hands the page the new question; saving a view is asked
for by ``save_view_requested`` (the page keeps views in QSettings).
"""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import QSignalBlocker, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QInputDialog,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from backend.schemas.reports import REPORT_CATEGORIES, REPORT_STATUSES, ReportCounts
from console.report_words import (
    CATEGORY_WORDS,
    SORT_WORDS,
    STATUS_MEANING,
    UNASSIGNED,
    ReportFilters,
    age_text,
    status_word,
)
from console.widgets.common import make_button, make_label

# Typing waits this long for the next key before asking the backend.
SEARCH_DELAY_MS = 400
ME = "\x00me"  # the assignee choice "me", resolved to the signed-in name by ``me``


class ReportFilterBar(QWidget):
    filters_changed = Signal(object)  # ReportFilters
    view_chosen = Signal(str)
    save_view_requested = Signal(str)
    delete_view_requested = Signal(str)

    def __init__(self, me: str = "") -> None:
        super().__init__()
        self.me = me
        self.views = QComboBox()
        self.views.setToolTip(
            "Saved views: a set of filters and an order, kept on this computer. Choose one "
            "to apply it."
        )
        self.views.setMinimumContentsLength(14)
        self.views.activated.connect(lambda _i: self.view_chosen.emit(self.views.currentText()))
        self.save_view = make_button(
            "Save view…", "Keep the filters and order shown under a name.", self._ask_view_name
        )
        self.delete_view = make_button(
            "Delete view",
            "Forget the saved view chosen (the built-in views stay).",
            lambda: self.delete_view_requested.emit(self.views.currentText()),
        )
        self.search = QLineEdit()
        self.search.setObjectName("report-search")
        self.search.setPlaceholderText("Search the text… (/)")
        self.search.setClearButtonEnabled(True)
        self.search.setToolTip(
            "Find reports by words in the reporter's description, tags or request id (key /)."
        )
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(self._changed)
        self.search.textEdited.connect(lambda _t: self._search_timer.start())
        self.search.returnPressed.connect(self._changed)

        self.model = self._box("The model whose reports are shown.", [("All models", "")])
        self.category = self._box(
            "The kind of error reported.",
            [("All categories", "")] + [(CATEGORY_WORDS[c], c) for c in REPORT_CATEGORIES],
        )
        self.assignee = self._box(
            "Whose reports: anyone's, nobody's yet, or yours.",
            [("Anyone", ""), ("Unassigned", UNASSIGNED), ("Assigned to me", ME)],
        )
        self.sort = self._box(
            "The order of the inbox.",
            [(f"By {word.lower()}", key) for key, word in SORT_WORDS.items()],
        )
        self.order = self._box(
            "Newest (or most severe) first, or the other way.",
            [("Descending", "desc"), ("Ascending", "asc")],
        )

        self.status_buttons: dict[str, QPushButton] = {}
        statuses = QHBoxLayout()
        statuses.addWidget(make_label("Status", "Show reports in the statuses pressed."))
        for status in REPORT_STATUSES:
            button = QPushButton(status_word(status))
            button.setCheckable(True)
            button.setObjectName(f"status-{status}")
            button.setToolTip(f"{STATUS_MEANING[status]} Press to show or hide these reports.")
            button.toggled.connect(lambda _on: self._changed())
            self.status_buttons[status] = button
            statuses.addWidget(button)
        statuses.addStretch(1)

        # Three short rows rather than one long one: the page must fit a 1024-pixel screen.
        views = QHBoxLayout()
        views.addWidget(make_label("View", self.views.toolTip()))
        views.addWidget(self.views)
        views.addWidget(self.save_view)
        views.addWidget(self.delete_view)
        views.addWidget(self.search, 1)
        narrowing = QHBoxLayout()
        narrowing.addWidget(make_label("Show", "Which reports, and in which order."))
        for box in (self.model, self.category, self.assignee, self.sort, self.order):
            narrowing.addWidget(box)
        narrowing.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(views)
        layout.addLayout(narrowing)
        layout.addLayout(statuses)

    def _box(self, tip: str, items: list[tuple[str, str]]) -> QComboBox:
        box = QComboBox()
        box.setToolTip(tip)
        for text, value in items:
            box.addItem(text, value)
        box.currentIndexChanged.connect(lambda _i: self._changed())
        return box

    # ---------------------------------------------------------------- what the page gives

    def set_views(self, names: Iterable[str], current: str, deletable: bool) -> None:
        with QSignalBlocker(self.views):
            self.views.clear()
            self.views.addItems(list(names))
            self.views.setCurrentIndex(max(self.views.findText(current), 0))
        self.delete_view.setEnabled(deletable)

    def set_models(self, models: Iterable[str]) -> None:
        wanted = self.model.currentData() or ""
        with QSignalBlocker(self.model):
            while self.model.count() > 1:
                self.model.removeItem(1)
            for name in sorted({*models, *([wanted] if wanted else [])}):
                self.model.addItem(name, name)
            self.model.setCurrentIndex(max(self.model.findData(wanted), 0))

    def show_filters(self, filters: ReportFilters) -> None:
        """Show a view's filters (without asking again: the page asks once)."""
        blockers = [
            QSignalBlocker(widget)
            for widget in (
                self.search,
                self.model,
                self.category,
                self.assignee,
                self.sort,
                self.order,
                *self.status_buttons.values(),
            )
        ]
        self.search.setText(filters.text)
        if filters.model and self.model.findData(filters.model) < 0:
            self.model.addItem(filters.model, filters.model)
        self.model.setCurrentIndex(max(self.model.findData(filters.model), 0))
        self.category.setCurrentIndex(max(self.category.findData(filters.category), 0))
        assignee = ME if filters.assignee and filters.assignee == self.me else filters.assignee
        if assignee and self.assignee.findData(assignee) < 0:
            self.assignee.addItem(assignee, assignee)
        self.assignee.setCurrentIndex(max(self.assignee.findData(assignee), 0))
        self.sort.setCurrentIndex(max(self.sort.findData(filters.sort), 0))
        self.order.setCurrentIndex(max(self.order.findData(filters.order), 0))
        for status, button in self.status_buttons.items():
            button.setChecked(status in filters.statuses)
        del blockers

    def show_counts(self, counts: ReportCounts) -> None:
        """How many reports each status holds (under the other filters) and the oldest's age."""
        by_status = {count.status: count for count in counts.statuses}
        for status, button in self.status_buttons.items():
            count = by_status.get(status)  # type: ignore[call-overload]
            number = count.count if count is not None else 0
            button.setText(f"{status_word(status)} {number:,}")
            oldest = count.oldest_age_s if count is not None else None
            median = count.median_age_s if count is not None else None
            waiting = (
                f" Oldest waiting {age_text(oldest)}, median {age_text(median)}." if number else ""
            )
            button.setToolTip(
                f"{STATUS_MEANING[status]} {number:,} under the other filters.{waiting} "
                "Press to show or hide these reports."
            )

    def filters(self) -> ReportFilters:
        assignee = self.assignee.currentData() or ""
        return ReportFilters(
            statuses=[s for s, b in self.status_buttons.items() if b.isChecked()],
            category=self.category.currentData() or "",
            model=self.model.currentData() or "",
            assignee=self.me if assignee == ME else assignee,
            text=self.search.text(),
            sort=self.sort.currentData() or "filed_at",
            order=self.order.currentData() or "desc",
        )

    # ---------------------------------------------------------------- the user

    def _changed(self) -> None:
        self._search_timer.stop()
        self.filters_changed.emit(self.filters())

    def _ask_view_name(self) -> None:
        dialog = QInputDialog(self)
        dialog.setWindowTitle("Save view")
        dialog.setLabelText("Name of the view (the filters and order shown now):")
        dialog.textValueSelected.connect(
            lambda name: self.save_view_requested.emit(name.strip()) if name.strip() else None
        )
        self.name_dialog = dialog
        dialog.open()
