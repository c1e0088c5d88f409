"""The console's one background-work helper: keyed tasks off the UI thread, results as signals.

A task is a plain function that receives a ``TaskState`` and never touches widgets: it reports
progress and partial results through the state, and a long one looks at ``state.cancelled``
between steps (or pauses with ``state.wait``, which a cancel cuts short).

Tasks are keyed by purpose ("models/list", "live/series/1"). Starting a task under the key of
one still running cancels that one, and whatever it still reports is dropped: a page never
shows an answer older than the last question it asked, without keeping its own "one call in
flight" flags or sequence numbers. Everything a task reports reaches the UI thread through Qt
signals; the UI thread never waits on a task.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

log = logging.getLogger(__name__)

Callback = Callable[[Any], None]
ProgressCallback = Callable[[float, str], None]
Work = Callable[["TaskState"], Any]

# What a worker thread reports about its task (the payload's shape depends on the kind).
_PROGRESS, _PARTIAL, _DONE, _FAILED = "progress", "partial", "done", "failed"
_owners = itertools.count(1)


def owner_prefix(name: str) -> str:
    """A key prefix for one object's tasks ("live#3"): two pages of the same kind (an old
    window closing, a new one opening) never replace or cancel each other's tasks."""
    return f"{name}#{next(_owners)}"


class TaskState:
    """The worker's side of one task: report progress and partial results, see a cancel.

    Its methods may be called from the worker thread; what they report is delivered on the UI
    thread, and only while the task is still the current one of its key.
    """

    def __init__(self, key: str, report: Callable[[TaskState, str, Any], None]):
        self.key = key
        self._report = report
        self._cancel = threading.Event()

    @property
    def cancelled(self) -> bool:
        """True once the task was cancelled or replaced: stop, nobody reads the result."""
        return self._cancel.is_set()

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, seconds: float) -> bool:
        """Pause the work (before a retry, say); True if the task was cancelled meanwhile."""
        return self._cancel.wait(seconds)

    def set_progress(self, fraction: float, text: str = "") -> None:
        """How far the work is (0 to 1) and what it is doing, in words for people."""
        if not self.cancelled:
            self._report(self, _PROGRESS, (float(fraction), text))

    def set_partial_result(self, value: Any) -> None:
        """A piece of the result worth showing before the work ends."""
        if not self.cancelled:
            self._report(self, _PARTIAL, value)


@dataclass
class _Task:
    state: TaskState
    on_done: Callback | None
    on_error: Callback | None
    on_progress: ProgressCallback | None
    on_partial_result: Callback | None
    future: Future[None] | None = None


class TaskRunner(QObject):
    """Runs keyed tasks on a thread pool; each signal carries the key of its task first."""

    finished = Signal(str, object)  # key, result
    failed = Signal(str, object)  # key, the exception the work raised
    progress = Signal(str, float, str)  # key, fraction done (0 to 1), what it is doing
    partial_result = Signal(str, object)  # key, a piece of the result

    # (state, kind, payload); emitted from worker threads and delivered queued on the UI
    # thread, because this object lives there.
    _reported = Signal(object, str, object)

    def __init__(self, workers: int = 4, parent: QObject | None = None):
        super().__init__(parent)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="console")
        self._current: dict[str, _Task] = {}
        self._closed = False
        self._reported.connect(self._deliver)

    def run(
        self,
        key: str,
        work: Work,
        on_done: Callback | None = None,
        on_error: Callback | None = None,
        *,
        on_progress: ProgressCallback | None = None,
        on_partial_result: Callback | None = None,
        replace: bool = True,
    ) -> TaskState | None:
        """Run ``work(state)`` in a worker thread as the task ``key``; its reports follow as
        signals and as calls of the callbacks given, on the UI thread.

        A task still running under ``key`` is cancelled and its results dropped. With
        ``replace=False`` the running one is kept instead and nothing new starts (None is
        returned): for polls, where an answer already on its way is as fresh as a new one.
        """
        if self._closed:
            return None
        running = self._current.get(key)
        if running is not None:
            if not replace:
                return None
            self._stop(running)
        state = TaskState(key, self._report)
        task = _Task(state, on_done, on_error, on_progress, on_partial_result)
        self._current[key] = task
        task.future = self._executor.submit(self._work, state, work)
        return state

    def cancel(self, key: str) -> None:
        """Cancel the task ``key``: its work sees ``state.cancelled``, its results are dropped."""
        task = self._current.pop(key, None)
        if task is not None:
            self._stop(task)

    def is_running(self, key: str) -> bool:
        """Whether a task ``key`` was started and has not finished, failed or been cancelled."""
        return key in self._current

    def shutdown(self) -> None:
        self._closed = True
        for task in self._current.values():
            task.state.cancel()
        self._current.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ worker threads

    def _work(self, state: TaskState, work: Work) -> None:
        try:
            result = work(state)
        except Exception as exc:
            self._report(state, _FAILED, exc)
        else:
            self._report(state, _DONE, result)

    def _report(self, state: TaskState, kind: str, payload: Any) -> None:
        if state.cancelled:
            return  # nobody waits for it: spare the UI thread the delivery
        # The runner may be destroyed while the work ran (the console is closing).
        with contextlib.suppress(RuntimeError):
            self._reported.emit(state, kind, payload)

    # ------------------------------------------------------------------ UI thread

    @staticmethod
    def _stop(task: _Task) -> None:
        task.state.cancel()
        if task.future is not None:
            task.future.cancel()  # not started yet: it never will

    @Slot(object, str, object)
    def _deliver(self, state: TaskState, kind: str, payload: Any) -> None:
        task = self._current.get(state.key)
        if task is None or task.state is not state or state.cancelled:
            return  # replaced or cancelled since: nobody asked for this any more
        key = state.key
        if kind == _PROGRESS:
            fraction, text = payload
            self._call(task.on_progress, fraction, text)
            self.progress.emit(key, fraction, text)
        elif kind == _PARTIAL:
            self._call(task.on_partial_result, payload)
            self.partial_result.emit(key, payload)
        else:
            del self._current[key]
            if kind == _DONE:
                self._call(task.on_done, payload)
                self.finished.emit(key, payload)
            else:
                if task.on_error is None:
                    log.warning("background task %s failed: %s", key, payload)
                self._call(task.on_error, payload)
                self.failed.emit(key, payload)

    @staticmethod
    def _call(callback: Callable[..., None] | None, *values: Any) -> None:
        if callback is None:
            return
        try:
            callback(*values)
        except RuntimeError as exc:
            # The widget the result was for is gone (its C++ object was deleted).
            log.debug("dropped a result for a deleted receiver: %s", exc)
