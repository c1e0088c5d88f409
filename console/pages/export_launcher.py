"""The retraining export, started from a page (Models, Reports) for engineers and admins.

The launcher owns the dialog and runs its calls as tasks of the page that holds it: the
preview as a keyed call (a newer filter replaces an older count), the export as one task
that streams the ZIP to a file beside the folder chosen, unpacks it and checks it against
its manifest, reporting progress; Cancel stops the task, which removes what it wrote.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtWidgets import QPushButton

from backend.schemas import ModelInfo
from backend.schemas.exports import ExportRequest
from console.dialogs.errors import describe_error
from console.export_files import unpack_export
from console.pages.base import ENGINEERING_ROLES, Page
from console.tasks import TaskState
from console.widgets.common import make_button
from console.widgets.export_dialog import ExportDialog

MB = 1024 * 1024
ModelOf = Callable[[], str]  # the model the page shows ("" for none): the dialog starts on it


class ExportLauncher:
    def __init__(self, page: Page, model_of_page: ModelOf | None = None):
        self.page = page
        self.model_of_page = model_of_page
        self.dialog: ExportDialog | None = None
        self.button: QPushButton = make_button(
            "Export for retraining…",
            "Export the logged features with their best labels (review, confirmed reports, "
            "feedback) as Parquet or CSV, with a manifest; preview the counts first.",
            self.open,
        )
        role = page.context.identity.role if page.context.identity else ""
        if role not in ENGINEERING_ROLES:
            # hide() only: showing a button before it has a parent makes it a window of its
            # own for a moment, which takes the focus from the console's window.
            self.button.hide()

    def open(self) -> None:
        self.button.setEnabled(False)
        self.page.call_backend(
            "export/models", lambda client: client.models(), self._show_dialog, self._no_models
        )

    def close(self) -> None:
        self.page.cancel_task("export/run")
        if self.dialog is not None:
            self.dialog.close()

    def _no_models(self, error: Exception) -> None:
        self.button.setEnabled(True)
        self.button.setToolTip(f"Could not read the models: {describe_error(error)}")

    def _show_dialog(self, models: list[ModelInfo]) -> None:
        self.button.setEnabled(True)
        model = self.model_of_page() if self.model_of_page else ""
        dialog = self.dialog = ExportDialog(models, model, self.page)
        dialog.preview_requested.connect(self._preview)
        dialog.run_requested.connect(self._run)
        dialog.cancel_requested.connect(lambda: self.page.cancel_task("export/run"))
        dialog.open()
        dialog.ask_preview()

    def _preview(self, request: ExportRequest) -> None:
        dialog = self.dialog
        if dialog is None:
            return
        self.page.call_backend(
            "export/preview",
            lambda client: client.preview_export(request),
            dialog.show_preview,
            lambda error: dialog.show_preview_failed(describe_error(error)),
        )

    def _run(self, request: ExportRequest, folder: str) -> None:
        dialog = self.dialog
        if dialog is None:
            return
        client = self.page.context.client
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = Path(folder) / f"{request.model}-export-{stamp}"
        partial = Path(folder) / f".{target.name}.zip.part"

        def work(state: TaskState) -> list[str] | None:
            def downloaded(size: int, rows: int | None) -> None:
                reading = f" of {rows:,} log rows read" if rows is not None else ""
                # The ZIP's size is not known before it ends: the bar is busy (-1) meanwhile.
                state.set_progress(-1.0, f"Receiving the export{reading}: {size / MB:,.1f} MB")

            try:
                size = client.download_export(request, partial, downloaded, lambda: state.cancelled)
                if size is None:
                    return None
                files = unpack_export(
                    partial,
                    target,
                    lambda done: state.set_progress(done, "Unpacking and checking the files…"),
                    lambda: state.cancelled,
                )
            finally:
                partial.unlink(missing_ok=True)
            if files is not None and state.cancelled:
                # Cancelled as the last file was checked: the dialog said nothing is kept.
                shutil.rmtree(target, ignore_errors=True)
                return None
            return None if files is None else [str(path) for path in files]

        self.page.run_task(
            "export/run",
            work,
            lambda files: dialog.show_done(files) if files else dialog.show_cancelled(),
            lambda error: dialog.show_failed(describe_error(error)),
            on_progress=dialog.show_progress,
        )
