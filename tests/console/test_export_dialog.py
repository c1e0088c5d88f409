"""The retraining export from the console against a real backend: the preview's counts, the
export written into a chosen folder and checked against its manifest, and a cancel."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from console.client import ApiClient
from console.main_window import MainWindow
from console.pages.models import ModelsPage
from console.pages.reports import ReportsPage
from console.widgets.export_dialog import SOURCE_WORDS, ExportDialog
from tests.console.conftest import Backend
from tests.helpers import post_predictions

TIMEOUT_MS = 30_000
LABELLED = 6


def _labelled_predictions(backend: Backend) -> None:
    """Six predictions of the toy classifier, four labelled fraud (1) and two legit (0)."""
    request_ids = post_predictions(backend.url, backend.admin_token, LABELLED)
    client = ApiClient(backend.url, backend.admin_token)
    deadline = time.monotonic() + 10
    while not all(client.logged_predictions(r) for r in request_ids):
        assert time.monotonic() < deadline, "the predictions never reached the log"
        time.sleep(0.1)
    for index, request_id in enumerate(request_ids):
        client.post_label("toy", request_id, 0, 1 if index < 4 else 0)


@pytest.fixture(scope="module")
def backend(module_backend: Backend) -> Backend:
    """The module's backend with the labelled predictions: both tests read them, neither adds."""
    _labelled_predictions(module_backend)
    return module_backend


@pytest.fixture
def engineer_window(qtbot: QtBot, make_context, backend: Backend) -> Iterator[MainWindow]:  # type: ignore[no-untyped-def]
    window = MainWindow(make_context(backend.url, backend.admin_token))
    qtbot.addWidget(window)
    window.resize(1400, 900)
    window.show()
    window.start()
    qtbot.waitUntil(lambda: window.page("models") is not None, timeout=TIMEOUT_MS)
    yield window
    window.shutdown()


def _open_dialog(qtbot: QtBot, window: MainWindow) -> ExportDialog:
    page = window.page("models")
    assert isinstance(page, ModelsPage)
    window.open_page("models")
    assert page.export.button.isVisible()
    qtbot.mouseClick(page.export.button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.export.dialog is not None, timeout=TIMEOUT_MS)
    dialog = page.export.dialog
    assert dialog is not None and dialog.isVisible()
    return dialog


def _counts(dialog: ExportDialog) -> dict[str, str]:
    table = dialog.counts
    return {table.text(row, 0).strip(): table.text(row, 1) for row in range(table.row_count())}


def test_preview_then_export_into_a_folder(  # type: ignore[no-untyped-def]
    qtbot: QtBot, backend: Backend, engineer_window: MainWindow, tmp_path: Path
) -> None:
    dialog = _open_dialog(qtbot, engineer_window)
    dialog.model.setCurrentIndex(dialog.model.findData("toy"))
    # The counts per label source and per class (by the class's name), before it runs.
    qtbot.waitUntil(lambda: dialog.preview is not None, timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: dialog.preview is not None and dialog.preview.rows == LABELLED)
    counts = _counts(dialog)
    assert counts[SOURCE_WORDS["feedback"]] == f"{LABELLED}"
    assert counts["class fraud (class 1)"] == "4" and counts["class legit (class 0)"] == "2"
    assert f"{LABELLED} rows" in dialog.summary.text()
    # A class filter asks again; the counts follow.
    _tick(dialog, "fraud (class 1)")
    qtbot.waitUntil(
        lambda: dialog.preview is not None and dialog.preview.rows == 4, timeout=TIMEOUT_MS
    )
    # Only uninfluenced labels: feedback on served traffic is not, so nothing is left.
    dialog.uninfluenced.setChecked(True)
    qtbot.waitUntil(lambda: "No row matches" in dialog.summary.text(), timeout=TIMEOUT_MS)
    dialog.uninfluenced.setChecked(False)
    # No source ticked: said in the dialog, nothing asked.
    for row in range(dialog.sources.count()):
        dialog.sources.item(row).setCheckState(Qt.CheckState.Unchecked)
    dialog.ask_preview()
    assert dialog.summary.text() == "Tick at least one label source."
    dialog.sources.item(2).setCheckState(Qt.CheckState.Checked)  # feedback

    out = tmp_path / "exports"
    out.mkdir()
    dialog.folder.setText(str(out))
    qtbot.mouseClick(dialog.export_button, Qt.MouseButton.LeftButton)
    assert dialog.cancel_button.isVisible() and not dialog.export_button.isEnabled()
    qtbot.waitUntil(lambda: "Written:" in dialog.progress_text.text(), timeout=TIMEOUT_MS)
    assert dialog.progress.value() == dialog.progress.maximum()
    (folder,) = list(out.iterdir())
    assert folder.name.startswith("toy-export-")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["rows"] == 4 and manifest["filters"]["classes"] == [1]
    (data_file,) = [f["name"] for f in manifest["files"]]
    table = pq.read_table(folder / data_file)
    assert table.num_rows == 4
    assert not list(out.glob(".*.part"))


def test_a_cancelled_export_keeps_nothing(  # type: ignore[no-untyped-def]
    qtbot: QtBot, backend: Backend, engineer_window: MainWindow, tmp_path: Path
) -> None:
    dialog = _open_dialog(qtbot, engineer_window)
    out = tmp_path / "exports"
    out.mkdir()
    dialog.folder.setText(str(out))
    qtbot.mouseClick(dialog.export_button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    assert dialog.progress_text.text() == "Export cancelled; nothing was kept."
    assert dialog.export_button.isEnabled() and not dialog.running
    page = engineer_window.page("models")
    assert isinstance(page, ModelsPage)
    qtbot.waitUntil(lambda: not page.task_running("export/run"), timeout=TIMEOUT_MS)
    # The worker removes what it wrote once it sees the cancel.
    qtbot.waitUntil(lambda: not list(out.iterdir()), timeout=TIMEOUT_MS)
    # A folder that does not exist is refused before anything runs.
    dialog.folder.setText(str(out / "missing"))
    qtbot.mouseClick(dialog.export_button, Qt.MouseButton.LeftButton)
    assert "does not exist" in dialog.progress_text.text() and not dialog.running

    # The Reports page offers the export to engineers and admins too.
    reports = engineer_window.page("reports")
    assert isinstance(reports, ReportsPage)
    assert reports.export.button.isVisibleTo(reports)


def _tick(dialog: ExportDialog, text: str) -> None:
    items = dialog.classes.findItems(text, Qt.MatchFlag.MatchExactly)
    assert items, f"no class {text!r} offered"
    items[0].setCheckState(Qt.CheckState.Checked)
