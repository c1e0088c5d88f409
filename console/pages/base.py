"""The page contract: one module per page, shown only to the roles that may use it.

Pages own the network: they ask the task helper to run client calls (keyed by this page and a
purpose, so a newer call replaces an older one) and hand what comes back to their widgets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QHideEvent, QKeySequence, QShortcut, QShowEvent
from PySide6.QtWidgets import QWidget

from console.client import ApiClient
from console.context import ConsoleContext
from console.tasks import Callback, TaskState, Work, owner_prefix

ALL_ROLES = frozenset({"admin", "engineer", "support"})
# Support staff work on what end users meet (live predictions, reports, the review queue);
# the monitoring and change pages are for the people who run the models.
ENGINEERING_ROLES = frozenset({"admin", "engineer"})


class Page(QWidget):
    key: str = ""
    title: str = ""
    icon: str = ""
    tooltip: str = ""
    roles: frozenset[str] = ALL_ROLES
    # Ask the window to open another page (its key) on one model ("" for none): the
    # Overview's cards open the page that explains what they show.
    navigate = Signal(str, str)

    def __init__(self, context: ConsoleContext):
        super().__init__()
        self.context = context
        self.setObjectName(f"page-{self.key}")
        self._task_prefix = owner_prefix(self.key)
        self._purposes: set[str] = set()
        self.shortcuts: list[QShortcut] = []

    def page_shown(self) -> None:
        """The user opened this page: refresh what may be stale."""

    def connection_changed(self, connected: bool) -> None:
        """The backend came back or went away."""

    def focus_model(self, model: str) -> None:
        """Another page sent the user here about ``model``: show it (before ``page_shown``)."""

    def backend_stopped(self) -> None:
        """The embedded backend ended and does not come back by itself: stop waiting for it."""

    def shutdown(self) -> None:
        """The console is closing (or the page is replaced): stop its timers, streams, tasks."""
        for purpose in self._purposes:
            self.cancel_task(purpose)

    # ---------------------------------------------------------------- keys

    def add_shortcut(self, keys: str, slot: Callable[[], None]) -> None:
        """A key of this page: window-wide while the page shows (wherever the focus is, the
        navigation list included), off while another page does. A text field keeps its
        letters (Qt gives typing keys to the focused editor before any shortcut)."""
        shortcut = QShortcut(QKeySequence(keys), self)
        shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
        shortcut.setEnabled(self.isVisible())
        shortcut.activated.connect(slot)
        self.shortcuts.append(shortcut)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        for shortcut in self.shortcuts:
            shortcut.setEnabled(True)

    def hideEvent(self, event: QHideEvent) -> None:
        for shortcut in self.shortcuts:
            shortcut.setEnabled(False)
        super().hideEvent(event)

    # ---------------------------------------------------------------- background work

    def task_key(self, purpose: str) -> str:
        return f"{self._task_prefix}/{purpose}"

    def run_task(
        self,
        purpose: str,
        work: Work,
        on_done: Callback | None = None,
        on_error: Callback | None = None,
        **options: Any,
    ) -> TaskState | None:
        """Run ``work(state)`` as this page's task ``purpose`` (see ``TaskRunner.run``)."""
        self._purposes.add(purpose)
        return self.context.tasks.run(self.task_key(purpose), work, on_done, on_error, **options)

    def call_backend(
        self,
        purpose: str,
        call: Callable[[ApiClient], Any],
        on_done: Callback | None = None,
        on_error: Callback | None = None,
        *,
        replace: bool = True,
    ) -> TaskState | None:
        """Run one client call, ``call(client)``, in the background as the task ``purpose``."""
        client = self.context.client
        return self.run_task(
            purpose, lambda _state: call(client), on_done, on_error, replace=replace
        )

    def cancel_task(self, purpose: str) -> None:
        self.context.tasks.cancel(self.task_key(purpose))

    def task_running(self, purpose: str) -> bool:
        return self.context.tasks.is_running(self.task_key(purpose))
