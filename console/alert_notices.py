"""Alerts outside the Alerts page: the badge on every page and the tray notification.

One ``AlertFeed`` (the one reader thread) feeds one ``AlertBook`` (what the console knows of
the alerts, on the UI thread); the status-bar badge, the tray notifier and the Alerts page
all follow the book, so they never disagree and nothing polls.
"""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import QObject, QSettings, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMainWindow, QMenu, QSystemTrayIcon

from backend.schemas import Alert
from console.alert_stream import AlertBook, AlertFeed
from console.context import ConsoleContext
from console.pages.alerts import AlertsPage
from console.resources import icon
from console.widgets.alert_badge import AlertBadge

TRAY_SETTING = "notifications/critical_tray"


class CriticalNotifier:
    """Decides which alerts deserve a tray notification: critical ones, still open, raised
    while the console watched, once per alert, and only while the user wants them."""

    def __init__(self, settings: QSettings):
        self.settings = settings
        self._notified: set[int] = set()

    @property
    def enabled(self) -> bool:
        return str(self.settings.value(TRAY_SETTING, "true")).lower() == "true"

    def set_enabled(self, enabled: bool) -> None:
        self.settings.setValue(TRAY_SETTING, "true" if enabled else "false")

    def to_notify(self, alerts: Iterable[Alert]) -> list[Alert]:
        """The alerts to notify of now; each is remembered, so it is never notified twice."""
        chosen = []
        for alert in alerts:
            if alert.id in self._notified or alert.severity != "critical":
                continue
            if alert.status != "open":
                continue  # someone already owns it
            self._notified.add(alert.id)
            if self.enabled:
                chosen.append(alert)
        return chosen


class AlertNotices(QObject):
    """The badge in the window's status bar, the tray icon and its setting, for one window."""

    # The user asked to see the alerts (the badge or a notification was clicked).
    open_alerts_requested = Signal()

    def __init__(self, window: QMainWindow, context: ConsoleContext):
        super().__init__(window)
        self.feed = AlertFeed(context.client)
        self.book = AlertBook()
        self.feed.snapshot.connect(self.book.take_snapshot)
        self.feed.received.connect(self.book.add_raised)
        self.feed.updated.connect(self.book.take_snapshot)
        self.notifier = CriticalNotifier(context.settings)

        self.badge = AlertBadge()
        self.badge.clicked.connect(self.open_alerts_requested)
        self.feed.state_changed.connect(self.badge.set_stream_state)
        self.book.changed.connect(lambda _alerts: self.badge.show_alerts(self.book.active()))
        window.statusBar().addPermanentWidget(self.badge)

        self.tray: QSystemTrayIcon | None = None
        if QSystemTrayIcon.isSystemTrayAvailable():
            self.tray = QSystemTrayIcon(icon("servedeck"), window)
            self.tray.setToolTip("ServeDeck")
            self.tray.messageClicked.connect(self.open_alerts_requested)
            self.tray.activated.connect(lambda _reason: self.open_alerts_requested.emit())
            self.tray.show()
        self.book.raised.connect(self._notify)

        self.tray_action = QAction("Notify me of &critical alerts", window)
        self.tray_action.setCheckable(True)
        self.tray_action.setChecked(self.notifier.enabled)
        self.tray_action.toggled.connect(self.notifier.set_enabled)
        if self.tray is None:
            self.tray_action.setEnabled(False)
            self.tray_action.setToolTip(
                "This desktop has no system tray: critical alerts show in the status bar only."
            )
        else:
            self.tray_action.setToolTip(
                "A desktop notification when a critical alert is raised (once per alert); "
                "warnings only show in the status bar and on the Alerts page."
            )
        # What a notification says, kept for the tests and for a tray-less desktop's log.
        self.last_notice: tuple[str, str] | None = None

    def add_settings_to(self, menu: QMenu) -> None:
        menu.setToolTipsVisible(True)
        menu.addAction(self.tray_action)

    def follow(self, connected: bool, may_read: bool) -> None:
        """Follow alerts while connected with a token that may read them (the reader resumes
        by itself after a drop; it is started once)."""
        self.badge.setVisible(may_read)
        if connected and may_read:
            self.feed.start()

    def pages_built(self, pages: Iterable[QObject]) -> None:
        """The Alerts page (when the role has one) shows this window's alerts."""
        for page in pages:
            if isinstance(page, AlertsPage):
                page.set_book(self.book)

    def stop_following(self) -> None:
        self.feed.stop()
        self.badge.set_stream_state("stopped")

    def close(self) -> None:
        self.feed.stop()
        if self.tray is not None:
            self.tray.hide()

    def _notify(self, alerts: list[Alert]) -> None:
        for alert in self.notifier.to_notify(alerts):
            title = f"Critical alert: {alert.model}"
            self.last_notice = (title, alert.title)
            if self.tray is not None:
                self.tray.showMessage(
                    title, alert.title, QSystemTrayIcon.MessageIcon.Critical, 15_000
                )
