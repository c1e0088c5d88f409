"""Refuse oversized bodies (413): a declared length before reading, a streamed body as soon as
it passes the limit (so at most the limit is ever held in memory); count requests in flight."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    break  # the HTTP server refuses such a request before it gets here
                if declared > self.max_bytes:
                    await self._refuse(send)
                    return
                # The HTTP server delivers no more than the declared length: nothing to count.
                await self.app(scope, receive, send)
                return
        # No declared length (chunked): read the body here, counting, and hand it on whole.
        # Raising from inside receive instead let FastAPI's body parsing turn it into a 400.
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before its body arrived: nobody to answer
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body: Message | None = {"type": "http.request", "body": b"".join(chunks)}

        async def replay() -> Message:
            nonlocal body
            if body is not None:
                message, body = body, None
                return message
            return await receive()  # after the body: the disconnect, for streaming responses

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        reason = f"the request body is larger than the limit of {self.max_bytes} bytes"
        body: dict[str, Any] = {"error": f"body: {reason}", "field": "body", "reason": reason}
        payload = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


class InFlightCounter:
    """Counts the HTTP requests being handled, so serving can tell a lone request from a crowd."""

    def __init__(self, app: ASGIApp, serving: Any):
        self.app = app
        self.serving = serving

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        serving = self.serving
        serving.http_in_flight += 1
        if serving.http_in_flight > 1:
            serving.last_crowded = time.monotonic()
        try:
            await self.app(scope, receive, send)
        finally:
            self.serving.http_in_flight -= 1
