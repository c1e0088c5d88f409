"""Small widget helpers shared by the pages: labelled, tooltipped, selectable."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)


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


def table_item(text: str, tooltip: str = "") -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    item.setToolTip(tooltip or text)
    return item


def read_only_table(columns: tuple[tuple[str, str], ...]) -> QTableWidget:
    table = QTableWidget(0, len(columns))
    for column, (name, tip) in enumerate(columns):
        header = QTableWidgetItem(name)
        header.setToolTip(tip)
        table.setHorizontalHeaderItem(column, header)
    table.verticalHeader().setVisible(False)
    table.verticalHeader().setDefaultSectionSize(24)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.setAlternatingRowColors(True)
    table.setWordWrap(False)
    table.setTabKeyNavigation(False)  # Tab leaves the table; the arrow keys move inside
    header_view = table.horizontalHeader()
    header_view.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header_view.setSectionResizeMode(len(columns) - 1, QHeaderView.ResizeMode.Stretch)
    return table


def make_splitter(orientation: Qt.Orientation, *parts: tuple[QWidget, int]) -> QSplitter:
    result = QSplitter(orientation)
    for index, (widget, stretch) in enumerate(parts):
        result.addWidget(widget)
        result.setStretchFactor(index, stretch)
    result.setChildrenCollapsible(False)
    return result
