"""The one reader thread for alerts: a snapshot of the active ones, then the stream of new ones.

The backend streams alerts raised after an alert id (``Last-Event-ID``), not changes of older
ones. So on every (re)connection the reader first reads the active alerts afresh (which
catches acknowledgements and resolutions made while it was away: an alert that left the
active list is read again by its id), then follows the stream from the newest alert id it
knows, so that nothing raised meanwhile is lost: on the first connection it takes the newest
id *before* reading the snapshot; an alert in both is the same row and replaces itself.
Everything reaches the UI thread as signals; nothing polls.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from PySide6.QtCore import QObject, Signal

from backend.schemas import Alert
from console.client import ApiClient, ApiError

log = logging.getLogger(__name__)

BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)
# The active alerts read at each connection: far more than anyone handles at once.
SNAPSHOT_LIMIT = 1000
ACTIVE = ("open", "acknowledged")


class AlertFeed(QObject):
    # Every active alert (and those that stopped being active while the reader was away),
    # read at a (re)connection: the receiver replaces what it knew of them.
    snapshot = Signal(list)  # list[Alert]
    # Alerts raised (or re-opened) since, as they come (oldest first).
    received = Signal(list)  # list[Alert]
    # Known alerts that changed since (acknowledged, resolved, newer details).
    updated = Signal(list)  # list[Alert]
    state_changed = Signal(str)  # "streaming", "waiting", "refused"

    def __init__(self, client: ApiClient):
        super().__init__()
        self.client = client
        # The newest alert id seen: a reconnection resumes after it. Read by the reader only.
        self.last_event_id: str | None = None
        self._active: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        if self._thread is not None:
            return
        # A new event per reader: a stopped reader may still be finishing its last read and
        # must not be revived by a later start.
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(self._stop,), name="alert-stream", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread = None

    # ---------------------------------------------------------------- reader thread

    def _run(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                self._catch_up(stop)
                self._emit_state(stop, "streaming")
                for message in self.client.stream_alerts(self.last_event_id, stop):
                    failures = 0
                    self.last_event_id = message.event_id
                    self._note(message.alert)
                    if message.action in ("raised", "reopened"):
                        self._emit(stop, self.received.emit, [message.alert])
                    else:  # acknowledged, changed, resolved: news of a known alert
                        self._emit(stop, self.updated.emit, [message.alert])
            except ApiError as exc:
                refused = exc.status in (401, 403)
                self._emit_state(stop, "refused" if refused else "waiting")
                log.info("alert stream: %s", exc.message)
            else:
                self._emit_state(stop, "waiting")
            if stop.is_set():
                return
            failures += 1
            stop.wait(BACKOFF_S[min(failures - 1, len(BACKOFF_S) - 1)])

    def _catch_up(self, stop: threading.Event) -> None:
        """The active alerts as they are now, and those that left the active list since."""
        if self.last_event_id is None:
            # Before the snapshot: a change in between is streamed, not lost.
            position = self.client.event_position()
        active = self.client.alerts(statuses=("open", "acknowledged"), limit=SNAPSHOT_LIMIT)
        changed: list[Alert] = []
        for alert_id in sorted(self._active - {alert.id for alert in active}):
            try:
                changed.append(self.client.alert(alert_id))
            except ApiError as exc:
                if exc.status != 404:  # gone, or out of this token's reach now: drop it
                    raise
        resuming = self.last_event_id is not None
        if not resuming:
            self.last_event_id = position
        known = self._active
        self._active = {alert.id for alert in active}
        # Resuming, the stream replays every change since the resume point in order: alerts
        # raised meanwhile come by it as news (a notification), not in this snapshot.
        shown = [alert for alert in active if not resuming or alert.id in known]
        self._emit(stop, self.snapshot.emit, [*shown, *changed])

    def _note(self, alert: Alert) -> None:
        if alert.status == "resolved":
            self._active.discard(alert.id)
        else:
            self._active.add(alert.id)

    @staticmethod
    def _emit(stop: threading.Event, emit: Callable[[list], None], alerts: list[Alert]) -> None:
        try:
            emit(alerts)
        except RuntimeError:
            stop.set()  # the console is gone

    def _emit_state(self, stop: threading.Event, state: str) -> None:
        try:
            self.state_changed.emit(state)
        except RuntimeError:
            stop.set()


class AlertBook(QObject):
    """Every alert the console knows, by id; newer news of an alert replaces the older."""

    # The alerts that are new or changed (the receivers upsert them by id).
    changed = Signal(list)  # list[Alert]
    # Alerts raised while the console watched (not the ones found at a connection).
    raised = Signal(list)  # list[Alert]

    def __init__(self) -> None:
        super().__init__()
        self.alerts: dict[int, Alert] = {}

    def take_snapshot(self, alerts: list[Alert]) -> None:
        self._store(alerts)

    def add_raised(self, alerts: list[Alert]) -> None:
        fresh = [alert for alert in alerts if alert.id not in self.alerts]
        self._store(alerts)
        if fresh:
            self.raised.emit(fresh)

    def update(self, alert: Alert) -> None:
        """One alert as an action of this console returned it (an acknowledgement)."""
        self._store([alert])

    def active(self) -> list[Alert]:
        return [alert for alert in self.alerts.values() if alert.status in ACTIVE]

    def _store(self, alerts: Iterable[Alert]) -> None:
        changed = []
        for alert in alerts:
            if self.alerts.get(alert.id) != alert:
                self.alerts[alert.id] = alert
                changed.append(alert)
        if changed:
            self.changed.emit(changed)
