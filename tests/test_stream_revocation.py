"""An open event stream ends once its token may no longer read it: revoked (over HTTP or from
another process, as the command line does), or its role or models changed.

The servers here run with the default token cache (a TTL of 1 s), as in production: a
revocation from another process reaches them through that cache, as it reaches plain requests.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from sqlalchemy import update

from backend.api.stream_access import StreamAccess
from backend.auth import TokenService, read_scope
from backend.db.tables import TokenRow
from backend.settings import Settings
from backend.workspace import Workspace
from tests.helpers import (
    TOY_ROW,
    ServerProcess,
    ToyDataDir,
    make_settings,
    start_server,
)

TOKEN_CACHE_TTL_S = Settings.token_cache_ttl_s
# Scheduling on a busy machine: the server's clock stamps, the test's clock reads.
SLACK_S = 0.25
# How long after its revocation an open stream may take to end (cache TTL, a check interval,
# a database read): far below the read timeout a stream that never ends would hit.
END_WITHIN_S = 3.0

# Alone, after the parallel part: what arrives within 1 s of a revocation is measured.
pytestmark = pytest.mark.serial


def _lines_until_the_end(lines: Iterator[str], revoked_at: float) -> Iterator[str]:
    """The stream's lines until the server ends it; fails if it is still open (and still
    sending) ``END_WITHIN_S`` after the revocation."""
    for line in lines:
        assert time.time() - revoked_at < END_WITHIN_S, "the stream stayed open"
        yield line


@pytest.fixture
def server(tmp_path: Path, toy_data_dir: ToyDataDir) -> Iterator[tuple[ServerProcess, str]]:
    admin = toy_data_dir(tmp_path)
    process = start_server(tmp_path)
    yield process, admin
    process.stop()


def _create_token(url: str, admin: str, name: str, role: str = "support") -> str:
    answer = requests.post(
        f"{url}/api/v1/tokens",
        headers={"Authorization": f"Bearer {admin}"},
        json={"name": name, "role": role},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["token"])


def _revoke(how: str, url: str, admin: str, data_dir: Path, name: str) -> float:
    """Revoke the token; the time the revocation was stored."""
    if how == "http":
        answer = requests.delete(
            f"{url}/api/v1/tokens/{name}",
            headers={"Authorization": f"Bearer {admin}"},
            timeout=10,
        )
        assert answer.status_code == 204, answer.text
    else:  # another process's workspace on the same store, as `servedeck-server token revoke`
        workspace = Workspace.open(make_settings(data_dir))
        try:
            workspace.tokens.revoke(name)
        finally:
            workspace.close()
    return time.time()


class _Traffic:
    """Predictions made in a background thread until stopped (their answer times kept)."""

    def __init__(self, url: str, token: str):
        self.url = url
        self.token = token
        self.answered_at: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                answer = session.post(
                    f"{self.url}/v1/models/toy:predict",
                    headers={"Authorization": f"Bearer {self.token}"},
                    json={"instances": [TOY_ROW]},
                    timeout=10,
                )
                answer.raise_for_status()
                self.answered_at.append(time.time())
                self._stop.wait(0.02)


@pytest.mark.parametrize("how", ["http", "command line"])
def test_a_revoked_tokens_prediction_stream_ends_and_shows_nothing_later(
    server: tuple[ServerProcess, str], tmp_path: Path, how: str
) -> None:
    process, admin = server
    token = _create_token(process.url, admin, "watcher")
    headers = {"Authorization": f"Bearer {token}"}
    received: list[dict[str, Any]] = []
    comments: list[str] = []
    with (
        _Traffic(process.url, admin) as traffic,
        requests.get(
            f"{process.url}/api/v1/events/predictions",
            headers=headers,
            stream=True,
            timeout=(5, 10),  # a stream that never ends fails on this read timeout
        ) as response,
    ):
        assert response.status_code == 200
        lines = response.iter_lines(decode_unicode=True)
        # Streaming works: a message of live traffic arrives before the revocation.
        for line in lines:
            if line.startswith("data: ") and orjson.loads(line[6:])["events"]:
                break
        revoked_at = _revoke(how, process.url, admin, tmp_path, "watcher")
        for line in _lines_until_the_end(lines, revoked_at):
            if line.startswith("data: "):
                received.extend(orjson.loads(line[6:])["events"])
            elif line.startswith(":"):
                comments.append(line)
        ended_at = time.time()
    assert ended_at - revoked_at < END_WITHIN_S, "the stream stayed open"
    # Predictions went on while the revoked stream was open: it had something to show.
    assert [t for t in traffic.answered_at if revoked_at < t < ended_at]
    latest_allowed = revoked_at + (0 if how == "http" else TOKEN_CACHE_TTL_S) + SLACK_S
    late = [e["created_at"] - revoked_at for e in received if e["created_at"] > latest_allowed]
    assert not late, f"predictions made this long after the revocation were streamed: {late}"
    assert any("unknown or revoked token" in c for c in comments), comments
    # A reconnect, as a client's retry does, is refused like any request.
    again = requests.get(f"{process.url}/api/v1/events/predictions", headers=headers, timeout=5)
    assert again.status_code == 401 and again.json()["field"] == "authorization"


def test_a_revoked_tokens_alert_stream_ends_and_shows_nothing_later(
    server: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    process, admin = server
    token = _create_token(process.url, admin, "alert-watcher")
    workspace = Workspace.open(make_settings(tmp_path))
    raised: list[tuple[int, float]] = []

    def raise_alert() -> None:
        alert, _ = workspace.alerts.raise_once(
            "toy",
            str(len(raised) + 1),  # a new cause each time
            "live_metric",
            severity="warning",
            title="revocation test",
            explanation="raised by the revocation test",
            details={},
        )
        raised.append((alert.id, time.time()))

    received: list[int] = []
    try:
        with requests.get(
            f"{process.url}/api/v1/events/alerts",
            headers={"Authorization": f"Bearer {token}", "Last-Event-ID": "0"},
            stream=True,
            timeout=(5, 10),
        ) as response:
            assert response.status_code == 200
            raise_alert()
            lines = response.iter_lines(decode_unicode=True)
            for line in lines:
                if line.startswith("data: "):
                    assert orjson.loads(line[6:])["id"] == raised[0][0]
                    break
            revoked_at = _revoke("command line", process.url, admin, tmp_path, "alert-watcher")
            stop = threading.Event()

            def keep_raising() -> None:
                while not stop.is_set():
                    raise_alert()
                    stop.wait(0.1)

            raiser = threading.Thread(target=keep_raising, daemon=True)
            raiser.start()
            try:
                for line in _lines_until_the_end(lines, revoked_at):
                    if line.startswith("data: "):
                        received.append(orjson.loads(line[6:])["id"])
                ended_at = time.time()
            finally:
                stop.set()
                raiser.join(timeout=10)
    finally:
        workspace.close()
    assert ended_at - revoked_at < END_WITHIN_S, "the stream stayed open"
    # Alerts were raised while the revoked stream was open: it had something to show.
    assert [i for i, at in raised if revoked_at < at < ended_at]
    late = {i for i, at in raised if at > revoked_at + TOKEN_CACHE_TTL_S + SLACK_S}
    assert not late & set(received), "alerts raised after the revocation were streamed"


def test_an_idle_stream_ends_when_its_token_is_revoked(
    server: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    """Nothing to send (no predictions of its model): the stream still looks at its token."""
    process, admin = server
    token = _create_token(process.url, admin, "idle")
    with requests.get(
        f"{process.url}/api/v1/events/predictions",
        headers={"Authorization": f"Bearer {token}"},
        params={"model": "price"},
        stream=True,
        timeout=(5, 10),
    ) as response:
        assert response.status_code == 200
        lines = response.iter_lines(decode_unicode=True)
        assert next(lines) == "retry: 2000"
        revoked_at = _revoke("command line", process.url, admin, tmp_path, "idle")
        rest = list(_lines_until_the_end(lines, revoked_at))
        ended_at = time.time()
    assert ended_at - revoked_at < END_WITHIN_S
    assert not [line for line in rest if line.startswith("data: ")]


def test_an_open_stream_follows_its_tokens_role_and_models(workspace: Workspace) -> None:
    """What a stream reads is checked against the token as it is now (no cache here: a TTL of
    zero reads the store each time), on SQLite and PostgreSQL."""
    tokens = TokenService(workspace.sessions, cache_ttl_s=0.0)
    secret = tokens.create("changing", "support", ["toy", "price"])
    header = f"Bearer {secret}"

    def set_row(**values: Any) -> None:
        with workspace.sessions.begin() as session:
            session.execute(update(TokenRow).where(TokenRow.name == "changing").values(**values))

    def access(model: str | None) -> StreamAccess:
        principal = tokens.authenticate(header)
        return StreamAccess(
            tokens,
            header,
            "read_predictions",
            model,
            read_scope(principal, "read_predictions", model),
        )

    every, toy = access(None), access("toy")
    assert asyncio.run(every.still_allowed()) and every.scope.models == {"toy", "price"}
    # Its models narrowed: the unnamed stream narrows with them, the one naming toy ends.
    set_row(models=["price"])
    assert asyncio.run(every.still_allowed()) and every.scope.models == {"price"}
    assert not asyncio.run(toy.still_allowed())
    assert toy.ended_because is not None and "'toy'" in toy.ended_because
    assert toy.farewell().startswith(b": stream ended: model: ")
    # Its role no longer reads predictions.
    set_row(role="client")
    assert not asyncio.run(every.still_allowed())
    assert every.ended_because is not None and "client" in every.ended_because
    # Once ended, a stream stays ended even if the token would be allowed again.
    set_row(role="support", models=None)
    assert not asyncio.run(every.still_allowed())
    # Revoked.
    fresh = access(None)
    assert asyncio.run(fresh.still_allowed()) and fresh.scope.models is None
    tokens.revoke("changing")
    assert not asyncio.run(fresh.still_allowed())
    assert fresh.ended_because == "authorization: unknown or revoked token"
