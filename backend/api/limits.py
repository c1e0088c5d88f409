"""Refuse oversized bodies before they are read into memory (413), declared or streamed."""

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
                    declared = 0
                if declared > self.max_bytes:
                    await self._refuse(send)
                    return
                break
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await self._refuse(send)

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


class _TooLarge(Exception):
    pass
