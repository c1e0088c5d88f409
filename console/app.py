"""``servedeck``: the desktop console.

With no arguments it starts the embedded backend (a local ``servedeck-server`` on 127.0.0.1
and a free port, data in the user's data directory) and connects with its admin token.
``--demo`` also builds the demo workspace and runs the traffic simulator. ``--connect URL``
opens a remote backend with a token typed into a dialog.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
from pathlib import Path

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QApplication, QMessageBox, QProgressDialog

from backend.schemas import WhoAmI
from console.client import ApiClient, ApiError
from console.context import ConsoleContext
from console.credentials import remember_connection, store_token
from console.dialogs.connect import ConnectDialog
from console.dialogs.errors import describe_error
from console.local_backend import LocalBackend, default_data_dir
from console.main_window import MainWindow
from console.pages import pages_for
from console.resources import apply_style
from console.system_libraries import missing_library_report
from console.tasks import TaskRunner

log = logging.getLogger(__name__)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="servedeck", description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", action="store_true", help="build the demo and simulate traffic")
    parser.add_argument("--rate", type=float, default=20.0, help="demo requests per second")
    parser.add_argument("--connect", metavar="URL", help="open a remote backend")
    parser.add_argument("--data-dir", type=Path, help="the embedded backend's data directory")
    return parser.parse_args(argv)


class Console:
    """Owns the windows, the task helper and the embedded backend for the app's lifetime."""

    def __init__(self, app: QApplication, args: argparse.Namespace):
        self.app = app
        self.args = args
        self.settings = QSettings()
        self.tasks = TaskRunner()
        self.local: LocalBackend | None = None
        self.window: MainWindow | None = None
        self.progress: QProgressDialog | None = None
        self.connect_dialog: ConnectDialog | None = None
        app.aboutToQuit.connect(self.shutdown)

    def start(self) -> None:
        if self.args.connect:
            self.connect_remote(self.args.connect)
        else:
            self.start_local()

    # ---------------------------------------------------------------- embedded backend

    def start_local(self) -> None:
        data_dir = self.args.data_dir or default_data_dir()
        self.local = LocalBackend(data_dir, demo=self.args.demo, rate=self.args.rate)
        self.local.ready.connect(self._local_ready)
        self.local.failed.connect(self._local_failed)
        self.local.exited.connect(self._local_exited)
        self.local.busy.connect(self._local_busy)
        what = "Building the demo and starting" if self.args.demo else "Starting"
        self.progress = QProgressDialog(f"{what} the local backend…", "Quit", 0, 0)
        self.progress.setWindowTitle("ServeDeck")
        self.progress.setMinimumDuration(0)
        self.progress.canceled.connect(self.app.quit)
        self.progress.show()
        self.local.start()

    def restart_local(self) -> None:
        """The banner's Restart: the same data directory, a new port, a new window on it."""
        if self.local is None:
            return
        if self.window is not None:
            self.window.show_backend_restarting()
        self.local.start()

    def _close_progress(self) -> None:
        if self.progress is not None:
            self.progress.canceled.disconnect()
            self.progress.close()
            self.progress = None

    def _local_ready(self, url: str) -> None:
        assert self.local is not None
        self._close_progress()
        token = self.local.admin_token()
        self.open_window(url, token, origin=f"local backend {url} ({self.local.data_dir})")

    def _local_failed(self, message: str) -> None:
        self._close_progress()
        if self.window is not None:  # a restart failed: the window stays, the banner says why
            self.window.show_backend_stopped(message, on_restart=self.restart_local)
            return
        QMessageBox.critical(None, "ServeDeck", message)
        self.app.exit(1)

    def _local_exited(self, code: int) -> None:
        if self.window is None or self.local is None:
            return
        if code < 0:
            name = str(-code)
            with contextlib.suppress(ValueError):
                name = signal.Signals(-code).name
            reason = f"It was ended by the signal {name} (not by the console)."
        else:
            last = self.local.last_output_line()
            reason = f"It exited with code {code}" + (f": {last}" if last else ".")
        self.window.show_backend_stopped(reason, on_restart=self.restart_local)

    def _local_busy(self, url: str) -> None:
        """Another backend already serves the data directory: use it, or say why not."""
        assert self.local is not None
        self._close_progress()
        data_dir = self.local.data_dir
        if not url:
            QMessageBox.critical(
                None,
                "ServeDeck",
                f"Another ServeDeck backend is starting on the data directory {data_dir}. "
                "Start the console again in a moment to connect to it.",
            )
            self.app.exit(1)
            return
        try:
            token = self.local.admin_token()
        except OSError as exc:
            QMessageBox.warning(
                None,
                "ServeDeck",
                f"The data directory {data_dir} is already served by another ServeDeck "
                f"backend at {url}, and its admin token ({data_dir / 'admin.token'}) cannot "
                f"be read: {exc.strerror or exc}.\n\nConnect to it with a token of your own, "
                "or stop that backend and start the console again.",
            )
            self.connect_remote(url)
            return
        log.info("%s is already served at %s: connecting to that backend", data_dir, url)
        self.open_window(url, token, origin=f"backend already serving {data_dir} at {url}")
        assert self.window is not None
        self.window.start_here = self.restart_local

    # ---------------------------------------------------------------- remote backends

    def connect_remote(self, url: str = "") -> None:
        """The connect dialog; it closes only once the backend accepted the token."""
        if self.connect_dialog is not None:
            self.connect_dialog.raise_()
            return
        dialog = ConnectDialog(self.settings, url, self.window)
        self.connect_dialog = dialog
        dialog.submitted.connect(self._check_token)
        dialog.accepted.connect(lambda: self._connect_accepted(dialog))
        dialog.rejected.connect(self._connect_cancelled)
        dialog.open()

    def _check_token(self, url: str, token: str) -> None:
        client = ApiClient(url, token)
        self.tasks.run(
            "console/connect-check",
            lambda _state: client.whoami(),
            self._token_answer,
            self._token_refused,
        )

    def _token_answer(self, identity: WhoAmI) -> None:
        if self.connect_dialog is None:
            return
        if not pages_for(identity.role):
            self.connect_dialog.rejected_with(
                f"This is a {identity.role} token ({identity.name}), meant for applications: "
                "connect with an admin, engineer or support token."
            )
            return
        self.connect_dialog.verified()

    def _token_refused(self, error: Exception) -> None:
        if self.connect_dialog is None:
            return
        if isinstance(error, ApiError) and error.status in (401, 403):
            reason = (
                f"The backend refused this token ({error.status}: {error.message}). Check it, "
                "or create one with 'servedeck-server tokens create'."
            )
        else:
            reason = f"Cannot connect: {describe_error(error)}."
        self.connect_dialog.rejected_with(reason)

    def _connect_accepted(self, dialog: ConnectDialog) -> None:
        self.connect_dialog = None
        url, token, remember = dialog.values()
        dialog.deleteLater()
        remember_connection(self.settings, url)
        if remember:
            where = store_token(self.settings, url, token, allow_plain_file=True)
            log.info("token for %s kept in %s", url, where)
        self.open_window(url, token, origin=url)

    def _connect_cancelled(self) -> None:
        self.tasks.cancel("console/connect-check")
        if self.connect_dialog is not None:
            self.connect_dialog.deleteLater()
        self.connect_dialog = None
        if self.window is None:
            self.app.exit(0)

    # ---------------------------------------------------------------- windows

    def open_window(self, url: str, token: str, origin: str) -> None:
        previous = self.window
        context = ConsoleContext(ApiClient(url, token), self.tasks, self.settings, origin=origin)
        self.window = MainWindow(context, on_connect_requested=self.connect_remote)
        self.window.show()
        self.window.start()
        if previous is not None:
            previous.on_closed = None
            previous.close()

    def shutdown(self) -> None:
        if self.window is not None:
            self.window.shutdown()
        self.tasks.shutdown()
        if self.local is not None:
            self.local.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = missing_library_report()
    if missing is not None:  # Qt would abort with a line most people never see
        print(missing, file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    QApplication.setOrganizationName("ServeDeck")
    QApplication.setApplicationName("ServeDeck Console")
    QApplication.setHighDpiScaleFactorRoundingPolicy(
        Qt.HighDpiScaleFactorRoundingPolicy.PassThrough
    )
    app = QApplication(sys.argv[:1])
    apply_style(app)
    console = Console(app, args)
    console.start()
    return app.exec()
