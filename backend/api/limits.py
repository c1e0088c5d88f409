"""Refuse oversized bodies (413): a declared length before reading, a streamed body as soon as
it passes the limit (so at most the limit is ever held in memory); count requests in flight."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.serving.crowd import CrowdGauge

TOO_LARGE = 413
CLIENT_LEFT = 0


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, path_limits: dict[str, int] | None = None):
        self.app = app
        self.max_bytes = max_bytes
        # Routes that take files larger than a request (the drift file report), by exact path.
        self.path_limits = path_limits or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.path_limits.get(scope["path"], self.max_bytes)
        limited = await limited_receive(scope, receive, send, max_bytes)
        if not isinstance(limited, int):
            await self.app(scope, limited, send)


async def limited_receive(
    scope: Scope, receive: Receive, send: Send, max_bytes: int
) -> Receive | int:
    """The request's ``receive``, or one replaying its body read here; else the status already
    answered here (``TOO_LARGE``: the body is over ``max_bytes``), or ``CLIENT_LEFT`` (the
    client left before sending its body: nobody to answer)."""
    declared: int | None = None
    chunked = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                declared = None  # the HTTP server refuses such a request before this
        elif name == b"transfer-encoding":
            chunked = True
    if declared is not None and declared > max_bytes:
        await _refuse(send, max_bytes)
        return TOO_LARGE
    if declared is not None and not chunked:
        # The HTTP server delivers no more than the declared length: nothing to count.
        # (With a transfer encoding too, some servers frame by it and ignore the length.)
        return receive
    # No declared length (chunked): read the body here, counting, and hand it on whole.
    # Raising from inside receive instead let FastAPI's body parsing turn it into a 400.
    # This happens before authentication (as FastAPI's own body reading does), so an
    # unknown caller can make the server hold at most the limit per request.
    whole = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return CLIENT_LEFT
        whole += message.get("body", b"")
        if len(whole) > max_bytes:
            await _refuse(send, max_bytes)
            return TOO_LARGE
        if not message.get("more_body", False):
            break
    body: Message | None = {"type": "http.request", "body": bytes(whole)}

    async def replay() -> Message:
        nonlocal body
        if body is not None:
            message, body = body, None
            return message
        return await receive()  # after the body: the disconnect, for streaming responses

    return replay


async def _refuse(send: Send, max_bytes: int) -> None:
    reason = f"the request body is larger than the limit of {max_bytes} bytes"
    body: dict[str, Any] = {"error": f"body: {reason}", "field": "body", "reason": reason}
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": TOO_LARGE,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class InFlightCounter:
    """Counts the POST requests being handled, so serving can tell a lone request from a crowd.

    GETs are left out: an open event stream (a console watching) would otherwise count as a
    second request forever, and every lone prediction would be taken for part of a crowd.
    """

    def __init__(self, app: ASGIApp, crowd: CrowdGauge):
        self.app = app
        self.crowd = crowd

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        crowd = self.crowd
        crowd.enter()
        try:
            await self.app(scope, receive, send)
        finally:
            crowd.leave()
