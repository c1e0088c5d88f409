"""One editor per input feature: typed, range-aware, never clamping what the user types."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from typing import Any

from PySide6.QtCore import QRectF
from PySide6.QtGui import (
    QColor,
    QPainter,
    QPaintEvent,
    QPen,
)
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSizePolicy,
    QSpinBox,
    QWidget,
)

from backend.schemas import FEATURE_DATATYPES, FeatureSpec
from console.resources import colour
from console.widgets.common import make_label, number_text

# Wide enough to type anything a model could plausibly see, including out-of-range values.
FLOAT_LIMIT = 1e12
INT_LIMIT = 2**31 - 1
FLOAT_DECIMALS = 15

TYPE_WORDS = dict(
    float="a number (decimals allowed)",
    int="a whole number",
    bool="yes or no (true/false)",
    category="one value from a fixed list",
    string="free text",
)


def range_text(spec: FeatureSpec) -> str:
    """The declared range of a numeric feature in words: "0 – 10,000", "≥ 0", "any value"."""
    if spec.min is not None and spec.max is not None:
        return f"{number_text(spec.min)} – {number_text(spec.max)}"
    if spec.min is not None:
        return f"≥ {number_text(spec.min)}"
    if spec.max is not None:
        return f"≤ {number_text(spec.max)}"
    return "any value"


def feature_of(field: str | None, names: Iterable[str]) -> str | None:
    """The feature an error's ``field`` points at: ``inputs.rows[0].amount``, ``inputs[2](x)``."""
    if not field:
        return None
    known = sorted(names, key=len, reverse=True)
    match = re.search(r"\(([^()]*)\)", field)
    if match and match.group(1) in known:
        return match.group(1)
    for name in known:
        if field == name or field.endswith(f".{name}"):
            return name
    return None


class FloatBox(QDoubleSpinBox):
    """Many decimals, so an example is sent exactly as stored; shown as 120.5, not 120.50000."""

    def textFromValue(self, value: float) -> str:
        text = repr(float(value))  # the shortest text that reads back as the same number
        if "e" in text:
            text = f"{value:.{self.decimals()}f}".rstrip("0")
        return text.removesuffix(".0").rstrip(".").replace(".", self.locale().decimalPoint())


class _Outline(QWidget):
    """Holds an editor; outlines it in red (painted: a stylesheet flattens spin box arrows)."""

    invalid = False

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        if self.invalid:
            painter = QPainter(self)
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            painter.setPen(QPen(QColor(colour("bad")), 2))
            painter.drawRoundedRect(QRectF(self.rect()).adjusted(1, 1, -1, -1), 3, 3)


