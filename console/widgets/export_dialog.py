"""The retraining export: which rows of a model to export, what they hold before it runs (rows
per label source and per class), then the export itself with its progress and a cancel.

It makes no call: a changed filter asks for a preview (``preview_requested``), Export asks for
the run (``run_requested``) into the folder chosen, Cancel asks to stop; the page answers with
``show_preview``, ``show_progress``, ``show_done`` and ``show_failed``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from PySide6.QtCore import QDateTime, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDateTimeEdit,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from backend.schemas import ModelInfo
from backend.schemas.exports import EXPORT_SOURCES, ExportPreview, ExportRequest
from console.widgets.common import make_button, make_label, plain_text
from console.widgets.tables import Cell, ReadOnlyTable
from console.widgets.values import ClassNames

# A filter change waits this long for the next before asking for a preview.
PREVIEW_DELAY_MS = 400
SOURCE_WORDS = {
    "review": "Review (held-out examples labelled by people)",
    "report": "Reports (corrections confirmed by support staff)",
    "feedback": "Feedback (labels sent by applications)",
    "unlabelled": "Unlabelled rows (no label yet)",
}
VALUE_ROLE = Qt.ItemDataRole.UserRole


def _checkable(parent: QListWidget, text: str, value: Any, tip: str) -> None:
    item = QListWidgetItem(text)
    item.setData(VALUE_ROLE, value)
    item.setToolTip(tip)
    item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
    item.setCheckState(Qt.CheckState.Unchecked)
    parent.addItem(item)


def _checked(box: QListWidget) -> list[Any]:
    return [
        box.item(i).data(VALUE_ROLE)
        for i in range(box.count())
        if box.item(i).checkState() == Qt.CheckState.Checked
    ]


class ExportDialog(QDialog):
    preview_requested = Signal(object)  # ExportRequest
    run_requested = Signal(object, str)  # ExportRequest, the folder to write into
    cancel_requested = Signal()

    def __init__(self, models: list[ModelInfo], model: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Export for retraining")
        self.resize(760, 660)
        self.models = {m.name: m for m in models}
        self.running = False
        self.preview: ExportPreview | None = None

        self.model = QComboBox()
        self.model.setToolTip("The model whose logged predictions and labels are exported.")
        for name in sorted(self.models):
            self.model.addItem(name, name)
        self.model.setCurrentIndex(max(self.model.findData(model), 0))
        self.versions = QListWidget()
        self.versions.setToolTip("Only these versions' predictions (none ticked: every version).")
        self.versions.setMaximumHeight(64)
        self.classes = QListWidget()
        self.classes.setToolTip("Only rows labelled with these classes (none ticked: every class).")
        self.classes.setMaximumHeight(64)
        self.sources = QListWidget()
        self.sources.setToolTip(
            "Where a row's label came from; each row has its best label: review over a "
            "confirmed report over feedback."
        )
        self.sources.setMaximumHeight(84)
        for source in EXPORT_SOURCES:
            _checkable(self.sources, SOURCE_WORDS[source], source, SOURCE_WORDS[source])
            if source != "unlabelled":
                self.sources.item(self.sources.count() - 1).setCheckState(Qt.CheckState.Checked)
        self.uninfluenced = QCheckBox("Only labels the model could not have influenced")
        self.uninfluenced.setToolTip(
            "Held-out traffic and review labels only: outcomes of served traffic were shaped "
            "by the model's own answers, which biases retraining toward them."
        )
        now = datetime.now(UTC)
        self.use_start = QCheckBox("From")
        self.use_start.setToolTip("Only predictions made from this moment on.")
        self.start = self._moment(now - timedelta(days=30))
        self.use_end = QCheckBox("Until")
        self.use_end.setToolTip("Only predictions made before this moment.")
        self.end = self._moment(now)
        self.format = QComboBox()
        self.format.setToolTip("Parquet keeps the column types; CSV opens anywhere.")
        self.format.addItem("Parquet", "parquet")
        self.format.addItem("CSV", "csv")
        self.folder = QLineEdit(str(Path.home()))
        self.folder.setToolTip("The folder the data file and manifest.json are written into.")
        self.choose_folder = make_button("Choose…", "Pick the folder.", self._choose_folder)

        self.counts = ReadOnlyTable(
            (
                ("Label source or class", "Where the labels came from, then which class."),
                ("Rows", "Rows the export would hold."),
            )
        )
        self.counts.setMinimumHeight(170)
        self.summary = make_label("Choose what to export; the counts show here.", wrap=True)
        self.summary.setToolTip("What the export would hold with these filters, before it runs.")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setToolTip("How far the export has come.")
        self.progress.hide()
        self.progress_text = make_label(name="muted", wrap=True)
        self.export_button = make_button(
            "Export", "Write the data file and manifest.json into the folder.", self._run
        )
        self.export_button.setDefault(True)
        self.cancel_button = make_button(
            "Cancel export", "Stop the export; a partly written file is removed.", self._cancel
        )
        self.cancel_button.hide()
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self._close)

        dates = QHBoxLayout()
        for widget in (self.use_start, self.start, self.use_end, self.end):
            dates.addWidget(widget)
        dates.addStretch(1)
        folder = QHBoxLayout()
        folder.addWidget(self.folder, 1)
        folder.addWidget(self.choose_folder)
        form = QFormLayout()
        form.addRow("Model", self.model)
        form.addRow("Versions", self.versions)
        form.addRow("Time", dates)
        form.addRow("Label sources", self.sources)
        form.addRow("", self.uninfluenced)
        form.addRow("Classes", self.classes)
        form.addRow("Format", self.format)
        form.addRow("Folder", folder)
        buttons = QHBoxLayout()
        buttons.addWidget(self.progress, 1)
        buttons.addWidget(self.export_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.close_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.summary)
        layout.addWidget(self.counts, 1)
        layout.addWidget(self.progress_text)
        layout.addLayout(buttons)

        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(PREVIEW_DELAY_MS)
        self._preview_timer.timeout.connect(self.ask_preview)
        self.model.currentIndexChanged.connect(self._model_chosen)
        for box in (self.versions, self.classes, self.sources):
            box.itemChanged.connect(lambda _item: self._changed())
        for check in (self.uninfluenced, self.use_start, self.use_end):
            check.toggled.connect(lambda _on: self._changed())
        for moment in (self.start, self.end):
            moment.dateTimeChanged.connect(lambda _m: self._changed())
        self._fill_model()

    def _moment(self, when: datetime) -> QDateTimeEdit:
        edit = QDateTimeEdit(QDateTime.fromSecsSinceEpoch(int(when.timestamp())))
        edit.setCalendarPopup(True)
        edit.setDisplayFormat("yyyy-MM-dd HH:mm")
        return edit

    # ---------------------------------------------------------------- the filters

    def _fill_model(self) -> None:
        model = self.models.get(self.model.currentData() or "")
        self.versions.blockSignals(True)
        self.classes.blockSignals(True)
        self.class_words: dict[str, str] = {}
        try:
            self.versions.clear()
            self.classes.clear()
            if model is None:
                return
            for version in model.versions:
                _checkable(self.versions, f"version {version.version}", version.version, "")
            # The classes of every version (a class added later is still offered).
            seen: dict[str, Any] = {}
            for version in model.versions:
                names = ClassNames.of_version(version)
                for label in names.labels:
                    seen.setdefault(names.described(label), label)
            for text, label in seen.items():
                _checkable(self.classes, text, label, "")
                self.class_words[plain_text(label)] = text
            self.classes.setEnabled(bool(seen))
        finally:
            self.versions.blockSignals(False)
            self.classes.blockSignals(False)

    def _model_chosen(self, _index: int) -> None:
        self._fill_model()
        self._changed()

    def request(self) -> ExportRequest:
        """The export asked for by the filters shown."""
        values: dict[str, Any] = {
            "model": self.model.currentData() or "",
            "sources": _checked(self.sources),
            "uninfluenced_only": self.uninfluenced.isChecked(),
            "format": self.format.currentData(),
        }
        if versions := _checked(self.versions):
            values["versions"] = versions
        if classes := _checked(self.classes):
            values["classes"] = classes
        if self.use_start.isChecked():
            values["start"] = datetime.fromtimestamp(self.start.dateTime().toSecsSinceEpoch(), UTC)
        if self.use_end.isChecked():
            values["end"] = datetime.fromtimestamp(self.end.dateTime().toSecsSinceEpoch(), UTC)
        return ExportRequest.model_validate(values)

    def problem(self) -> str:
        """Why the filters cannot make an export ("" when they can)."""
        if not self.model.currentData():
            return "There is no model to export: register one first."
        if not _checked(self.sources):
            return "Tick at least one label source."
        if (
            self.use_start.isChecked()
            and self.use_end.isChecked()
            and self.start.dateTime() >= self.end.dateTime()
        ):
            return "'From' must be before 'Until'."
        return ""

    def _changed(self) -> None:
        self.preview = None
        self.counts.set_rows([])
        self.summary.setText("Counting the rows these filters export…")
        self._preview_timer.start()

    def ask_preview(self) -> None:
        self._preview_timer.stop()
        problem = self.problem()
        if problem:
            self.summary.setText(problem)
            return
        self.preview_requested.emit(self.request())

    # ---------------------------------------------------------------- what the page gives

    def show_preview(self, preview: ExportPreview) -> None:
        self.preview = preview
        rows = [
            (Cell(SOURCE_WORDS.get(c.source, c.source), bold=True), Cell(f"{c.rows:,}", right=True))
            for c in preview.by_source
        ]
        for count in preview.by_class:
            word = self.class_words.get(count.label, count.label)
            rows.append((Cell(f"    class {word}"), Cell(f"{count.rows:,}", right=True)))
        self.counts.set_rows(rows)
        if not preview.rows:
            self.summary.setText(
                "No row matches these filters: widen the time, versions, sources or classes."
            )
            return
        span = ""
        if preview.first_at and preview.last_at:
            span = (
                f", predictions from {preview.first_at.astimezone():%Y-%m-%d %H:%M} to "
                f"{preview.last_at.astimezone():%Y-%m-%d %H:%M}"
            )
        self.summary.setText(f"{preview.rows:,} rows{span}. {preview.explanation}")

    def show_preview_failed(self, reason: str) -> None:
        self.summary.setText(f"Could not count the rows: {reason}")

    def show_progress(self, fraction: float, text: str) -> None:
        """How far the export is; a negative fraction: not known yet (the bar shows busy)."""
        if fraction < 0:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(min(fraction, 1.0) * 1000))
        self.progress_text.setText(text)

    def show_done(self, written: list[str]) -> None:
        self._set_running(False)
        self.progress.setRange(0, 1000)
        self.progress.setValue(1000)
        self.progress_text.setText("Written: " + ", ".join(written))

    def show_failed(self, reason: str) -> None:
        self._set_running(False)
        self.progress.hide()
        self.progress_text.setText(f"The export did not finish: {reason}")

    def show_cancelled(self) -> None:
        self._set_running(False)
        self.progress.hide()
        self.progress_text.setText("Export cancelled; nothing was kept.")

    # ---------------------------------------------------------------- the user

    def _choose_folder(self) -> None:
        dialog = QFileDialog(self, "Folder for the export", self.folder.text())
        dialog.setFileMode(QFileDialog.FileMode.Directory)
        dialog.setOption(QFileDialog.Option.ShowDirsOnly, True)
        dialog.fileSelected.connect(self.folder.setText)
        self.folder_dialog = dialog
        dialog.open()

    def _run(self) -> None:
        problem = self.problem()
        folder = Path(self.folder.text().strip()).expanduser()
        if not problem and not folder.is_dir():
            problem = f"The folder {folder} does not exist: choose another."
        if problem:
            self.progress_text.setText(problem)
            return
        self._set_running(True)
        self.progress.setValue(0)
        self.progress_text.setText("Starting the export…")
        self.run_requested.emit(self.request(), str(folder))

    def _cancel(self) -> None:
        if self.running:
            self.cancel_requested.emit()
            self.show_cancelled()

    def _close(self) -> None:
        self._cancel()
        self.accept()

    def _set_running(self, running: bool) -> None:
        self.running = running
        self.progress.setVisible(True if running else self.progress.isVisible())
        self.export_button.setEnabled(not running)
        self.cancel_button.setVisible(running)
        for widget in (self.model, self.versions, self.classes, self.sources, self.format):
            widget.setEnabled(not running)
