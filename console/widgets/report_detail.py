"""One report in full, and the triage controls: status buttons (one key each), assignee,
severity, tags, the correct answer, duplicate candidates, the history and the note thread.

It makes no call: each control emits what the person asked for, and the page answers with
``show_report`` (the report as changed) or ``show_failure``. With several reports selected
it says so and its controls apply to all of them.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from backend.schemas.reports import (
    MAX_NOTE,
    MAX_TAGS,
    REPORT_STATUSES,
    SEVERITIES,
    ReportDetail,
    ReportSummary,
)
from console.report_words import (
    CATEGORY_MEANING,
    CATEGORY_WORDS,
    CHANGE_WORDS,
    SEVERITY_WORDS,
    STATUS_KEYS,
    age_since,
    status_tip,
    status_word,
    value_text,
    when_text,
)
from console.widgets.common import make_button, make_label
from console.widgets.label_value import LabelError, parse_label
from console.widgets.values import ClassNames, readable

NOTHING = "Select a report in the inbox to see it here."
NO_SEVERITY = ""


def _tree(headers: list[str], tip: str) -> QTreeWidget:
    tree = QTreeWidget()
    tree.setHeaderLabels(headers)
    tree.setToolTip(tip)
    tree.setRootIsDecorated(False)
    tree.setWordWrap(True)
    tree.setTextElideMode(Qt.TextElideMode.ElideNone)
    header = tree.header()
    header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
    header.setStretchLastSection(True)
    return tree


def _row(tree: QTreeWidget, *values: str) -> QTreeWidgetItem:
    item = QTreeWidgetItem(list(values))
    for column, value in enumerate(values):
        item.setToolTip(column, value)
    tree.addTopLevelItem(item)
    return item


def duplicate_reason(report: ReportSummary, candidate: ReportSummary) -> str:
    """Why a candidate is offered: the same prediction, or text that reads the same."""
    if (candidate.model, candidate.request_id) == (report.model, report.request_id):
        return "same prediction"
    return "similar text"


class ReportDetailPane(QScrollArea):
    status_requested = Signal(str)
    assign_requested = Signal(str)  # "" unassigns
    severity_requested = Signal(str)
    tags_requested = Signal(list)
    note_requested = Signal(str)
    duplicate_requested = Signal(int)  # the original report's id

    def __init__(self) -> None:
        super().__init__()
        self.setWidgetResizable(True)
        self.setToolTip(
            "The report selected in the inbox, with its triage controls; with several "
            "selected, the controls change all of them."
        )
        self.report: ReportDetail | None = None
        self.selected = 0
        self.me = ""
        self.names = ClassNames()
        self.task: str | None = None

        self.heading = make_label(NOTHING, wrap=True, scale=1.15)
        self.summary = make_label(wrap=True)
        self.message = make_label(name="muted", wrap=True)
        self.message.setToolTip("What happened to the last change you made here.")

        self.status_buttons: dict[str, QPushButton] = {}
        statuses = QGridLayout()
        for index, status in enumerate(REPORT_STATUSES):
            key = STATUS_KEYS.get(status, "")
            button = make_button(
                f"{status_word(status)} ({key})" if key else status_word(status),
                status_tip(status),
                lambda s=status: self.status_requested.emit(s),
            )
            button.setObjectName(f"set-{status}")
            self.status_buttons[status] = button
            # Two columns: the pane stays narrow enough for a 1024-pixel screen.
            statuses.addWidget(button, index // 2, index % 2)

        self.assignee = QLineEdit()
        self.assignee.setPlaceholderText("nobody")
        self.assignee.setToolTip("Who handles the report; press Enter to assign (empty: nobody).")
        self.assignee.returnPressed.connect(
            lambda: self.assign_requested.emit(self.assignee.text().strip())
        )
        self.assign_me = make_button(
            "Assign to me (A)",
            "Take the report (or every report selected) yourself. Key: A.",
            lambda: self.assign_requested.emit(self.me),
        )
        self.severity = QComboBox()
        self.severity.setToolTip("How bad the error is; choosing one sets it at once.")
        self.severity.addItem("Not judged", NO_SEVERITY)
        for severity in SEVERITIES:
            self.severity.addItem(SEVERITY_WORDS[severity], severity)
        self.severity.activated.connect(self._severity_chosen)
        self.tags = QLineEdit()
        self.tags.setPlaceholderText("tags, separated by commas")
        self.tags.setToolTip(
            f"Words to group reports by (at most {MAX_TAGS}); press Enter to keep them. With "
            "several reports selected they are added to each report's tags."
        )
        self.tags.returnPressed.connect(self._tags_entered)
        self.correction = QComboBox()
        self.correction.setEditable(True)
        self.correction.setToolTip(
            "The answer that would have been right. Confirming (C) keeps it as the report's "
            "correction, which the retraining export uses; leave it empty to keep the "
            "reporter's."
        )
        assign_row = QHBoxLayout()
        assign_row.addWidget(self.assignee, 1)
        assign_row.addWidget(self.assign_me)
        triage = QFormLayout()
        triage.addRow(make_label("Assignee", self.assignee.toolTip()), assign_row)
        triage.addRow(make_label("Severity", self.severity.toolTip()), self.severity)
        triage.addRow(make_label("Tags", self.tags.toolTip()), self.tags)
        triage.addRow(make_label("Correct answer", self.correction.toolTip()), self.correction)
        self.controls = QGroupBox("Triage")
        controls_layout = QVBoxLayout(self.controls)
        controls_layout.addLayout(statuses)
        controls_layout.addLayout(triage)

        self.duplicates = QListWidget()
        self.duplicates.setToolTip(
            "Earlier reports about the same prediction or with text that reads the same. "
            "Choose one and press 'Mark as its duplicate' (or D for the first)."
        )
        self.duplicates.setMaximumHeight(90)
        # Whole lines, wrapped: a sideways scroll hides the words that tell them apart.
        self.duplicates.setWordWrap(True)
        self.duplicates.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.mark_duplicate = make_button(
            "Mark as its duplicate (D)",
            "Close this report as a duplicate of the one chosen above; that one carries on.",
            self._duplicate_chosen,
        )
        self.duplicate_box = QGroupBox("Possible duplicates")
        duplicate_layout = QVBoxLayout(self.duplicate_box)
        duplicate_layout.addWidget(self.duplicates)
        duplicate_layout.addWidget(self.mark_duplicate, 0, Qt.AlignmentFlag.AlignLeft)

        self.reporter_text = make_label(wrap=True)
        self.reporter_text.setToolTip("What the reporter wrote, as they wrote it.")
        self.prediction = _tree(
            ["Field", "Value"], "The prediction reported, as the prediction log holds it."
        )
        self.prediction.setMinimumHeight(160)
        self.history = _tree(["When", "Who", "What"], "Every change to the report, oldest first.")
        self.history.setMinimumHeight(140)
        self.note_text = QPlainTextEdit()
        self.note_text.setObjectName("report-note")
        self.note_text.setPlaceholderText("An internal note (never shown to the reporter)…")
        self.note_text.setToolTip(
            "Notes are for support staff only. Ctrl+Enter adds it. Key N puts the cursor here."
        )
        self.note_text.setMaximumHeight(70)
        self.add_note = make_button(
            "Add note (Ctrl+Enter)", self.note_text.toolTip(), self._note_entered
        )
        add_note_key = QShortcut(QKeySequence("Ctrl+Return"), self.note_text)
        add_note_key.setContext(Qt.ShortcutContext.WidgetShortcut)
        add_note_key.activated.connect(self._note_entered)

        body = QWidget()
        layout = QVBoxLayout(body)
        layout.addWidget(self.heading)
        layout.addWidget(self.summary)
        layout.addWidget(self.message)
        layout.addWidget(self.controls)
        layout.addWidget(self.duplicate_box)
        layout.addWidget(make_label("<b>The reporter wrote</b>"))
        layout.addWidget(self.reporter_text)
        layout.addWidget(make_label("<b>The prediction</b>"))
        layout.addWidget(self.prediction, 2)
        layout.addWidget(make_label("<b>History and notes</b>"))
        layout.addWidget(self.history, 1)
        layout.addWidget(self.note_text)
        layout.addWidget(self.add_note, 0, Qt.AlignmentFlag.AlignLeft)
        self.setWidget(body)
        self.show_nothing(NOTHING)

    # ---------------------------------------------------------------- showing

    def show_nothing(self, why: str) -> None:
        self.report, self.selected = None, 0
        self.heading.setText(why)
        for widget in (self.summary, self.reporter_text):
            widget.setText("")
        self.prediction.clear()
        self.history.clear()
        self.duplicates.clear()
        self.duplicate_box.hide()
        self.controls.setEnabled(False)
        self._enable_notes(False)

    def show_selection(self, count: int) -> None:
        """Several reports are selected: the controls change all of them at once."""
        self.show_nothing(f"{count} reports selected")
        self.selected = count
        self.summary.setText(
            "A status key or button, Assign to me, a severity or tags (added to each) change "
            "every selected report at once, all or none. Select one report to see it whole."
        )
        self.controls.setEnabled(True)
        for button in self.status_buttons.values():
            button.setEnabled(True)
        self.correction.setEnabled(False)

    def show_report(self, report: ReportDetail, names: ClassNames, task: str | None) -> None:
        self.report, self.selected, self.names, self.task = report, 1, names, task
        version = f" v{report.version}" if report.version else ""
        self.heading.setText(
            f"#{report.id} · {CATEGORY_WORDS.get(report.category, report.category)} · "
            f"{status_word(report.status)}"
        )
        self.heading.setToolTip(CATEGORY_MEANING.get(report.category, ""))
        reporter = f" (their reference: {report.reporter})" if report.reporter else ""
        duplicate = f" Duplicate of #{report.duplicate_of}." if report.duplicate_of else ""
        fixed = f" Fixed in version {report.fixed_in_version}." if report.fixed_in_version else ""
        self.summary.setText(
            f"{report.model}{version}, request {report.request_id} row {report.row}. Filed "
            f"{age_since(report.filed_at)} ago ({when_text(report.filed_at)}) by "
            f"{report.filed_by}{reporter}.{duplicate}{fixed}"
        )
        self.reporter_text.setText(report.description or "(The reporter wrote nothing.)")
        self.controls.setEnabled(True)
        for status, button in self.status_buttons.items():
            button.setEnabled(status in report.allowed_statuses)
        self.assignee.setText(report.assignee or "")
        self.severity.setCurrentIndex(max(self.severity.findData(report.severity or ""), 0))
        self.tags.setText(", ".join(report.tags))
        self._fill_correction(report)
        self._show_prediction(report)
        self._show_duplicates(report)
        self._show_history(report)
        self._enable_notes(True)

    def _fill_correction(self, report: ReportDetail) -> None:
        self.correction.setEnabled(True)
        self.correction.clear()
        for name in self.names.names:
            self.correction.addItem(name)
        chosen = report.correction if report.correction is not None else report.expected
        self.correction.setCurrentText("" if chosen is None else self.names.name(chosen))

    def _show_prediction(self, report: ReportDetail) -> None:
        tree = self.prediction
        tree.clear()
        expected = "—" if report.expected is None else self.names.described(report.expected)
        _row(tree, "reporter expected", expected)
        if report.correction is not None:
            _row(tree, "correct answer (confirmed)", self.names.described(report.correction))
        logged = report.prediction
        if logged is None:
            _row(
                tree,
                "prediction",
                "No longer in the prediction log (kept for a limited time); the report keeps "
                "its model, version and request id.",
            )
            return
        _row(tree, "answered", f"{logged.model} version {logged.version}, route {logged.route}")
        if report.decision:
            _row(tree, "decision", report.decision.replace("_", " "))
        for name, value in logged.outputs.items():
            _row(tree, f"output: {name}", self.names.output(name, value))
        for name, value in logged.features.items():
            _row(tree, f"feature: {name}", readable(value))
        _row(tree, "entity", logged.entity_id or "—")
        _row(tree, "latency", f"{logged.latency_ms:,.2f} ms")

    def _show_duplicates(self, report: ReportDetail) -> None:
        self.duplicates.clear()
        for candidate in report.possible_duplicates:
            text = (
                f"#{candidate.id} · {status_word(candidate.status)} · "
                f"{duplicate_reason(report, candidate)} · "
                f"{' '.join(candidate.description.split())[:120]}"
            )
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, candidate.id)
            item.setToolTip(candidate.description or text)
            self.duplicates.addItem(item)
        if report.possible_duplicates:
            self.duplicates.setCurrentRow(0)
        self.duplicate_box.setVisible(bool(report.possible_duplicates))
        self.mark_duplicate.setEnabled("duplicate" in report.allowed_statuses)

    def _show_history(self, report: ReportDetail) -> None:
        tree = self.history
        tree.clear()
        entries: list[tuple[Any, str, str]] = []
        for change in report.history:
            if change.kind == "note":
                continue  # the note itself is listed, with its text
            what = CHANGE_WORDS.get(change.kind, change.kind)
            if change.kind == "status":
                what += f": {status_word(str(change.before))} → {status_word(str(change.after))}"
            elif change.kind != "filed":
                what += f": {value_text(change.before)} → {value_text(change.after)}"
            entries.append((change.at, change.actor, what))
        for note in report.note_thread:
            entries.append((note.at, note.author, f"Note: {note.text}"))
        for at, who, what in sorted(entries, key=lambda entry: entry[0]):
            _row(tree, when_text(at), who, what)

    def _enable_notes(self, enabled: bool) -> None:
        self.note_text.setEnabled(enabled)
        self.add_note.setEnabled(enabled)

    def show_message(self, text: str) -> None:
        self.message.setText(text)
        self.message.setToolTip(text)

    # ---------------------------------------------------------------- asking

    def correction_value(self) -> tuple[bool, Any]:
        """The correct answer typed or chosen, as the model's type: (given, value). Raises
        LabelError when the text is no answer this model can give."""
        text = self.correction.currentText().strip()
        if not text or not self.correction.isEnabled():
            return False, None
        return True, parse_label(text, self.task, self.names)

    def first_duplicate(self) -> int:
        item = self.duplicates.currentItem() or self.duplicates.item(0)
        return int(item.data(Qt.ItemDataRole.UserRole)) if item is not None else 0

    def focus_note(self) -> None:
        if self.note_text.isEnabled():
            self.note_text.setFocus()

    def _duplicate_chosen(self) -> None:
        original = self.first_duplicate()
        if original:
            self.duplicate_requested.emit(original)

    def _severity_chosen(self, _index: int) -> None:
        severity = self.severity.currentData() or ""
        if severity:
            self.severity_requested.emit(severity)

    def _tags_entered(self) -> None:
        tags = [tag.strip() for tag in self.tags.text().split(",") if tag.strip()]
        self.tags_requested.emit(list(dict.fromkeys(tags)))

    def _note_entered(self) -> None:
        text = self.note_text.toPlainText().strip()
        if not text:
            self.show_message("Write the note first.")
            return
        if len(text) > MAX_NOTE:
            self.show_message(f"A note holds at most {MAX_NOTE:,} characters ({len(text):,}).")
            return
        self.note_requested.emit(text)

    def note_added(self) -> None:
        self.note_text.clear()


__all__ = ["NOTHING", "LabelError", "ReportDetailPane", "duplicate_reason"]
