"""Reports: the inbox where support staff triage what end users reported as wrong answers.

Keyboard first, for a day of reports: J and K (or the arrows) move, one letter sets a status
(the buttons' tooltips name it), A takes a report, N writes a note, / searches. A change is
sent in the background and the inbox moves on; several reports selected change together, all
or none. Filters and the order form views, saved on this computer.
"""

from __future__ import annotations

import json

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QVBoxLayout

from backend.schemas import ModelInfo
from backend.schemas.reports import (
    ReportBulkResult,
    ReportBulkUpdate,
    ReportCounts,
    ReportDetail,
    ReportPage,
    ReportUpdate,
)
from console.client import ApiClient
from console.context import ConsoleContext
from console.dialogs.errors import describe_error
from console.pages.base import ALL_ROLES
from console.pages.export_launcher import ExportLauncher
from console.pages.refreshing import RefreshingPage
from console.report_words import (
    BUILT_IN_VIEWS,
    MAX_PAGE,
    MINE,
    PAGE_SIZE,
    STATUS_KEYS,
    ReportFilters,
    status_word,
)
from console.widgets.common import make_button, make_splitter
from console.widgets.report_detail import LabelError, ReportDetailPane
from console.widgets.report_filters import ReportFilterBar
from console.widgets.report_inbox import ReportInbox
from console.widgets.values import ClassNames

VIEWS_SETTING = "reports/views"
VIEW_SETTING = "reports/view"
FILTERS_SETTING = "reports/filters"
SPLITTER_SETTING = "reports/splitter"


