"""Refuse a URL whose path or query holds NUL (400) before any route reads it.

PostgreSQL's text cannot hold NUL: a model name or query value carrying one (``/models/%00``)
reached the store and failed there as a 500. Refused here once for every route, the fast path
included; other control characters are stored as they are.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send


class RefuseNulInUrl:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # The path arrives percent-decoded; the query string raw (%00, or a bare NUL).
            query = scope.get("query_string", b"")
            if "\x00" in scope["path"]:
                await _refuse(send, "path")
                return
            if b"%00" in query or b"\x00" in query:
                await _refuse(send, _parameter_with_nul(query))
                return
        await self.app(scope, receive, send)


def _parameter_with_nul(query: bytes) -> str:
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return name if "\x00" not in name else "query"
    return "query"


async def _refuse(send: Send, field: str) -> None:
    reason = "the URL may not contain the NUL character (%00)"
    payload = json.dumps({"error": f"{field}: {reason}", "field": field, "reason": reason})
    body = payload.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
