"""The request-size limit and the in-flight count, driven at the ASGI level."""

from __future__ import annotations

import asyncio
from typing import Any

from backend.api.limits import BodySizeLimit, InFlightCounter
from backend.serving.crowd import CrowdGauge

LIMIT = 1_000


def _scope(method: str = "POST", headers: list[tuple[bytes, bytes]] | None = None) -> Any:
    return {"type": "http", "method": method, "path": "/x", "headers": headers or []}


def _run_body_limit(headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[int, int]:
    """(status sent, body bytes the app got) for a body arriving in ``chunks``."""
    sent: list[dict[str, Any]] = []
    got = bytearray()
    pending = list(chunks)

    async def receive() -> dict[str, Any]:
        if not pending:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": pending.pop(0), "more_body": bool(pending)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            got.extend(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    asyncio.run(BodySizeLimit(app, LIMIT)(_scope(headers=headers), receive, send))
    return sent[0]["status"], len(got)


def test_declared_length_within_the_limit_passes_untouched() -> None:
    assert _run_body_limit([(b"content-length", b"600")], [b"x" * 300, b"x" * 300]) == (200, 600)


def test_declared_length_over_the_limit_is_refused_before_reading() -> None:
    assert _run_body_limit([(b"content-length", b"5000")], [b"x" * 5000]) == (413, 0)


def test_a_chunked_body_is_counted_as_it_arrives() -> None:
    assert _run_body_limit([(b"transfer-encoding", b"chunked")], [b"x" * 400] * 3) == (413, 0)
    assert _run_body_limit([(b"transfer-encoding", b"chunked")], [b"x" * 400] * 2) == (200, 800)


def test_a_small_length_beside_a_transfer_encoding_does_not_skip_the_count() -> None:
    # Some HTTP servers frame such a request by the transfer encoding and ignore the length.
    headers = [(b"content-length", b"5"), (b"transfer-encoding", b"chunked")]
    assert _run_body_limit(headers, [b"x" * 600] * 3) == (413, 0)


def test_only_posts_count_as_requests_in_flight() -> None:
    crowd = CrowdGauge()
    never_crowded = crowd.last_crowded
    seen: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(crowd.in_flight)

    async def nothing() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def discard(message: dict[str, Any]) -> None:
        return None

    counter = InFlightCounter(app, crowd)

    async def scenario() -> None:
        # An open event stream (a GET) must not make every prediction look crowded.
        await counter(_scope("GET"), nothing, discard)
        await counter(_scope("POST"), nothing, discard)

    asyncio.run(scenario())
    assert seen == [0, 1]
    assert crowd.in_flight == 0 and crowd.last_crowded == never_crowded
