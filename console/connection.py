"""Connection state: a heartbeat to the backend, with backoff while it is away.

States: ``connecting`` (first contact), ``connected``, ``reconnecting`` (it stopped answering
a moment ago), ``down`` (away for a while; still retried), ``refused`` (the token is no
longer accepted). Everything runs through the task helper: the UI thread never waits.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, QTimer, Signal

from backend.schemas import WhoAmI
from console.client import ApiError
from console.context import ConsoleContext
from console.dialogs.errors import describe_error
from console.tasks import owner_prefix

HEARTBEAT_S = 2.0
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)
DOWN_AFTER_S = 10.0


class ConnectionMonitor(QObject):
    state_changed = Signal(str, str)  # state, detail for people
    identity_changed = Signal(object)  # WhoAmI

    def __init__(self, context: ConsoleContext):
        super().__init__()
        self.context = context
        self.state = "connecting"
        self.detail = ""
        self._failures = 0
        self._failing_since: float | None = None
        self._task_key = f"{owner_prefix('connection')}/whoami"
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.check_now)

    def start(self) -> None:
        self.check_now()

    def stop(self) -> None:
        self._timer.stop()
        self.context.tasks.cancel(self._task_key)

    def check_now(self) -> None:
        client = self.context.client
        # Keyed: a check started while one is under way replaces it, so one answer counts.
        self.context.tasks.run(
            self._task_key, lambda _state: client.whoami(), self._on_answer, self._on_failure
        )

    def _on_answer(self, identity: WhoAmI) -> None:
        self._failures = 0
        self._failing_since = None
        changed = self.context.identity != identity
        self.context.identity = identity
        if changed:
            self.identity_changed.emit(identity)
        self._set("connected", f"backend {identity.server_version}, signed in as {identity.role}")
        self._timer.start(int(HEARTBEAT_S * 1000))

    def _on_failure(self, error: Exception) -> None:
        self._failures += 1
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        delay = BACKOFF_S[min(self._failures - 1, len(BACKOFF_S) - 1)]
        if isinstance(error, ApiError) and error.status in (401, 403):
            self._set("refused", f"the backend refused the token: {error.message}")
            delay = BACKOFF_S[-1]
        elif now - self._failing_since >= DOWN_AFTER_S:
            self._set("down", f"{describe_error(error)}; retrying every {delay:g} s")
        else:
            self._set("reconnecting", f"{describe_error(error)}; retrying in {delay:g} s")
        self._timer.start(int(delay * 1000))

    def _set(self, state: str, detail: str) -> None:
        if (state, detail) == (self.state, self.detail):
            return
        self.state, self.detail = state, detail
        self.state_changed.emit(state, detail)
