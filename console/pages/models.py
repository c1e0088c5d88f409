"""Models: what the backend serves, each version's inputs and checks, and a form to try one."""

from __future__ import annotations

import itertools
import time
from typing import Any

from PySide6.QtCore import (
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QBrush, QColor, QKeySequence, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QSplitter,
    QStackedWidget,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from backend.schemas import GateReport, InferResponse, ModelInfo, ModelVersionInfo
from console.client import ApiError, BackendUnreachable
from console.context import ConsoleContext
from console.dialogs.errors import describe_error
from console.pages.base import ENGINEERING_ROLES, Page
from console.pages.export_launcher import ExportLauncher
from console.resources import colour
from console.widgets.common import make_button, make_label, make_splitter
from console.widgets.tables import Cell, ReadOnlyTable
from console.widgets.try_it import TryItPanel
from console.widgets.version_details import (
    FORMAT_HELP,
    TRUSTED_HELP,
    VersionDetails,
    size_text,
    trusted_text,
)

NAME_ROLE = Qt.ItemDataRole.UserRole + 1

MODEL_COLUMNS = (
    ("Model", "The model's name, as applications call it."),
    ("Task", "Classification picks one of a few classes; regression predicts a number."),
    ("Active", "The version that answers requests that do not name a version."),
)
VERSION_COLUMNS = (
    ("Version", "The version number; a new one is added each time the model is registered."),
    ("Status", "“active” marks the version that answers requests that do not name a version."),
    ("Registered", "When this version was registered (your local time)."),
    ("By", "Who registered it."),
    ("Format", FORMAT_HELP),
    ("Size", "The size of the model file."),
    ("Trusted by", TRUSTED_HELP),
    ("Description", "What changed in this version, in the registrant's words."),
)


class ModelsPage(Page):
    key = "models"
    title = "Models"
    icon = "models"
    tooltip = (
        "The models the backend serves: their versions, the inputs they take, the checks they "
        "must pass, and a form to try one."
    )
    roles = ENGINEERING_ROLES

    def __init__(self, context: ConsoleContext):
        super().__init__(context)
        self.models: dict[str, ModelInfo] = {}
        self.selected_model: str | None = str(context.settings.value("models/selected", "") or "")
        self.selected_version: str | None = None
        self.loaded_at: float | None = None
        self._rebuilding = False
        self._filling_versions = False

        # ------------------------------------------------ left: the list of models
        self.search = QLineEdit()
        self.search.setPlaceholderText("Filter models…")
        self.search.setClearButtonEnabled(True)
        self.search.setToolTip("Show only the models whose name contains this text.")
        self.refresh_button = make_button(
            "Refresh", "Load the list of models again from the backend (F5).", self.refresh
        )
        self.refresh_button.setShortcut(QKeySequence("F5"))
        self.status = make_label("Not loaded yet.", name="muted", wrap=True)

        self.list_model = QStandardItemModel(0, len(MODEL_COLUMNS), self)
        for column, (name, tip) in enumerate(MODEL_COLUMNS):
            header = QStandardItem(name)
            header.setToolTip(tip)
            self.list_model.setHorizontalHeaderItem(column, header)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.list_model)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.proxy.setFilterKeyColumn(0)
        self.search.textChanged.connect(self.proxy.setFilterFixedString)
        self.model_view = QTreeView()
        self.model_view.setModel(self.proxy)
        self.model_view.setRootIsDecorated(False)
        self.model_view.setUniformRowHeights(True)
        self.model_view.setAlternatingRowColors(True)
        self.model_view.setSortingEnabled(True)
        self.model_view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.model_view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.model_view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.model_view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.model_view.setToolTip("The registered models. Select one to see its details.")
        # Every column as wide as its text (names are never cut; a narrow list scrolls).
        self.model_view.header().setStretchLastSection(True)
        self.model_view.header().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.model_view.selectionModel().selectionChanged.connect(self._on_model_selected)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        top.addWidget(self.search, 1)
        top.addWidget(self.refresh_button)
        left_layout.addLayout(top)
        left_layout.addWidget(self.model_view, 1)
        # Under the list, for the model selected (or any other, chosen in the dialog).
        self.export = ExportLauncher(self, lambda: self.selected_model or "")
        left_layout.addWidget(self.export.button)
        left_layout.addWidget(self.status)

        # ------------------------------------------------ right: the selected model
        self.placeholder = make_label(
            "Select a model on the left to see its versions and inputs.", name="muted", wrap=True
        )
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.name_label = make_label(scale=1.4)
        self.task_label = make_label(tip=MODEL_COLUMNS[1][1], name="muted")
        self.description_label = make_label(wrap=True)

        self.versions = ReadOnlyTable(VERSION_COLUMNS)
        self.versions.setToolTip("Every registered version of this model, newest first.")
        self.versions.selectionModel().selectionChanged.connect(self._on_version_selected)

        self.version_details = VersionDetails()
        self.try_it = TryItPanel()
        self.try_it.send_requested.connect(self.try_version)
        self.try_it.copy_requested.connect(self.copy_request)

        self.lower_splitter = make_splitter(
            Qt.Orientation.Horizontal, (self.version_details, 3), (self.try_it, 2)
        )
        self.details = QWidget()
        details_column = QVBoxLayout(self.details)
        details_column.setContentsMargins(0, 0, 0, 0)
        heading = QHBoxLayout()
        heading.addWidget(self.name_label)
        heading.addWidget(self.task_label, 1, Qt.AlignmentFlag.AlignBottom)
        details_column.addLayout(heading)
        details_column.addWidget(self.description_label)
        details_column.addWidget(make_label("Versions", self.versions.toolTip()))
        details_column.addWidget(self.versions)
        details_column.addWidget(self.lower_splitter, 1)

        self.right = QStackedWidget()
        self.right.addWidget(self.placeholder)
        self.right.addWidget(self.details)

        self.splitter = make_splitter(Qt.Orientation.Horizontal, (left, 1), (self.right, 4))
        self.splitter.setSizes([280, 1100])
        layout = QVBoxLayout(self)
        layout.addWidget(self.splitter)

        chain = (
            self.search,
            self.refresh_button,
            self.model_view,
            self.versions,
            self.version_details,
            self.version_details.signature,
        )
        for first, second in itertools.pairwise(chain):
            QWidget.setTabOrder(first, second)
        self._restore_layout()

    # ---------------------------------------------------------------- lifecycle

    def page_shown(self) -> None:
        self.refresh()

    def connection_changed(self, connected: bool) -> None:
        if connected:
            self.refresh()
        elif self.models:
            self._set_status("The backend is unreachable: showing the list as last loaded.", "warn")

    def shutdown(self) -> None:
        super().shutdown()
        self.export.close()
        settings = self.context.settings
        settings.setValue("models/selected", self.selected_model or "")
        for key, splitter in self._splitters().items():
            settings.setValue(key, splitter.saveState())

    def _splitters(self) -> dict[str, QSplitter]:
        return {
            "models/splitter": self.splitter,
            "models/lower_splitter": self.lower_splitter,
        }

    def _restore_layout(self) -> None:
        for key, splitter in self._splitters().items():
            state = self.context.settings.value(key)
            if state is not None:
                splitter.restoreState(state)

    # ---------------------------------------------------------------- loading

    @property
    def loading(self) -> bool:
        return self.task_running("models")

    def refresh(self) -> None:
        """Load the models again in the background (a load under way is replaced)."""
        self._set_status("Loading models…", "muted")
        self.call_backend("models", lambda client: client.models(), self._on_models, self._on_error)

    def _on_models(self, models: list[ModelInfo]) -> None:
        self.loaded_at = time.time()
        self.models = {model.name: model for model in models}
        self._fill_list(models)
        stamp = time.strftime("%H:%M:%S", time.localtime(self.loaded_at))
        count = f"{len(models)} model{'s' if len(models) != 1 else ''}"
        self._set_status(f"{count} · loaded at {stamp}", "muted")
        if not models:
            self.placeholder.setText(
                "No models are registered yet.\nRegister one with\n"
                "servedeck-server models register NAME --artifact FILE.skops --validity FILE.json"
            )
            self.right.setCurrentWidget(self.placeholder)
            self.try_it.set_version("", None)

    def _on_error(self, error: Exception) -> None:
        text = f"Could not load the models: {describe_error(error)}."
        if self.loaded_at is not None:
            stamp = time.strftime("%H:%M:%S", time.localtime(self.loaded_at))
            text += f" Showing the list loaded at {stamp}."
        self._set_status(text, "bad")

    def _set_status(self, text: str, tone: str) -> None:
        self.status.setText(text)
        self.status.setStyleSheet(f"color: {colour(tone)};")
        self.status.setToolTip(text)

    def _fill_list(self, models: list[ModelInfo]) -> None:
        self._rebuilding = True
        try:
            self.list_model.removeRows(0, self.list_model.rowCount())
            for model in models:
                self.list_model.appendRow(self._row_for(model))
        finally:
            self._rebuilding = False
        wanted = self.selected_model if self.selected_model in self.models else None
        if wanted is None and self.proxy.rowCount():
            wanted = str(self.proxy.index(0, 0).data(NAME_ROLE))
        if wanted is not None:
            self.select_model(wanted)

    def _row_for(self, model: ModelInfo) -> list[QStandardItem]:
        count = len(model.versions)
        name = QStandardItem(model.name)
        name.setData(model.name, NAME_ROLE)
        name.setToolTip(
            f"{model.name}: {model.description or 'no description'}\n"
            f"{count} version{'s' if count != 1 else ''}, the latest is "
            f"{model.latest_version or 'none'}."
        )
        task = QStandardItem(model.task)
        task.setToolTip(MODEL_COLUMNS[1][1])
        active_text = model.active_version or "none"
        if model.active_version and model.latest_version not in (None, model.active_version):
            active_text += f" (latest {model.latest_version})"
        active = QStandardItem(active_text)
        if model.active_version is None:
            active.setForeground(QBrush(QColor(colour("warn"))))
            active.setToolTip(
                "No version is active: requests that do not name a version are refused."
            )
        elif model.latest_version != model.active_version:
            active.setToolTip(
                f"Version {model.active_version} answers requests; a newer version, "
                f"{model.latest_version}, is registered but not active."
            )
        else:
            active.setToolTip(
                f"Version {model.active_version} answers requests that do not name a version."
            )
        return [name, task, active]

    # ---------------------------------------------------------------- selection

    def select_model(self, name: str) -> bool:
        """Select ``name`` in the list (as a click would); False if it is not shown."""
        for row in range(self.proxy.rowCount()):
            index = self.proxy.index(row, 0)
            if index.data(NAME_ROLE) == name:
                selection = self.model_view.selectionModel()
                if selection.isRowSelected(row, QModelIndex()):
                    self.show_model(name)  # already selected: just show the fresh data
                else:
                    selection.setCurrentIndex(
                        index,
                        QItemSelectionModel.SelectionFlag.ClearAndSelect
                        | QItemSelectionModel.SelectionFlag.Rows,
                    )
                self.model_view.scrollTo(index)
                return True
        return False

    def _on_model_selected(self, selected: QItemSelection, _deselected: QItemSelection) -> None:
        if self._rebuilding:
            return
        indexes = selected.indexes()
        if indexes:
            index: QModelIndex = indexes[0]
            self.show_model(str(index.siblingAtColumn(0).data(NAME_ROLE)))

    def show_model(self, name: str) -> None:
        model = self.models.get(name)
        if model is None:
            return
        changed = name != self.selected_model
        self.selected_model = name
        self.context.settings.setValue("models/selected", name)
        self.right.setCurrentWidget(self.details)
        self.name_label.setText(model.name)
        self.task_label.setText(
            f"{model.task} · created {model.created_at.astimezone():%Y-%m-%d %H:%M}"
        )
        self.description_label.setText(model.description or "No description.")

        versions = sorted(model.versions, key=lambda v: v.registered_at, reverse=True)
        keep = None if changed else self.selected_version
        wanted = keep if any(v.version == keep for v in versions) else None
        wanted = wanted or model.active_version or model.latest_version
        # The rows arrive at once and the selection is set afterwards: what it selects is
        # shown once, at the end, not for each step (which would empty the try-it form).
        self._filling_versions = True
        try:
            self.versions.set_rows(
                [_version_row(v, v.version == model.active_version) for v in versions],
                keys=[v.version for v in versions],
            )
            # As tall as its rows (2 to 6 shown), so the space goes to the version's details.
            shown = min(max(len(versions), 2), 6)
            header = self.versions.horizontalHeader().sizeHint().height()
            scroll_bar = self.versions.horizontalScrollBar().sizeHint().height()
            self.versions.setFixedHeight(
                header
                + shown * self.versions.verticalHeader().defaultSectionSize()
                + scroll_bar  # room for it, so it never hides a row on a narrow window
                + 4
            )
            self.versions.select_key(wanted)
        finally:
            self._filling_versions = False
        self._on_version_selected()

    def _on_version_selected(self) -> None:
        if self._filling_versions:
            return
        model = self.models.get(self.selected_model or "")
        name = self.versions.selected_key()
        versions = model.versions if model is not None else []
        version = next((v for v in versions if v.version == name), None)
        if model is None or version is None:  # a model without versions: nothing to show
            self.version_details.show_version(None)
            self._show_try_it("", None)
            return
        self.selected_version = version.version
        self.version_details.show_version(version)
        self._show_try_it(model.name, version)
        self._look_up_measured(model.name, version)

    def _look_up_measured(self, model: str, version: ModelVersionInfo) -> None:
        """The score the deployment gate measured for the version shown, from its reports."""

        def show(reports: list[GateReport]) -> None:
            if self.version_details.version is version:
                self.version_details.show_measured(reports)

        def failed(error: Exception) -> None:
            if self.version_details.version is version:
                self.version_details.show_measured(None, describe_error(error))

        self.call_backend(
            "measured", lambda client: client.gate_reports(model, version.version), show, failed
        )

    # ---------------------------------------------------------------- try it

    def _show_try_it(self, model_name: str, version: ModelVersionInfo | None) -> None:
        if not self.try_it.is_showing(model_name, version):
            self.cancel_task("try-it")  # an answer on its way is for the version no longer shown
        self.try_it.set_version(model_name, version)

    def try_version(self, model: str, version: str, inputs: list[dict[str, Any]]) -> None:
        """The user pressed Send: one request to that version, its answer to the panel."""
        self.call_backend(
            "try-it",
            lambda client: client.infer(model, version, inputs),
            self._show_answer,
            self._show_objection,
        )

    def _show_answer(self, response: InferResponse) -> None:
        self.try_it.show_response(response)

    def _show_objection(self, error: Exception) -> None:
        if isinstance(error, BackendUnreachable):
            self.try_it.show_unreachable(error.message)
        elif isinstance(error, ApiError):
            self.try_it.show_refused(error.status, error.message, error.field)
        else:
            self.try_it.show_unexpected(describe_error(error))

    def copy_request(self, model: str, version: str, inputs: list[dict[str, Any]]) -> None:
        url, body = self.context.client.infer_request(model, version, inputs)
        self.try_it.copy_command(url, body)


def _version_row(version: ModelVersionInfo, active: bool) -> tuple[Cell, ...]:
    """One version's cells; the active one in bold, its status in green."""
    registered = version.registered_at.astimezone()
    trusted = trusted_text(version)
    status_tip = (
        "This version answers requests that do not name a version."
        if active
        else "Not active: it answers only requests that name it."
    )
    return (
        Cell(version.version, f"Version {version.version}", bold=active),
        Cell("● active" if active else "", status_tip, "ok" if active else "", bold=active),
        Cell(f"{registered:%Y-%m-%d %H:%M}", f"{registered:%Y-%m-%d %H:%M:%S %Z}", bold=active),
        Cell(version.registered_by, bold=active),
        Cell(version.artifact_format, FORMAT_HELP, bold=active),
        Cell(size_text(version.artifact_size), f"{version.artifact_size:,} bytes", bold=active),
        Cell(trusted, TRUSTED_HELP, bold=active),
        Cell(version.description or "", version.description or "No description.", bold=active),
    )
