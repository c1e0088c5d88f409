"""One model version in detail: the inputs it takes, the checks it must pass, where it came from."""

from __future__ import annotations

import json

from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QScrollArea,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from backend.schemas import FeatureSpec, GateReport, ModelVersionInfo
from console.resources import colour
from console.widgets.common import make_button, make_label, number_text
from console.widgets.feature_editor import TYPE_WORDS
from console.widgets.tables import Cell, ReadOnlyTable
from console.widgets.values import ClassNames

FORMAT_HELP = (
    "How the model file is stored. skops is safe to load; pickle and joblib can run "
    "code when loaded, so someone must vouch for them."
)
TRUSTED_HELP = "Who vouched for a pickle or joblib file (skops files need no one)."
SAFE_FORMAT = "Safe format (skops): no trust needed"


def trusted_text(version: ModelVersionInfo) -> str:
    """Who vouched for the file, in words: a skops file needs no one."""
    if version.artifact_format == "skops":
        return SAFE_FORMAT
    return f"{version.trusted_by}, who accepted that a {version.artifact_format} file can run code"


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
    "Measured score": "The quality metric as the deployment gate last measured it on the "
    "confidence set, beside the acceptable range. Outside the range, the version may not serve: "
    "retrain it, or check the confidence set.",
    "End-to-end examples": "Known inputs with the exact answer this version must give. They "
    "catch a damaged model file or a library that changed behaviour.",
    "Confidence-set rows": "Labelled examples (inputs with the true answer) the quality metric "
    "is computed on.",
    "Tolerance": "How far an end-to-end answer may stray from the expected number and still "
    "count as the same (rounding differences between machines).",
    "Version": "The version number.",
    "Registered": "When it was registered (your local time).",
    "Registered by": "Who registered it.",
    "File format": FORMAT_HELP,
    "SHA-256": "A fingerprint of the model file. The backend refuses to load a file whose "
    "fingerprint no longer matches.",
    "Trusted by": TRUSTED_HELP,
    "Classes": "The answers this classifier can give.",
}


def size_text(size: int) -> str:
    """A file size as people read it: 812 bytes, 3.4 MB."""
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:,.0f} {unit}" if unit == "bytes" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{size} bytes"


