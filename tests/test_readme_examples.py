"""The README's tour, run as written: every curl example against a live server on its demo.

The commands are read from README.md itself, so an example that drifts from the API (a
route, a body, a missing Content-Type) fails here instead of failing a reader.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.helpers import ServerProcess, start_server

README = Path(__file__).resolve().parents[1] / "README.md"
README_HOST = "localhost:8080"
README_DATA_DIR = "/tmp/sd"
CLI = ".venv/bin/servedeck-server"


def tour_commands() -> list[str]:
    """The shell commands of the README's "A short tour" block, continuation lines joined."""
    text = README.read_text(encoding="utf-8")
    tour = text[text.index("## A short tour") :]
    block = tour.split("```sh\n", 1)[1].split("```", 1)[0]
    commands: list[str] = []
    pending = ""
    for line in block.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line + "\n"
        if pending.rstrip().endswith("\\"):
            continue
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # a quoted body that goes on over the next lines
            continue
        commands.append(pending.strip())
        pending = ""
    assert not pending, f"unfinished command at the end of the tour: {pending}"
    return commands


def _argv(command: str) -> list[str]:
    return shlex.split(command.replace("\\\n", " "), comments=True)


@pytest.fixture(scope="module")
def tour_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    """The tour's first three lines: build the demo, serve it, read the admin token."""
    data_dir = tmp_path_factory.mktemp("tour")
    build, serve, token_line = tour_commands()[:3]
    argv = _argv(build)
    assert argv[:2] == [CLI, "demo"], build
    cli = str(Path(sys.executable).parent / "servedeck-server")
    arguments = [str(data_dir) if a == README_DATA_DIR else a for a in argv[1:]]
    subprocess.run([cli, *arguments], check=True, timeout=280, capture_output=True)
    # Served on a free port instead of the README's 8080, which may be taken here.
    assert _argv(serve) == [CLI, "serve", "--data-dir", README_DATA_DIR, "--port", "8080"]
    assert token_line == f"TOKEN=$(cat {README_DATA_DIR}/admin.token)"
    server = start_server(data_dir)
    yield server, (data_dir / "admin.token").read_text().strip()
    server.stop()


def _streams(argv: list[str]) -> bool:
    return "-N" in argv or "-sN" in argv


def _run_curl(argv: list[str], base: str, token: str) -> tuple[int, str]:
    """Run one README curl against the test server; its HTTP status and body."""
    host = base.removeprefix("http://")
    argv = [a.replace("$TOKEN", token).replace(README_HOST, host) for a in argv]
    streaming = _streams(argv)
    # An event stream never ends: read its start for two seconds (curl then exits with 28).
    limit = ["--max-time", "2"] if streaming else ["--max-time", "60"]
    done = subprocess.run(
        [*argv, *limit, "-w", "\n%{http_code}"], capture_output=True, text=True, timeout=90
    )
    assert done.returncode == (28 if streaming else 0), (argv, done.stderr)
    body, _, status = done.stdout.rpartition("\n")
    return int(status), body


def test_every_curl_example_of_the_tour_works(tour_server: tuple[ServerProcess, str]) -> None:
    server, token = tour_server
    curls = [_argv(c) for c in tour_commands() if c.startswith("curl ")]
    assert len(curls) >= 10, "the tour lost its HTTP examples"
    alerts = requests.get(
        f"{server.url}/api/v1/alerts", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).json()["alerts"]
    for argv in curls:
        status, body = _run_curl(argv, server.url, token)
        if any(a.endswith("/acknowledge") for a in argv) and not alerts:
            # A fresh demo has raised no alert yet: the example's alert 1 does not exist.
            assert status == 404 and '"alert_id"' in body, (argv, status, body)
            continue
        assert 200 <= status < 300, (argv, status, body)
        if _streams(argv):
            assert body.startswith("retry: "), body


def test_json_examples_say_they_send_json() -> None:
    """curl -d alone sends a web form: every example with a body names its JSON type."""
    for command in tour_commands():
        argv = _argv(command)
        if argv[0] == "curl" and "-d" in argv:
            assert "Content-Type: application/json" in argv, command
