"""Small widget helpers shared by the pages: labelled, tooltipped, selectable."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QLabel, QPushButton, QSplitter, QWidget


def make_label(
    text: str = "", tip: str = "", name: str = "", wrap: bool = False, scale: float = 0.0
) -> QLabel:
    """A label with its tooltip; selectable, so values can be copied; bold when scaled."""
    label = QLabel(text)
    label.setToolTip(tip)
    label.setObjectName(name)
    label.setWordWrap(wrap)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    if scale:
        font = QFont(label.font())
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * scale)
        label.setFont(font)
    return label


def make_button(text: str, tip: str, slot: Callable[[], None]) -> QPushButton:
    button = QPushButton(text)
    button.setToolTip(tip)
    button.clicked.connect(slot)
    return button


def number_text(value: float | None) -> str:
    """A limit or value as people read it: 10,000 and 0.25, never 1e+04; blank for none."""
    if value is None:
        return ""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.6g}"


def plain_text(value: Any) -> str:
    """A value as people read it: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def make_splitter(orientation: Qt.Orientation, *parts: tuple[QWidget, int]) -> QSplitter:
    result = QSplitter(orientation)
    for index, (widget, stretch) in enumerate(parts):
        result.addWidget(widget)
        result.setStretchFactor(index, stretch)
    result.setChildrenCollapsible(False)
    return result