class ReportsPage(RefreshingPage):
    key = "reports"
    title = "Reports"
    icon = "review"
    tooltip = (
        "What end users reported as wrong answers: triage them (status, assignee, severity, "
        "notes), link duplicates, confirm the correct answer for retraining."
    )
    # Every console role triages; an application (client) token only files reports.
    roles = ALL_ROLES
    refresh_ms = 30_000
    shown_as = "the reports"

    def __init__(self, context: ConsoleContext):
        super().__init__(context)
        self.me = context.identity.name if context.identity else ""
        self.models: dict[str, ModelInfo] = {}
        self.loaded = False
        self.shown_id = 0
        self.views: dict[str, str] = self._saved_views()
        self.view_name = str(context.settings.value(VIEW_SETTING, "") or "")

        self.filter_bar = ReportFilterBar(self.me)
        self.inbox = ReportInbox()
        self.detail = ReportDetailPane()
        self.detail.me = self.me
        self.export = ExportLauncher(self, lambda: self.filter_bar.filters().model)
        self.page_size = PAGE_SIZE
        self.next_cursor: str | None = None
        self.total = 0
        self.more_button = make_button(
            "Show more",
            "Read the next reports matching the filters, after those shown.",
            self.show_more,
        )
        self.more_button.hide()
        self.refresh_button = self.make_refresh_button(
            "Read the inbox and the counts again (F5); it also refreshes every 30 s."
        )

        top = QHBoxLayout()
        top.addWidget(self.status, 1)
        top.addWidget(self.more_button)
        top.addWidget(self.export.button)
        top.addWidget(self.refresh_button)
        self.splitter = make_splitter(Qt.Orientation.Horizontal, (self.inbox, 1), (self.detail, 1))
        self.splitter.setSizes([560, 440])
        layout = QVBoxLayout(self)
        layout.addWidget(self.filter_bar)
        layout.addLayout(top)
        layout.addWidget(self.splitter, 1)

        self.filter_bar.filters_changed.connect(self._filters_changed)
        self.filter_bar.view_chosen.connect(self.choose_view)
        self.filter_bar.save_view_requested.connect(self.save_view)
        self.filter_bar.delete_view_requested.connect(self.delete_view)
        self.inbox.current_report_changed.connect(lambda _id: self._selection_changed())
        self.inbox.selectionModel().selectionChanged.connect(
            lambda _s, _d: self._selection_changed()
        )
        self.detail.status_requested.connect(self.set_status_of_selection)
        self.detail.assign_requested.connect(self.assign)
        self.detail.severity_requested.connect(lambda s: self.change(ReportUpdate(severity=s)))
        self.detail.tags_requested.connect(self.set_tags)
        self.detail.note_requested.connect(self.add_note)
        self.detail.duplicate_requested.connect(self.mark_duplicate)

        for status, keys in STATUS_KEYS.items():
            self.add_shortcut(keys, lambda s=status: self.set_status_of_selection(s))
        self.add_shortcut("A", lambda: self.assign(self.me))
        self.add_shortcut("N", self.detail.focus_note)
        self.add_shortcut("J", lambda: self.inbox.move_by(1))
        self.add_shortcut("K", lambda: self.inbox.move_by(-1))
        self.add_shortcut("/", self._focus_search)

        self._show_views()
        saved = str(context.settings.value(FILTERS_SETTING, "") or "")
        self.filter_bar.show_filters(
            ReportFilters.from_json(saved) if saved else self._view(self.view_name)
        )
        splitter = context.settings.value(SPLITTER_SETTING)
        if splitter is not None:
            self.splitter.restoreState(splitter)

    # ---------------------------------------------------------------- lifecycle

    def shutdown(self) -> None:
        super().shutdown()
        self.export.close()
        settings = self.context.settings
        settings.setValue(FILTERS_SETTING, self.filter_bar.filters().to_json())
        settings.setValue(VIEW_SETTING, self.view_name)
        settings.setValue(SPLITTER_SETTING, self.splitter.saveState())

    def has_data(self) -> bool:
        return self.loaded

    def reload(self) -> None:
        self.call_backend("models", lambda client: client.models(), self._take_models)
        self.refresh()

    # ---------------------------------------------------------------- reading

    def refresh(self, replace: bool = True) -> None:
        filters = self.filter_bar.filters()
        # A poll reads as many as are shown (pages added by Show more stay, up to the route's
        # limit); a new question starts again from its first page.
        shown = self.inbox.reports.rowCount() if not replace else 0
        limit = min(max(self.page_size, shown), MAX_PAGE)
        query = {**filters.query(), "limit": limit}
        counts_query = filters.query(with_status=False)

        def read(client: ApiClient) -> tuple[ReportPage, ReportCounts]:
            return client.reports(query), client.report_counts(counts_query)

        if replace or not self.task_running("inbox"):
            self.set_status("Reading the reports…")
        self.call_backend(
            "inbox",
            read,
            self._take_inbox,
            lambda error: self.set_status(
                f"Could not read the reports: {describe_error(error)}", "bad"
            ),
            replace=replace,
        )

    def _take_inbox(self, answer: tuple[ReportPage, ReportCounts]) -> None:
        page, counts = answer
        self.loaded = True
        self.filter_bar.show_counts(counts)
        self.inbox.set_reports(page.reports)
        self.next_cursor, self.total = page.next_cursor, page.total
        self._show_count()
        self._selection_changed()

    def _show_count(self) -> None:
        shown = self.inbox.reports.rowCount()
        self.more_button.setVisible(self.next_cursor is not None)
        if not self.total:
            self.set_status(
                "No reports match these filters. Press more statuses above, or choose the "
                "view 'Everything'. " + self.updated_text()
            )
        elif shown < self.total:
            self.set_status(
                f"Showing the first {shown:,} of {self.total:,} reports: Show more reads the "
                f"next {self.page_size:,}, or narrow the filters. {self.updated_text()}",
                "warn",
            )
        else:
            self.set_status(f"{self.total:,} reports. {self.updated_text()}")

    def show_more(self) -> None:
        """The next page of the inbox, after the reports shown (keyset: none twice)."""
        cursor = self.next_cursor
        if cursor is None:
            return
        query = {**self.filter_bar.filters().query(), "limit": self.page_size, "after": cursor}
        self.call_backend(
            "more",
            lambda client: client.reports(query),
            self._take_more,
            lambda error: self.set_status(
                f"Could not read more reports: {describe_error(error)}", "bad"
            ),
        )

    def _take_more(self, page: ReportPage) -> None:
        self.inbox.reports.append_reports(page.reports)
        self.next_cursor, self.total = page.next_cursor, page.total
        self._show_count()

    def _take_models(self, models: list[ModelInfo]) -> None:
        self.models = {model.name: model for model in models}
        self.filter_bar.set_models(self.models)
        if self.detail.report is not None:
            self._show_detail(self.detail.report)

    def _selection_changed(self) -> None:
        chosen = self.inbox.selected_ids()
        if len(chosen) > 1:
            self.shown_id = 0
            self.cancel_task("detail")
            self.detail.show_selection(len(chosen))
            return
        report_id = chosen[0] if chosen else self.inbox.current_id()
        if not report_id:
            self.shown_id = 0
            self.detail.show_nothing("No report selected: the inbox is empty under these filters.")
            return
        shown = self.detail.report
        listed = self.inbox.reports.report(self.inbox.reports.row_of(report_id))
        # Read again only when someone changed it since (a poll brings its updated_at).
        unchanged = listed is None or (shown is not None and listed.updated_at == shown.updated_at)
        if report_id == self.shown_id and shown is not None and shown.id == report_id and unchanged:
            return
        self.shown_id = report_id
        self.call_backend(
            "detail",
            lambda client: client.report(report_id),
            self._show_detail,
            lambda error: self.detail.show_nothing(
                f"Could not read report #{report_id}: {describe_error(error)}"
            ),
        )

    def _show_detail(self, report: ReportDetail) -> None:
        if report.id != self.shown_id:
            return
        model = self.models.get(report.model)
        names = ClassNames.of(model, report.version or "")
        self.detail.show_report(report, names, model.task if model else None)

    # ---------------------------------------------------------------- changing

    def set_status_of_selection(self, status: str) -> None:
        ids = self.inbox.selected_ids()
        if not ids:
            self.detail.show_message("Select a report first.")
            return
        if status == "duplicate":
            original = self.detail.first_duplicate()
            if len(ids) > 1 or not original:
                self.detail.show_message(
                    "A duplicate needs its original: select one report, choose the original "
                    "among its possible duplicates and press D."
                )
                return
            self.mark_duplicate(original)
            return
        change = ReportUpdate(status=status)  # type: ignore[arg-type]
        if status == "confirmed" and len(ids) == 1:
            try:
                given, value = self.detail.correction_value()
            except LabelError as exc:
                self.detail.show_message(f"Not confirmed: the correct answer {exc}.")
                return
            if given:
                change = ReportUpdate(status="confirmed", correction=value)
        self.change(change, f"set to {status_word(status)}")

    def mark_duplicate(self, original: int) -> None:
        self.change(
            ReportUpdate(status="duplicate", duplicate_of=original), f"a duplicate of #{original}"
        )

    def assign(self, who: str) -> None:
        self.change(ReportUpdate(assignee=who), f"assigned to {who}" if who else "unassigned")

    def set_tags(self, tags: list[str]) -> None:
        ids = self.inbox.selected_ids()
        if len(ids) > 1:
            self._bulk(ids, ReportBulkUpdate(ids=ids, change=ReportUpdate(), add_tags=tags), "")
        else:
            self.change(ReportUpdate(tags=tags), "tagged")

    def change(self, change: ReportUpdate, done: str = "changed") -> None:
        """Send one triage change for the report shown, or for every report selected."""
        ids = self.inbox.selected_ids()
        if not ids:
            self.detail.show_message("Select a report first.")
            return
        if len(ids) > 1:
            self._bulk(ids, ReportBulkUpdate(ids=ids, change=change), done)
            return
        report_id = ids[0]
        self.detail.show_message(f"Report #{report_id}: sending…")

        def changed(report: ReportDetail) -> None:
            self.inbox.reports.replace(report)
            self.detail.show_message(f"Report #{report.id} {done}.")
            if report.id == self.shown_id:
                self._show_detail(report)
            self.refresh()

        self.call_backend(
            f"change/{report_id}",
            lambda client: client.update_report(report_id, change),
            changed,
            lambda error: self.detail.show_message(
                f"Report #{report_id} not changed: {describe_error(error)}"
            ),
        )

    def _bulk(self, ids: list[int], change: ReportBulkUpdate, done: str) -> None:
        self.detail.show_message(f"Changing {len(ids)} reports…")

        def changed(result: ReportBulkResult) -> None:
            what = f" ({done})" if done else ""
            self.detail.show_message(f"{result.updated} reports changed{what}.")
            self.refresh()

        self.call_backend(
            "bulk",
            lambda client: client.bulk_update_reports(change),
            changed,
            lambda error: self.detail.show_message(
                f"None of the {len(ids)} reports changed: {describe_error(error)}"
            ),
        )

    def add_note(self, text: str) -> None:
        report_id = self.shown_id
        if not report_id:
            return

        def added(report: ReportDetail) -> None:
            self.detail.note_added()
            self.detail.show_message(f"Note added to report #{report.id}.")
            self.inbox.reports.replace(report)
            if report.id == self.shown_id:
                self._show_detail(report)

        self.call_backend(
            f"note/{report_id}",
            lambda client: client.add_report_note(report_id, text),
            added,
            lambda error: self.detail.show_message(f"Note not added: {describe_error(error)}"),
        )

    def _focus_search(self) -> None:
        self.filter_bar.search.setFocus()
        self.filter_bar.search.selectAll()

    # ---------------------------------------------------------------- views

    def _saved_views(self) -> dict[str, str]:
        text = str(self.context.settings.value(VIEWS_SETTING, "") or "")
        try:
            saved = json.loads(text) if text else {}
        except ValueError:
            saved = {}
        return {str(k): str(v) for k, v in saved.items()} if isinstance(saved, dict) else {}

    def _view(self, name: str) -> ReportFilters:
        if name == MINE:
            return ReportFilters(assignee=self.me)
        if name in self.views:
            return ReportFilters.from_json(self.views[name])
        return BUILT_IN_VIEWS.get(name, ReportFilters())

    def _view_names(self) -> list[str]:
        return [*BUILT_IN_VIEWS, MINE, *sorted(self.views)]

    def _show_views(self) -> None:
        names = self._view_names()
        if self.view_name not in names:
            self.view_name = names[0]
        self.filter_bar.set_views(names, self.view_name, self.view_name in self.views)

    def choose_view(self, name: str) -> None:
        self.view_name = name
        self._show_views()
        self.filter_bar.show_filters(self._view(name))
        self.refresh()

    def save_view(self, name: str) -> None:
        if name in BUILT_IN_VIEWS or name == MINE:
            self.set_status(f"'{name}' is a built-in view: save under another name.", "warn")
            return
        self.views[name] = self.filter_bar.filters().to_json()
        self.context.settings.setValue(VIEWS_SETTING, json.dumps(self.views, sort_keys=True))
        self.view_name = name
        self._show_views()
        self.set_status(f"Saved the view '{name}'.")

    def delete_view(self, name: str) -> None:
        if self.views.pop(name, None) is None:
            return
        self.context.settings.setValue(VIEWS_SETTING, json.dumps(self.views, sort_keys=True))
        self.view_name = ""
        self._show_views()
        self.set_status(f"Deleted the view '{name}'.")

    def _filters_changed(self, _filters: ReportFilters) -> None:
        self.refresh()


__all__ = ["ReportsPage"]
