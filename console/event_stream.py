"""The one reader thread for the live prediction stream (server-sent events).

It resumes after the last event it saw (``Last-Event-ID``) when the connection drops, with
backoff, and hands each batch to the UI thread as a signal. Pages never read the network.
"""

from __future__ import annotations

import logging
import threading

from PySide6.QtCore import QObject, Signal

from console.client import ApiClient, ApiError

log = logging.getLogger(__name__)

BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)


class PredictionStream(QObject):
    received = Signal(list, int)  # list[PredictionEvent], events missed
    state_changed = Signal(str)  # "streaming", "waiting", "refused"

    def __init__(self, client: ApiClient):
        super().__init__()
        self.client = client
        self.last_event_id: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        # A new event per reader: a stopped reader may still be finishing its last read and
        # must not be revived by a later start.
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(self._stop,), name="prediction-stream", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread = None

    def _run(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                self._emit_state(stop, "streaming")
                for message in self.client.stream_predictions(self.last_event_id, stop):
                    failures = 0
                    self.last_event_id = message.event_id
                    self._emit(stop, message.batch.events, message.batch.missed)
            except ApiError as exc:
                refused = exc.status in (401, 403)
                self._emit_state(stop, "refused" if refused else "waiting")
                log.info("prediction stream: %s", exc.message)
            else:
                self._emit_state(stop, "waiting")
            if stop.is_set():
                return
            failures += 1
            stop.wait(BACKOFF_S[min(failures - 1, len(BACKOFF_S) - 1)])

    def _emit(self, stop: threading.Event, events: list, missed: int) -> None:
        try:
            self.received.emit(events, missed)
        except RuntimeError:
            stop.set()  # the console is gone

    def _emit_state(self, stop: threading.Event, state: str) -> None:
        try:
            self.state_changed.emit(state)
        except RuntimeError:
            stop.set()
