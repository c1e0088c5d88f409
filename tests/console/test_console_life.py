"""The console's life cycle with real processes: its embedded backend dies with it, a served
data directory is joined rather than served twice, a stopped backend is restarted from the
banner, the connect dialog checks the token, and missing system libraries are named."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from console.app import Console
from console.dialogs.connect import ConnectDialog
from console.local_backend import redact_tokens
from console.system_libraries import missing_library_report, uses_xcb
from tests.console.conftest import Backend
from tests.helpers import start_server


def _args(data_dir: Path | None = None, connect: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(demo=False, rate=20.0, connect=connect, data_dir=data_dir)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie runs no more


def _wait_for(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def console(qtbot):  # type: ignore[no-untyped-def]
    made: list[Console] = []

    def make(args: argparse.Namespace) -> Console:
        created = Console(QApplication.instance(), args)  # type: ignore[arg-type]
        made.append(created)
        return created

    yield make
    for created in made:
        if created.window is not None:
            created.window.close()
        if created.connect_dialog is not None:
            created.connect_dialog.rejected.disconnect()  # closing it must not quit the app
            created.connect_dialog.close()
        created.shutdown()


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_the_embedded_backend_dies_with_the_console(tmp_path: Path, how: int) -> None:
    """The real `servedeck` in its own process, killed; its backend must follow."""
    data_dir = tmp_path / "data"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path)}
    console = subprocess.Popen(
        [sys.executable, "-m", "console", "--data-dir", str(data_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        info = data_dir / "server.json"
        _wait_for(info.exists, 90, "the embedded backend to be ready")
        server_pid = json.loads(info.read_text())["pid"]
        assert _alive(server_pid)
        os.kill(console.pid, how)
        console.wait(timeout=20)
        _wait_for(lambda: not _alive(server_pid), 30, "the backend to stop after its console")
        assert not info.exists(), "the backend stopped the orderly way and took server.json"
    finally:
        if console.poll() is None:
            console.kill()
            console.wait()
    assert console.stderr is not None
    token = (data_dir / "admin.token").read_text().strip()
    assert token not in console.stderr.read()  # the console's log


def test_a_served_data_directory_is_joined_not_served_twice(  # type: ignore[no-untyped-def]
    qtbot, console, tmp_path: Path, toy_data_dir
) -> None:
    data_dir = tmp_path / "data"
    toy_data_dir(data_dir)
    running = start_server(data_dir)
    try:
        app = console(_args(data_dir))
        app.start()
        qtbot.waitUntil(lambda: app.window is not None, timeout=60_000)
        assert app.window is not None
        assert app.window.context.client.base_url == running.url
        assert "already serving" in app.window.origin_label.text()
        qtbot.waitUntil(lambda: app.window.monitor.state == "connected", timeout=10_000)
        # No second server: the one running still owns the directory.
        assert json.loads((data_dir / "server.json").read_text())["pid"] == running.process.pid
        assert app.local is not None and not app.local.is_running()

        # The joined backend ends (its console closed): the banner says so and offers a
        # backend of this console's own instead of waiting forever.
        joined = app.window
        running.stop()
        qtbot.waitUntil(lambda: joined.banner_button.isVisible(), timeout=30_000)
        assert joined.banner_button.text() == "Start a backend here"
        assert "another console" in joined.banner_text.text()
        qtbot.mouseClick(joined.banner_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: app.window is not joined, timeout=60_000)
        qtbot.waitUntil(lambda: app.window.monitor.state == "connected", timeout=10_000)
        assert app.local.is_running() and app.window.context.client.base_url != running.url
    finally:
        running.stop()


def test_a_served_data_directory_without_a_readable_token_says_why(  # type: ignore[no-untyped-def]
    qtbot, console, tmp_path: Path, toy_data_dir
) -> None:
    data_dir = tmp_path / "data"
    toy_data_dir(data_dir)
    running = start_server(data_dir)
    (data_dir / "admin.token").unlink()
    try:
        app = console(_args(data_dir))
        shown: list[str] = []

        def close_message_boxes() -> None:
            # The explanation is a message box: read it and answer it as a person would.
            for widget in QApplication.topLevelWidgets():
                if isinstance(widget, QMessageBox) and widget.isVisible():
                    shown.append(widget.text())
                    widget.close()

        timer = QTimer()
        timer.timeout.connect(close_message_boxes)
        timer.start(50)
        app.start()
        qtbot.waitUntil(lambda: app.connect_dialog is not None, timeout=60_000)
        timer.stop()
        assert shown and "already served by another ServeDeck backend at " + running.url in shown[0]
        assert "admin.token" in shown[0] and "cannot be read" in shown[0]
        assert app.connect_dialog is not None
        assert app.connect_dialog.url.currentText() == running.url
    finally:
        running.stop()


def test_a_stopped_backend_is_restarted_from_the_banner(qtbot, console, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app = console(_args(tmp_path / "data"))
    app.start()
    qtbot.waitUntil(lambda: app.window is not None, timeout=60_000)
    first = app.window
    assert first is not None and app.local is not None and app.local.pid is not None
    qtbot.waitUntil(lambda: first.monitor.state == "connected", timeout=10_000)

    os.kill(app.local.pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: first.backend_stopped, timeout=20_000)
    text = first.banner_text.text()
    assert "stopped" in text and "does not come back by itself" in text
    assert "ended by the signal SIGKILL" in text
    assert "recovers by itself" not in text
    assert first.banner_button.isVisible() and first.banner_button.text() == "Restart the backend"
    # No heartbeat result may turn it back into "reconnecting".
    first.monitor.state_changed.emit("reconnecting", "connection refused")
    assert "does not come back by itself" in first.banner_text.text()
    # Nor a dialog that says something else: the banner is the one message.
    assert not [w for w in QApplication.topLevelWidgets() if w.isVisible() and w.isModal()]
    # Nor the Live page's stream status, which said "reconnecting" under the banner.
    live = next(page for page in first.pages if page.key == "live")
    assert "the backend stopped" in live.status.text()
    assert "reconnecting" not in live.status.text()

    qtbot.mouseClick(first.banner_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: app.window is not first and app.window is not None, timeout=60_000)
    qtbot.waitUntil(lambda: app.window.monitor.state == "connected", timeout=10_000)
    assert not app.window.banner.isVisible()


def test_the_connect_dialog_keeps_a_refused_token_and_says_why(  # type: ignore[no-untyped-def]
    qtbot, console, module_backend: Backend
) -> None:
    app = console(_args(connect=module_backend.url))
    app.start()
    dialog = app.connect_dialog
    assert dialog is not None and dialog.url.currentText() == module_backend.url

    dialog.token.setText("sdk_not_a_token")
    qtbot.mouseClick(dialog.connect_button, Qt.MouseButton.LeftButton)
    assert dialog.connect_button.text() == "Checking…" and not dialog.token.isEnabled()
    qtbot.waitUntil(lambda: "refused this token (401" in dialog.error.text(), timeout=10_000)
    assert dialog.isVisible() and dialog.connect_button.isEnabled() and app.window is None

    dialog.token.setText(module_backend.create_token("shop", "client"))
    qtbot.mouseClick(dialog.connect_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "meant for applications" in dialog.error.text(), timeout=10_000)
    assert dialog.isVisible() and app.window is None

    dialog.url.setCurrentText("http://127.0.0.1:9")  # nothing listens on the discard port
    dialog.token.setText(module_backend.admin_token)
    qtbot.mouseClick(dialog.connect_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "Cannot connect" in dialog.error.text(), timeout=20_000)
    assert app.window is None

    dialog.url.setCurrentText(module_backend.url)
    dialog.token.setText(module_backend.admin_token)
    qtbot.mouseClick(dialog.connect_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: app.window is not None, timeout=10_000)
    assert app.connect_dialog is None
    assert not [
        w for w in QApplication.topLevelWidgets() if isinstance(w, ConnectDialog) and w.isVisible()
    ]
    qtbot.waitUntil(lambda: app.window.monitor.state == "connected", timeout=10_000)


def test_a_token_refused_later_offers_to_connect_instead_of_waiting(  # type: ignore[no-untyped-def]
    qtbot, console, module_backend: Backend
) -> None:
    app = console(_args(connect=module_backend.url))
    app.open_window(module_backend.url, "sdk_revoked_meanwhile", origin=module_backend.url)
    window = app.window
    qtbot.waitUntil(lambda: window.monitor.state == "refused", timeout=10_000)
    assert "Retrying will not help" in window.banner_text.text()
    assert window.banner_button.text() == "Connect…"
    qtbot.mouseClick(window.banner_button, Qt.MouseButton.LeftButton)
    assert app.connect_dialog is not None and app.connect_dialog.isVisible()


def test_backend_output_lines_lose_their_tokens_before_the_console_logs_them() -> None:
    # Whatever an older or newer server prints, the console's log never gets a secret.
    line = "admin token: sdk_AbC-12_x9 (stored in /tmp/d/admin.token)"
    assert redact_tokens(line) == "admin token: sdk_…(hidden) (stored in /tmp/d/admin.token)"
    assert redact_tokens("SERVEDECK READY http://127.0.0.1:8080") == (
        "SERVEDECK READY http://127.0.0.1:8080"
    )


def test_a_missing_system_library_is_named_with_its_package() -> None:
    fake = [("libservedeck-test-absent.so.7", "servedeck-test-absent7"), ("libc.so.6", "libc6")]
    report = missing_library_report({"QT_QPA_PLATFORM": "xcb"}, fake)
    assert report is not None
    lines = report.splitlines()
    assert lines[0] == (
        "missing system library libservedeck-test-absent.so.7: "
        "install the Debian package servedeck-test-absent7"
    )
    assert "libc6" not in report  # present libraries are not listed
    assert lines[-1].endswith("sudo apt-get install servedeck-test-absent7")
    # Only when Qt will use xcb: offscreen and Wayland sessions do not need these libraries.
    assert missing_library_report({"QT_QPA_PLATFORM": "offscreen"}, fake) is None
    assert missing_library_report({}, fake) is None
    assert uses_xcb({"DISPLAY": ":0"})
    assert uses_xcb({"QT_QPA_PLATFORM": "xcb;wayland"})
    assert not uses_xcb({"DISPLAY": ":0", "XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "w"})
