"""Models: what the backend serves, each version's inputs and checks, and a form to try one."""

from __future__ import annotations

import itertools
import json
import time

from PySide6.QtCore import (
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFontDatabase,
    QKeySequence,
    QStandardItem,
    QStandardItemModel,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QScrollArea,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from backend.schemas import ModelInfo, ModelVersionInfo
from console.client import describe_error
from console.context import ConsoleContext
from console.pages.base import ENGINEERING_ROLES, Page
from console.resources import colour
from console.widgets.common import (
    make_button,
    make_label,
    make_splitter,
    number_text,
    plain_text,
    read_only_table,
    table_item,
)
from console.widgets.feature_editor import TYPE_WORDS
from console.widgets.try_it import TryItPanel

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
    (
        "Format",
        "How the model file is stored. skops is safe to load; pickle and joblib can run "
        "code when loaded, so someone must vouch for them.",
    ),
    ("Size", "The size of the model file."),
    ("Trusted by", "Who vouched for a pickle or joblib file (skops files need no one)."),
    ("Description", "What changed in this version, in the registrant's words."),
)
SIGNATURE_COLUMNS = (
    ("Feature", "The input's name, as requests must spell it."),
    ("Type", "What kind of value it takes: number, whole number, yes/no, one of a list, text."),
    (
        "Required",
        "Whether a request must include it; if not, the default used when it is left out.",
    ),
    ("Min", "The smallest value accepted; smaller ones are refused."),
    ("Max", "The largest value accepted; larger ones are refused."),
    ("Categories", "The only values accepted, for inputs that take one of a list."),
    ("Description", "What the input means."),
)
METRIC_HELP = {
    "accuracy": "the share of examples the model gets right",
    "balanced_accuracy": "the share right, averaged over the classes so rare classes count",
    "f1": "a balance of precision and recall for the positive class",
    "precision": "of the examples flagged positive, the share that really are",
    "recall": "of the examples that really are positive, the share flagged",
    "roc_auc": "how well the model ranks positives above negatives (1 is perfect, 0.5 is chance)",
    "log_loss": "how far its probabilities are from the truth (lower is better)",
    "mae": "the average distance between prediction and truth (lower is better)",
    "rmse": "like the average error, but large misses count more (lower is better)",
    "r2": "the share of the variation the model explains (1 is perfect)",
}
FIELD_HELP = {
    "Validity checks": "What this version must pass before it may serve: exact answers on known "
    "inputs, and a quality score on labelled examples.",
    "Registration": "Where this version came from and how its file is stored.",
    "Quality metric": "It is computed on the confidence set before the version may serve.",
    "Acceptable range": "The version may serve only if its quality metric falls in this range.",
    "End-to-end examples": "Known inputs with the exact answer this version must give. They "
    "catch a damaged model file or a library that changed behaviour.",
    "Confidence-set rows": "Labelled examples (inputs with the true answer) the quality metric "
    "is computed on.",
    "Tolerance": "How far an end-to-end answer may stray from the expected number and still "
    "count as the same (rounding differences between machines).",
    "Version": "The version number.",
    "Registered": "When it was registered (your local time).",
    "Registered by": "Who registered it.",
    "File format": VERSION_COLUMNS[4][1],
    "SHA-256": "A fingerprint of the model file. The backend refuses to load a file whose "
    "fingerprint no longer matches.",
    "Trusted by": VERSION_COLUMNS[6][1],
    "Classes": "The answers this classifier can give.",
}


