"""The console's one background-work helper: run a call off the UI thread, get a signal back.

Anything that waits on the network or computes for long goes through ``TaskRunner.run``; the
result or the error comes back on the UI thread, delivered to the callbacks given. A result
whose receiver was destroyed meanwhile is dropped.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

log = logging.getLogger(__name__)

Callback = Callable[[Any], None]


class TaskRunner(QObject):
    # (task id, succeeded, result or exception); emitted from worker threads, delivered
    # queued on the UI thread because this object lives there.
    _finished = Signal(int, bool, object)

    def __init__(self, workers: int = 4, parent: QObject | None = None):
        super().__init__(parent)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="console")
        self._callbacks: dict[int, tuple[Callback | None, Callback | None]] = {}
        self._next_id = 0
        self._closed = False
        self._finished.connect(self._deliver)

    def run(
        self,
        call: Callable[[], Any],
        on_done: Callback | None = None,
        on_error: Callback | None = None,
    ) -> Future[Any] | None:
        """Run ``call`` in a worker thread; ``on_done(result)`` or ``on_error(exc)`` follow."""
        if self._closed:
            return None
        self._next_id += 1
        task_id = self._next_id
        self._callbacks[task_id] = (on_done, on_error)

        def work() -> None:
            try:
                result = call()
            except Exception as exc:
                self._emit(task_id, False, exc)
            else:
                self._emit(task_id, True, result)

        return self._executor.submit(work)

    def shutdown(self) -> None:
        self._closed = True
        self._callbacks.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _emit(self, task_id: int, ok: bool, value: Any) -> None:
        # The runner may be destroyed while the call ran (the console is closing).
        with contextlib.suppress(RuntimeError):
            self._finished.emit(task_id, ok, value)

    @Slot(int, bool, object)
    def _deliver(self, task_id: int, ok: bool, value: Any) -> None:
        on_done, on_error = self._callbacks.pop(task_id, (None, None))
        callback = on_done if ok else on_error
        if callback is None:
            if not ok:
                log.warning("background task failed: %s", value)
            return
        try:
            callback(value)
        except RuntimeError as exc:
            # The widget the result was for is gone (its C++ object was deleted).
            log.debug("dropped a result for a deleted receiver: %s", exc)
