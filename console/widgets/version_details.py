"""One model version in detail: the inputs it takes, the checks it must pass, where it came from."""

from __future__ import annotations

import json

from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QFormLayout,
    QFrame,
    QGroupBox,
    QLineEdit,
    QScrollArea,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from backend.schemas import FeatureSpec, ModelVersionInfo
from console.widgets.common import make_label, number_text, plain_text
from console.widgets.feature_editor import TYPE_WORDS
from console.widgets.tables import Cell, ReadOnlyTable

FORMAT_HELP = (
    "How the model file is stored. skops is safe to load; pickle and joblib can run "
    "code when loaded, so someone must vouch for them."
)
TRUSTED_HELP = "Who vouched for a pickle or joblib file (skops files need no one)."
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

    def show_version(self, version: ModelVersionInfo | None) -> None:
        """Show ``version``; None empties every tab (a model without versions)."""
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
        rows = [
            ("Quality metric", validity.metric),
            ("Acceptable range", f"{low:g} – {high:g}"),
            ("End-to-end examples", f"{len(validity.end_to_end):,}"),
            ("Confidence-set rows", f"{len(validity.confidence_set):,}"),
        ]
        if version.task == "regression":
            rows.append(("Tolerance", f"{validity.tolerance:g}"))
        metric = f"{validity.metric}: {METRIC_HELP.get(validity.metric, '')}. "
        _fill_form(
            self.validity_form, rows, {"Quality metric": metric + FIELD_HELP["Quality metric"]}
        )

    def _show_registration(self, version: ModelVersionInfo) -> None:
        registered = version.registered_at.astimezone()
        rows = [
            ("Version", version.version),
            ("Registered", f"{registered:%Y-%m-%d %H:%M:%S %Z}"),
            ("Registered by", version.registered_by),
            ("File format", version.artifact_format),
            ("File size", f"{size_text(version.artifact_size)} ({version.artifact_size:,} bytes)"),
            ("SHA-256", version.artifact_sha256),
            ("Trusted by", version.trusted_by or "not needed"),
        ]
        if version.task == "classification":
            labels = ", ".join(plain_text(label) for label in version.class_labels or [])
            rows.append(("Classes", labels))
        rows.append(("Description", version.description or "—"))
        _fill_form(self.registration_form, rows)


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
