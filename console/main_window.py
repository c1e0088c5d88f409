"""The main window: navigation, pages for the signed-in role, connection state always shown."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QAction, QCloseEvent, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from backend.schemas import WhoAmI
from console.alert_notices import AlertNotices
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
    "stopped": "Backend stopped",
    "restarting": "Restarting the backend…",
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

        # One message about the backend, true to what happens, with the one action that helps.
        self.banner = QFrame()
        self.banner.setObjectName("banner")
        self.banner_text = QLabel()
        self.banner_text.setWordWrap(True)
        self.banner_button = QPushButton()
        self.banner_button.clicked.connect(self._banner_action)
        banner_layout = QHBoxLayout(self.banner)
        banner_layout.setContentsMargins(0, 0, 0, 0)
        banner_layout.addWidget(self.banner_text, 1)
        banner_layout.addWidget(self.banner_button)
        self.banner.hide()
        self._on_banner_action: Callable[[], None] | None = None
        self._on_connect_requested = on_connect_requested
        # Set while the embedded backend is known to have stopped: then no heartbeat result
        # may claim that the console is reconnecting by itself.
        self.backend_stopped = False
        # Set when the console joined a backend another console started: the way out offered
        # when that backend stops answering.
        self.start_here: Callable[[], None] | None = None
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
            "Whether the console can reach the backend. The banner above the pages says what "
            "to do when it cannot."
        )
        self.detail_label = QLabel()
        self.origin_label = QLabel(context.origin)
        self.origin_label.setToolTip("Which backend this console shows.")
        self.statusBar().addWidget(self.state_label)
        self.statusBar().addWidget(self.detail_label, 1)
        # Open alerts on every page (left of the origin), and critical ones in the tray.
        self.alert_notices = AlertNotices(self, context)
        self.alert_notices.open_alerts_requested.connect(lambda: self.open_page("alerts"))
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
        self.alert_notices.add_settings_to(self.menuBar().addMenu("&Settings"))

        self.monitor = ConnectionMonitor(context)
        self.monitor.state_changed.connect(self._on_state)
        self.monitor.identity_changed.connect(self._on_identity)
        self._on_state(self.monitor.state, "")
        self._restore_geometry()

    def start(self) -> None:
        self.monitor.start()

    # ---------------------------------------------------------------- connection

    def _on_state(self, state: str, detail: str) -> None:
        if self.backend_stopped:
            return  # the stopped banner stays until a restart
        self._show_state(state, detail)
        if state in ("reconnecting", "down") and self.start_here is not None:
            # A backend this console joined belongs to another console, and ends with it: it
            # may well never answer again, so waiting is not the only way out.
            self._show_banner(
                f"<b>{STATE_TEXT[state]}</b> {detail}. This console joined a backend started "
                "by another console, which stops when that console closes. The console keeps "
                "trying; or start a backend here on the same data (nothing is lost).",
                "Start a backend here",
                self.start_here,
            )
        elif state in ("reconnecting", "down"):
            self._show_banner(
                f"<b>{STATE_TEXT[state]}</b> {detail}. The console keeps trying and recovers "
                "by itself when the backend answers again; until then what you see may be out "
                "of date."
            )
        elif state == "refused":
            self._show_banner(
                f"<b>Token refused.</b> {detail}. Retrying will not help: connect with a "
                "valid token.",
                "Connect…",
                self._on_connect_requested,
            )
        else:
            self.banner.hide()
        connected = state == "connected"
        for page in self.pages:
            page.connection_changed(connected)
        self.alert_notices.follow(connected, self.page("alerts") is not None)

    def show_backend_stopped(self, reason: str, on_restart: Callable[[], None]) -> None:
        """The embedded backend ended: it will not come back by itself; offer a restart."""
        self.backend_stopped = True
        self.monitor.stop()
        self.alert_notices.stop_following()
        self._show_state("stopped", reason)
        self._show_banner(
            f"<b>The local backend stopped.</b> {reason} It does not come back by itself: "
            "restart it here (your data stays); until then what you see is out of date.",
            "Restart the backend",
            on_restart,
        )
        for page in self.pages:
            page.connection_changed(False)
            page.backend_stopped()

    def show_backend_restarting(self) -> None:
        self._show_state("restarting", "")
        self._show_banner(
            "<b>Restarting the local backend…</b> This window is replaced when it is ready."
        )

    def _show_state(self, state: str, detail: str) -> None:
        text = STATE_TEXT.get(state, state)
        tone = {
            "connected": "ok",
            "connecting": "muted",
            "restarting": "muted",
            "reconnecting": "warn",
        }.get(state, "bad")
        self.state_label.setText(f"<span style='color:{colour(tone)}'>●</span> {text}")
        self.detail_label.setText(detail)

    def _show_banner(
        self, text: str, action: str = "", on_action: Callable[[], None] | None = None
    ) -> None:
        self.banner_text.setText(text)
        self._on_banner_action = on_action
        self.banner_button.setText(action)
        self.banner_button.setVisible(bool(action) and on_action is not None)
        self.banner.show()

    def _banner_action(self) -> None:
        if self._on_banner_action is not None:
            self._on_banner_action()

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
            page.navigate.connect(self.open_page)
            page.connection_changed(self.monitor.state == "connected")
        self.alert_notices.pages_built(self.pages)
        # The badge opens the Alerts page: only the roles that have one follow the alerts.
        has_alerts = self.page("alerts") is not None
        self.alert_notices.follow(self.monitor.state == "connected", has_alerts)
        saved = str(self.context.settings.value("window/page", "") or "")
        keys = [page.key for page in self.pages]
        self.navigation.setCurrentRow(keys.index(saved) if saved in keys else 0)
        self.navigation.setFocus()

    def page(self, key: str) -> Page | None:
        return next((page for page in self.pages if page.key == key), None)

    def open_page(self, key: str, model: str = "") -> None:
        """Show the page ``key``, on ``model`` when one is named (a card of the Overview)."""
        page = self.page(key)
        if page is None:
            return  # not one of this role's pages
        if model:
            page.focus_model(model)
        self.navigation.setCurrentRow(self.pages.index(page))

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
        self._fit_on_screen()

    def _fit_on_screen(self) -> None:
        """No larger than the screen, and on it: a default or a size saved on a larger screen
        left the right-hand charts and details beyond a 1024x700 screen's edge."""
        screen = self.screen() or QGuiApplication.primaryScreen()
        if screen is None:
            return
        available = screen.availableGeometry()
        width = min(self.width(), available.width())
        height = min(self.height(), available.height())
        if (width, height) != (self.width(), self.height()):
            self.resize(width, height)
        if not available.contains(self.frameGeometry().topLeft()) or (
            self.x() + width > available.right() + 1 or self.y() + height > available.bottom() + 1
        ):
            self.move(available.topLeft())

    def closeEvent(self, event: QCloseEvent) -> None:
        self.context.settings.setValue("window/geometry", self.saveGeometry())
        self.shutdown()
        super().closeEvent(event)
        if self.on_closed is not None:
            self.on_closed()

    def shutdown(self) -> None:
        self.monitor.stop()
        self.alert_notices.close()
        for page in self.pages:
            page.shutdown()
        self.context.settings.sync()
