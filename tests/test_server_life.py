"""The server's life cycle: one backend per data directory, exit with its parent, secrets kept.

Every process here is real: servers started through the command line, a stand-in parent that
starts a server the way the console does, and kills of that parent with SIGTERM and SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from backend.claim import BUSY_LINE
from backend.workspace import Workspace
from tests.helpers import (
    ToyDataDir,
    launch,
    logged_rows,
    make_settings,
    post_predictions,
    start_server,
)

SERVEDECK_SERVER = [sys.executable, "-m", "backend.cli"]


def _wait_for(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child that ended but was not reaped yet is a zombie: it runs no more.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def test_a_second_server_on_a_served_data_directory_says_where_the_first_listens(
    tmp_path: Path, toy_data_dir: ToyDataDir
) -> None:
    toy_data_dir(tmp_path)
    first = start_server(tmp_path)
    try:
        second = subprocess.run(
            [*SERVEDECK_SERVER, "serve", "--port", "0", "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 3
        assert f"{BUSY_LINE} {first.url}" in second.stdout.splitlines()
        assert f"already served by process {first.process.pid} at {first.url}" in second.stderr
        # The first one was not disturbed: it still serves and still owns server.json.
        assert json.loads((tmp_path / "server.json").read_text())["url"] == first.url
        post_predictions(first.url, (tmp_path / "admin.token").read_text().strip(), 1)
        # The demo command, which builds into the directory before serving, is refused too.
        demo = subprocess.run(
            [*SERVEDECK_SERVER, "demo", "--serve", "--port", "0", "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert demo.returncode == 3 and f"{BUSY_LINE} {first.url}" in demo.stdout
        # Started the console's way (its pipe on stdin, kept open until the process ends), the
        # refused server still exits at once: nothing reading that pipe holds up its shutdown.
        consoles_way = subprocess.Popen(
            [*SERVEDECK_SERVER, "serve", "--exit-with-parent", "--data-dir", str(tmp_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert consoles_way.stdin is not None and consoles_way.stdout is not None
        try:
            # Not communicate(): it closes stdin, which is exactly what must not be needed.
            assert consoles_way.wait(timeout=60) == 3
        finally:
            consoles_way.kill()
            consoles_way.stdin.close()
        assert f"{BUSY_LINE} {first.url}" in consoles_way.stdout.read().splitlines()
        consoles_way.stdout.close()
        # A command run beside the server joins its workspace: an admin token its owner
        # deleted is not written back (nor a new admin created).
        (tmp_path / "admin.token").unlink()
        listed = subprocess.run(
            [*SERVEDECK_SERVER, "tokens", "list", "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listed.returncode == 0, listed.stderr
        assert "admin" in listed.stdout and "admin-2" not in listed.stdout
        assert not (tmp_path / "admin.token").exists()
    finally:
        assert first.stop() in (0, -signal.SIGTERM)
    # Released with the process: the directory can be served again.
    again = start_server(tmp_path)
    again.stop()


def test_a_killed_server_leaves_no_claim_behind(tmp_path: Path, toy_data_dir: ToyDataDir) -> None:
    toy_data_dir(tmp_path)
    first = start_server(tmp_path)
    first.process.kill()
    first.process.wait()
    # Its server.json still names a dead process; the kernel released the lock.
    assert (tmp_path / "server.json").exists()
    second = start_server(tmp_path)
    try:
        info = json.loads((tmp_path / "server.json").read_text())
        assert info == {"url": second.url, "pid": second.process.pid}
    finally:
        second.stop()


# A stand-in for the console: starts the server as the console does (a pipe on its stdin,
# --exit-with-parent), prints the server's pid once it is ready, then waits to be killed.
PARENT = textwrap.dedent(
    """
    import subprocess, sys, time
    server = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "serve", "--port", "0", "--exit-with-parent",
         "--data-dir", sys.argv[1]],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    for line in server.stdout:
        if line.startswith("SERVEDECK READY "):
            print(server.pid, line.split()[-1], flush=True)
            break
    time.sleep(3600)
    """
)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_the_server_and_its_writer_stop_when_their_parent_dies(
    tmp_path: Path, toy_data_dir: ToyDataDir, how: int
) -> None:
    token = toy_data_dir(tmp_path)
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    pid_text, url = parent.stdout.readline().split()
    server_pid = int(pid_text)
    post_predictions(url, token, 20)
    writers = _children(server_pid)
    assert writers, "the server runs its prediction-log writer as a child"

    os.kill(parent.pid, how)
    parent.wait(timeout=10)
    _wait_for(lambda: not _alive(server_pid), 30, "the orphaned server to stop")
    _wait_for(lambda: not any(_alive(pid) for pid in writers), 30, "its writer to stop")
    # An orderly stop: it took its server.json with it, and everything answered was logged.
    assert not (tmp_path / "server.json").exists()
    workspace = Workspace.open(make_settings(tmp_path))
    try:
        assert logged_rows(workspace) == 20
    finally:
        workspace.close()


def test_data_files_are_the_owners_only_and_the_token_is_never_printed(
    tmp_path: Path, toy_data_dir: ToyDataDir
) -> None:
    data_dir = tmp_path / "fresh"
    # Made in this process (under pytest's umask, 022 as a rule: a copy of the toy template
    # made here, modes and all) and then by the server.
    token = toy_data_dir(data_dir)
    server = start_server(data_dir)
    try:
        post_predictions(server.url, token, 5)  # the spool and the log get their files
    finally:
        server.stop()
    output = "".join(server.output)
    assert token not in output

    paths = [data_dir, *data_dir.rglob("*")]
    names = {p.name for p in paths}
    assert {"servedeck.db", "admin.token", "server.lock", "spool", "artifacts"} <= names
    loose = {
        str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode))
        for p in paths
        if stat.S_IMODE(p.stat().st_mode) & 0o077
    }
    assert loose == {}
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700


def test_a_data_directory_made_before_is_tightened_on_start(
    tmp_path: Path, toy_data_dir: ToyDataDir
) -> None:
    data_dir = tmp_path / "old"
    toy_data_dir(data_dir)
    data_dir.chmod(0o755)
    (data_dir / "servedeck.db").chmod(0o644)
    start_server(data_dir).stop()
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((data_dir / "servedeck.db").stat().st_mode) == 0o600


def test_the_demo_never_prints_its_token_into_a_pipe(tmp_path: Path) -> None:
    demo = launch(["demo", "--serve", "--port", "0", "--rate", "5"], tmp_path, timeout=180)
    try:
        token = (tmp_path / "admin.token").read_text().strip()
        _wait_for(lambda: "admin token is in" in "".join(demo.output), 30, "the demo's notice")
    finally:
        demo.stop()
    output = "".join(demo.output)
    assert token not in output
    assert f"the admin token is in {tmp_path / 'admin.token'} (readable by you only)" in output


def test_exit_with_parent_without_a_pipe_on_stdin_is_refused_with_a_reason(tmp_path: Path) -> None:
    # /dev/null would end at once (the server stopping as soon as it started, blaming a parent
    # that is alive): refused before anything starts, in words.
    with open(os.devnull, "rb") as nothing:
        refused = subprocess.run(
            [*SERVEDECK_SERVER, "serve", "--exit-with-parent", "--data-dir", str(tmp_path)],
            stdin=nothing,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert refused.returncode == 2
    assert "--exit-with-parent needs a pipe" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_watcher_started_without_its_settings_says_so_without_a_traceback() -> None:
    started = subprocess.run(
        [sys.executable, "-m", "backend.watcher"],
        input=b"",
        capture_output=True,
        timeout=60,
    )
    assert started.returncode == 2
    assert b"no settings on stdin" in started.stderr and b"Traceback" not in started.stderr
