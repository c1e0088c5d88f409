"""The page contract: one module per page, shown only to the roles that may use it."""

from __future__ import annotations

from PySide6.QtWidgets import QWidget

from console.context import ConsoleContext

ALL_ROLES = frozenset({"admin", "engineer", "support"})
ENGINEERING_ROLES = frozenset({"admin", "engineer"})


class Page(QWidget):
    key: str = ""
    title: str = ""
    icon: str = ""
    tooltip: str = ""
    roles: frozenset[str] = ALL_ROLES

    def __init__(self, context: ConsoleContext):
        super().__init__()
        self.context = context
        self.setObjectName(f"page-{self.key}")

    def page_shown(self) -> None:
        """The user opened this page: refresh what may be stale."""

    def connection_changed(self, connected: bool) -> None:
        """The backend came back or went away."""

    def shutdown(self) -> None:
        """The console is closing: stop timers and streams."""
