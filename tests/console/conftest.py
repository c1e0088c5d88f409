"""Fixtures for console tests: a real backend on a free port, a console context on it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings

from backend.workspace import Workspace
from console.client import ApiClient
from console.context import ConsoleContext
from console.tasks import TaskRunner
from tests.helpers import (
    ServerProcess,
    ToyDataDir,
    make_settings,
    post_predictions,
    start_server,
)


@dataclass
class Backend:
    data_dir: Path
    admin_token: str
    process: ServerProcess | None = None

    @property
    def url(self) -> str:
        assert self.process is not None
        return self.process.url

    def start(self, port: int = 0) -> None:
        self.process = start_server(self.data_dir, port=port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def create_token(self, name: str, role: str) -> str:
        workspace = Workspace.open(make_settings(self.data_dir))
        try:
            return workspace.tokens.create(name, role, models=["toy"] if role == "client" else None)
        finally:
            workspace.close()

    def predict(self, count: int) -> None:
        post_predictions(self.url, self.admin_token, count)


def _served(data_dir: Path, toy_data_dir: ToyDataDir) -> Iterator[Backend]:
    server = Backend(data_dir, toy_data_dir(data_dir))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def backend(tmp_path: Path, toy_data_dir: ToyDataDir) -> Iterator[Backend]:
    yield from _served(tmp_path / "data", toy_data_dir)


@pytest.fixture(scope="module")
def module_backend(
    tmp_path_factory: pytest.TempPathFactory, toy_data_dir: ToyDataDir
) -> Iterator[Backend]:
    """One backend for the tests of a module that only read what it was given: starting one
    costs seconds of CPU (the server, its log writer, its model probe), most of such a test."""
    yield from _served(tmp_path_factory.mktemp("module-backend") / "data", toy_data_dir)


@pytest.fixture
def console_settings(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "console.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def make_context(console_settings: QSettings) -> Iterator:  # type: ignore[type-arg]
    runners: list[TaskRunner] = []

    def make(url: str, token: str) -> ConsoleContext:
        runner = TaskRunner()
        runners.append(runner)
        return ConsoleContext(ApiClient(url, token), runner, console_settings, origin=url)

    yield make
    for runner in runners:
        runner.shutdown()