class FeatureEditor:
    """One feature's row in the form: its editor, a "send it" box if optional, a hint."""

    def __init__(self, spec: FeatureSpec, on_change: Callable[[], None]):
        self.spec = spec
        self._on_change = on_change
        self.editor = self._make_editor()
        self.editor.setObjectName(f"feature-{spec.name}")
        self.editor.setToolTip(self.describe())
        self.editor.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.include: QCheckBox | None = None
        self.hint = make_label(tip=self.describe(), name="muted")
        self.hint.setMinimumWidth(110)
        self.container = QWidget()
        row = QHBoxLayout(self.container)
        row.setContentsMargins(0, 0, 0, 0)
        self.frame = _Outline()
        framed = QHBoxLayout(self.frame)
        framed.setContentsMargins(2, 2, 2, 2)
        framed.addWidget(self.editor)
        row.addWidget(self.frame, 1)
        if not spec.required:
            self.include = QCheckBox("send")
            self.include.setChecked(True)
            self.include.setToolTip(
                "Ticked: send this value. Unticked: leave this optional input out, and the model "
                f"uses its default ({json.dumps(spec.default)})."
            )
            self.include.toggled.connect(self._on_include)
            row.addWidget(self.include)
        row.addWidget(self.hint)
        self.label = QLabel(spec.name + ("" if spec.required else " (optional)"))
        self.label.setToolTip(self.describe())
        self.label.setBuddy(self.editor)
        self.set_invalid(False)
        self._update_hint()

    def describe(self) -> str:
        spec = self.spec
        lines = [f"<b>{spec.name}</b>: {TYPE_WORDS[spec.type]}."]
        if spec.description:
            lines.append(spec.description)
        if spec.type in ("float", "int"):
            lines.append(
                f"Allowed range: {range_text(spec)}. You may type a value outside it to "
                "see how the backend refuses it."
            )
        if spec.categories:
            lines.append("Allowed values: " + ", ".join(spec.categories) + ".")
        if not spec.required:
            lines.append(f"Optional; when left out the model uses {json.dumps(spec.default)}.")
        return "<br>".join(lines)

    # ---------------------------------------------------------------- editors

    def _make_editor(self) -> QWidget:
        spec = self.spec
        if spec.type == "float":
            box = FloatBox()
            box.setDecimals(FLOAT_DECIMALS)
            box.setRange(-FLOAT_LIMIT, FLOAT_LIMIT)
            box.setStepType(QAbstractSpinBox.StepType.AdaptiveDecimalStepType)
            box.valueChanged.connect(self._changed)
            return box
        if spec.type == "int":
            spin = QSpinBox()
            spin.setRange(-INT_LIMIT, INT_LIMIT)
            spin.setGroupSeparatorShown(False)
            spin.valueChanged.connect(self._changed)
            return spin
        if spec.type == "bool":
            check = QCheckBox("false")
            check.toggled.connect(lambda on: check.setText("true" if on else "false"))
            check.toggled.connect(self._changed)
            return check
        if spec.type == "category":
            combo = QComboBox()
            # Editable, so that a value outside the list can be sent to see the backend refuse it.
            combo.setEditable(True)
            combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
            combo.addItems(spec.categories or [])
            combo.currentTextChanged.connect(self._changed)
            return combo
        line = QLineEdit()
        line.setPlaceholderText("text")
        line.textChanged.connect(self._changed)
        return line

    def _changed(self, *_args: Any) -> None:
        self.set_invalid(False)
        self._update_hint()
        self._on_change()

    def _on_include(self, on: bool) -> None:
        self.editor.setEnabled(on)
        self._changed()

    def _update_hint(self) -> None:
        """The declared range (or the type), turned into a warning when the value leaves it."""
        spec, value = self.spec, self.value()
        numeric = spec.type in ("float", "int")
        low = -math.inf if spec.min is None else spec.min
        high = math.inf if spec.max is None else spec.max
        text = range_text(spec) if numeric else spec.type
        warning = ""
        if self.is_included() and numeric and not low <= value <= high:
            warning = f"outside {text}"
        elif self.is_included() and spec.categories and value not in spec.categories:
            warning = "not one of the values"
        self.hint.setText(warning or text)
        self.hint.setStyleSheet(f"color: {colour('warn')}; font-weight: bold;" if warning else "")

    # ---------------------------------------------------------------- values

    def is_included(self) -> bool:
        return self.include is None or self.include.isChecked()

    def value(self) -> Any:
        editor = self.editor
        if isinstance(editor, QDoubleSpinBox):
            return float(editor.value())
        if isinstance(editor, QSpinBox):
            return int(editor.value())
        if isinstance(editor, QCheckBox):
            return editor.isChecked()
        if isinstance(editor, QComboBox):
            return editor.currentText()
        assert isinstance(editor, QLineEdit)
        return editor.text()

    def set_value(self, value: Any) -> None:
        """Show ``value``; None leaves an optional feature out (and a required one at rest)."""
        spec = self.spec
        if self.include is not None:
            self.include.setChecked(value is not None)
        if value is None:
            value = spec.default
        editor, text = self.editor, "" if value is None else str(value)
        if isinstance(editor, QDoubleSpinBox | QSpinBox):
            if isinstance(value, bool) or not isinstance(value, int | float):
                value = spec.min if spec.min is not None else 0
            if isinstance(editor, QDoubleSpinBox):
                editor.setValue(float(value))
            else:
                editor.setValue(max(-INT_LIMIT, min(INT_LIMIT, int(value))))
        elif isinstance(editor, QCheckBox):
            editor.setChecked(bool(value))
        elif isinstance(editor, QComboBox):
            editor.setCurrentText(text)
        elif isinstance(editor, QLineEdit):
            editor.setText(text)
        self.set_invalid(False)
        self._update_hint()

    def tensor(self) -> dict[str, Any] | None:
        """This feature as one OIP input tensor, or None when an optional feature is left out."""
        if not self.is_included():
            return None
        return {
            "name": self.spec.name,
            "shape": [1],
            "datatype": FEATURE_DATATYPES[self.spec.type],
            "data": [self.value()],
        }

    def set_invalid(self, invalid: bool) -> None:
        """Mark the editor the backend complained about with a red border."""
        self.frame.invalid = invalid
        self.frame.update()
