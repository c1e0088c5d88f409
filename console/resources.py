"""Icons and the stylesheet, loaded from ``resources/`` through this one module."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from PySide6.QtGui import QGuiApplication, QIcon, QPalette
from PySide6.QtWidgets import QApplication

RESOURCES_DIR = Path(__file__).resolve().parent.parent / "resources"


def resource_path(*parts: str) -> Path:
    return RESOURCES_DIR.joinpath(*parts)


@cache
def icon(name: str) -> QIcon:
    """An icon from ``resources/icons/<name>.svg`` (an empty icon if it is missing)."""
    path = resource_path("icons", f"{name}.svg")
    return QIcon(str(path)) if path.exists() else QIcon()


def is_dark() -> bool:
    palette = QGuiApplication.palette()
    return palette.color(QPalette.ColorRole.Window).lightness() < 128


def apply_style(app: QApplication) -> None:
    """The stylesheet, with colours that follow the system's light or dark palette."""
    app.setWindowIcon(icon("servedeck"))
    stylesheet = resource_path("style.qss").read_text(encoding="utf-8")
    colours = DARK if is_dark() else LIGHT
    for name, value in colours.items():
        stylesheet = stylesheet.replace(f"@{name}", value)
    app.setStyleSheet(stylesheet)


def colour(name: str) -> str:
    return (DARK if is_dark() else LIGHT)[name]


# Semantic colours: the stylesheet and the charts name these, never raw values.
LIGHT = {
    "ok": "#1a7f37",
    "warn": "#9a6700",
    "bad": "#cf222e",
    "accent": "#0969da",
    "muted": "#57606a",
    "banner_bg": "#fff8c5",
    "banner_fg": "#4d2d00",
    "error_bg": "#ffebe9",
    "panel": "#f6f8fa",
    "border": "#d0d7de",
}
DARK = {
    "ok": "#3fb950",
    "warn": "#d29922",
    "bad": "#f85149",
    "accent": "#58a6ff",
    "muted": "#8b949e",
    "banner_bg": "#3b2e00",
    "banner_fg": "#f2cc60",
    "error_bg": "#4b1113",
    "panel": "#161b22",
    "border": "#30363d",
}
