"""The main window: navigation, pages for the signed-in role, connection state always shown."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from backend.schemas import WhoAmI
from console.connection import ConnectionMonitor
from console.context import ConsoleContext
from console.pages import pages_for
from console.pages.base import Page
from console.resources import colour, icon

STATE_TEXT = {
    "connecting": "Connecting…",
    "connected": "Connected",
    "reconnecting": "Reconnecting…",
    "down": "Backend down",
    "refused": "Token refused",
}


class MainWindow(QMainWindow):
    def __init__(
        self,
        context: ConsoleContext,
        on_connect_requested: Callable[[], None] | None = None,
        on_closed: Callable[[], None] | None = None,
    ):
        super().__init__()
        self.context = context
        self.on_closed = on_closed
        self.setWindowTitle("ServeDeck")
        self.pages: list[Page] = []
        self.role: str | None = None

        self.banner = QLabel()
        self.banner.setObjectName("banner")
        self.banner.setWordWrap(True)
        self.banner.hide()
        self.navigation = QListWidget()
        self.navigation.setObjectName("navigation")
        self.navigation.setFixedWidth(190)
        self.navigation.setToolTip("Pages (Ctrl+1, Ctrl+2, …)")
        self.stack = QStackedWidget()
        self.navigation.currentRowChanged.connect(self._show_page)
        self.placeholder = QLabel("Connecting to the backend…")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.stack.addWidget(self.placeholder)

        body = QHBoxLayout()
        body.setContentsMargins(0, 0, 0, 0)
        body.addWidget(self.navigation)
        body.addWidget(self.stack, 1)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(6, 6, 6, 0)
        layout.addWidget(self.banner)
        layout.addLayout(body, 1)
        self.setCentralWidget(central)

        self.state_label = QLabel()
        self.state_label.setObjectName("connection-state")
        self.state_label.setToolTip(
            "Whether the console can reach the backend. It retries by itself when it cannot."
        )
        self.detail_label = QLabel()
        self.origin_label = QLabel(context.origin)
        self.origin_label.setToolTip("Which backend this console shows.")
        self.statusBar().addWidget(self.state_label)
        self.statusBar().addWidget(self.detail_label, 1)
        self.statusBar().addPermanentWidget(self.origin_label)

        file_menu = self.menuBar().addMenu("&File")
        if on_connect_requested is not None:
            connect = QAction("&Connect to a backend…", self)
            connect.setShortcut(QKeySequence("Ctrl+K"))
            connect.triggered.connect(on_connect_requested)
            file_menu.addAction(connect)
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)
        self.view_menu = self.menuBar().addMenu("&View")

        self.monitor = ConnectionMonitor(context)
        self.monitor.state_changed.connect(self._on_state)
        self.monitor.identity_changed.connect(self._on_identity)
        self._on_state(self.monitor.state, "")
        self._restore_geometry()

    def start(self) -> None:
        self.monitor.start()

    # ---------------------------------------------------------------- connection

    def _on_state(self, state: str, detail: str) -> None:
        text = STATE_TEXT.get(state, state)
        tone = {"connected": "ok", "connecting": "muted", "reconnecting": "warn"}.get(state, "bad")
        self.state_label.setText(f"<span style='color:{colour(tone)}'>●</span> {text}")
        self.detail_label.setText(detail)
        if state in ("reconnecting", "down", "refused"):
            self.banner.setText(
                f"<b>{text}.</b> {detail}. The console keeps trying and recovers by itself; "
                "what you see may be out of date."
            )
            self.banner.show()
        else:
            self.banner.hide()
        connected = state == "connected"
        for page in self.pages:
            page.connection_changed(connected)

    def _on_identity(self, identity: WhoAmI) -> None:
        self.origin_label.setText(f"{self.context.origin} · {identity.name} ({identity.role})")
        if identity.role != self.role:
            self.build_pages(identity.role)

    # ---------------------------------------------------------------- pages

    def build_pages(self, role: str) -> None:
        for page in self.pages:
            page.shutdown()
            self.stack.removeWidget(page)
            page.deleteLater()
        self.pages = []
        self.navigation.clear()
        self.view_menu.clear()
        self.role = role
        allowed = pages_for(role)
        if not allowed:
            self.placeholder.setText(
                f"A {role} token is meant for applications, not for the console.\n"
                "Connect with an admin, engineer or support token (File > Connect)."
            )
            self.stack.setCurrentWidget(self.placeholder)
            return
        for number, page_class in enumerate(allowed, start=1):
            page = page_class(self.context)
            self.pages.append(page)
            self.stack.addWidget(page)
            item = QListWidgetItem(icon(page.icon), page.title)
            item.setToolTip(page.tooltip)
            self.navigation.addItem(item)
            action = QAction(page.title, self)
            action.setShortcut(QKeySequence(f"Ctrl+{number}"))
            action.triggered.connect(
                lambda _=False, row=number - 1: self.navigation.setCurrentRow(row)
            )
            self.view_menu.addAction(action)
            page.connection_changed(self.monitor.state == "connected")
        saved = str(self.context.settings.value("window/page", "") or "")
        keys = [page.key for page in self.pages]
        self.navigation.setCurrentRow(keys.index(saved) if saved in keys else 0)
        self.navigation.setFocus()

    def page(self, key: str) -> Page | None:
        return next((page for page in self.pages if page.key == key), None)

    def _show_page(self, row: int) -> None:
        if 0 <= row < len(self.pages):
            page = self.pages[row]
            self.stack.setCurrentWidget(page)
            self.context.settings.setValue("window/page", page.key)
            page.page_shown()

    # ---------------------------------------------------------------- window state

    def _restore_geometry(self) -> None:
        geometry = self.context.settings.value("window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:
            self.resize(1400, 900)

    def closeEvent(self, event: QCloseEvent) -> None:
        self.context.settings.setValue("window/geometry", self.saveGeometry())
        self.shutdown()
        super().closeEvent(event)
        if self.on_closed is not None:
            self.on_closed()

    def shutdown(self) -> None:
        self.monitor.stop()
        for page in self.pages:
            page.shutdown()
        self.context.settings.sync()