class VersionDetails(QTabWidget):
    """Two tabs: the signature (the inputs taken), and the validity checks with registration."""

    def __init__(self) -> None:
        super().__init__()
        self.signature = ReadOnlyTable(SIGNATURE_COLUMNS)
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

        self.addTab(self.signature, "Signature")
        self.setTabToolTip(0, "The inputs this version takes, with their allowed values.")
        self.addTab(details_scroll, "Validity && registration")
        self.setTabToolTip(1, "The checks this version must pass to serve, and where it came from.")
        self.version: ModelVersionInfo | None = None
        # Made again with each version shown (a form row owns its widgets).
        self.measured = QLabel()
        self.sha = QLineEdit()
        self.copy_sha = make_button("Copy", "", self._copy_sha)

    def show_version(self, version: ModelVersionInfo | None) -> None:
        """Show ``version``; None empties every tab (a model without versions)."""
        self.version = version
        if version is None:
            self.signature.set_rows([])
            _fill_form(self.validity_form, [])
            _fill_form(self.registration_form, [])
            return
        self.signature.set_rows([_signature_row(spec) for spec in version.signature])
        self._show_validity(version)
        self._show_registration(version)

    def _show_validity(self, version: ModelVersionInfo) -> None:
        validity = version.validity
        low, high = validity.acceptable_range
        self.measured = make_label(
            "Looking up the last gate report…", FIELD_HELP["Measured score"], wrap=True
        )
        rows: list[tuple[str, str | QWidget]] = [
            ("Quality metric", validity.metric),
            ("Acceptable range", f"{low:g} – {high:g}"),
            ("Measured score", self.measured),
            ("End-to-end examples", f"{len(validity.end_to_end):,}"),
            ("Confidence-set rows", f"{len(validity.confidence_set):,}"),
        ]
        if version.task == "regression":
            rows.append(("Tolerance", f"{validity.tolerance:g}"))
        metric = f"{validity.metric}: {METRIC_HELP.get(validity.metric, '')}. "
        _fill_form(
            self.validity_form, rows, {"Quality metric": metric + FIELD_HELP["Quality metric"]}
        )

    def show_measured(self, reports: list[GateReport] | None, failure: str = "") -> None:
        """The score the gate measured for the version shown (its newest report with one)."""
        version = self.version
        if version is None:
            return
        if reports is None:
            self.measured.setText(f"Could not look it up: {failure}")
            return
        measured = next((r for r in reports if r.metric_value is not None), None)
        if measured is None or measured.metric_value is None:
            self.measured.setText(
                "Not measured yet: the deployment gate measures it when the version is deployed "
                "or rolled out."
            )
            return
        low, high = version.validity.acceptable_range
        value = measured.metric_value
        inside = low <= value <= high
        when = measured.checked_at.astimezone()
        self.measured.setText(
            f"{value:.4g} ({'inside' if inside else 'outside'} {low:g} – {high:g}), measured "
            f"{when:%Y-%m-%d %H:%M} by the {measured.purpose} gate"
        )
        self.measured.setStyleSheet(f"color: {colour('ok' if inside else 'bad')};")

    def _show_registration(self, version: ModelVersionInfo) -> None:
        registered = version.registered_at.astimezone()
        # One long word: a read-only line (it scrolls on a narrow window, and selects whole),
        # with a copy button in front, where a narrow window cannot push it out of sight.
        self.sha = QLineEdit(version.artifact_sha256)
        self.sha.setReadOnly(True)
        self.sha.setFrame(False)
        self.sha.setToolTip(FIELD_HELP["SHA-256"])
        self.sha.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.sha.setCursorPosition(0)
        self.copy_sha = make_button(
            "Copy", "Copy the whole SHA-256 fingerprint to the clipboard.", self._copy_sha
        )
        sha_row = QWidget()
        sha_layout = QHBoxLayout(sha_row)
        sha_layout.setContentsMargins(0, 0, 0, 0)
        sha_layout.addWidget(self.copy_sha)
        sha_layout.addWidget(self.sha, 1)
        rows: list[tuple[str, str | QWidget]] = [
            ("Version", version.version),
            ("Registered", f"{registered:%Y-%m-%d %H:%M:%S %Z}"),
            ("Registered by", version.registered_by),
            ("File format", version.artifact_format),
            ("File size", f"{size_text(version.artifact_size)} ({version.artifact_size:,} bytes)"),
            ("SHA-256", sha_row),
            ("Trusted by", trusted_text(version)),
        ]
        if version.task == "classification":
            classes = ClassNames.of_version(version)
            rows.append(("Classes", ", ".join(classes.described(c) for c in classes.labels)))
        rows.append(("Description", version.description or "—"))
        _fill_form(self.registration_form, rows)

    def _copy_sha(self) -> None:
        QGuiApplication.clipboard().setText(self.sha.text())
        self.copy_sha.setText("Copied")


def _signature_row(spec: FeatureSpec) -> tuple[Cell, ...]:
    required = "yes" if spec.required else f"no (default {json.dumps(spec.default)})"
    categories = ", ".join(spec.categories or [])
    return (
        Cell(spec.name, spec.description or spec.name),
        Cell(spec.type, f"{spec.type}: {TYPE_WORDS[spec.type]}"),
        Cell(
            required,
            "A request must include it."
            if spec.required
            else f"Optional: when left out, {json.dumps(spec.default)} is used.",
        ),
        Cell(number_text(spec.min), "No lower limit." if spec.min is None else "", right=True),
        Cell(number_text(spec.max), "No upper limit." if spec.max is None else "", right=True),
        Cell(categories, categories or "Any value of its type."),
        Cell(spec.description, spec.description or "No description."),
    )


def _fill_form(
    form: QFormLayout, rows: list[tuple[str, str | QWidget]], tips: dict[str, str] | None = None
) -> None:
    while form.rowCount():
        form.removeRow(0)
    for name, value in rows:
        tip = (tips or {}).get(name) or FIELD_HELP.get(name, "")
        field = value if isinstance(value, QWidget) else make_label(value, tip or value, wrap=True)
        form.addRow(make_label(name, tip or name), field)
