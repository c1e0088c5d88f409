"""The task helper: keyed tasks replace each other, cancel, progress and errors as signals.

No backend: the work is plain functions. A one-worker runner runs tasks in the order started,
and what a task reports is queued to the UI thread in that order too; so once a later task's
signal arrived, anything an earlier task would have delivered has arrived (or was dropped).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QSettings
from pytestqt.qtbot import QtBot

from console.client import ApiClient
from console.context import ConsoleContext
from console.pages.live import LivePage
from console.tasks import TaskRunner, TaskState

WAIT_MS = 10_000


@pytest.fixture
def runner() -> Iterator[TaskRunner]:
    one_at_a_time = TaskRunner(workers=1)
    yield one_at_a_time
    one_at_a_time.shutdown()


def _finished_with(key: str) -> Callable[[str, object], bool]:
    return lambda finished_key, _result: finished_key == key


def _settle(qtbot: QtBot, runner: TaskRunner) -> None:
    """Wait until everything started before has been delivered (or dropped)."""
    with qtbot.waitSignal(
        runner.finished, timeout=WAIT_MS, check_params_cb=_finished_with("probe")
    ):
        runner.run("probe", lambda _state: None)


def test_a_newer_task_with_the_same_key_drops_the_older_ones_result(
    qtbot: QtBot, runner: TaskRunner
) -> None:
    release = threading.Event()
    results: list[Any] = []
    signalled: list[tuple[str, Any]] = []
    runner.finished.connect(lambda key, result: signalled.append((key, result)))

    def older(_state: TaskState) -> str:
        release.wait(WAIT_MS / 1000)
        return "older"

    first = runner.run("search", older, results.append)
    assert first is not None
    with qtbot.waitSignal(
        runner.finished, timeout=WAIT_MS, check_params_cb=_finished_with("search")
    ):
        runner.run("search", lambda _state: "newer", results.append)
        assert first.cancelled  # replaced: its work may look and stop early
        release.set()
    _settle(qtbot, runner)
    assert results == ["newer"]
    assert [result for key, result in signalled if key == "search"] == ["newer"]
    assert not runner.is_running("search")


def test_a_different_key_does_not_replace(qtbot: QtBot) -> None:
    runner = TaskRunner(workers=2)
    try:
        results: list[str] = []
        runner.run("a", lambda _state: "a", results.append)
        runner.run("b", lambda _state: "b", results.append)
        qtbot.waitUntil(lambda: sorted(results) == ["a", "b"], timeout=WAIT_MS)
    finally:
        runner.shutdown()


def test_cancel_stops_a_long_task_which_sees_the_flag(qtbot: QtBot, runner: TaskRunner) -> None:
    saw_cancel = threading.Event()
    results: list[Any] = []

    def long_work(state: TaskState) -> str:
        state.set_progress(0.0, "started")
        for step in range(1_000):
            if state.wait(0.05):  # a pause that a cancel cuts short
                saw_cancel.set()
                return "stopped early"
            state.set_progress(step / 1_000, f"step {step}")
        return "ran to the end"

    with qtbot.waitSignal(runner.progress, timeout=WAIT_MS):
        runner.run("export", long_work, results.append)
    assert runner.is_running("export")
    runner.cancel("export")
    assert not runner.is_running("export")
    qtbot.waitUntil(saw_cancel.is_set, timeout=WAIT_MS)
    _settle(qtbot, runner)
    assert results == []  # nobody asked for the result any more


def test_progress_and_partial_results_arrive_on_the_ui_thread_before_the_result(
    qtbot: QtBot, runner: TaskRunner
) -> None:
    seen: list[tuple[Any, ...]] = []
    threads: set[threading.Thread] = set()

    def record(*what: Any) -> None:
        threads.add(threading.current_thread())
        seen.append(what)

    def counting(state: TaskState) -> int:
        for step in (1, 2, 3):
            state.set_progress(step / 3, f"step {step} of 3")
            state.set_partial_result(step)
        return 42

    progress_signals: list[tuple[str, float, str]] = []
    runner.progress.connect(lambda *args: progress_signals.append(args))
    runner.partial_result.connect(lambda key, value: record("partial signal", key, value))
    with qtbot.waitSignal(runner.finished, timeout=WAIT_MS) as finished:
        runner.run(
            "count",
            counting,
            lambda result: record("done", result),
            on_progress=lambda fraction, text: record("progress", round(fraction, 3), text),
            on_partial_result=lambda value: record("partial", value),
        )
    assert finished.args == ["count", 42]
    assert [what for what in seen if what[0] == "progress"] == [
        ("progress", 0.333, "step 1 of 3"),
        ("progress", 0.667, "step 2 of 3"),
        ("progress", 1.0, "step 3 of 3"),
    ]
    assert [what[1] for what in seen if what[0] == "partial"] == [1, 2, 3]
    assert [what[2] for what in seen if what[0] == "partial signal"] == [1, 2, 3]
    assert [(key, text) for key, _fraction, text in progress_signals] == [
        ("count", f"step {step} of 3") for step in (1, 2, 3)
    ]
    assert seen[-1] == ("done", 42)
    assert threads == {threading.main_thread()}


def test_an_error_arrives_as_the_error_signal(qtbot: QtBot, runner: TaskRunner) -> None:
    errors: list[Exception] = []
    results: list[Any] = []

    def broken(_state: TaskState) -> None:
        raise ValueError("the backend said no")

    with qtbot.waitSignal(runner.failed, timeout=WAIT_MS) as failed:
        runner.run("save", broken, results.append, errors.append)
    key, error = failed.args
    assert key == "save" and isinstance(error, ValueError) and str(error) == "the backend said no"
    assert errors == [error] and results == []
    assert not runner.is_running("save")


def test_a_poll_keeps_the_one_on_its_way(qtbot: QtBot, runner: TaskRunner) -> None:
    release = threading.Event()
    results: list[str] = []

    def slow(_state: TaskState) -> str:
        release.wait(WAIT_MS / 1000)
        return "first"

    assert runner.run("poll", slow, results.append) is not None
    assert runner.run("poll", lambda _state: "second", results.append, replace=False) is None
    release.set()
    qtbot.waitUntil(lambda: results == ["first"], timeout=WAIT_MS)


def test_after_shutdown_nothing_runs_and_running_work_is_told_to_stop(qtbot: QtBot) -> None:
    runner = TaskRunner(workers=1)
    started, saw_cancel = threading.Event(), threading.Event()

    def long_work(state: TaskState) -> None:
        started.set()
        if state.wait(WAIT_MS / 1000):
            saw_cancel.set()

    runner.run("long", long_work)
    qtbot.waitUntil(started.is_set, timeout=WAIT_MS)
    runner.shutdown()
    qtbot.waitUntil(saw_cancel.is_set, timeout=WAIT_MS)
    assert runner.run("late", lambda _state: None) is None


def test_two_pages_of_the_same_kind_keep_their_tasks_apart(qtbot: QtBot, tmp_path: Path) -> None:
    """An old window closing must not cancel (or replace) the tasks of the new one's pages."""
    runner = TaskRunner(workers=1)
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    # Nothing listens on port 9: the pages are built, never connected.
    context = ConsoleContext(ApiClient("http://127.0.0.1:9", "sdk_x"), runner, settings)
    try:
        old, new = LivePage(context), LivePage(context)
        for page in (old, new):
            qtbot.addWidget(page)
        assert old.task_key("label") != new.task_key("label")
        release = threading.Event()
        results: list[str] = []

        def waiting(_state: TaskState) -> str:
            release.wait(WAIT_MS / 1000)
            return "for the new page"

        new.run_task("label", waiting, results.append)
        old.shutdown()  # cancels what the old page started, nothing else
        assert new.task_running("label")
        release.set()
        qtbot.waitUntil(lambda: results == ["for the new page"], timeout=WAIT_MS)
        new.shutdown()
    finally:
        runner.shutdown()
