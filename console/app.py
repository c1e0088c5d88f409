"""``servedeck``: the desktop console.

With no arguments it starts the embedded backend (a local ``servedeck-server`` on 127.0.0.1
and a free port, data in the user's data directory) and connects with its admin token.
``--demo`` also builds the demo workspace and runs the traffic simulator. ``--connect URL``
opens a remote backend with a token typed into a dialog.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QApplication, QMessageBox, QProgressDialog

from console.client import ApiClient
from console.context import ConsoleContext
from console.credentials import remember_connection, store_token
from console.dialogs.connect import ConnectDialog
from console.local_backend import LocalBackend, default_data_dir
from console.main_window import MainWindow
from console.resources import apply_style
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
        what = "Building the demo and starting" if self.args.demo else "Starting"
        self.progress = QProgressDialog(f"{what} the local backend…", "Quit", 0, 0)
        self.progress.setWindowTitle("ServeDeck")
        self.progress.setMinimumDuration(0)
        self.progress.canceled.connect(self.app.quit)
        self.progress.show()
        self.local.start()

    def _local_ready(self, url: str) -> None:
        assert self.local is not None
        if self.progress is not None:
            self.progress.canceled.disconnect()
            self.progress.close()
            self.progress = None
        token = self.local.admin_token()
        self.open_window(url, token, origin=f"local backend {url} ({self.local.data_dir})")

    def _local_failed(self, message: str) -> None:
        if self.progress is not None:
            self.progress.close()
        QMessageBox.critical(None, "ServeDeck", message)
        self.app.exit(1)

    def _local_exited(self, code: int) -> None:
        QMessageBox.warning(
            self.window,
            "ServeDeck",
            f"The local backend stopped (exit code {code}). Restart the console to start it again.",
        )

    # ---------------------------------------------------------------- remote backends

    def connect_remote(self, url: str = "") -> None:
        dialog = ConnectDialog(self.settings, url, self.window)
        if dialog.exec() != ConnectDialog.DialogCode.Accepted:
            if self.window is None:
                self.app.exit(0)
            return
        url, token, remember = dialog.values()
        remember_connection(self.settings, url)
        if remember:
            where = store_token(self.settings, url, token, allow_plain_file=True)
            log.info("token for %s kept in %s", url, where)
        self.open_window(url, token, origin=url)

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