def _size(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:,.0f} {unit}" if unit == "bytes" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{size} bytes"


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
        self.loading = False
        self.loaded_at: float | None = None
        self._rebuilding = False

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
        self.model_view.header().setStretchLastSection(False)
        self.model_view.header().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.model_view.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.model_view.selectionModel().selectionChanged.connect(self._on_model_selected)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        top.addWidget(self.search, 1)
        top.addWidget(self.refresh_button)
        left_layout.addLayout(top)
        left_layout.addWidget(self.model_view, 1)
        left_layout.addWidget(self.status)

        # ------------------------------------------------ right: the selected model
        self.placeholder = make_label(
            "Select a model on the left to see its versions and inputs.", name="muted", wrap=True
        )
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.name_label = make_label(scale=1.4)
        self.task_label = make_label(tip=MODEL_COLUMNS[1][1], name="muted")
        self.description_label = make_label(wrap=True)

        self.versions = read_only_table(VERSION_COLUMNS)
        self.versions.setToolTip("Every registered version of this model, newest first.")
        self.versions.itemSelectionChanged.connect(self._on_version_selected)

        self.signature = read_only_table(SIGNATURE_COLUMNS)
        self.signature.setToolTip(
            "The signature: the inputs this version takes. Requests are checked against it "
            "before the model sees them, and refused with the offending input named."
        )
        self.validity_form = QFormLayout()
        self.registration_form = QFormLayout()
        details = QWidget()
        details_layout = QVBoxLayout(details)
        for title, form in (
            ("Validity checks", self.validity_form),
            ("Registration", self.registration_form),
        ):
            box = QGroupBox(title)
            box.setToolTip(FIELD_HELP[title])
            box.setLayout(form)
            details_layout.addWidget(box)
        details_layout.addStretch(1)
        details_scroll = QScrollArea()
        details_scroll.setWidgetResizable(True)
        details_scroll.setFrameShape(QFrame.Shape.NoFrame)
        details_scroll.setWidget(details)

        self.tabs = QTabWidget()
        self.tabs.addTab(self.signature, "Signature")
        self.tabs.setTabToolTip(0, "The inputs this version takes, with their allowed values.")
        self.tabs.addTab(details_scroll, "Validity && registration")
        self.tabs.setTabToolTip(
            1, "The checks this version must pass to serve, and where it came from."
        )
        self.try_it = TryItPanel(context)

        self.lower_splitter = make_splitter(
            Qt.Orientation.Horizontal, (self.tabs, 3), (self.try_it, 2)
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

        chain = (self.search, self.refresh_button, self.model_view, self.versions, self.tabs)
        for first, second in itertools.pairwise((*chain, self.signature)):
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

    def refresh(self) -> None:
        """Load the models again in the background; one load at a time."""
        if self.loading:
            return
        self.loading = True
        self._set_status("Loading models…", "muted")
        self.context.tasks.run(
            lambda: self.context.client.models(), self._on_models, self._on_error
        )

    def _on_models(self, models: list[ModelInfo]) -> None:
        self.loading = False
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
        self.loading = False
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
        self.versions.blockSignals(True)
        try:
            self.versions.setRowCount(len(versions))
            for row, version in enumerate(versions):
                self._fill_version_row(row, version, version.version == model.active_version)
            # As tall as its rows (2 to 6 shown), so the space goes to the version's details.
            shown = min(max(len(versions), 2), 6)
            header = self.versions.horizontalHeader().sizeHint().height()
            self.versions.setFixedHeight(
                header + shown * self.versions.verticalHeader().defaultSectionSize() + 4
            )
            target = next((r for r, v in enumerate(versions) if v.version == wanted), 0)
            if versions:
                self.versions.selectRow(target)
        finally:
            self.versions.blockSignals(False)
        self._on_version_selected()

    def _fill_version_row(self, row: int, version: ModelVersionInfo, active: bool) -> None:
        registered = version.registered_at.astimezone()
        trusted = version.trusted_by or ("not needed" if version.artifact_format == "skops" else "")
        cells = [
            table_item(version.version, f"Version {version.version}"),
            table_item(
                "● active" if active else "",
                "This version answers requests that do not name a version."
                if active
                else "Not active: it answers only requests that name it.",
            ),
            table_item(f"{registered:%Y-%m-%d %H:%M}", f"{registered:%Y-%m-%d %H:%M:%S %Z}"),
            table_item(version.registered_by),
            table_item(version.artifact_format, VERSION_COLUMNS[4][1]),
            table_item(_size(version.artifact_size), f"{version.artifact_size:,} bytes"),
            table_item(trusted, VERSION_COLUMNS[6][1]),
            table_item(version.description or "", version.description or "No description."),
        ]
        cells[0].setData(NAME_ROLE, version.version)
        if active:
            cells[1].setForeground(QBrush(QColor(colour("ok"))))
            for cell in cells:
                font = cell.font()
                font.setBold(True)
                cell.setFont(font)
        for column, cell in enumerate(cells):
            self.versions.setItem(row, column, cell)

    def _on_version_selected(self) -> None:
        model = self.models.get(self.selected_model or "")
        rows = self.versions.selectionModel().selectedRows()
        item = self.versions.item(rows[0].row(), 0) if rows else None
        name = str(item.data(NAME_ROLE)) if item is not None else None
        versions = model.versions if model is not None else []
        version = next((v for v in versions if v.version == name), None)
        if model is None or version is None:  # a model without versions: nothing to show
            self.signature.setRowCount(0)
            self._fill_form(self.validity_form, [])
            self._fill_form(self.registration_form, [])
            self.try_it.set_version("", None)
            return
        self.selected_version = version.version
        self._show_signature(version)
        self._show_validity(version)
        self._show_registration(version)
        self.try_it.set_version(model.name, version)

    # ---------------------------------------------------------------- version details

    def _show_signature(self, version: ModelVersionInfo) -> None:
        self.signature.setRowCount(len(version.signature))
        for row, spec in enumerate(version.signature):
            required = "yes" if spec.required else f"no (default {json.dumps(spec.default)})"
            categories = ", ".join(spec.categories or [])
            cells = [
                table_item(spec.name, spec.description or spec.name),
                table_item(spec.type, f"{spec.type}: {TYPE_WORDS[spec.type]}"),
                table_item(
                    required,
                    "A request must include it."
                    if spec.required
                    else f"Optional: when left out, {json.dumps(spec.default)} is used.",
                ),
                table_item(number_text(spec.min), "No lower limit." if spec.min is None else ""),
                table_item(number_text(spec.max), "No upper limit." if spec.max is None else ""),
                table_item(categories, categories or "Any value of its type."),
                table_item(spec.description, spec.description or "No description."),
            ]
            for column in (3, 4):
                cells[column].setTextAlignment(
                    Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                )
            for column, cell in enumerate(cells):
                self.signature.setItem(row, column, cell)

    def _show_validity(self, version: ModelVersionInfo) -> None:
        validity = version.validity
        low, high = validity.acceptable_range
        rows = [
            ("Quality metric", validity.metric),
            ("Acceptable range", f"{low:g} – {high:g}"),
            ("End-to-end examples", f"{len(validity.end_to_end):,}"),
            ("Confidence-set rows", f"{len(validity.confidence_set):,}"),
        ]
        if version.task == "regression":
            rows.append(("Tolerance", f"{validity.tolerance:g}"))
        metric = f"{validity.metric}: {METRIC_HELP.get(validity.metric, '')}. "
        self._fill_form(
            self.validity_form, rows, {"Quality metric": metric + FIELD_HELP["Quality metric"]}
        )

    def _show_registration(self, version: ModelVersionInfo) -> None:
        registered = version.registered_at.astimezone()
        rows = [
            ("Version", version.version),
            ("Registered", f"{registered:%Y-%m-%d %H:%M:%S %Z}"),
            ("Registered by", version.registered_by),
            ("File format", version.artifact_format),
            ("File size", f"{_size(version.artifact_size)} ({version.artifact_size:,} bytes)"),
            ("SHA-256", version.artifact_sha256),
            ("Trusted by", version.trusted_by or "not needed"),
        ]
        if version.task == "classification":
            labels = ", ".join(plain_text(label) for label in version.class_labels or [])
            rows.append(("Classes", labels))
        rows.append(("Description", version.description or "—"))
        self._fill_form(self.registration_form, rows)

    @staticmethod
    def _fill_form(
        form: QFormLayout, rows: list[tuple[str, str]], tips: dict[str, str] | None = None
    ) -> None:
        while form.rowCount():
            form.removeRow(0)
        for name, value in rows:
            tip = (tips or {}).get(name) or FIELD_HELP.get(name, "")
            field: QWidget = make_label(value, tip or value, wrap=True)
            if name == "SHA-256":  # one long word: a read-only line that scrolls and copies
                field = QLineEdit(value)
                field.setReadOnly(True)
                field.setFrame(False)
                field.setToolTip(tip)
                field.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
            form.addRow(make_label(name, tip or name), field)
